package consul

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
)

// Consul compiles a service's service-router, service-splitter and
// service-resolver into a discovery chain: routes match requests and hand
// them to a splitter or a resolver; a splitter shares them by weight among
// services and subsets, each again through its own splitter (when no subset
// is named) and resolver; a resolver picks a subset (its DefaultSubset when
// none is named) or redirects to another service. compile does the same,
// down to final hosts and subsets, so that each service's model.Traffic
// needs nothing else to be converted: the subsets of its own resolver (a
// DestinationRule) and its routes (a VirtualService).
//
// What Istio cannot state is reported, never approximated in silence:
//   - a part that decides which instances get a request (a subset filter
//     that is no label equality, a redirect or destination the host template
//     cannot name, a route match or retry policy Istio has no field for)
//     leaves the whole entry out ("rejected"), and every route that would go
//     through it too, so a service's VirtualService is all of its chain or
//     nothing; the service itself is served either way;
//   - a part that only acts when the service's own instances fail, or only
//     tunes a balancer or a stream (Failover, PrioritizeByLocality, a
//     LeastRequest choice count, a ring's maximum size, hash policies after
//     the first, IdleTimeout) is left out alone ("ignored"), and the rest of
//     the entry is carried.

// compiled is one service's traffic policy.
type compiled struct {
	traffic *model.Traffic
	// tagLabels are the plain tags its subsets select by, which the source
	// writes as labels on the instances that carry them.
	tagLabels []string
}

// notCarried is a part of a config entry the adapter does not carry.
type notCarried struct {
	kind, service, field string
	// rejected: the whole entry is left out; else only the field.
	rejected bool
	reason   string
}

func (n notCarried) result() string {
	if n.rejected {
		return "rejected"
	}
	return "ignored"
}

// target is a service (and subset) a request may go to.
type target struct {
	service, subset                  string
	datacenter, namespace, partition string
	peer                             string
}

// resolver is a service-resolver as far as Istio can state it.
type resolver struct {
	entry   *api.ServiceResolverConfigEntry
	ok      bool // carried; else rejected
	subsets []model.Subset
	tags    []string
	lb      *model.LoadBalancer
	// issues are what of the entry is not carried.
	issues []notCarried
}

// chain is what compiling one service read and reported.
type chain struct {
	// reads are the names whose resolver, splitter or router the compile
	// looked up, found or not: its own, and every service its routes,
	// splits and redirects reach.
	reads []string
	// issues are the problems of its routes (its resolver's are the
	// resolver's own).
	issues []notCarried
}

// compiler compiles the chains of services with config entries.
type compiler struct {
	l *loop
	// reads and issues are the current service's.
	reads  map[string]bool
	issues []notCarried
	// before holds, for each problem whose count this compile changed,
	// its count before (reportIssues).
	before map[notCarried]int
}

func (c *compiler) entry(kind, name string) api.ConfigEntry {
	c.reads[name] = true
	return c.l.config.entries[kind][name]
}

func (c *compiler) report(kind, service, field string, rejected bool, format string, args ...any) {
	c.issues = append(c.issues, notCarried{kind: kind, service: service, field: field, rejected: rejected, reason: fmt.Sprintf(format, args...)})
}

// count adds delta to the count of each problem.
func (c *compiler) count(issues []notCarried, delta int) {
	st := c.l.config
	for _, n := range issues {
		if _, ok := c.before[n]; !ok {
			c.before[n] = st.notCarried[n]
		}
		st.notCarried[n] += delta
		if st.notCarried[n] <= 0 {
			delete(st.notCarried, n)
		}
		labels := n.labels()
		st.series[labels] += delta
		if st.series[labels] <= 0 {
			delete(st.series, labels)
		}
	}
}

func (n notCarried) labels() [4]string { return [4]string{n.kind, n.service, n.field, n.result()} }

// compileTraffic compiles every service's chain again.
func (l *loop) compileTraffic() {
	l.recompile(configDirty{allChains: true})
}

// recompile compiles the chains d names: every chain, or those of the
// names whose entries changed and of the services whose chains read them.
// It returns the services compiled, reports what is not carried (logged
// when it first appears, and as a gauge while it lasts), and keeps the
// result for decorate.
func (l *loop) recompile(d configDirty) map[string]bool {
	st := l.config
	c := &compiler{l: l, before: map[notCarried]int{}}
	todo := map[string]bool{}
	drop := func(name string) {
		if r := st.resolvers[name]; r != nil {
			c.count(r.issues, -1)
			delete(st.resolvers, name)
		}
	}
	if d.allChains {
		for name := range st.resolvers {
			drop(name)
		}
		for name := range st.chains {
			todo[name] = true
		}
		for _, k := range []string{kindResolver, kindSplitter, kindRouter} {
			for name := range st.entries[k] {
				todo[name] = true
			}
		}
	} else {
		for name := range d.chains {
			drop(name)
			todo[name] = true
			for s := range st.readers[name] {
				todo[s] = true
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(todo)) {
		if old := st.chains[name]; old != nil {
			c.count(old.issues, -1)
			for _, r := range old.reads {
				delete(st.readers[r], name)
				if len(st.readers[r]) == 0 {
					delete(st.readers, r)
				}
			}
			delete(st.chains, name)
		}
		delete(st.compiled, name)
		if !st.hasChainEntry(name) {
			continue // Consul's default chain: nothing to state
		}
		c.reads, c.issues = map[string]bool{}, nil
		if cp := c.service(name); cp != nil {
			st.compiled[name] = cp
		}
		ch := &chain{reads: slices.Sorted(maps.Keys(c.reads)), issues: c.issues}
		st.chains[name] = ch
		c.count(ch.issues, 1)
		for _, r := range ch.reads {
			if st.readers[r] == nil {
				st.readers[r] = map[string]bool{}
			}
			st.readers[r][name] = true
		}
	}
	l.reportIssues(c.before)
	return todo
}

// hasChainEntry reports whether name has a resolver, splitter or router.
func (st *configState) hasChainEntry(name string) bool {
	for _, k := range []string{kindResolver, kindSplitter, kindRouter} {
		if _, ok := st.entries[k][name]; ok {
			return true
		}
	}
	return false
}

// reportIssues logs and sets the gauge of the problems whose count a
// compile changed: a problem that appears is logged once, one that is gone
// is said to be gone. Series are set and deleted one by one, never Reset: a
// scrape (or a reader holding a series) between a Reset and the Sets would
// see a problem that is still there vanish.
func (l *loop) reportIssues(before map[notCarried]int) {
	st := l.config
	gauge := l.s.metrics.notCarried
	for _, n := range slices.SortedFunc(maps.Keys(before), compareNotCarried) {
		was, now := before[n], st.notCarried[n]
		labels := n.labels()
		switch {
		case now > 0:
			gauge.WithLabelValues(labels[:]...).Set(1)
			if was == 0 {
				msg := "Consul config entry field left out: Istio cannot state it; the rest of the entry is carried"
				if n.rejected {
					msg = "Consul config entry not carried: Istio cannot state it; the service is served without it"
				}
				l.s.log.Warn(msg, zap.String("kind", n.kind), zap.String("service", n.service), zap.String("field", n.field), zap.String("reason", n.reason))
			}
		case was > 0:
			if st.series[labels] == 0 {
				gauge.DeleteLabelValues(labels[:]...)
			}
			l.s.log.Info("Consul config entry problem gone", zap.String("kind", n.kind), zap.String("service", n.service), zap.String("field", n.field))
		}
	}
}

func compareNotCarried(a, b notCarried) int {
	return cmp.Or(cmp.Compare(a.service, b.service), cmp.Compare(a.kind, b.kind), cmp.Compare(a.field, b.field),
		cmp.Compare(a.result(), b.result()), cmp.Compare(a.reason, b.reason))
}

// service compiles one service's DestinationRule part (its resolver) and
// VirtualService part (its routes); nil when there is nothing to state.
func (c *compiler) service(name string) *compiled {
	t := &model.Traffic{}
	cp := &compiled{traffic: t}
	if r := c.resolver(name); r.ok {
		t.Subsets, t.LoadBalancer, cp.tagLabels = r.subsets, r.lb, r.tags
		t.ConnectTimeout = max(r.entry.ConnectTimeout, 0)
	}
	routes, err := c.routes(name)
	if err != nil {
		c.report(err.kind, name, err.field, true, "%s", err.reason)
	} else {
		t.Routes = routes
	}
	if len(t.Subsets) == 0 && t.LoadBalancer == nil && t.ConnectTimeout == 0 && len(t.Routes) == 0 {
		return nil
	}
	return cp
}

// resolver translates a service's resolver once; a service without one has
// Consul's default resolver: every instance, no subset.
func (c *compiler) resolver(name string) *resolver {
	e, _ := c.entry(kindResolver, name).(*api.ServiceResolverConfigEntry)
	if e == nil {
		return &resolver{entry: &api.ServiceResolverConfigEntry{Name: name}, ok: true}
	}
	st := c.l.config
	if r := st.resolvers[name]; r != nil {
		return r
	}
	r := &resolver{entry: e, ok: true}
	// The resolver's problems are its own: reported once, however many
	// chains go through it, and kept with it until its entry changes.
	saved := c.issues
	c.issues = nil
	defer func() {
		r.issues, c.issues = c.issues, saved
		st.resolvers[name] = r
		c.count(r.issues, 1)
	}()
	reject := func(field, format string, args ...any) {
		if r.ok {
			c.report(kindResolver, name, field, true, format, args...)
		}
		r.ok = false
	}
	ignore := func(field, format string, args ...any) { c.report(kindResolver, name, field, false, format, args...) }
	m := c.l.s.mapper
	for _, sn := range slices.Sorted(maps.Keys(e.Subsets)) {
		sub := e.Subsets[sn]
		sel, err := m.subsetLabels(sub.Filter)
		if err != nil {
			reject("Subsets."+sn+".Filter", "filter %q %v", sub.Filter, err)
			continue
		}
		if sub.OnlyPassing && m.includeWarning {
			reject("Subsets."+sn+".OnlyPassing", "instances in warning are served (includeWarning), and Istio cannot keep them out of one subset only")
			continue
		}
		r.subsets = append(r.subsets, model.Subset{Name: sn, Labels: model.LabelsFromMap(sel.labels)})
		for _, t := range sel.plainTags {
			if !slices.Contains(r.tags, t) {
				r.tags = append(r.tags, t)
			}
		}
	}
	slices.Sort(r.tags)
	if rd := e.Redirect; rd != nil && rd.SamenessGroup != "" {
		reject("Redirect.SamenessGroup", "a sameness group names no one host")
	}
	if len(e.Failover) > 0 {
		ignore("Failover", "Istio fails over by the client's locality, which Consul datacenters and targets are not; requests fail when every instance of the service does")
	}
	if e.PrioritizeByLocality != nil && e.PrioritizeByLocality.Mode != "" && e.PrioritizeByLocality.Mode != "none" {
		ignore("PrioritizeByLocality", "Istio prefers the client's locality only with outlier detection, which Consul does not state")
	}
	r.lb = c.loadBalancer(name, e.LoadBalancer, ignore)
	if !r.ok {
		r.subsets, r.tags, r.lb = nil, nil, nil
	}
	return r
}

func (c *compiler) loadBalancer(name string, lb *api.LoadBalancer, ignore func(field, format string, args ...any)) *model.LoadBalancer {
	if lb == nil {
		return nil
	}
	out := &model.LoadBalancer{}
	switch lb.Policy {
	case "":
		return nil
	case "round_robin":
		out.Policy = model.LBRoundRobin
	case "least_request":
		out.Policy = model.LBLeastRequest
		if cfg := lb.LeastRequestConfig; cfg != nil && cfg.ChoiceCount != 0 && cfg.ChoiceCount != 2 {
			ignore("LoadBalancer.LeastRequestConfig.ChoiceCount", "Istio has no choice count; Envoy's default of 2 applies")
		}
	case "random":
		out.Policy = model.LBRandom
	case "ring_hash":
		out.Policy = model.LBRingHash
		if cfg := lb.RingHashConfig; cfg != nil {
			out.MinRingSize = cfg.MinimumRingSize
			if cfg.MaximumRingSize != 0 {
				ignore("LoadBalancer.RingHashConfig.MaximumRingSize", "Istio has no maximum ring size; Envoy's default applies")
			}
		}
	case "maglev":
		out.Policy = model.LBMaglev
	default:
		ignore("LoadBalancer.Policy", "unknown policy %q; Istio's default applies", lb.Policy)
		return nil
	}
	if out.Policy != model.LBRingHash && out.Policy != model.LBMaglev {
		return out
	}
	for i, h := range lb.HashPolicies {
		if i > 0 {
			ignore(fmt.Sprintf("LoadBalancer.HashPolicies[%d]", i), "Istio hashes on one attribute; the first hash policy is carried")
			continue
		}
		key := &model.HashKey{Name: h.FieldValue}
		switch {
		case h.SourceIP:
			key = &model.HashKey{Kind: model.HashSourceIP}
		case h.Field == "header":
			key.Kind = model.HashHeader
		case h.Field == "query_parameter":
			key.Kind = model.HashQuery
		case h.Field == "cookie":
			key.Kind = model.HashCookie
			if cc := h.CookieConfig; cc != nil {
				key.CookiePath = cc.Path
				key.CookieGenerate = cc.Session || cc.TTL > 0
				key.CookieTTL = max(cc.TTL, 0)
			}
		default:
			ignore(fmt.Sprintf("LoadBalancer.HashPolicies[%d]", i), "unknown hash field %q", h.Field)
			continue
		}
		if h.Terminal && len(lb.HashPolicies) > 1 {
			ignore(fmt.Sprintf("LoadBalancer.HashPolicies[%d].Terminal", i), "one hash policy needs no terminal flag")
		}
		out.Hash = key
	}
	return out
}

// chainError names the entry and field a route cannot go through.
type chainError struct {
	kind, field, reason string
}

func chainErr(kind, field, format string, args ...any) *chainError {
	return &chainError{kind: kind, field: field, reason: fmt.Sprintf(format, args...)}
}

// maxChain bounds the depth of redirects and nested splits; Consul refuses
// loops when an entry is written, so this only guards against the unknown.
const maxChain = 8

// routes compiles the routes of service name: its router's routes in order,
// then the default route through its splitter or resolver. nil when the
// chain is Consul's default (every request to any instance of the service).
func (c *compiler) routes(name string) ([]model.Route, *chainError) {
	router, _ := c.entry(kindRouter, name).(*api.ServiceRouterConfigEntry)
	_, hasSplitter := c.entry(kindSplitter, name).(*api.ServiceSplitterConfigEntry)
	r := c.resolver(name)
	if router == nil && !hasSplitter {
		e := r.entry
		if e.DefaultSubset == "" && e.Redirect == nil && e.RequestTimeout <= 0 {
			return nil, nil
		}
	}
	var out []model.Route
	if router != nil {
		for i, rt := range router.Routes {
			route, err := c.route(name, i, rt)
			if err != nil {
				return nil, err
			}
			out = append(out, route)
		}
	}
	dests, err := c.splitOrResolve(target{service: name}, 0)
	if err != nil {
		return nil, err
	}
	def := model.Route{Destinations: dests}
	if router == nil && !hasSplitter && r.entry.RequestTimeout > 0 {
		// Consul applies a resolver's timeout only when the chain starts at
		// the resolver (routes.go): a split's branches share one route.
		def.Timeout = r.entry.RequestTimeout
	}
	return append(out, def), nil
}

func (c *compiler) route(name string, i int, rt api.ServiceRoute) (model.Route, *chainError) {
	field := fmt.Sprintf("Routes[%d]", i)
	var route model.Route
	if m := rt.Match; m != nil && m.HTTP != nil {
		hm, err := httpMatch(m.HTTP)
		if err != nil {
			return route, chainErr(kindRouter, field+".Match.HTTP", "%v", err)
		}
		route.Match = hm
	}
	d := rt.Destination
	if d == nil {
		d = &api.ServiceRouteDestination{}
	}
	to := target{service: cmp.Or(d.Service, name), subset: d.ServiceSubset, namespace: d.Namespace, partition: d.Partition}
	var err *chainError
	if to.subset != "" {
		var dest model.WeightedDestination
		dest, err = c.resolve(to, 0)
		route.Destinations = []model.WeightedDestination{dest}
	} else {
		route.Destinations, err = c.splitOrResolve(to, 0)
	}
	if err != nil {
		return route, chainErr(kindRouter, field+".Destination", "goes to service %q: %s", to.service, err.reason)
	}
	route.Timeout = max(d.RequestTimeout, 0)
	route.PrefixRewrite = d.PrefixRewrite
	route.RequestHeaders, route.ResponseHeaders = headerOps(d.RequestHeaders), headerOps(d.ResponseHeaders)
	if d.IdleTimeout != 0 {
		c.report(kindRouter, name, field+".Destination.IdleTimeout", false, "Istio has no per-route idle timeout")
	}
	retries, rerr := retriesOf(d)
	if rerr != nil {
		return route, chainErr(kindRouter, field+".Destination.NumRetries", "%v", rerr)
	}
	route.Retries = retries
	return route, nil
}

// splitOrResolve is where requests for a service go when no subset is
// named: its splitter's shares, else its resolver.
func (c *compiler) splitOrResolve(to target, depth int) ([]model.WeightedDestination, *chainError) {
	if depth > maxChain {
		return nil, chainErr(kindSplitter, "Splits", "splits nest deeper than %d", maxChain)
	}
	to = c.normalize(to)
	sp, _ := c.entry(kindSplitter, to.service).(*api.ServiceSplitterConfigEntry)
	if sp == nil || to.subset != "" || to.datacenter != "" || to.peer != "" || !c.local(to) {
		d, err := c.resolve(to, depth)
		if err != nil {
			return nil, err
		}
		return []model.WeightedDestination{d}, nil
	}
	// Weights in hundredths of a percent: Consul's own resolution.
	var out []model.WeightedDestination
	for i, s := range sp.Splits {
		field := fmt.Sprintf("Splits[%d]", i)
		w := uint32(math.Round(float64(s.Weight) * 100))
		if w == 0 {
			continue // no request goes there
		}
		next := target{service: cmp.Or(s.Service, to.service), subset: s.ServiceSubset, namespace: s.Namespace, partition: s.Partition}
		var dests []model.WeightedDestination
		var err *chainError
		if next.subset == "" && next.service != to.service {
			dests, err = c.splitOrResolve(next, depth+1)
		} else {
			var d model.WeightedDestination
			d, err = c.resolve(next, depth+1)
			dests = []model.WeightedDestination{d}
		}
		if err != nil {
			if err.kind == kindSplitter && strings.HasPrefix(err.reason, "splits nest") {
				return nil, err
			}
			return nil, chainErr(kindSplitter, field, "the splitter of %q goes to service %q: %s", to.service, next.service, err.reason)
		}
		req, resp := headerOps(s.RequestHeaders), headerOps(s.ResponseHeaders)
		var total uint32
		for _, d := range dests {
			total += d.Weight
		}
		for _, d := range dests {
			if !req.Empty() || !resp.Empty() {
				if !d.RequestHeaders.Empty() || !d.ResponseHeaders.Empty() {
					return nil, chainErr(kindSplitter, field+".RequestHeaders", "headers set by two nested splits of one request cannot be stated as one destination's")
				}
				d.RequestHeaders, d.ResponseHeaders = req, resp
			}
			if len(dests) > 1 && total > 0 {
				d.Weight = uint32(math.Round(float64(w) * float64(d.Weight) / float64(total)))
			} else {
				d.Weight = w
			}
			out = appendDestination(out, d)
		}
	}
	if len(out) == 0 {
		return nil, chainErr(kindSplitter, "Splits", "no split has a weight")
	}
	return out, nil
}

// appendDestination adds d, merging it into an equal destination already
// there (two nested splits may reach the same subset).
func appendDestination(ds []model.WeightedDestination, d model.WeightedDestination) []model.WeightedDestination {
	for i := range ds {
		o := &ds[i]
		if o.Host == d.Host && o.Subset == d.Subset && sameHeaders(o, &d) {
			o.Weight += d.Weight
			return ds
		}
	}
	return append(ds, d)
}

func sameHeaders(a, b *model.WeightedDestination) bool {
	eq := func(x, y model.HeaderOps) bool {
		return x.Add.Equal(y.Add) && x.Set.Equal(y.Set) && slices.Equal(x.Remove, y.Remove)
	}
	return eq(a.RequestHeaders, b.RequestHeaders) && eq(a.ResponseHeaders, b.ResponseHeaders)
}

// resolve follows a target through its resolver: a redirect, else the
// named subset or the resolver's default subset.
func (c *compiler) resolve(to target, depth int) (model.WeightedDestination, *chainError) {
	to = c.normalize(to)
	if depth > maxChain {
		return model.WeightedDestination{}, chainErr(kindResolver, "Redirect", "redirects chain deeper than %d", maxChain)
	}
	host, herr := c.host(to)
	if herr != nil {
		return model.WeightedDestination{}, chainErr(kindResolver, "Redirect", "%v", herr)
	}
	if !c.local(to) || to.datacenter != "" || to.peer != "" {
		// Another datacenter's, namespace's or peer's service: its own
		// source states its subsets; the name is all this one can check.
		return model.WeightedDestination{Host: host, Subset: to.subset, Weight: 1}, nil
	}
	r := c.resolver(to.service)
	if !r.ok {
		return model.WeightedDestination{}, chainErr(kindResolver, "", "the service-resolver of %q is not carried", to.service)
	}
	e := r.entry
	if rd := e.Redirect; rd != nil {
		next := target{
			service: cmp.Or(rd.Service, to.service), subset: rd.ServiceSubset,
			datacenter: rd.Datacenter, namespace: rd.Namespace, partition: rd.Partition, peer: rd.Peer,
		}
		if next.subset == "" && next.service == to.service && c.sameScope(next, to) {
			next.subset = to.subset
		}
		return c.resolve(next, depth+1)
	}
	subset := cmp.Or(to.subset, e.DefaultSubset)
	if subset != "" && !slices.ContainsFunc(r.subsets, func(s model.Subset) bool { return s.Name == subset }) {
		return model.WeightedDestination{}, chainErr(kindResolver, "Subsets", "service %q has no subset %q", to.service, subset)
	}
	return model.WeightedDestination{Host: host, Subset: subset, Weight: 1}, nil
}

// normalize clears a target's datacenter, namespace and partition where
// they name the source's own.
func (c *compiler) normalize(to target) target {
	m := c.l.s.mapper
	if to.datacenter == cmp.Or(m.datacenter, c.l.dc) {
		to.datacenter = ""
	}
	if to.namespace == cmp.Or(m.namespace, "default") {
		to.namespace = ""
	}
	if to.partition == cmp.Or(m.partition, "default") {
		to.partition = ""
	}
	return to
}

// local reports whether a target is in the source's own namespace and
// partition.
func (c *compiler) local(to target) bool {
	cfg := c.l.s.cfg
	return (to.namespace == "" || to.namespace == cmp.Or(cfg.Namespace, "default")) &&
		(to.partition == "" || to.partition == cmp.Or(cfg.Partition, "default"))
}

func (c *compiler) sameScope(a, b target) bool {
	return a.datacenter == b.datacenter && a.namespace == b.namespace && a.partition == b.partition && a.peer == b.peer
}

// host names a target's service as the host template does. A target in
// another datacenter, namespace, partition or peer must get a host of its
// own: one the template gives the local service too would send its share
// to the wrong instances.
func (c *compiler) host(to target) (string, error) {
	m := c.l.s.mapper
	local := hostData{Service: to.service, Datacenter: cmp.Or(m.datacenter, c.l.dc), Namespace: m.namespace, Partition: m.partition}
	if to.peer != "" {
		d := local
		d.Peer = to.peer
		return renderHost(m.peerHostTmpl, d)
	}
	d := local
	d.Datacenter = cmp.Or(to.datacenter, local.Datacenter)
	d.Namespace = cmp.Or(to.namespace, local.Namespace)
	d.Partition = cmp.Or(to.partition, local.Partition)
	h, err := renderHost(m.hostTmpl, d)
	if err != nil || d == local {
		return h, err
	}
	if same, err := renderHost(m.hostTmpl, local); err == nil && same == h {
		return "", fmt.Errorf("service %q in datacenter %q, namespace %q, partition %q gets host %s from hostTemplate, the host of the local service", to.service, d.Datacenter, d.Namespace, d.Partition, h)
	}
	return h, nil
}

// httpMatch translates a route's HTTP match.
func httpMatch(h *api.ServiceRouteHTTPMatch) (*model.HTTPMatch, error) {
	m := &model.HTTPMatch{IgnoreCase: h.CaseInsensitive, Methods: slices.Clone(h.Methods)}
	switch {
	case h.PathExact != "":
		m.Path = model.StringMatch{Kind: model.MatchExact, Value: h.PathExact}
	case h.PathPrefix != "":
		m.Path = model.StringMatch{Kind: model.MatchPrefix, Value: h.PathPrefix}
	case h.PathRegex != "":
		m.Path = model.StringMatch{Kind: model.MatchRegex, Value: h.PathRegex}
	}
	seen := map[string]bool{}
	for i, hd := range h.Header {
		key := strings.ToLower(hd.Name) + "/" + strconv.FormatBool(hd.Invert)
		if seen[key] {
			return nil, fmt.Errorf("Header[%d]: a second condition on header %q; Istio states one per header", i, hd.Name)
		}
		seen[key] = true
		var sm model.StringMatch
		switch {
		case hd.Present:
			sm = model.StringMatch{Kind: model.MatchPresent}
		case hd.Exact != "":
			sm = model.StringMatch{Kind: model.MatchExact, Value: hd.Exact}
		case hd.Prefix != "":
			sm = model.StringMatch{Kind: model.MatchPrefix, Value: hd.Prefix}
		case hd.Suffix != "":
			sm = model.StringMatch{Kind: model.MatchSuffix, Value: hd.Suffix}
		case hd.Regex != "":
			sm = model.StringMatch{Kind: model.MatchRegex, Value: hd.Regex}
		default:
			return nil, fmt.Errorf("Header[%d] %q: no condition", i, hd.Name)
		}
		m.Headers = append(m.Headers, model.HeaderMatch{Name: hd.Name, Match: sm, Invert: hd.Invert})
	}
	seenQ := map[string]bool{}
	for i, q := range h.QueryParam {
		if seenQ[q.Name] {
			return nil, fmt.Errorf("QueryParam[%d]: a second condition on query parameter %q; Istio states one per parameter", i, q.Name)
		}
		seenQ[q.Name] = true
		var sm model.StringMatch
		switch {
		case q.Present:
			sm = model.StringMatch{Kind: model.MatchPresent}
		case q.Exact != "":
			sm = model.StringMatch{Kind: model.MatchExact, Value: q.Exact}
		case q.Regex != "":
			sm = model.StringMatch{Kind: model.MatchRegex, Value: q.Regex}
		default:
			return nil, fmt.Errorf("QueryParam[%d] %q: no condition", i, q.Name)
		}
		m.Query = append(m.Query, model.QueryMatch{Name: q.Name, Match: sm})
	}
	if m.Path.Kind == model.MatchAny && len(m.Headers) == 0 && len(m.Query) == 0 && len(m.Methods) == 0 {
		return nil, nil // matches every request
	}
	return m, nil
}

func headerOps(h *api.HTTPHeaderModifiers) model.HeaderOps {
	if h == nil {
		return model.HeaderOps{}
	}
	return model.HeaderOps{Add: model.LabelsFromMap(h.Add), Set: model.LabelsFromMap(h.Set), Remove: slices.Clone(h.Remove)}
}

// retriesOf states a route's retry policy as Consul's proxies apply it
// (routes.go, getRetryPolicyForDestination): the conditions are RetryOn,
// connect-failure for RetryOnConnectFailure, and the status codes; the
// attempts NumRetries, else Envoy's default of one.
func retriesOf(d *api.ServiceRouteDestination) (*model.Retries, error) {
	on := slices.Clone(d.RetryOn)
	if d.RetryOnConnectFailure && !slices.Contains(on, "connect-failure") {
		on = append(on, "connect-failure")
	}
	for _, code := range d.RetryOnStatusCodes {
		on = append(on, strconv.FormatUint(uint64(code), 10))
	}
	switch {
	case len(on) > 0:
		return &model.Retries{Attempts: max(d.NumRetries, 1), On: on}, nil
	case d.NumRetries > 0:
		return nil, fmt.Errorf("NumRetries %d without a retry condition: Consul's proxies then retry only requests that ask to (x-envoy-retry-on), which Istio cannot state", d.NumRetries)
	}
	return nil, nil
}
