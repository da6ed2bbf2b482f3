package kube

import (
	"encoding/json"
	"fmt"
	"maps"
	"strconv"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/util/json"

	"github.com/registry-adapter/registry-adapter/served"
)

const (
	// LabelOwner is the Kubernetes sink's own ownership label, beside
	// served.LabelManagedBy which every served resource carries.
	LabelOwner = "registry-adapter.io/owner"
	// FieldManager is the server-side apply field manager of every write.
	FieldManager = "registry-adapter"
	// Version is the API version of served.Group the sink writes: v1, the
	// version istiod reads since 1.24.
	Version = "v1"
)

// resources maps the served kinds the sink writes to their CRD resources;
// it writes no other kind.
var resources = map[served.Kind]schema.GroupVersionResource{
	served.KindServiceEntry:  {Group: served.Group, Version: Version, Resource: "serviceentries"},
	served.KindWorkloadEntry: {Group: served.Group, Version: Version, Resource: "workloadentries"},
	// Traffic policy (a Consul source's configEntries.trafficPolicy): listed
	// without failing the resync where the Role does not grant them.
	served.KindDestinationRule: {Group: served.Group, Version: Version, Resource: "destinationrules"},
	served.KindVirtualService:  {Group: served.Group, Version: Version, Resource: "virtualservices"},
}

// optional are the kinds whose list may be refused (a Role written for
// sources without traffic policy) without failing the resync: nothing of
// theirs is then pruned, and a write of one fails and is counted like any
// other.
var optional = map[served.Kind]bool{served.KindDestinationRule: true, served.KindVirtualService: true}

// render turns a served MCP resource (the Any the xDS cache serves, decoded
// with served.Decode as istiod decodes it, so that both sinks carry
// identical spec, labels and annotations) into the object the sink applies:
// the body as the CRD's JSON (protojson uses the same lowerCamel field names
// and enum names as Istio's CRDs), the metadata labels plus the owner label,
// and the annotations. It returns the object and the hash of what the sink
// manages.
func render(kind served.Kind, owner string, a *anypb.Any) (*unstructured.Unstructured, string, error) {
	res, err := served.Decode(a)
	if err != nil {
		return nil, "", err
	}
	ns, name := res.Namespace, res.Name
	if ns == "" || name == "" {
		return nil, "", fmt.Errorf("%s %q: want namespace/name", kind, res.Key())
	}
	if res.Kind != kind {
		return nil, "", fmt.Errorf("%s %s/%s: the resource is a %s", kind, ns, name, res.Kind)
	}
	specJSON, err := protojson.Marshal(res.Spec)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s/%s: spec to JSON: %w", kind, ns, name, err)
	}
	var specMap map[string]any
	// apimachinery's decoder gives integers as int64, as the dynamic client
	// does for objects read back, so that the two compare equal.
	if err := kjson.Unmarshal(specJSON, &specMap); err != nil {
		return nil, "", fmt.Errorf("%s %s/%s: spec JSON: %w", kind, ns, name, err)
	}
	labels := maps.Clone(res.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelOwner] = owner
	meta := map[string]any{"name": name, "namespace": ns, "labels": toAny(labels)}
	if len(res.Annotations) > 0 {
		meta["annotations"] = toAny(res.Annotations)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": served.Group + "/" + Version,
		"kind":       string(kind),
		"metadata":   meta,
		"spec":       specMap,
	}}
	h, err := contentHash(labels, res.Annotations, specMap)
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
	return labels[served.LabelManagedBy] == served.ManagedByValue && labels[LabelOwner] == owner
}

// ownedSelector is the label selector of every object the sink owns.
func ownedSelector(owner string) string {
	return served.LabelManagedBy + "=" + served.ManagedByValue + "," + LabelOwner + "=" + owner
}
