package kube

import (
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	mcp "istio.io/api/mcp/v1alpha1"
	_ "istio.io/api/networking/v1alpha3" // registers the ServiceEntry and WorkloadEntry bodies for UnmarshalNew
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/util/json"
)

// Labels that decide ownership. managed-by is on every resource the adapter
// generates, whatever the sink; the owner label is the Kubernetes sink's own.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedByValue = "registry-adapter"
	LabelOwner     = "registry-adapter.io/owner"
	// FieldManager is the server-side apply field manager of every write.
	FieldManager = "registry-adapter"
)

// Group is the API group of Istio's networking CRDs; the sink writes v1,
// the version istiod reads since 1.24.
const (
	Group   = "networking.istio.io"
	Version = "v1"
)

// resources maps the adapter's kinds to their CRD resources.
var resources = map[string]schema.GroupVersionResource{
	"ServiceEntry":  {Group: Group, Version: Version, Resource: "serviceentries"},
	"WorkloadEntry": {Group: Group, Version: Version, Resource: "workloadentries"},
}

// Kinds lists the kinds the sink writes, in a fixed order.
var Kinds = []string{"ServiceEntry", "WorkloadEntry"}

// Upsert is one resource to write: its "namespace/name", the version the
// adapter computed (it changes exactly when the content does), and the
// serialized istio.mcp.v1alpha1.Resource that the xDS sink serves. Decoding
// that one serialization is what keeps spec, labels and annotations
// identical between the two sinks.
type Upsert struct {
	Name    string
	Version string
	MCP     []byte
}

// render turns an MCP resource into the object the sink applies: the body
// as the CRD's JSON (protojson uses the same lowerCamel field names and enum
// names as Istio's CRDs), the metadata labels plus the owner label, and the
// annotations. It returns the object and the hash of what the sink manages.
func render(kind, owner string, body []byte) (*unstructured.Unstructured, string, error) {
	var res mcp.Resource
	if err := proto.Unmarshal(body, &res); err != nil {
		return nil, "", fmt.Errorf("decode MCP resource: %w", err)
	}
	ns, name, ok := strings.Cut(res.GetMetadata().GetName(), "/")
	if !ok || ns == "" || name == "" {
		return nil, "", fmt.Errorf("MCP resource name %q: want namespace/name", res.GetMetadata().GetName())
	}
	spec, err := res.GetBody().UnmarshalNew()
	if err != nil {
		return nil, "", fmt.Errorf("%s %s/%s: decode body: %w", kind, ns, name, err)
	}
	specJSON, err := protojson.Marshal(spec)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s/%s: spec to JSON: %w", kind, ns, name, err)
	}
	var specMap map[string]any
	// apimachinery's decoder gives integers as int64, as the dynamic client
	// does for objects read back, so that the two compare equal.
	if err := kjson.Unmarshal(specJSON, &specMap); err != nil {
		return nil, "", fmt.Errorf("%s %s/%s: spec JSON: %w", kind, ns, name, err)
	}
	labels := maps.Clone(res.GetMetadata().GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelOwner] = owner
	meta := map[string]any{"name": name, "namespace": ns, "labels": toAny(labels)}
	if ann := res.GetMetadata().GetAnnotations(); len(ann) > 0 {
		meta["annotations"] = toAny(ann)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Group + "/" + Version,
		"kind":       kind,
		"metadata":   meta,
		"spec":       specMap,
	}}
	h, err := contentHash(labels, res.GetMetadata().GetAnnotations(), specMap)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s/%s: %w", kind, ns, name, err)
	}
	return obj, h, nil
}

// observedHash is contentHash of an object read from the API server.
func observedHash(u *unstructured.Unstructured) (string, error) {
	spec, _, err := unstructured.NestedMap(u.Object, "spec")
	if err != nil {
		return "", err
	}
	return contentHash(u.GetLabels(), u.GetAnnotations(), spec)
}

// contentHash hashes what the sink manages. encoding/json sorts map keys, so
// equal content hashes alike whichever side produced it.
func contentHash(labels, ann map[string]string, spec map[string]any) (string, error) {
	if len(ann) == 0 {
		ann = nil
	}
	b, err := json.Marshal([]any{labels, ann, spec})
	if err != nil {
		return "", fmt.Errorf("hash content: %w", err)
	}
	return strconv.FormatUint(xxhash.Sum64(b), 16), nil
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// owned reports whether an object read from the API server is this sink's.
func owned(labels map[string]string, owner string) bool {
	return labels[LabelManagedBy] == ManagedByValue && labels[LabelOwner] == owner
}

// ownedSelector is the label selector of every object the sink owns.
func ownedSelector(owner string) string {
	return LabelManagedBy + "=" + ManagedByValue + "," + LabelOwner + "=" + owner
}
