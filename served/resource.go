package served

import (
	"encoding/binary"
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	mcp "istio.io/api/mcp/v1alpha1"
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

var deterministic = proto.MarshalOptions{Deterministic: true}

// New builds a resource and its content version. Labels, annotations and spec
// are kept, not copied; the caller must not modify them afterwards.
func New(kind Kind, ns, name string, labels, ann map[string]string, spec proto.Message, createTime time.Time) *Resource {
	body, err := deterministic.Marshal(spec)
	if err != nil {
		// Marshalling a well-formed generated message cannot fail; if it ever
		// does, an unversioned resource is still better than a panic.
		body = nil
	}
	return &Resource{
		Kind: kind, Namespace: ns, Name: name, Labels: labels, Annotations: ann, Spec: spec,
		Version:    contentVersion(body, labels, ann, createTime.UnixNano()),
		body:       body,
		createTime: timestamppb.New(createTime),
	}
}

// Key is "namespace/name", the name istiod expects in MCP metadata.
func (r *Resource) Key() string { return r.Namespace + "/" + r.Name }

// CreateTime is the creation timestamp istiod is given.
func (r *Resource) CreateTime() time.Time { return r.createTime.AsTime() }

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

// envelope is the resource in istiod's config-source envelope.
func (r *Resource) envelope() *mcp.Resource {
	return &mcp.Resource{
		Metadata: &mcp.Metadata{
			Name:        r.Key(),
			CreateTime:  r.createTime,
			Version:     r.Version,
			Labels:      r.Labels,
			Annotations: r.Annotations,
		},
		Body: &anypb.Any{TypeUrl: r.Kind.bodyTypeURL(), Value: r.body},
	}
}

// sortedKeys returns m's keys in order. Unlike slices.Sorted(maps.Keys(m)) it
// allocates once: label maps are small and hashed by the tens of thousands.
func sortedKeys(m map[string]string) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
