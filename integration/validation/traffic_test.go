package validation_test

// The same agreement for the DestinationRules and VirtualServices convert
// writes from a traffic policy: everything convert serves Istio accepts,
// and for the fields convert sets, both validators accept and reject alike.

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/convert/validation"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

// trafficCorpus are traffic policies a registry could state, hostile
// values included.
func trafficCorpus() map[string]*model.Traffic {
	sm := func(k model.MatchKind, v string) model.StringMatch { return model.StringMatch{Kind: k, Value: v} }
	route := func(m *model.HTTPMatch, ds ...model.WeightedDestination) model.Route {
		return model.Route{Match: m, Destinations: ds}
	}
	to := func(host, subset string, w uint32) model.WeightedDestination {
		return model.WeightedDestination{Host: host, Subset: subset, Weight: w}
	}
	return map[string]*model.Traffic{
		"split": {Subsets: []model.Subset{{Name: "v1", Labels: model.MakeLabels("version", "v1")}, {Name: "v2", Labels: model.MakeLabels("version", "v2")}},
			Routes: []model.Route{route(nil, to("web.service.consul", "v1", 9000), to("web.service.consul", "v2", 1000))}},
		"hashes":       {LoadBalancer: &model.LoadBalancer{Policy: model.LBMaglev, Hash: &model.HashKey{Kind: model.HashCookie, Name: ""}}},
		"ring":         {LoadBalancer: &model.LoadBalancer{Policy: model.LBRingHash, MinRingSize: 1 << 20, Hash: &model.HashKey{Kind: model.HashQuery, Name: "user"}}, ConnectTimeout: 1500 * time.Microsecond},
		"subset-names": {Subsets: []model.Subset{{Name: "V1"}, {Name: "has_underscore"}, {Name: ""}, {Name: strings.Repeat("s", 64)}, {Name: "ok"}, {Name: "ok"}}},
		"subset-labels": {Subsets: []model.Subset{{Name: "a", Labels: model.MakeLabels("Bad Key", "x")}, {Name: "b", Labels: model.MakeLabels("k", "bad value!")},
			{Name: "c", Labels: model.MakeLabels("k", strings.Repeat("v", 70))}}},
		"matches": {Routes: []model.Route{
			route(&model.HTTPMatch{Path: sm(model.MatchRegex, "(bad"), Methods: []string{"GET", "P.ST"}}, to("web.service.consul", "", 0)),
			route(&model.HTTPMatch{Path: sm(model.MatchPrefix, ""), Headers: []model.HeaderMatch{{Name: "Bad Header", Match: sm(model.MatchExact, "x")}}}, to("web.service.consul", "", 0)),
			route(&model.HTTPMatch{Headers: []model.HeaderMatch{{Name: "@request.auth.claims.sub", Match: sm(model.MatchPresent, "")}, {Name: "x-p", Match: sm(model.MatchPrefix, "")}}}, to("web.service.consul", "", 0)),
			route(&model.HTTPMatch{Query: []model.QueryMatch{{Name: "q", Match: sm(model.MatchPrefix, "")}, {Name: "r", Match: sm(model.MatchRegex, strings.Repeat("a", 1025))}}}, to("web.service.consul", "", 0)),
			route(&model.HTTPMatch{Headers: []model.HeaderMatch{{Name: "x-s", Match: sm(model.MatchSuffix, "(.*)"), Invert: true}}}, to("web.service.consul", "", 0)),
		}},
		"destinations": {Routes: []model.Route{
			route(nil, to("*", "", 1), to("Bad_Host", "Bad_Subset", 1), to("other.service.consul", "", 0)),
			{Destinations: []model.WeightedDestination{to("web.service.consul", "", 0)}, Timeout: 500 * time.Microsecond,
				Retries: &model.Retries{Attempts: 2, On: []string{"5xx", "bogus", "503"}}, PrefixRewrite: "/x",
				RequestHeaders:  model.HeaderOps{Add: model.MakeLabels("host", "h", "x-pct", "100%"), Set: model.MakeLabels(":path", "/"), Remove: []string{"host"}},
				ResponseHeaders: model.HeaderOps{Set: model.MakeLabels("x-v", "%REQ(x-a)%", "x-ctl", "a\nb")}},
			{Destinations: []model.WeightedDestination{to("web.service.consul", "", 0)},
				RequestHeaders: model.HeaderOps{Set: model.MakeLabels(":authority", "a", "Host", "b")}},
		}},
	}
}

// TestTrafficCorpusAgrees converts each corpus policy on a service and
// checks that Istio accepts every DestinationRule and VirtualService convert
// serves, and rejects every one convert rejects for validation.
func TestTrafficCorpusAgrees(t *testing.T) {
	servedN, rejectedN := 0, 0
	for optName, opts := range corpusOptions() {
		for name, tr := range trafficCorpus() {
			what := optName + "/" + name
			svc := model.Service{Name: "web", Host: "web.service.consul", Ports: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}},
				Instances: []model.Instance{{ID: "a", Address: "10.0.0.1", Labels: model.MakeLabels("version", "v1")}}, Traffic: tr}
			res, rej := convert.Service(svc.Host, []convert.Contribution{{Source: "dc1", Service: svc}}, opts)
			for _, r := range res {
				if r.Kind != served.KindDestinationRule && r.Kind != served.KindVirtualService {
					continue
				}
				servedN++
				if err := istioValidate(metaOf(r), r.Spec); err != nil {
					t.Errorf("%s: convert served %s %s that Istio rejects: %v", what, r.Kind, r.Key(), err)
				}
			}
			for _, r := range rej {
				if r.Code == convert.CodeInvalid && (r.Kind == served.KindDestinationRule || r.Kind == served.KindVirtualService) {
					rejectedN++
				}
			}
		}
	}
	t.Logf("%d traffic resources served, %d rejected for failing validation", servedN, rejectedN)
	if servedN < 10 || rejectedN < 10 {
		t.Errorf("the corpus exercises too little: %d served, %d rejected", servedN, rejectedN)
	}
}

// trafficGen builds DestinationRules and VirtualServices with the fields
// convert sets: valid ones with at most one fault from pools.
type trafficGen struct{ gen }

var (
	trafficHosts   = []string{"web.service.consul", "*.example.com", "*", "Bad_Host", "", "10.0.0.1", "a..b", "*foo.example.com"}
	subsetNames    = []string{"v1", "v2", "", "V1", "has_underscore", strings.Repeat("s", 64), "-x"}
	headerNames    = []string{"x-a", "X-Upper", "Bad Header", "", ":authority", ":path", "host", "@request.auth.claims.sub", "@request.auth.claims[", "a:b"}
	headerValues   = []string{"v", "", "100%", "100%%", "%REQ(x-a)%", "%START_TIME%%", "a\nb", "a\tb", "%VAR([\"x\")%", "%bad"}
	regexPool      = []string{"[0-9]+", "(bad", "", "*", strings.Repeat("a", 1025), ".*\\.prod"}
	retryOnPool    = []string{"5xx", "503", "bogus", "connect-failure,5xx", "", "0", "reset,retriable-status-codes,504"}
	durationsPool  = []time.Duration{time.Second, time.Millisecond, 1500 * time.Microsecond, 0, -time.Second, 500 * time.Microsecond}
	maglevSizes    = []uint64{65537, 0, 4, 5000011, 65536, 2}
	trafficExports = [][]string{nil, {"*"}, {"."}, {"~"}, {".", "ns1"}, {"*", "ns1"}, {"Bad_NS"}}
)

func (g trafficGen) duration() *durationpb.Duration {
	return durationpb.New(durationsPool[g.n(len(durationsPool))])
}

func (g trafficGen) stringMatch(emptyPrefixOK bool) *networking.StringMatch {
	switch g.n(5) {
	case 0:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: g.pick("v", "", "/x")}}
	case 1:
		if emptyPrefixOK {
			return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: g.pick("/", "", "/api")}}
		}
		return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: g.pick("a", "")}}
	case 2:
		return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: g.pick(regexPool...)}}
	}
	return &networking.StringMatch{}
}

func (g trafficGen) destinationRule(fault int) *networking.DestinationRule {
	dr := &networking.DestinationRule{Host: "web.service.consul"}
	for i := range g.n(3) {
		dr.Subsets = append(dr.Subsets, &networking.Subset{Name: fmt.Sprintf("v%d", i+1), Labels: map[string]string{"version": fmt.Sprintf("v%d", i+1)}})
	}
	tp := &networking.TrafficPolicy{}
	switch g.n(4) {
	case 0:
		tp.LoadBalancer = &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_Simple{Simple: networking.LoadBalancerSettings_SimpleLB(g.n(5))}}
	case 1:
		ch := &networking.LoadBalancerSettings_ConsistentHashLB{HashKey: &networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: "x-user"}}
		if g.bool() {
			ch.HashAlgorithm = &networking.LoadBalancerSettings_ConsistentHashLB_Maglev{Maglev: &networking.LoadBalancerSettings_ConsistentHashLB_MagLev{TableSize: 65537}}
		} else {
			ch.HashAlgorithm = &networking.LoadBalancerSettings_ConsistentHashLB_RingHash_{RingHash: &networking.LoadBalancerSettings_ConsistentHashLB_RingHash{MinimumRingSize: uint64(g.n(3)) * 1024}}
		}
		tp.LoadBalancer = &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{ConsistentHash: ch}}
	case 2:
		tp.ConnectionPool = &networking.ConnectionPoolSettings{Tcp: &networking.ConnectionPoolSettings_TCPSettings{ConnectTimeout: durationpb.New(time.Second)}}
	}
	if tp.LoadBalancer != nil || tp.ConnectionPool != nil {
		dr.TrafficPolicy = tp
	}
	if g.bool() {
		dr.ExportTo = trafficExports[g.n(3)]
	}
	switch fault {
	case 0:
		dr.Host = g.pick(trafficHosts...)
	case 1:
		dr.Subsets = append(dr.Subsets, &networking.Subset{Name: g.pick(subsetNames...)})
	case 2:
		dr.Subsets = append(dr.Subsets, &networking.Subset{Name: "x", Labels: g.strMap(labelKeys, labelValues, 2)})
	case 3:
		dr.TrafficPolicy = &networking.TrafficPolicy{}
	case 4:
		dr.TrafficPolicy = &networking.TrafficPolicy{ConnectionPool: &networking.ConnectionPoolSettings{Tcp: &networking.ConnectionPoolSettings_TCPSettings{ConnectTimeout: g.duration()}}}
	case 5:
		dr.TrafficPolicy = &networking.TrafficPolicy{ConnectionPool: &networking.ConnectionPoolSettings{}}
	case 6:
		dr.TrafficPolicy = &networking.TrafficPolicy{LoadBalancer: &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{
			ConsistentHash: &networking.LoadBalancerSettings_ConsistentHashLB{HashAlgorithm: &networking.LoadBalancerSettings_ConsistentHashLB_Maglev{
				Maglev: &networking.LoadBalancerSettings_ConsistentHashLB_MagLev{TableSize: maglevSizes[g.n(len(maglevSizes))]}}}}}}
	case 7:
		dr.TrafficPolicy = &networking.TrafficPolicy{LoadBalancer: &networking.LoadBalancerSettings{LbPolicy: &networking.LoadBalancerSettings_ConsistentHash{
			ConsistentHash: &networking.LoadBalancerSettings_ConsistentHashLB{HashKey: &networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie{
				HttpCookie: &networking.LoadBalancerSettings_ConsistentHashLB_HTTPCookie{Name: g.pick("", "id"), Ttl: g.duration()}}}}}}
	case 8:
		dr.ExportTo = trafficExports[g.n(len(trafficExports))]
	}
	return dr
}

func (g trafficGen) virtualService(fault int) *networking.VirtualService {
	vs := &networking.VirtualService{Hosts: []string{"web.service.consul"}}
	for range 1 + g.n(3) {
		h := &networking.HTTPRoute{}
		if g.bool() {
			m := &networking.HTTPMatchRequest{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/api"}}, IgnoreUriCase: g.bool()}
			if g.bool() {
				m.Headers = map[string]*networking.StringMatch{"x-a": {MatchType: &networking.StringMatch_Exact{Exact: "1"}}}
			}
			if g.bool() {
				m.WithoutHeaders = map[string]*networking.StringMatch{"x-b": {}}
			}
			if g.bool() {
				m.QueryParams = map[string]*networking.StringMatch{"q": {}}
			}
			if g.bool() {
				m.Method = &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: "GET|HEAD"}}
			}
			h.Match = []*networking.HTTPMatchRequest{m}
		}
		for i := range 1 + g.n(2) {
			d := &networking.HTTPRouteDestination{Destination: &networking.Destination{Host: "web.service.consul", Subset: g.pick("", "v1", "v2")}}
			if i > 0 || g.bool() {
				d.Weight = int32(1 + g.n(90))
			}
			h.Route = append(h.Route, d)
		}
		if g.bool() {
			h.Timeout = durationpb.New(time.Second)
		}
		if g.bool() {
			h.Retries = &networking.HTTPRetry{Attempts: 2, RetryOn: "connect-failure,503"}
		}
		if g.oneIn(3) {
			h.Rewrite = &networking.HTTPRewrite{Uri: "/"}
		}
		if g.oneIn(3) {
			h.Headers = &networking.Headers{Request: &networking.Headers_HeaderOperations{Set: map[string]string{"x-route": "a"}}}
		}
		vs.Http = append(vs.Http, h)
	}
	if g.bool() {
		vs.ExportTo = trafficExports[g.n(3)]
	}
	h := vs.Http[g.n(len(vs.Http))]
	m := &networking.HTTPMatchRequest{}
	switch fault {
	case 0:
		vs.Hosts[0] = g.pick(trafficHosts...)
	case 1:
		vs.Hosts = append(vs.Hosts, g.pick(trafficHosts...))
	case 2:
		m.Uri = g.stringMatch(true)
	case 3:
		m.Headers = map[string]*networking.StringMatch{g.pick(headerNames...): g.stringMatch(false)}
	case 4:
		m.WithoutHeaders = map[string]*networking.StringMatch{g.pick(headerNames...): g.stringMatch(false)}
	case 5:
		m.QueryParams = map[string]*networking.StringMatch{"q": g.stringMatch(false)}
	case 6:
		m.Method = g.stringMatch(false)
	case 7:
		h.Route[0].Destination = &networking.Destination{Host: g.pick(trafficHosts...), Subset: g.pick(subsetNames...)}
	case 8:
		h.Route[0].Weight = int32(g.n(3)) - 1
		if len(h.Route) > 1 {
			h.Route[1].Weight = 0
		}
	case 9:
		h.Timeout = g.duration()
	case 10:
		h.Retries = &networking.HTTPRetry{Attempts: int32(g.n(3)) - 1, RetryOn: g.pick(retryOnPool...)}
	case 11:
		h.Rewrite = &networking.HTTPRewrite{Uri: g.pick("/", "")}
	case 12:
		ops := &networking.Headers_HeaderOperations{Set: map[string]string{g.pick(headerNames...): g.pick(headerValues...)}}
		if g.bool() {
			ops = &networking.Headers_HeaderOperations{Add: ops.Set}
		}
		if g.bool() {
			h.Headers = &networking.Headers{Request: ops}
		} else {
			h.Headers = &networking.Headers{Response: ops}
		}
	case 13:
		h.Headers = &networking.Headers{Request: &networking.Headers_HeaderOperations{Remove: []string{g.pick(headerNames...)}}}
	case 14:
		h.Route[0].Headers = &networking.Headers{Response: &networking.Headers_HeaderOperations{Remove: []string{g.pick(headerNames...)}}}
	case 15:
		h.Route = nil
	case 16:
		vs.ExportTo = trafficExports[g.n(len(trafficExports))]
	case 17:
		vs.Http = nil
	}
	if m.Uri != nil || m.Headers != nil || m.WithoutHeaders != nil || m.QueryParams != nil || m.Method != nil {
		h.Match = append(h.Match, m)
	}
	return vs
}

func generateTraffic(c chooser) (validation.Meta, proto.Message) {
	g := trafficGen{gen{c}}
	meta := validation.Meta{Name: "web.service.consul", Namespace: g.pick("istio-system", "registry")}
	if g.oneIn(8) {
		meta = g.meta()
	}
	fault := -1
	if g.bool() {
		fault = g.n(18)
	}
	if g.bool() {
		return meta, g.destinationRule(fault)
	}
	return meta, g.virtualService(fault)
}

// FuzzTrafficValidationAgrees is FuzzValidationAgrees for DestinationRules
// and VirtualServices.
func FuzzTrafficValidationAgrees(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		meta, spec := generateTraffic(&bytesChooser{b: data})
		checkAgree(t, "fuzz", meta, spec)
	})
}

// TestTrafficRandomWalksAgree runs many walks of the traffic generator in a
// normal test run; a third to two thirds of them must be accepted.
func TestTrafficRandomWalksAgree(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	r := rand.New(rand.NewPCG(5, 6))
	accepted := 0
	for range n {
		c := &recordingChooser{r: r}
		meta, spec := generateTraffic(c)
		if checkAgree(t, fmt.Sprintf("traffic fuzz input %q", c.out), meta, spec) {
			accepted++
		}
	}
	share := float64(accepted) / float64(n)
	t.Logf("Istio accepts %.0f%% of generated DestinationRules and VirtualServices", 100*share)
	if share < 0.3 || share > 0.9 {
		t.Errorf("Istio accepts %.0f%% of generated inputs, want 30%% to 90%%", 100*share)
	}
}
