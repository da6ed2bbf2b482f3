package consul

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
)

// Consul's own traffic configuration: config entries. The source watches
// each kind it reads with one blocking query on /v1/config/<kind> (Consul
// answers a kind's query only when an entry of that kind changed, so each
// kind needs its own), decodes every entry on its own (a bad entry is
// reported by name, the others are kept), and the loop folds them into the
// services it publishes: the protocol of ports that state none
// (service-defaults, proxy-defaults), and with trafficPolicy the traffic
// policy compiled from service-resolver, service-splitter and
// service-router (chain.go).

// The config entry kinds the source reads.
const (
	kindServiceDefaults = api.ServiceDefaults
	kindProxyDefaults   = api.ProxyDefaults
	kindResolver        = api.ServiceResolver
	kindSplitter        = api.ServiceSplitter
	kindRouter          = api.ServiceRouter
)

// configEvent is the changed list of one kind of config entry.
type configEvent struct {
	kind     string
	entries  map[string]api.ConfigEntry // by name
	issues   []issue                    // entries that could not be read
	filtered bool                       // X-Consul-Results-Filtered-By-ACLs
}

// watchConfig watches the config entries of one kind.
func (s *Source) watchConfig(ctx context.Context, kind string, events chan<- event) {
	var (
		raw  []map[string]any
		last *configEvent
	)
	fetch := func(q *api.QueryOptions) (*api.QueryMeta, error) {
		// The agent's cache would answer a re-read with what it had.
		q.UseCache = false
		if kind == kindProxyDefaults {
			// proxy-defaults live in a partition's default namespace.
			q.Namespace = ""
		}
		raw = nil
		return s.client.Raw().Query("/v1/config/"+kind, &raw, q)
	}
	s.blockingLoop(ctx, events, watchSpec{
		id: "config/" + kind, endpoint: "config", class: classConfig, fetch: fetch,
		handle: func(meta *api.QueryMeta, force bool) bool {
			ev := decodeConfigEntries(kind, raw)
			ev.filtered = meta.ResultsFilteredByACLs
			if !force && last != nil && reflect.DeepEqual(*last, ev) {
				return true
			}
			last = &ev
			return send(ctx, events, ev)
		},
	})
}

// decodeConfigEntries reads each entry of a list on its own, as Consul's
// own client does (api.DecodeConfigEntry), so that one it cannot read costs
// that entry alone.
func decodeConfigEntries(kind string, raw []map[string]any) configEvent {
	ev := configEvent{kind: kind, entries: make(map[string]api.ConfigEntry, len(raw))}
	for i, r := range raw {
		name, _ := r["Name"].(string)
		if name == "" {
			name = fmt.Sprintf("#%d", i)
		}
		e, err := api.DecodeConfigEntry(r)
		switch {
		case err != nil:
			ev.issues = append(ev.issues, issue{"config-entry", fmt.Sprintf("%s %q cannot be read; left out: %v", kind, name, err)})
		case e.GetKind() != kind:
			ev.issues = append(ev.issues, issue{"config-entry", fmt.Sprintf("%s %q came back as kind %q; left out", kind, name, e.GetKind())})
		default:
			ev.entries[e.GetName()] = e
		}
	}
	return ev
}

// configState is what the loop holds of the config entries.
type configState struct {
	kinds    []string
	answered map[string]bool
	entries  map[string]map[string]api.ConfigEntry // kind -> name -> entry
	// compiled is each service's traffic policy (trafficPolicy only).
	compiled map[string]*compiled
	// chains are what compiling each service with entries of its own read
	// and reported; readers, for each name, the services whose chain read
	// that name's entries (a split or route to it, a redirect): they are
	// compiled again when its entries change, and no other is.
	chains  map[string]*chain
	readers map[string]map[string]bool
	// resolvers are the translated resolvers, by name, kept until the
	// name's entries change (a filter is parsed once, not per compile).
	resolvers map[string]*resolver
	// notCarried are the problems of the current compile, each with the
	// number of chains and resolvers that report it; series, the same per
	// gauge series (a series outlives one of two problems that share it).
	notCarried map[notCarried]int
	series     map[[4]string]int
	// dirty is what changed since the loop last folded the entries into
	// the services (flushConfig).
	dirty configDirty
}

// configDirty is what the config entries changed since the last flush.
type configDirty struct {
	// allChains: compile every chain again (the first state, the
	// datacenter's name learned); allScopes: reconcile every service (the
	// first state, proxy-defaults).
	allChains, allScopes bool
	// chains are names whose resolver, splitter or router changed;
	// protocol, names whose service-defaults changed.
	chains, protocol map[string]bool
}

func (d configDirty) any() bool {
	return d.allChains || d.allScopes || len(d.chains) > 0 || len(d.protocol) > 0
}

func newConfigState(kinds []string) *configState {
	c := &configState{kinds: kinds, answered: map[string]bool{}, entries: map[string]map[string]api.ConfigEntry{},
		compiled: map[string]*compiled{}, chains: map[string]*chain{}, readers: map[string]map[string]bool{},
		resolvers: map[string]*resolver{}, notCarried: map[notCarried]int{}, series: map[[4]string]int{},
		dirty: configDirty{allChains: true, allScopes: true}}
	for _, k := range kinds {
		c.entries[k] = map[string]api.ConfigEntry{}
	}
	return c
}

// ready reports whether every kind answered once.
func (c *configState) ready() bool {
	return c == nil || len(c.answered) == len(c.kinds)
}

// touch records that the entries of kind named names changed.
func (c *configState) touch(kind string, names []string) {
	d := &c.dirty
	switch kind {
	case kindProxyDefaults:
		d.allScopes = true
	case kindServiceDefaults:
		if d.allScopes {
			return
		}
		if d.protocol == nil {
			d.protocol = map[string]bool{}
		}
		for _, n := range names {
			d.protocol[n] = true
		}
	default:
		if d.allChains {
			return
		}
		if d.chains == nil {
			d.chains = map[string]bool{}
		}
		for _, n := range names {
			d.chains[n] = true
		}
	}
}

// changedNames lists, sorted, the names whose entry differs between old
// and now (added, removed or changed).
func changedNames(old, now map[string]api.ConfigEntry) []string {
	var out []string
	for name, e := range now {
		if o, ok := old[name]; !ok || !reflect.DeepEqual(o, e) {
			out = append(out, name)
		}
	}
	for name := range old {
		if _, ok := now[name]; !ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (ev configEvent) apply(_ context.Context, l *loop) {
	id := "config/" + ev.kind
	l.recovered(id)
	c := l.config
	log := l.s.log.With(zap.String("query", id))
	for _, is := range ev.issues {
		l.s.metrics.invalid.WithLabelValues(is.reason).Inc()
		log.Warn("invalid Consul config entry: " + is.message)
	}
	if ev.filtered {
		l.s.metrics.aclFiltered.WithLabelValues("config").Inc()
		if !l.filtered[id] {
			log.Warn("Consul filtered the config entries by ACLs: the token lacks service:read on some services; their entries are not read")
		}
		l.filtered[id] = true
	} else {
		delete(l.filtered, id)
	}
	c.answered[ev.kind] = true
	changed := changedNames(c.entries[ev.kind], ev.entries)
	if len(changed) == 0 {
		return
	}
	c.entries[ev.kind] = ev.entries
	for _, name := range changed {
		e := ev.entries[name]
		if e == nil {
			continue
		}
		if p := protocolStated(e); p != "" {
			if _, ok := model.ParseProtocol(p); !ok {
				l.s.metrics.invalid.WithLabelValues("protocol").Inc()
				log.Warn("unknown protocol in a Consul config entry; ignored", zap.String("kind", ev.kind), zap.String("name", name), zap.String("protocol", p))
			}
		}
	}
	// Folded into the services by flushConfig, once the loop has taken
	// the answers already waiting: a burst costs one pass.
	c.touch(ev.kind, changed)
}

// flushConfig folds what the config entries changed since the last flush
// into the services: it compiles again the chains of the services the
// changed entries name and of the services whose chains read them, and
// reconciles those services and the ones whose protocol changed (every
// service for proxy-defaults). Nothing is folded until every kind has
// answered once: the initial state waits for all of them.
func (l *loop) flushConfig() {
	c := l.config
	if c == nil || !c.ready() || !c.dirty.any() {
		return
	}
	d := c.dirty
	c.dirty = configDirty{}
	scopes := map[string]bool{}
	if l.s.cfg.ConfigEntries.TrafficPolicy {
		scopes = l.recompile(d)
	}
	if d.allScopes {
		l.reconcileAll()
		return
	}
	for name := range d.protocol {
		scopes[name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(scopes)) {
		// Config entries are local: a name is a local service's scope.
		if _, ok := l.desired[name]; ok {
			l.reconcile(name)
		}
	}
}

// reconcileAll reconciles every scope. Scopes whose publication does not
// change are dropped by reconcile.
func (l *loop) reconcileAll() {
	for _, scope := range slices.Sorted(maps.Keys(l.desired)) {
		l.reconcile(scope)
	}
}

// mapped is what the loop keeps of a scope's mapping besides the service:
// what config entries may still change.
type mapped struct {
	// defaulted are the ports whose protocol no meta or tag states.
	defaulted []uint32
	// tags are the plain tags of each instance (trafficPolicy only).
	tags map[string][]string
}

// decorate applies the config entries to a mapped service: the protocol of
// ports that state none, and the traffic policy. It returns svc itself when
// nothing applies, else a copy; the loop's own state is never modified.
// Services imported from peers are left alone: config entries are local.
func (l *loop) decorate(scope string, svc model.Service) model.Service {
	c := l.config
	if c == nil || strings.HasPrefix(scope, "peer/") {
		return svc
	}
	m := l.mapped[scope]
	if p, ok := l.protocolOf(svc.Name); ok && len(m.defaulted) > 0 {
		ports := slices.Clone(svc.Ports)
		for i := range ports {
			if slices.Contains(m.defaulted, ports[i].Number) {
				ports[i].Protocol = p
			}
		}
		svc.Ports = ports
	}
	cp := c.compiled[svc.Name]
	if cp == nil {
		return svc
	}
	svc.Traffic = cp.traffic
	if len(cp.tagLabels) > 0 && len(m.tags) > 0 {
		insts := slices.Clone(svc.Instances)
		for i := range insts {
			for _, t := range m.tags[insts[i].ID] {
				if _, has := insts[i].Labels.Get(t); !has && slices.Contains(cp.tagLabels, t) {
					insts[i].Labels = insts[i].Labels.With(t, "")
				}
			}
		}
		svc.Instances = insts
	}
	return svc
}

// protocolStated is the protocol a service-defaults or proxy-defaults
// entry states, or "".
func protocolStated(e api.ConfigEntry) string {
	switch e := e.(type) {
	case *api.ServiceConfigEntry:
		return e.Protocol
	case *api.ProxyConfigEntry:
		v, _ := e.Config["protocol"].(string)
		return v
	}
	return ""
}

// protocolOf is the protocol Consul's config entries give the service:
// service-defaults' Protocol, else proxy-defaults' config.protocol.
func (l *loop) protocolOf(name string) (model.Protocol, bool) {
	if !l.s.cfg.ConfigEntries.readsProtocol() {
		return "", false
	}
	c := l.config
	for _, e := range []api.ConfigEntry{c.entries[kindServiceDefaults][name], c.entries[kindProxyDefaults][api.ProxyConfigGlobal]} {
		if e == nil {
			continue
		}
		if p, ok := model.ParseProtocol(protocolStated(e)); ok {
			return p, true
		}
	}
	return "", false
}
