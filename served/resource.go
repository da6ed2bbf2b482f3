package served

import (
	"encoding/binary"
	"slices"
	"strconv"
	"sync/atomic"
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

	key        string // Namespace/Name, made once: every entry and published list shares it
	body       []byte
	createTime *timestamppb.Timestamp
	// record is the entry's record (entry.go), built by New around the body
	// in one allocation; valueAt is where the MCP envelope starts in it.
	// Nil for a resource Decode made: Entry then builds it.
	record  []byte
	valueAt int
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// maxVersion is the longest version contentVersion makes (a uint64 in hex):
// New leaves room for it in front of the body before the version is known.
const maxVersion = "ffffffffffffffff"

// New builds a resource, its content version and its record (Entry), with
// one allocation for the bytes: the body is written once, straight into the
// record, and the envelope in front of it. Labels, annotations and spec are
// kept, not copied; the caller must not modify them afterwards.
func New(kind Kind, ns, name string, labels, ann map[string]string, spec proto.Message, createTime time.Time) *Resource {
	r := &Resource{
		Kind: kind, Namespace: ns, Name: name, Labels: labels, Annotations: ann, Spec: spec,
		key: ns + "/" + name, createTime: sharedTimestamp(createTime),
	}
	var labelKeys, annKeys [8]string // the keys of as many labels sort on the stack
	w := envelopeWriter{key: r.key, version: maxVersion, createTime: r.createTime, labels: labels, ann: ann,
		labelKeys: sortedKeysInto(labelKeys[:0], labels), annKeys: sortedKeysInto(annKeys[:0], ann), bodyTypeURL: kind.bodyTypeURL()}
	size, fast := bodySize(spec)
	var marshalled []byte
	if !fast {
		var err error
		if marshalled, err = deterministic.Marshal(spec); err != nil {
			// Marshalling a well-formed generated message cannot fail; if it
			// ever does, an unversioned resource is still better than a panic.
			marshalled = nil
		}
		size = len(marshalled)
	}
	w.measure(size)
	front := recordHeaderSize(w.size()) + w.headSize()
	buf := make([]byte, front, front+size)
	if fast {
		buf = appendBody(buf, spec)
	} else {
		buf = append(buf, marshalled...)
	}
	r.body = buf[front:len(buf):len(buf)]
	r.Version = contentVersion(r.body, w.labelKeys, labels, w.annKeys, ann, createTime.UnixNano())
	if len(r.body) != size {
		// The hand encoder wrote other than it sized: a bug, never served.
		// proto.Marshal's body, and Entry builds the record from it.
		body, _ := deterministic.Marshal(spec)
		r.body, r.Version = body, contentVersion(body, w.labelKeys, labels, w.annKeys, ann, createTime.UnixNano())
		return r
	}
	w.version = r.Version
	w.measure(size)
	header := recordHeaderSize(w.size())
	start := front - header - w.headSize()
	rec := w.appendHead(appendRecordHeader(buf[start:start:front], MCPResourceTypeURL, w.size()))
	if len(rec) == front-start {
		r.record, r.valueAt = buf[start:], header
	}
	return r
}

// lastTimestamp is the creation time of the resource New built last: every
// resource of an adapter has the same (output.createTime), and the
// timestamp is only ever read, so they share one.
var lastTimestamp atomic.Pointer[timestamppb.Timestamp]

func sharedTimestamp(t time.Time) *timestamppb.Timestamp {
	if ts := lastTimestamp.Load(); ts != nil && ts.GetSeconds() == t.Unix() && ts.GetNanos() == int32(t.Nanosecond()) {
		return ts
	}
	ts := timestamppb.New(t)
	lastTimestamp.Store(ts)
	return ts
}

// Key is "namespace/name", the name istiod expects in MCP metadata.
func (r *Resource) Key() string {
	if r.key != "" {
		return r.key
	}
	return r.Namespace + "/" + r.Name
}

// CreateTime is the creation timestamp istiod is given.
func (r *Resource) CreateTime() time.Time { return r.createTime.AsTime() }

func contentVersion(body []byte, labelKeys []string, labels map[string]string, annKeys []string, ann map[string]string, createTime int64) string {
	h := xxhash.New()
	_, _ = h.Write(body)
	for _, m := range [...]struct {
		keys []string
		m    map[string]string
	}{{labelKeys, labels}, {annKeys, ann}} {
		// A separator per map keeps {a:b} and {}+{a:b} from hashing alike.
		_, _ = h.Write([]byte{0xff})
		for _, k := range m.keys {
			writeString(h, k)
			writeString(h, m.m[k])
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
