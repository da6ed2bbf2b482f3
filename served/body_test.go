package served

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	mcp "istio.io/api/mcp/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
)

// randomString is empty, short, long (a two-byte length), or non-ASCII.
func randomString(r *rand.Rand) string {
	switch r.IntN(8) {
	case 0:
		return ""
	case 1:
		return strings.Repeat("x", 128+r.IntN(300))
	case 2:
		return "zoné-ü-" + strconv.Itoa(r.IntN(100))
	default:
		return fmt.Sprintf("s%d", r.IntN(1000))
	}
}

func randomStrings(r *rand.Rand) []string {
	var out []string
	for range r.IntN(4) {
		out = append(out, randomString(r))
	}
	return out
}

func randomMap(r *rand.Rand) map[string]string {
	n := r.IntN(12) // past the eight keys sorted on the stack
	if n == 0 {
		if r.IntN(2) == 0 {
			return nil
		}
		return map[string]string{}
	}
	m := make(map[string]string, n)
	for range n {
		m[randomString(r)] = randomString(r)
	}
	return m
}

func randomUint32(r *rand.Rand) uint32 {
	switch r.IntN(4) {
	case 0:
		return 0
	case 1:
		return r.Uint32() // up to five varint bytes
	default:
		return uint32(r.IntN(70000))
	}
}

func randomWorkloadEntry(r *rand.Rand) *networking.WorkloadEntry {
	we := &networking.WorkloadEntry{
		Address: randomString(r), Labels: randomMap(r), Network: randomString(r), Locality: randomString(r),
		Weight: randomUint32(r), ServiceAccount: randomString(r),
	}
	if n := r.IntN(4); n > 0 {
		we.Ports = make(map[string]uint32, n)
		for range n {
			we.Ports[randomString(r)] = randomUint32(r)
		}
	}
	return we
}

func randomServiceEntry(r *rand.Rand) *networking.ServiceEntry {
	se := &networking.ServiceEntry{
		Hosts: randomStrings(r), Addresses: randomStrings(r), ExportTo: randomStrings(r), SubjectAltNames: randomStrings(r),
		Location:   networking.ServiceEntry_Location(r.IntN(3) - r.IntN(2)), // negative too: ten varint bytes
		Resolution: networking.ServiceEntry_Resolution(r.IntN(5)),
	}
	for range r.IntN(4) {
		se.Ports = append(se.Ports, &networking.ServicePort{Number: randomUint32(r), Protocol: randomString(r), Name: randomString(r), TargetPort: randomUint32(r)})
	}
	for range r.IntN(5) {
		se.Endpoints = append(se.Endpoints, randomWorkloadEntry(r))
	}
	if r.IntN(2) == 0 {
		se.WorkloadSelector = &networking.WorkloadSelector{Labels: randomMap(r)}
	}
	return se
}

// TestBodyMatchesProto: the hand-written bodies are byte for byte what
// proto.Marshal writes deterministically, for random specs of every shape.
func TestBodyMatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		var spec proto.Message = randomServiceEntry(r)
		if i%3 == 0 {
			spec = randomWorkloadEntry(r)
		}
		want, err := deterministic.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		size, ok := bodySize(spec)
		if !ok {
			t.Fatalf("case %d: the hand encoder does not cover %v", i, spec)
		}
		got := appendBody(nil, spec)
		if string(got) != string(want) || size != len(want) {
			t.Fatalf("case %d: hand-written body (%d bytes, sized %d) differs from proto's (%d bytes)\nspec %v\n got %x\nwant %x",
				i, len(got), size, len(want), spec, got, want)
		}
	}
}

// TestBodyLeavesTheRestToProto: what the hand encoder does not cover goes
// through proto.Marshal: other kinds, nil elements, unknown fields, and
// strings that are not UTF-8, which proto.Marshal refuses.
func TestBodyLeavesTheRestToProto(t *testing.T) {
	unknown := &networking.WorkloadEntry{Address: "10.0.0.1"}
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	for name, spec := range map[string]proto.Message{
		"destination rule":      &networking.DestinationRule{Host: "a"},
		"nil port":              &networking.ServiceEntry{Hosts: []string{"a"}, Ports: []*networking.ServicePort{nil}},
		"nil endpoint":          &networking.ServiceEntry{Endpoints: []*networking.WorkloadEntry{nil}},
		"unknown field":         unknown,
		"unknown in endpoint":   &networking.ServiceEntry{Endpoints: []*networking.WorkloadEntry{unknown}},
		"invalid host":          &networking.ServiceEntry{Hosts: []string{"a\xff"}},
		"invalid label value":   &networking.WorkloadEntry{Labels: map[string]string{"a": "\xc3"}},
		"invalid selector key":  &networking.ServiceEntry{WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"\xff": "a"}}},
		"invalid port name":     &networking.ServiceEntry{Ports: []*networking.ServicePort{{Number: 80, Name: "\xff"}}},
		"invalid endpoint port": &networking.WorkloadEntry{Ports: map[string]uint32{"\xff": 1}},
	} {
		if _, ok := bodySize(spec); ok {
			t.Errorf("%s: the hand encoder claims it", name)
		}
		// And New serves what it served before: proto's bytes, or none
		// when proto.Marshal refuses the spec.
		want, err := deterministic.Marshal(spec)
		if err != nil {
			want = nil
		}
		if got := New(KindServiceEntry, "ns", "x", nil, nil, spec, created).body; string(got) != string(want) {
			t.Errorf("%s: New's body %x, want proto's %x", name, got, want)
		}
	}
}

// TestBodyCoversEveryField fails when istio.io/api adds a field to a
// message the hand encoder writes: the encoder would silently leave it out.
func TestBodyCoversEveryField(t *testing.T) {
	for msg, written := range map[protoreflect.MessageDescriptor][]protowire.Number{
		(&networking.ServiceEntry{}).ProtoReflect().Descriptor(): {seHosts, seAddresses, sePorts, seLocation, seResolution,
			seEndpoints, seExportTo, seSubjectAltNames, seWorkloadSelector},
		(&networking.ServicePort{}).ProtoReflect().Descriptor():      {portNumber, portProtocol, portName, portTargetPort},
		(&networking.WorkloadEntry{}).ProtoReflect().Descriptor():    {weAddress, wePorts, weLabels, weNetwork, weLocality, weWeight, weServiceAccount},
		(&networking.WorkloadSelector{}).ProtoReflect().Descriptor(): {selectorLabels},
	} {
		var fields []protowire.Number
		for i := range msg.Fields().Len() {
			fields = append(fields, msg.Fields().Get(i).Number())
		}
		slices.Sort(fields)
		slices.Sort(written)
		if !slices.Equal(fields, written) {
			t.Errorf("%s has fields %v; the hand encoder writes %v", msg.FullName(), fields, written)
		}
	}
}

// referenceVersion is contentVersion as it was before New wrote the record
// itself: the versions istiod holds must not change with the encoder.
func referenceVersion(body []byte, labels, ann map[string]string, createTime int64) string {
	h := xxhash.New()
	_, _ = h.Write(body)
	for _, m := range []map[string]string{labels, ann} {
		_, _ = h.Write([]byte{0xff})
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			var n [4]byte
			binary.BigEndian.PutUint32(n[:], uint32(len(k)))
			_, _ = h.Write(n[:])
			_, _ = h.WriteString(k)
			binary.BigEndian.PutUint32(n[:], uint32(len(m[k])))
			_, _ = h.Write(n[:])
			_, _ = h.WriteString(m[k])
		}
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(createTime))
	_, _ = h.Write(ts[:])
	return strconv.FormatUint(h.Sum64(), 16)
}

// ReferenceEntry is a resource's entry made the plain way, with protobuf's
// own marshal of the spec and the envelope: what New and Entry must serve,
// byte for byte.
func referenceEntry(t *testing.T, kind Kind, ns, name string, labels, ann map[string]string, spec proto.Message, at time.Time) Entry {
	t.Helper()
	body, err := deterministic.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	version := referenceVersion(body, labels, ann, at.UnixNano())
	env, err := deterministic.Marshal(&mcp.Resource{
		Metadata: &mcp.Metadata{Name: ns + "/" + name, CreateTime: timestamppb.New(at), Version: version, Labels: labels, Annotations: ann},
		Body:     &anypb.Any{TypeUrl: kind.bodyTypeURL(), Value: body},
	})
	if err != nil {
		t.Fatal(err)
	}
	return EntryOf(ns+"/"+name, version, &anypb.Any{TypeUrl: MCPResourceTypeURL, Value: env})
}

// TestNewServesTheReferenceBytes: New's record, envelope and version are
// those of the plain path, for random resources of every kind and shape
// (the hand-written bodies and the proto-marshalled ones).
func TestNewServesTheReferenceBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	times := []time.Time{created, time.Unix(0, 0), time.Date(1960, 1, 1, 0, 0, 0, 5, time.UTC), time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)}
	for i := range 2000 {
		kind, spec := KindServiceEntry, proto.Message(randomServiceEntry(r))
		switch i % 4 {
		case 1:
			kind, spec = KindWorkloadEntry, randomWorkloadEntry(r)
		case 2:
			kind, spec = KindDestinationRule, &networking.DestinationRule{Host: randomString(r),
				Subsets: []*networking.Subset{{Name: "v1", Labels: randomMap(r)}}}
		}
		if i%50 == 0 {
			// Bodies long enough for three-byte lengths.
			se := randomServiceEntry(r)
			for range 400 {
				se.Endpoints = append(se.Endpoints, randomWorkloadEntry(r))
			}
			kind, spec = KindServiceEntry, se
		}
		ns, name := randomString(r), randomString(r)
		labels, ann := randomMap(r), randomMap(r)
		at := times[r.IntN(len(times))]
		res := New(kind, ns, name, labels, ann, spec, at)
		got, err := res.Entry()
		if err != nil {
			t.Fatal(err)
		}
		want := referenceEntry(t, kind, ns, name, labels, ann, spec, at)
		if res.record == nil {
			t.Fatalf("case %d: New built no record", i)
		}
		if got.Name != want.Name || got.Version != want.Version || string(got.Record()) != string(want.Record()) ||
			!proto.Equal(got.Resource, want.Resource) {
			t.Fatalf("case %d (%s): New's entry %s@%s (%d bytes) differs from the reference %s@%s (%d bytes)",
				i, kind, got.Name, got.Version, len(got.Record()), want.Name, want.Version, len(want.Record()))
		}
		if cap(got.Resource.Value) != len(got.Resource.Value) {
			t.Fatalf("case %d: the entry's value can be appended to into the record's memory", i)
		}
	}
}
