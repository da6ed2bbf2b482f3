package consul

// The bulk first read: the first state of every local service from two
// requests instead of one health read per service, then each service's
// blocking query from the index those requests returned.
//
// Consul has no public endpoint that lists every service instance with its
// node and checks: /v1/health/service/<name> and /v1/catalog/service/<name>
// take one request per service, /v1/health/state/any has the checks without
// the services' addresses, ports, tags or meta, and /v1/internal/ui/services
// only sums them up. /v1/internal/ui/nodes (Consul's Internal.NodeDump, what
// its UI lists nodes with) has every node with its full service registrations
// and every check, filtered by ACLs like the health API. It lacks the node's
// datacenter and locality, which /v1/catalog/nodes gives, as the health API
// does. Together they give the entries /v1/health/service/<name> would, for
// every service (the health API's own fix-ups applied: see toEntries), in two
// requests. The endpoint is internal; whenever it fails (an older or newer
// Consul without it, a token it filters, an answer past maxResponseBytes),
// the source reads each service as before: nothing depends on it but speed.

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
)

// bulkScale multiplies maxResponseBytes for the node dump, which holds
// every service's answer.
const bulkScale = 4

// dumpNode is one node of /v1/internal/ui/nodes.
type dumpNode struct {
	Node     string
	PeerName string
	Services []*api.AgentService
	Checks   api.HealthChecks
}

// bulkState is the first state of the local services, by service name, and
// the index their blocking queries start from.
type bulkState struct {
	index   uint64
	entries map[string][]*api.ServiceEntry
}

// bulkEvent carries the bulk read's result to the loop (nil: the watches
// read their services one by one).
type bulkEvent struct{ res *bulkState }

// bulkUsable reports whether the bulk read can give exactly what the health
// API gives: not for another datacenter than the agent's (the health API
// translates addresses there when the agent has translate_wan_addrs; the
// node dump does not).
func (s *Source) bulkUsable() bool { return !s.noBulk && s.cfg.Datacenter == "" }

// bulkRead reads the first state of every local service in two requests.
// It returns nil when that is not possible; the reason is logged, and the
// watches then read their services one by one.
func (s *Source) bulkRead(ctx context.Context) *bulkState {
	var nodes []*api.Node
	var dump []*dumpNode
	read := func(what string, fetch func(q *api.QueryOptions) (*api.QueryMeta, error)) *api.QueryMeta {
		for {
			ans, err := s.do(ctx, request{endpoint: "bulk", class: classRead, fetch: fetch})
			switch {
			case ctx.Err() != nil:
				return nil
			case ans.retry:
				continue // the token changed meanwhile: read again with the new one
			case err != nil:
				s.log.Info("the bulk first read failed; reading each service instead", zap.String("request", what), zap.Error(err))
				return nil
			case ans.meta.ResultsFilteredByACLs:
				// The health API's handling of filtered answers (an empty
				// one is not believed) is per service: keep it.
				s.log.Info("the bulk first read was filtered by ACLs; reading each service instead", zap.String("request", what))
				return nil
			}
			return ans.meta
		}
	}
	dm := read("/v1/internal/ui/nodes", func(q *api.QueryOptions) (*api.QueryMeta, error) {
		q.UseCache = false
		// Every service's answer at once: bounded by bulkScale times
		// maxResponseBytes (about 1.5 KB per instance: 128 MiB is 90,000
		// instances), not more than the watches' answers hold together.
		q = q.WithContext(context.WithValue(q.Context(), bodyScaleKey{}, int64(bulkScale)))
		var meta *api.QueryMeta
		var err error
		dump = nil
		meta, err = s.client.Raw().Query("/v1/internal/ui/nodes", &dump, q)
		return meta, err
	})
	if dm == nil {
		return nil
	}
	nm := read("/v1/catalog/nodes", func(q *api.QueryOptions) (*api.QueryMeta, error) {
		q.UseCache = false
		var meta *api.QueryMeta
		var err error
		nodes, meta, err = s.client.Catalog().Nodes(q)
		return meta, err
	})
	if nm == nil {
		return nil
	}
	if s.afterBulk != nil {
		s.afterBulk()
	}
	// Each service's blocking query starts from the older of the two
	// indexes: a change after either read moves the service's index past it
	// (a node's change moves the index of every service on it), so its
	// blocking query answers at once.
	return &bulkState{index: max(min(dm.LastIndex, nm.LastIndex), 1), entries: s.toEntries(dump, nodes)}
}

// toEntries groups the dump's service instances by service name as health
// entries, as /v1/health/service/<name> gives them: the node as
// /v1/catalog/nodes has it, the node's checks and the instance's own, the
// service's Port set to its default port when it has only Ports, empty
// rather than nil tags, only instances with every required tag, ordered by
// node and service ID. A node missing from the node list (registered or
// deregistered between the two reads) has its services left out, so that
// they are read one by one.
func (s *Source) toEntries(dump []*dumpNode, nodes []*api.Node) map[string][]*api.ServiceEntry {
	byName := make(map[string]*api.Node, len(nodes))
	for _, n := range nodes {
		if n != nil && n.PeerName == "" {
			byName[n.Node] = n
		}
	}
	out := map[string][]*api.ServiceEntry{}
	skip := map[string]bool{}
	for _, d := range dump {
		if d == nil || d.PeerName != "" {
			continue // imported from a peer: read by the peer's watches
		}
		node := byName[d.Node]
		var nodeChecks api.HealthChecks
		svcChecks := map[string]api.HealthChecks{}
		for _, c := range d.Checks {
			if c == nil {
				continue
			}
			if c.ServiceTags == nil {
				c.ServiceTags = []string{}
			}
			if c.ServiceID == "" {
				nodeChecks = append(nodeChecks, c)
			} else {
				svcChecks[c.ServiceID] = append(svcChecks[c.ServiceID], c)
			}
		}
		for _, svc := range d.Services {
			if svc == nil {
				continue
			}
			if node == nil {
				skip[svc.Service] = true
				continue
			}
			if !hasTags(svc.Tags, s.cfg.RequiredTags) {
				continue
			}
			if svc.Tags == nil {
				svc.Tags = []string{}
			}
			if svc.Port == 0 && len(svc.Ports) > 0 {
				svc.Port = defaultPort(svc)
			}
			checks := make(api.HealthChecks, 0, len(nodeChecks)+len(svcChecks[svc.ID]))
			checks = append(append(checks, nodeChecks...), svcChecks[svc.ID]...)
			out[svc.Service] = append(out[svc.Service], &api.ServiceEntry{Node: node, Service: svc, Checks: checks})
		}
	}
	for name := range skip {
		delete(out, name)
	}
	if len(skip) > 0 {
		s.log.Debug("bulk first read: services on nodes that changed between its two requests are read one by one",
			zap.Strings("services", slices.Sorted(maps.Keys(skip))))
	}
	for _, es := range out {
		slices.SortFunc(es, func(a, b *api.ServiceEntry) int {
			return cmp.Or(strings.Compare(strings.ToLower(a.Node.Node), strings.ToLower(b.Node.Node)),
				strings.Compare(strings.ToLower(a.Service.ID), strings.ToLower(b.Service.ID)))
		})
	}
	return out
}

// defaultPort is Consul's NodeService.DefaultPort: the port marked default,
// else Port.
func defaultPort(svc *api.AgentService) int {
	for _, p := range svc.Ports {
		if p.Default {
			return p.Port
		}
	}
	return svc.Port
}

// hasTags reports whether tags has every one of want, in any case (the
// health API's ?tag= filter, Consul's serviceTagsFilter).
func hasTags(tags, want []string) bool {
	for _, t := range want {
		if !slices.ContainsFunc(tags, func(x string) bool { return strings.EqualFold(x, t) }) {
			return false
		}
	}
	return true
}

func (ev bulkEvent) apply(ctx context.Context, l *loop) {
	l.bulkPending = false
	if ev.res != nil {
		l.seeds, l.seedIndex, l.feedSince = ev.res.entries, ev.res.index, ev.res.index
	}
	held := l.held
	l.held = nil
	for _, le := range held {
		le.apply(ctx, l)
	}
}
