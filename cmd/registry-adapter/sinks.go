package main

import (
	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/sinks/kube"
)

// teePublisher hands one shard's diff to the xDS cache and to the
// Kubernetes sink. The sink gets every shard's diff: sharding only splits
// what istiod's config sources carry.
type teePublisher struct {
	xds  adapter.Publisher
	kube *kube.Sink
}

func (t teePublisher) Apply(kind served.Kind, upserts []served.Entry, deletes []string) bool {
	changed := t.xds.Apply(kind, upserts, deletes)
	if t.kube == nil {
		return changed
	}
	ups := make([]kube.Upsert, len(upserts))
	for i, e := range upserts {
		// The serialized MCP resource the xDS sink serves, shared, not copied.
		ups[i] = kube.Upsert{Name: e.Name, Version: e.Version, MCP: e.Resource.GetValue()}
	}
	return t.kube.Apply(string(kind), ups, deletes) || changed
}

func (t teePublisher) MarkReady() {
	t.xds.MarkReady()
	if t.kube != nil {
		t.kube.MarkReady()
	}
}
