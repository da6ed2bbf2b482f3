package model

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"strings"
	"unique"
)

// Why not maps: a registry of 50k services keeps every service and instance
// in memory (the source's view and the adapter's store share it), and a Go
// map of three labels costs about 300 bytes before its strings. A label set
// is instead one string, its pairs encoded in name order, and interned: the
// instances of a service mostly carry the same labels (a version, a zone),
// and then share one copy however many there are (measured in
// BENCHMARKS.md, "Why RSS misses 4 KB per resource").

// Labels is an immutable set of labels (or annotations): names and values,
// no name twice. The zero value is empty. Values are never modified once
// made, so copies of a Service share them safely, and two Labels holding
// the same set are == .
type Labels struct {
	// enc is uvarint(count), then per label in name order uvarint(len(name)),
	// name, uvarint(len(value)), value; interned; "" when empty. Lengths make
	// any byte valid in names and values.
	enc string
}

// Label is one name and value.
type Label struct{ Name, Value string }

// LabelsFromMap returns the labels of m.
func LabelsFromMap(m map[string]string) Labels {
	if len(m) == 0 {
		return Labels{}
	}
	list := make([]Label, 0, len(m))
	for k, v := range m {
		list = append(list, Label{k, v})
	}
	slices.SortFunc(list, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	return encodeLabels(list)
}

// MakeLabels returns the labels of alternating names and values; a later
// value replaces an earlier one of the same name, as in a map. It panics on
// an odd number of strings (a programming error, never registry input).
func MakeLabels(kv ...string) Labels {
	if len(kv)%2 != 0 {
		panic("model.MakeLabels: odd number of strings")
	}
	list := make([]Label, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		list = append(list, Label{kv[i], kv[i+1]})
	}
	// Stable, so that the last of equal names is the one kept.
	slices.SortStableFunc(list, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	out := list[:0]
	for i, l := range list {
		if i+1 < len(list) && list[i+1].Name == l.Name {
			continue
		}
		out = append(out, l)
	}
	return encodeLabels(out)
}

// encodeLabels encodes a list sorted by name, without duplicates.
func encodeLabels(list []Label) Labels {
	if len(list) == 0 {
		return Labels{}
	}
	n := binary.MaxVarintLen64
	for _, l := range list {
		n += 2*binary.MaxVarintLen64 + len(l.Name) + len(l.Value)
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(list)))
	for _, l := range list {
		b = binary.AppendUvarint(b, uint64(len(l.Name)))
		b = append(b, l.Name...)
		b = binary.AppendUvarint(b, uint64(len(l.Value)))
		b = append(b, l.Value...)
	}
	// unique keeps its canonical copies weakly: a set no longer used by any
	// service is collected.
	return Labels{unique.Make(string(b)).Value()}
}

// With returns l with name set to value; l itself is unchanged.
func (l Labels) With(name, value string) Labels {
	list := make([]Label, 0, l.Len()+1)
	added := false
	for k, v := range l.All() {
		switch c := strings.Compare(k, name); {
		case c == 0:
			continue
		case c > 0 && !added:
			list = append(list, Label{name, value})
			added = true
		}
		list = append(list, Label{k, v})
	}
	if !added {
		list = append(list, Label{name, value})
	}
	return encodeLabels(list)
}

// Len is the number of labels.
func (l Labels) Len() int {
	n, _ := uvarint(l.enc)
	return n
}

// Get returns the value of name.
func (l Labels) Get(name string) (string, bool) {
	for k, v := range l.All() {
		if k == name {
			return v, true
		}
	}
	return "", false
}

// All yields every label in name order. The strings share the set's memory.
func (l Labels) All() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		s := l.enc
		_, s = uvarint(s)
		for len(s) > 0 {
			var k, v string
			k, s = field(s)
			v, s = field(s)
			if !yield(k, v) {
				return
			}
		}
	}
}

// uvarint decodes a length at the start of s. The encoding is the package's
// own, so it is well-formed.
func uvarint(s string) (int, string) {
	var n uint64
	var shift uint
	for i := 0; i < len(s); i++ {
		c := s[i]
		n |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return int(n), s[i+1:]
		}
		shift += 7
	}
	return 0, ""
}

func field(s string) (string, string) {
	n, s := uvarint(s)
	return s[:n], s[n:]
}

// Map returns a new map of the labels; nil when there are none.
func (l Labels) Map() map[string]string {
	if l.enc == "" {
		return nil
	}
	m := make(map[string]string, l.Len())
	for k, v := range l.All() {
		m[k] = v
	}
	return m
}

// Equal reports whether l and o hold the same labels.
func (l Labels) Equal(o Labels) bool { return l.enc == o.enc }

// String formats the labels as fmt formats a map.
func (l Labels) String() string {
	var b strings.Builder
	b.WriteString("map[")
	first := true
	for k, v := range l.All() {
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(k)
		b.WriteByte(':')
		b.WriteString(v)
	}
	b.WriteByte(']')
	return b.String()
}

// MarshalJSON writes the labels as a JSON object, as a map would be (null
// when empty), so that state files keep their format.
func (l Labels) MarshalJSON() ([]byte, error) {
	if l.enc == "" {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for k, v := range l.All() {
		if !first {
			b.WriteByte(',')
		}
		first = false
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		vb, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads a JSON object (or null), as into a map.
func (l *Labels) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*l = LabelsFromMap(m)
	return nil
}

// TargetPort is the port an instance listens on for a service port.
type TargetPort struct{ Port, Target uint32 }

// TargetPorts maps service port numbers to the ports an instance listens on,
// sorted by service port with none twice. The zero value is empty; values are
// never modified once made.
type TargetPorts struct{ list []TargetPort }

// TargetPortsFromMap returns the target ports of m (service port -> target).
func TargetPortsFromMap(m map[uint32]uint32) TargetPorts {
	if len(m) == 0 {
		return TargetPorts{}
	}
	list := make([]TargetPort, 0, len(m))
	for p, t := range m {
		list = append(list, TargetPort{p, t})
	}
	slices.SortFunc(list, func(a, b TargetPort) int { return cmp.Compare(a.Port, b.Port) })
	return TargetPorts{list}
}

// Len is the number of ports mapped.
func (t TargetPorts) Len() int { return len(t.list) }

// Get returns the target of service port p.
func (t TargetPorts) Get(p uint32) (uint32, bool) {
	for _, tp := range t.list {
		if tp.Port == p {
			return tp.Target, true
		}
	}
	return 0, false
}

// All yields every service port and its target, by service port.
func (t TargetPorts) All() iter.Seq2[uint32, uint32] {
	return func(yield func(uint32, uint32) bool) {
		for _, tp := range t.list {
			if !yield(tp.Port, tp.Target) {
				return
			}
		}
	}
}

// Map returns a new map of the target ports; nil when there are none.
func (t TargetPorts) Map() map[uint32]uint32 {
	if len(t.list) == 0 {
		return nil
	}
	m := make(map[uint32]uint32, len(t.list))
	for _, tp := range t.list {
		m[tp.Port] = tp.Target
	}
	return m
}

// Equal reports whether t and o map the same ports.
func (t TargetPorts) Equal(o TargetPorts) bool { return slices.Equal(t.list, o.list) }

// String formats the ports as fmt formats a map.
func (t TargetPorts) String() string {
	var b strings.Builder
	b.WriteString("map[")
	for i, tp := range t.list {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%d", tp.Port, tp.Target)
	}
	b.WriteByte(']')
	return b.String()
}

// MarshalJSON writes the ports as a map[uint32]uint32 is written (keys in
// the order of their decimal strings), so that state files keep their format.
func (t TargetPorts) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.Map())
}

// UnmarshalJSON reads what MarshalJSON writes, as into a map[uint32]uint32.
func (t *TargetPorts) UnmarshalJSON(b []byte) error {
	var m map[uint32]uint32
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*t = TargetPortsFromMap(m)
	return nil
}
