package fidelity

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Watch records, on a sidecar stream held open, every endpoint assignment
// istiod sends from the moment it starts, and tells which of a set of
// endpoints went missing at any assignment. Sampling a debug endpoint
// misses losses shorter than its period; an assignment stream misses none
// that istiod pushes (run istiod with PILOT_ENABLE_EDS_DEBOUNCE=false so
// that it pushes each endpoint change instead of merging those within its
// debounce window).
type Watch struct {
	p     *Proxy
	from  int
	start time.Time
	held  map[string][]string // cluster -> endpoints at start
}

// Watch starts watching; call it once the view holds what must be kept.
func (p *Proxy) Watch() *Watch {
	p.mu.Lock()
	defer p.mu.Unlock()
	held := map[string][]string{}
	for name, cla := range p.endpoints {
		held[name], _ = lbEndpoints(cla)
	}
	return &Watch{p: p, from: len(p.events), start: time.Now(), held: held}
}

// Loss is one endpoint missing from one assignment, or from the sidecar's
// clusters altogether.
type Loss struct {
	Cluster, Endpoint string
	After             time.Duration // since the watch started
	For               time.Duration // until an assignment held it again; 0 if none did
	// ClusterRemoved: the loss began with the whole cluster leaving CDS.
	ClusterRemoved bool
}

func (l Loss) String() string {
	d := "for the rest of the watch"
	if l.For > 0 {
		d = "for " + l.For.Round(time.Millisecond).String()
	}
	how := "missing"
	if l.ClusterRemoved {
		how = "gone with its cluster"
	}
	return fmt.Sprintf("%s %s %s %s into the watch, %s", l.Cluster, l.Endpoint, how, l.After.Round(time.Millisecond), d)
}

// WatchReport is what a watch saw.
type WatchReport struct {
	Assignments int
	Duration    time.Duration
	Losses      []Loss // of the kept endpoints, in order
	// Broken is why the stream ended during the watch: from then on
	// nothing was observed, so a check must fail.
	Broken error
}

// Report replays every assignment since the watch started and lists each
// time an endpoint of kept (cluster -> "address:port") was missing, its
// cluster's removal from CDS included. Assignments counts both.
func (w *Watch) Report(kept map[string][]string) WatchReport {
	events, _ := w.p.Events(w.from)
	r := WatchReport{Assignments: len(events), Duration: time.Since(w.start), Broken: w.p.Err()}
	state := maps.Clone(w.held)
	open := map[string]int{} // cluster+" "+endpoint -> index in r.Losses of a loss not yet over
	for _, ev := range events {
		state[ev.Cluster] = ev.Endpoints
		for _, e := range kept[ev.Cluster] {
			key := ev.Cluster + " " + e
			present := slices.Contains(ev.Endpoints, e)
			i, lost := open[key]
			switch {
			case !present && !lost:
				open[key] = len(r.Losses)
				r.Losses = append(r.Losses, Loss{Cluster: ev.Cluster, Endpoint: e, After: ev.At.Sub(w.start), ClusterRemoved: ev.Removed})
			case present && lost:
				r.Losses[i].For = ev.At.Sub(w.start) - r.Losses[i].After
				delete(open, key)
			}
		}
	}
	// An endpoint absent from the start (never assigned) is a loss too.
	for c, eps := range kept {
		for _, e := range eps {
			if _, lost := open[c+" "+e]; !lost && !slices.Contains(state[c], e) && !slices.Contains(w.held[c], e) {
				r.Losses = append(r.Losses, Loss{Cluster: c, Endpoint: e})
			}
		}
	}
	return r
}
