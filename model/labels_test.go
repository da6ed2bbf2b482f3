package model

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

func TestLabels(t *testing.T) {
	for _, tt := range []struct {
		name   string
		labels Labels
		want   map[string]string
		str    string
	}{
		{"zero", Labels{}, nil, "map[]"},
		{"from empty map", LabelsFromMap(map[string]string{}), nil, "map[]"},
		{"from map", LabelsFromMap(map[string]string{"zone": "a", "app": "web", "v": ""}), map[string]string{"app": "web", "v": "", "zone": "a"}, "map[app:web v: zone:a]"},
		{"pairs", MakeLabels("zone", "a", "app", "web"), map[string]string{"app": "web", "zone": "a"}, "map[app:web zone:a]"},
		{"pairs, last wins", MakeLabels("a", "1", "b", "2", "a", "3"), map[string]string{"a": "3", "b": "2"}, "map[a:3 b:2]"},
		{"with, new", MakeLabels("b", "2").With("a", "1").With("c", "3"), map[string]string{"a": "1", "b": "2", "c": "3"}, "map[a:1 b:2 c:3]"},
		{"with, replaced", MakeLabels("a", "1", "b", "2").With("a", "9"), map[string]string{"a": "9", "b": "2"}, "map[a:9 b:2]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.labels.Map(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Map() = %v, want %v", got, tt.want)
			}
			if tt.labels.Len() != len(tt.want) {
				t.Errorf("Len() = %d, want %d", tt.labels.Len(), len(tt.want))
			}
			for k, v := range tt.want {
				if got, ok := tt.labels.Get(k); !ok || got != v {
					t.Errorf("Get(%q) = %q, %v; want %q", k, got, ok, v)
				}
			}
			if _, ok := tt.labels.Get("absent"); ok {
				t.Error("Get(absent) found")
			}
			if got := fmt.Sprint(tt.labels); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := fmt.Sprint(tt.want); len(tt.want) > 0 && got != tt.str {
				t.Errorf("String() = %q, a map prints %q", tt.str, got)
			}
			if !tt.labels.Equal(LabelsFromMap(tt.want)) || !reflect.DeepEqual(tt.labels, LabelsFromMap(tt.want)) {
				t.Errorf("%v is not equal to the same labels made from a map", tt.labels)
			}
		})
	}
	// With leaves its receiver alone: services share label sets.
	base := MakeLabels("a", "1")
	_ = base.With("a", "2")
	if v, _ := base.Get("a"); v != "1" {
		t.Errorf("With modified its receiver: a=%q", v)
	}
}

func TestLabelsGetMany(t *testing.T) {
	m := map[string]string{}
	for i := range 40 {
		m[fmt.Sprintf("k%02d", i)] = fmt.Sprint(i)
	}
	l := LabelsFromMap(m)
	for k, v := range m {
		if got, ok := l.Get(k); !ok || got != v {
			t.Errorf("Get(%q) = %q, %v", k, got, ok)
		}
	}
	if _, ok := l.Get("k40"); ok {
		t.Error("Get(k40) found")
	}
	if !maps.Equal(maps.Collect(l.All()), m) {
		t.Error("All() differs from the map")
	}
}

// TestLabelsJSON: state files written before labels were slices hold JSON
// objects, and must read back the same, and be written the same.
func TestLabelsJSON(t *testing.T) {
	type svc struct {
		Labels Labels
		Ports  TargetPorts
	}
	type old struct {
		Labels map[string]string
		Ports  map[uint32]uint32
	}
	for _, o := range []old{
		{},
		{Labels: map[string]string{"b": "<2>", "a": "1", "é": "\u2028"}, Ports: map[uint32]uint32{8080: 18080, 10000: 1, 9: 90}},
	} {
		want, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		var s svc
		if err := json.Unmarshal(want, &s); err != nil {
			t.Fatalf("reading %s: %v", want, err)
		}
		if !reflect.DeepEqual(s.Labels.Map(), o.Labels) || !reflect.DeepEqual(s.Ports.Map(), o.Ports) {
			t.Errorf("read %s as %v %v", want, s.Labels, s.Ports)
		}
		got, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("written as\n%s\nmaps write\n%s", got, want)
		}
	}
	var s svc
	for _, bad := range []string{`{"Labels":{"a":1}}`, `{"Labels":[]}`, `{"Ports":{"x":1}}`, `{"Ports":{"1":-1}}`} {
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestTargetPorts(t *testing.T) {
	p := TargetPortsFromMap(map[uint32]uint32{9090: 19090, 80: 8080})
	if p.Len() != 2 || fmt.Sprint(p) != "map[80:8080 9090:19090]" {
		t.Errorf("got %v", p)
	}
	if v, ok := p.Get(9090); !ok || v != 19090 {
		t.Errorf("Get(9090) = %d, %v", v, ok)
	}
	if _, ok := p.Get(81); ok {
		t.Error("Get(81) found")
	}
	if !p.Equal(TargetPortsFromMap(p.Map())) || p.Equal(TargetPorts{}) {
		t.Error("Equal")
	}
	if TargetPortsFromMap(nil).Map() != nil {
		t.Error("empty ports give a map")
	}
}

// TestLabelsShared: equal sets, made apart, share one copy; that is what
// makes a registry's many instances with the same labels cheap.
func TestLabelsShared(t *testing.T) {
	a := MakeLabels("zone", fmt.Sprintf("z%d", 1), "version", "v1")
	b := LabelsFromMap(map[string]string{"version": "v1", "zone": fmt.Sprintf("z%d", 1)})
	if a != b {
		t.Fatalf("%v and %v differ", a, b)
	}
	if unsafe.StringData(a.enc) != unsafe.StringData(b.enc) {
		t.Error("equal label sets stored twice")
	}
}

// TestLabelsBytes: any byte is valid in names and values, long ones too.
func TestLabelsBytes(t *testing.T) {
	long := strings.Repeat("x", 300)
	m := map[string]string{"": "", "\x00\xff": "\x80", long: long + "y", "k": "\x00"}
	l := LabelsFromMap(m)
	if !maps.Equal(l.Map(), m) || l.Len() != len(m) {
		t.Errorf("got %q", l.Map())
	}
}
