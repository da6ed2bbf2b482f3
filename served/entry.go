package served

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
	mcp "istio.io/api/mcp/v1alpha1"

	// The body types Decode resolves by type URL.
	_ "istio.io/api/networking/v1alpha3"
)

// Entry is a resource serialized once, as every reply to every client
// carries it.
type Entry struct {
	// Name is "namespace/name".
	Name    string
	Version string
	// Resource is the MCP envelope as an Any. Its value points into the
	// record, so the entry costs one copy of the bytes, not two.
	Resource *anypb.Any

	record []byte
}

// discoveryResponseResources is the field number of
// envoy.service.discovery.v3.DiscoveryResponse.resources.
const discoveryResponseResources = 2

// recordHeadroom is room enough in front of a marshalled MCP resource for its
// record's header: three tags, the type URL and its length, two varints.
const recordHeadroom = 1 + 5 + 1 + 1 + len(MCPResourceTypeURL) + 1 + 5

// Record is the entry as one element of a DiscoveryResponse's resources
// field (tag, length, then the Any), so that a server can write a reply from
// the records of its resources without marshalling them again. It is nil for
// a zero Entry. It must not be modified.
func (e Entry) Record() []byte { return e.record }

// Entry is the resource's record and envelope, which New built. This is the
// one place the envelope is marshalled (New for a built resource, here for
// one Decode read back).
func (r *Resource) Entry() (Entry, error) {
	if r.record != nil {
		value := r.record[r.valueAt:]
		return Entry{
			Name: r.Key(), Version: r.Version,
			Resource: &anypb.Any{TypeUrl: MCPResourceTypeURL, Value: value[:len(value):len(value)]},
			record:   r.record,
		}, nil
	}
	// Size first, so that the buffer is allocated once and exactly.
	w := newEnvelopeWriter(r)
	size := w.size()
	buf := w.append(make([]byte, recordHeadroom, recordHeadroom+size), r.body)
	if len(buf) != recordHeadroom+size {
		return Entry{}, fmt.Errorf("served: marshal %s %s: wrote %d bytes, sized %d", r.Kind, r.Key(), len(buf)-recordHeadroom, size)
	}
	value := buf[recordHeadroom:]
	var hb [recordHeadroom]byte
	head := appendRecordHeader(hb[:0], MCPResourceTypeURL, len(value))
	start := recordHeadroom - len(head)
	copy(buf[start:], head)
	return Entry{
		Name: r.Key(), Version: r.Version,
		Resource: &anypb.Any{TypeUrl: MCPResourceTypeURL, Value: value[:len(value):len(value)]},
		record:   buf[start:],
	}, nil
}

// EntryOf makes an entry of an Any built elsewhere (a test, a client's
// view), copying its value once into the record.
func EntryOf(name, version string, a *anypb.Any) Entry {
	if a == nil {
		return Entry{Name: name, Version: version}
	}
	b := appendRecordHeader(make([]byte, 0, recordHeadroom+len(a.Value)), a.TypeUrl, len(a.Value))
	valueAt := len(b)
	b = append(b, a.Value...)
	return Entry{
		Name: name, Version: version,
		Resource: &anypb.Any{TypeUrl: a.TypeUrl, Value: b[valueAt:len(b):len(b)]},
		record:   b,
	}
}

// recordHeaderSize is the size of appendRecordHeader's output for a value
// of valueLen bytes.
func recordHeaderSize(valueLen int) int {
	typeURL := protowire.SizeTag(1) + protowire.SizeBytes(len(MCPResourceTypeURL))
	anySize := typeURL + protowire.SizeTag(2) + protowire.SizeBytes(valueLen)
	return protowire.SizeTag(discoveryResponseResources) + protowire.SizeVarint(uint64(anySize)) +
		typeURL + protowire.SizeTag(2) + protowire.SizeVarint(uint64(valueLen))
}

// appendRecordHeader appends what precedes an Any's value in its record: the
// DiscoveryResponse.resources tag and length, then the Any's type URL field
// and its value's tag and length.
func appendRecordHeader(b []byte, typeURL string, valueLen int) []byte {
	anySize := protowire.SizeTag(1) + protowire.SizeBytes(len(typeURL)) +
		protowire.SizeTag(2) + protowire.SizeBytes(valueLen)
	b = protowire.AppendTag(b, discoveryResponseResources, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anySize))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, typeURL)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(valueLen))
}

// Decode reads a served resource back, as istiod does: for tests, `check`
// and the debug dump.
func Decode(a *anypb.Any) (*Resource, error) {
	var m mcp.Resource
	if err := a.UnmarshalTo(&m); err != nil {
		return nil, fmt.Errorf("served: decode MCP resource: %w", err)
	}
	spec, err := m.GetBody().UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("served: decode body of %s: %w", m.GetMetadata().GetName(), err)
	}
	ns, name, _ := strings.Cut(m.GetMetadata().GetName(), "/")
	kind := kindOfBody(m.GetBody().GetTypeUrl())
	if kind == "" {
		return nil, fmt.Errorf("served: %s: %s is not a served kind", m.GetMetadata().GetName(), m.GetBody().GetTypeUrl())
	}
	return &Resource{
		Kind: kind, Namespace: ns, Name: name,
		Labels: m.GetMetadata().GetLabels(), Annotations: m.GetMetadata().GetAnnotations(),
		Spec: spec, Version: m.GetMetadata().GetVersion(),
		body: m.GetBody().GetValue(), createTime: m.GetMetadata().GetCreateTime(),
	}, nil
}
