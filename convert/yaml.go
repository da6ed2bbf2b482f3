package convert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/registry-adapter/registry-adapter/served"
)

// APIVersion is the Kubernetes API version of rendered resources.
const APIVersion = "networking.istio.io/v1"

type object struct {
	APIVersion string          `json:"apiVersion"`
	Kind       served.Kind     `json:"kind"`
	Metadata   objectMeta      `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
}

type objectMeta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace"`
	CreationTimestamp string            `json:"creationTimestamp,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
}

// RenderOptions tune YAML output.
type RenderOptions struct {
	// WithVersion adds metadata.resourceVersion (for debug output; kubectl
	// apply would refuse a stale one, so render leaves it out).
	WithVersion bool
}

// YAML renders resources as a multi-document stream that `kubectl apply -f -`
// accepts, in the order given.
func YAML(resources []*served.Resource, ro RenderOptions) ([]byte, error) {
	var buf bytes.Buffer
	for i, r := range resources {
		doc, err := yamlDoc(r, ro)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(doc)
	}
	return buf.Bytes(), nil
}

func yamlDoc(r *served.Resource, ro RenderOptions) ([]byte, error) {
	// protojson gives the CRD field names (lowerCamelCase) and enum names;
	// going through JSON again makes the output stable, since protojson
	// randomizes its whitespace on purpose.
	spec, err := protojson.Marshal(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("convert: render %s %s: %w", r.Kind, r.Key(), err)
	}
	o := object{
		APIVersion: APIVersion,
		Kind:       r.Kind,
		Metadata: objectMeta{
			Name: r.Name, Namespace: r.Namespace, Labels: r.Labels, Annotations: r.Annotations,
		},
		Spec: spec,
	}
	if ro.WithVersion {
		o.Metadata.ResourceVersion = r.Version
		o.Metadata.CreationTimestamp = r.CreateTime().Format(time.RFC3339)
	}
	j, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("convert: render %s %s: %w", r.Kind, r.Key(), err)
	}
	return yaml.JSONToYAML(j)
}
