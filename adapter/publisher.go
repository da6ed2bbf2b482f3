package adapter

import "github.com/registry-adapter/registry-adapter/served"

// Publisher receives the changes to serve and applies them to what it
// serves: the xDS server's *server.Cache and the Kubernetes sink's
// *kube.Sink are the two, as every provider of external-dns implements one
// Provider. Apply gets one kind's diff of a debounce window (upserts whose
// content version changed, names no longer served) and reports whether what
// it serves changed; it must not keep or modify the upserts slice, which
// other publishers share, only its entries. MarkReady says every source has
// delivered its first state: until then a publisher must not act on an
// absence (serve an empty type, prune an object).
type Publisher interface {
	Apply(kind served.Kind, upserts []served.Entry, deletes []string) bool
	MarkReady()
}

// Fanout hands every diff to each of its publishers, in order: one shard's
// xDS cache and the Kubernetes sink, say. Each gets the same entries, which
// are shared, not copied. Apply reports whether any publisher changed.
type Fanout []Publisher

// Apply applies the diff to every publisher, even once one has reported a
// change.
func (f Fanout) Apply(kind served.Kind, upserts []served.Entry, deletes []string) bool {
	changed := false
	for _, p := range f {
		if p.Apply(kind, upserts, deletes) {
			changed = true
		}
	}
	return changed
}

// MarkReady marks every publisher ready.
func (f Fanout) MarkReady() {
	for _, p := range f {
		p.MarkReady()
	}
}
