package convert

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	mcp "istio.io/api/mcp/v1alpha1"
)

// Kind is an Istio config kind this adapter produces.
type Kind string

const (
	KindServiceEntry  Kind = "ServiceEntry"
	KindWorkloadEntry Kind = "WorkloadEntry"
)

// Kinds lists every kind the adapter serves.
var Kinds = []Kind{KindServiceEntry, KindWorkloadEntry}

// Type URLs inside the MCP envelope. istiod decodes the outer Any as an MCP
// Resource whatever the request's type URL was, and the body by its own URL.
const (
	MCPResourceTypeURL  = "type.googleapis.com/istio.mcp.v1alpha1.Resource"
	serviceEntryTypeURL = "type.googleapis.com/istio.networking.v1alpha3.ServiceEntry"
	workloadEntryType   = "type.googleapis.com/istio.networking.v1alpha3.WorkloadEntry"
)

// Resource is one generated Istio object with its content version.
type Resource struct {
	Kind        Kind
	Namespace   string
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	// Spec is a *networking.ServiceEntry or *networking.WorkloadEntry. It must
	// not be modified once the resource is built: Version covers it.
	Spec proto.Message
	// Version is a hash of everything istiod stores. istiod re-applies a
	// resource only when the version changes (and every time when it is
	// empty), so it must change exactly when the content does.
	Version string

	body       []byte
	createTime *timestamppb.Timestamp
}

// Key is "namespace/name", the name istiod expects in MCP metadata.
func (r *Resource) Key() string { return r.Namespace + "/" + r.Name }

var deterministic = proto.MarshalOptions{Deterministic: true}

func newResource(kind Kind, ns, name string, labels, ann map[string]string, spec proto.Message, opts Options) *Resource {
	body, err := deterministic.Marshal(spec)
	if err != nil {
		// Marshalling a well-formed generated message cannot fail; if it ever
		// does, an unversioned resource is still better than a panic.
		body = nil
	}
	return &Resource{
		Kind: kind, Namespace: ns, Name: name, Labels: labels, Annotations: ann, Spec: spec,
		Version:    contentVersion(body, labels, ann, opts.CreateTime.UnixNano()),
		body:       body,
		createTime: timestamppb.New(opts.CreateTime),
	}
}

func contentVersion(body []byte, labels, ann map[string]string, createTime int64) string {
	h := xxhash.New()
	_, _ = h.Write(body)
	for _, m := range []map[string]string{labels, ann} {
		// A separator per map keeps {a:b} and {}+{a:b} from hashing alike.
		_, _ = h.Write([]byte{0xff})
		for _, k := range sortedKeys(m) {
			writeString(h, k)
			writeString(h, m[k])
		}
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(createTime))
	_, _ = h.Write(ts[:])
	return strconv.FormatUint(h.Sum64(), 16)
}

func writeString(h *xxhash.Digest, s string) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(s)))
	_, _ = h.Write(n[:])
	_, _ = h.WriteString(s)
}

func (r *Resource) bodyTypeURL() string {
	if r.Kind == KindWorkloadEntry {
		return workloadEntryType
	}
	return serviceEntryTypeURL
}

// MCP returns the resource in istiod's config-source envelope.
func (r *Resource) MCP() *mcp.Resource {
	return &mcp.Resource{
		Metadata: &mcp.Metadata{
			Name:        r.Key(),
			CreateTime:  r.createTime,
			Version:     r.Version,
			Labels:      r.Labels,
			Annotations: r.Annotations,
		},
		Body: &anypb.Any{TypeUrl: r.bodyTypeURL(), Value: r.body},
	}
}

// Any serializes the MCP envelope once, ready to be shared by every response
// that carries this resource. The envelope need not be byte-stable (the
// version is hashed from the deterministic body and metadata, not from these
// bytes), and sorting its label maps was a tenth of a cold sync.
func (r *Resource) Any() (*anypb.Any, error) {
	b, err := proto.Marshal(r.MCP())
	if err != nil {
		return nil, fmt.Errorf("convert: marshal %s %s: %w", r.Kind, r.Key(), err)
	}
	return &anypb.Any{TypeUrl: MCPResourceTypeURL, Value: b}, nil
}

// FromAny decodes a served resource back into a Resource, for debug output
// and tests. It is the inverse of Any, as istiod performs it.
func FromAny(a *anypb.Any) (*Resource, error) {
	var m mcp.Resource
	if err := a.UnmarshalTo(&m); err != nil {
		return nil, fmt.Errorf("convert: decode MCP resource: %w", err)
	}
	spec, err := m.GetBody().UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("convert: decode body of %s: %w", m.GetMetadata().GetName(), err)
	}
	ns, name, _ := strings.Cut(m.GetMetadata().GetName(), "/")
	kind := KindServiceEntry
	if m.GetBody().GetTypeUrl() == workloadEntryType {
		kind = KindWorkloadEntry
	}
	return &Resource{
		Kind: kind, Namespace: ns, Name: name,
		Labels: m.GetMetadata().GetLabels(), Annotations: m.GetMetadata().GetAnnotations(),
		Spec: spec, Version: m.GetMetadata().GetVersion(),
		body: m.GetBody().GetValue(), createTime: m.GetMetadata().GetCreateTime(),
	}, nil
}
