package convert

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/convert/validation"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

// A service's traffic policy (model.Traffic) becomes, for its host, a
// DestinationRule (subsets, load balancer, connect timeout) and a
// VirtualService (HTTP routes), named and labelled like its ServiceEntry.
// Each is validated on its own: a rule istiod would reject is left out with
// a rejection, and the ServiceEntry and WorkloadEntries are served anyway.

// maglevTableSize is Envoy's default Maglev table size, a prime: Istio
// requires one to be set, and a registry that names Maglev (Consul) leaves
// it at Envoy's default.
const maglevTableSize = 65537

// CodeTraffic is the rejection code of a subset or route left out of a
// DestinationRule or VirtualService.
const CodeTraffic = "traffic-policy"

// traffic returns the DestinationRule and VirtualService of the first
// contribution's traffic policy, if it states one.
func (c *conversion) traffic(seMeta validation.Meta) []*served.Resource {
	t := c.base.Service.Traffic
	if t == nil {
		return nil
	}
	labels := map[string]string{served.LabelManagedBy: served.ManagedByValue, LabelService: seMeta.Labels[LabelService]}
	ann := map[string]string{AnnotationSource: c.base.Source}
	if n := c.base.Service.Name; n != "" {
		ann[AnnotationSvcName] = n
	}
	var out []*served.Resource
	dr, subsets := c.destinationRule(t)
	if dr != nil {
		meta := validation.Meta{Name: c.seName, Namespace: c.opts.Namespace, Labels: labels, Annotations: maps.Clone(ann)}
		if err := validation.DestinationRule(meta, dr); err != nil {
			c.reject(Rejection{Kind: served.KindDestinationRule, Name: c.seName, Source: c.base.Source, Code: CodeInvalid, Reason: err.Error()})
			subsets = nil
		} else {
			out = append(out, served.New(served.KindDestinationRule, c.opts.Namespace, c.seName, meta.Labels, meta.Annotations, dr, c.opts.CreateTime))
		}
	}
	if vs := c.virtualService(t, subsets); vs != nil {
		meta := validation.Meta{Name: c.seName, Namespace: c.opts.Namespace, Labels: maps.Clone(labels), Annotations: ann}
		if err := validation.VirtualService(meta, vs); err != nil {
			c.reject(Rejection{Kind: served.KindVirtualService, Name: c.seName, Source: c.base.Source, Code: CodeInvalid, Reason: err.Error()})
		} else {
			out = append(out, served.New(served.KindVirtualService, c.opts.Namespace, c.seName, meta.Labels, meta.Annotations, vs, c.opts.CreateTime))
		}
	}
	return out
}

// destinationRule builds the host's DestinationRule, and the names of the
// subsets it defines; nil when the policy states no subset, balancer or
// timeout. A subset whose labels the label policy would not let onto the
// instances (a reserved, invalid or not allowed key) could select nothing
// it should: it is left out with a rejection.
func (c *conversion) destinationRule(t *model.Traffic) (*networking.DestinationRule, map[string]bool) {
	dr := &networking.DestinationRule{Host: c.host, ExportTo: c.exportTo()}
	subsets := map[string]bool{}
	for _, s := range t.Subsets {
		labels, dropped := sanitizeLabels(s.Labels, c.opts.Labels, c.opts.Addresses.Key)
		if len(dropped) > 0 || len(labels) != s.Labels.Len() {
			c.reject(Rejection{Kind: served.KindDestinationRule, Name: c.seName + "/" + s.Name, Source: c.base.Source, Code: CodeTraffic,
				Reason: fmt.Sprintf("subset %q selects by labels %s, which the output's label policy does not put on instances as they are; left out the subset", s.Name, s.Labels)})
			continue
		}
		if len(labels) == 0 {
			labels = nil
		}
		dr.Subsets = append(dr.Subsets, &networking.Subset{Name: s.Name, Labels: labels})
		subsets[s.Name] = true
	}
	var tp networking.TrafficPolicy
	if lb := loadBalancer(t.LoadBalancer); lb != nil {
		tp.LoadBalancer = lb
	}
	if t.ConnectTimeout > 0 {
		tp.ConnectionPool = &networking.ConnectionPoolSettings{Tcp: &networking.ConnectionPoolSettings_TCPSettings{
			ConnectTimeout: durationpb.New(t.ConnectTimeout)}}
	}
	if tp.LoadBalancer != nil || tp.ConnectionPool != nil {
		dr.TrafficPolicy = &tp
	}
	if dr.TrafficPolicy == nil && len(dr.Subsets) == 0 {
		return nil, subsets
	}
	return dr, subsets
}

// exportTo is the ServiceEntry's visibility for its DestinationRule and
// VirtualService. "~" (visible to no namespace, only to the service's own
// proxies) is a ServiceEntry's alone; "." (the output namespace, where no
// client runs) is the nearest rules may say.
func (c *conversion) exportTo() []string {
	if len(c.opts.ExportTo) == 1 && c.opts.ExportTo[0] == "~" {
		return []string{"."}
	}
	return c.opts.ExportTo
}

func loadBalancer(lb *model.LoadBalancer) *networking.LoadBalancerSettings {
	if lb == nil {
		return nil
	}
	simple := func(p networking.LoadBalancerSettings_SimpleLB) *networking.LoadBalancerSettings {
		return &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: p}}
	}
	switch lb.Policy {
	case model.LBRoundRobin:
		return simple(networking.LoadBalancerSettings_ROUND_ROBIN)
	case model.LBLeastRequest:
		return simple(networking.LoadBalancerSettings_LEAST_REQUEST)
	case model.LBRandom:
		return simple(networking.LoadBalancerSettings_RANDOM)
	case model.LBRingHash, model.LBMaglev:
	default:
		return nil
	}
	ch := &networking.LoadBalancerSettings_ConsistentHashLB{}
	if lb.Policy == model.LBMaglev {
		ch.HashAlgorithm = &networking.LoadBalancerSettings_ConsistentHashLB_Maglev{
			Maglev: &networking.LoadBalancerSettings_ConsistentHashLB_MagLev{TableSize: maglevTableSize}}
	} else {
		ch.HashAlgorithm = &networking.LoadBalancerSettings_ConsistentHashLB_RingHash_{
			RingHash: &networking.LoadBalancerSettings_ConsistentHashLB_RingHash{MinimumRingSize: lb.MinRingSize}}
	}
	if h := lb.Hash; h != nil {
		switch h.Kind {
		case model.HashHeader:
			ch.HashKey = &networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: strings.ToLower(h.Name)}
		case model.HashQuery:
			ch.HashKey = &networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName{HttpQueryParameterName: h.Name}
		case model.HashSourceIP:
			ch.HashKey = &networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp{UseSourceIp: true}
		case model.HashCookie:
			// A TTL of zero makes Envoy generate a session cookie; none, no
			// cookie at all (only an existing one is hashed).
			cookie := &networking.LoadBalancerSettings_ConsistentHashLB_HTTPCookie{Name: h.Name, Path: h.CookiePath}
			if h.CookieGenerate {
				cookie.Ttl = durationpb.New(h.CookieTTL)
			}
			ch.HashKey = &networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie{HttpCookie: cookie}
		}
	}
	return &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{ConsistentHash: ch}}
}

// virtualService builds the host's VirtualService; nil when the policy
// states no route. A route to a subset of this host that its
// DestinationRule does not define (left out above) would send requests
// nowhere: the whole VirtualService is left out then, since a route
// dropped from the middle would hand its requests to the next one.
func (c *conversion) virtualService(t *model.Traffic, subsets map[string]bool) *networking.VirtualService {
	if len(t.Routes) == 0 {
		return nil
	}
	vs := &networking.VirtualService{Hosts: []string{c.host}, ExportTo: c.exportTo()}
	for i, r := range t.Routes {
		for _, d := range r.Destinations {
			if d.Host == c.host && d.Subset != "" && !subsets[d.Subset] {
				c.reject(Rejection{Kind: served.KindVirtualService, Name: c.seName, Source: c.base.Source, Code: CodeTraffic,
					Reason: fmt.Sprintf("route %d goes to subset %q, which the DestinationRule does not define; left out the VirtualService", i, d.Subset)})
				return nil
			}
		}
		vs.Http = append(vs.Http, httpRoute(r))
	}
	return vs
}

func httpRoute(r model.Route) *networking.HTTPRoute {
	h := &networking.HTTPRoute{
		Headers: headers(r.RequestHeaders, r.ResponseHeaders),
		Retries: retries(r.Retries),
	}
	if m := httpMatch(r.Match); m != nil {
		h.Match = []*networking.HTTPMatchRequest{m}
	}
	if r.Timeout > 0 {
		h.Timeout = durationpb.New(r.Timeout)
	}
	if r.PrefixRewrite != "" {
		h.Rewrite = &networking.HTTPRewrite{Uri: r.PrefixRewrite}
	}
	weights := reducedWeights(r.Destinations)
	for i, d := range r.Destinations {
		rd := &networking.HTTPRouteDestination{
			Destination: &networking.Destination{Host: d.Host, Subset: d.Subset},
			Headers:     headers(d.RequestHeaders, d.ResponseHeaders),
		}
		if len(r.Destinations) > 1 {
			rd.Weight = weights[i]
		}
		h.Route = append(h.Route, rd)
	}
	return h
}

// reducedWeights divides the weights by their common divisor up to 100, so
// that a split stated in hundredths of a percent (Consul's 90.00/10.00)
// reads as percent (90/10), and one that is not (33.33/66.67) keeps its
// precision.
func reducedWeights(ds []model.WeightedDestination) []int32 {
	g := uint32(100)
	for _, d := range ds {
		g = gcd(g, d.Weight)
	}
	out := make([]int32, len(ds))
	for i, d := range ds {
		if g > 0 {
			out[i] = int32(min(d.Weight/g, 1<<31-1))
		}
	}
	return out
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func headers(req, resp model.HeaderOps) *networking.Headers {
	if req.Empty() && resp.Empty() {
		return nil
	}
	ops := func(h model.HeaderOps) *networking.Headers_HeaderOperations {
		if h.Empty() {
			return nil
		}
		return &networking.Headers_HeaderOperations{Add: h.Add.Map(), Set: h.Set.Map(), Remove: slices.Clone(h.Remove)}
	}
	return &networking.Headers{Request: ops(req), Response: ops(resp)}
}

func retries(r *model.Retries) *networking.HTTPRetry {
	if r == nil {
		return nil
	}
	return &networking.HTTPRetry{Attempts: int32(min(r.Attempts, 1<<31-1)), RetryOn: strings.Join(r.On, ",")}
}

func httpMatch(m *model.HTTPMatch) *networking.HTTPMatchRequest {
	if m == nil {
		return nil
	}
	out := &networking.HTTPMatchRequest{Uri: stringMatch(m.Path), IgnoreUriCase: m.IgnoreCase}
	for _, h := range m.Headers {
		// Header names are case-insensitive; Istio insists on lower case.
		name := strings.ToLower(h.Name)
		target := &out.Headers
		if h.Invert {
			target = &out.WithoutHeaders
		}
		if *target == nil {
			*target = map[string]*networking.StringMatch{}
		}
		(*target)[name] = presentOr(stringMatch(h.Match))
	}
	for _, q := range m.Query {
		if out.QueryParams == nil {
			out.QueryParams = map[string]*networking.StringMatch{}
		}
		out.QueryParams[q.Name] = presentOr(stringMatch(q.Match))
	}
	switch len(m.Methods) {
	case 0:
	case 1:
		out.Method = &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: m.Methods[0]}}
	default:
		quoted := make([]string, len(m.Methods))
		for i, v := range m.Methods {
			quoted[i] = regexp.QuoteMeta(v)
		}
		out.Method = &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: strings.Join(quoted, "|")}}
	}
	return out
}

// presentOr is sm, or the empty match that Istio reads as "present".
func presentOr(sm *networking.StringMatch) *networking.StringMatch {
	if sm == nil {
		return &networking.StringMatch{}
	}
	return sm
}

// stringMatch translates a string condition; nil for any string and for
// "present", which Istio states as an empty match. A suffix becomes a
// regular expression (Envoy matches the whole string).
func stringMatch(m model.StringMatch) *networking.StringMatch {
	switch m.Kind {
	case model.MatchExact:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: m.Value}}
	case model.MatchPrefix:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: m.Value}}
	case model.MatchRegex:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: m.Value}}
	case model.MatchSuffix:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: ".*" + regexp.QuoteMeta(m.Value)}}
	}
	return nil
}
