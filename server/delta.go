package server

import (
	"context"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/registry-adapter/registry-adapter/served"
)

// Incremental (delta) xDS is served from the same entries as
// state-of-the-world. istiod's config source client does not use it today,
// but other MCP clients (and a future istiod) can, at a fraction of the bytes.

type deltaWatch struct {
	req  *discovery.DeltaDiscoveryRequest
	sub  cache.Subscription
	kind served.Kind
	out  chan cache.DeltaResponse
	done chan struct{}
}

// CreateDeltaWatch implements cache.ConfigWatcher for incremental streams.
func (c *Cache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	w := &deltaWatch{req: req, sub: sub, kind: served.KindOf(req.GetTypeUrl()), out: out, done: make(chan struct{})}
	c.mu.Lock()
	defer c.mu.Unlock()
	// The first request of a type gets a reply even when there is nothing
	// to send, so a client can tell "empty" from "not yet synced".
	if !c.ready || !c.respondDeltaLocked(w, req.GetResponseNonce() == "") {
		c.pDeltas[w] = struct{}{}
	}
	return c.cancelFunc(func() { delete(c.pDeltas, w) }, w.done), nil
}

// respondDeltaLocked sends w what its client lacks, and reports whether it
// sent anything (always when force is set).
func (c *Cache) respondDeltaLocked(w *deltaWatch, force bool) bool {
	known := w.sub.ReturnedResources()
	subscribed := w.sub.SubscribedResources()
	wildcard := w.sub.IsWildcard()
	wants := func(name string) bool {
		if wildcard {
			return true
		}
		_, ok := subscribed[name]
		return ok
	}

	next := make(map[string]string, len(known))
	var resources []*discovery.Resource
	if ks := c.kinds[w.kind]; ks != nil {
		for _, e := range ks.list {
			if !wants(e.Name) {
				continue
			}
			next[e.Name] = e.Version
			if known[e.Name] != e.Version {
				resources = append(resources, &discovery.Resource{Name: e.Name, Version: e.Version, Resource: e.Resource})
			}
		}
	}
	var removed []string
	for name := range known {
		if _, ok := next[name]; !ok {
			removed = append(removed, name)
		}
	}
	if len(resources) == 0 && len(removed) == 0 && !force {
		return false
	}
	send(w.out, cache.DeltaResponse(&deltaResponse{
		req:       w.req,
		version:   c.versionLocked(w.kind),
		resources: resources,
		removed:   removed,
		next:      next,
	}), w.done)
	return true
}

type deltaResponse struct {
	req       *discovery.DeltaDiscoveryRequest
	version   string
	resources []*discovery.Resource
	removed   []string
	next      map[string]string
}

func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discovery.DeltaDiscoveryResponse, error) {
	return &discovery.DeltaDiscoveryResponse{
		SystemVersionInfo: r.version,
		Resources:         r.resources,
		RemovedResources:  r.removed,
		TypeUrl:           r.req.GetTypeUrl(),
	}, nil
}

func (r *deltaResponse) GetDeltaRequest() *discovery.DeltaDiscoveryRequest { return r.req }
func (r *deltaResponse) GetSystemVersion() (string, error)                 { return r.version, nil }
func (r *deltaResponse) GetResponseVersion() string                        { return r.version }
func (r *deltaResponse) GetNextVersionMap() map[string]string              { return r.next }
func (r *deltaResponse) GetReturnedResources() map[string]string           { return r.next }
func (r *deltaResponse) GetContext() context.Context                       { return context.Background() }
