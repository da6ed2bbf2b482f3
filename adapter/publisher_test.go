package adapter

import (
	"slices"
	"testing"

	"github.com/registry-adapter/registry-adapter/served"
)

// recorder is a publisher that records what it is given and reports the
// change it is told to.
type recorder struct {
	changes bool
	applied []string
	ready   bool
}

func (r *recorder) Apply(kind served.Kind, upserts []served.Entry, deletes []string) bool {
	for _, e := range upserts {
		r.applied = append(r.applied, string(kind)+" +"+e.Name)
	}
	for _, n := range deletes {
		r.applied = append(r.applied, string(kind)+" -"+n)
	}
	return r.changes
}

func (r *recorder) MarkReady() { r.ready = true }

// TestFanout: every publisher gets every diff, whichever reported a change
// first, and the fan-out reports a change when any of them did.
func TestFanout(t *testing.T) {
	for _, c := range []struct {
		changes []bool
		want    bool
	}{
		{[]bool{true, false}, true},
		{[]bool{false, true}, true},
		{[]bool{false, false}, false},
		{[]bool{true, true}, true},
	} {
		rs := []*recorder{{changes: c.changes[0]}, {changes: c.changes[1]}}
		f := Fanout{rs[0], rs[1]}
		ups := []served.Entry{{Name: "ns/a", Version: "1"}}
		if got := f.Apply(served.KindServiceEntry, ups, []string{"ns/b"}); got != c.want {
			t.Errorf("changes %v: Apply = %v, want %v", c.changes, got, c.want)
		}
		f.MarkReady()
		for i, r := range rs {
			if want := []string{"ServiceEntry +ns/a", "ServiceEntry -ns/b"}; !slices.Equal(r.applied, want) || !r.ready {
				t.Errorf("changes %v: publisher %d got %v, ready %v; want %v, ready", c.changes, i, r.applied, r.ready, want)
			}
		}
	}
	var _ Publisher = Fanout{}
}
