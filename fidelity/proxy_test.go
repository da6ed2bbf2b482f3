package fidelity

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// nameTable encodes a NameTable the way istiod's generated code does.
func nameTable(t map[string][]string) []byte {
	var b []byte
	for host, ips := range t {
		var info []byte
		for _, ip := range ips {
			info = protowire.AppendTag(info, 1, protowire.BytesType)
			info = protowire.AppendString(info, ip)
		}
		info = protowire.AppendTag(info, 2, protowire.BytesType) // registry
		info = protowire.AppendString(info, "External")
		var entry []byte
		entry = protowire.AppendTag(entry, 1, protowire.BytesType)
		entry = protowire.AppendString(entry, host)
		entry = protowire.AppendTag(entry, 2, protowire.BytesType)
		entry = protowire.AppendBytes(entry, info)
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, entry)
	}
	return b
}

func cla(name string, eps ...string) *endpoint.ClusterLoadAssignment {
	c := &endpoint.ClusterLoadAssignment{ClusterName: name}
	var lbs []*endpoint.LbEndpoint
	for _, e := range eps {
		host, port, _ := net.SplitHostPort(e)
		p, _ := strconv.Atoi(port)
		status := core.HealthStatus_HEALTHY
		if strings.HasPrefix(host, "unhealthy.") {
			host, status = strings.TrimPrefix(host, "unhealthy."), core.HealthStatus_UNHEALTHY
		}
		lbs = append(lbs, &endpoint.LbEndpoint{HealthStatus: status, HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{
			Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{Address: host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(p)}}}},
		}}})
	}
	c.Endpoints = []*endpoint.LocalityLbEndpoints{{LbEndpoints: lbs}}
	return c
}

func listenerOn(addr string, port uint32) *listener.Listener {
	return &listener.Listener{
		Name:    addr + "_" + strconv.Itoa(int(port)),
		Address: &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{Address: addr, PortSpecifier: &core.SocketAddress_PortValue{PortValue: port}}}},
	}
}

// fakeIstiod answers a sidecar's ADS requests from fixed content, and sends
// whatever assignments are put on push.
type fakeIstiod struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	clusters  []*cluster.Cluster
	endpoints map[string]*endpoint.ClusterLoadAssignment
	listeners []*listener.Listener
	routes    map[string]*route.RouteConfiguration
	names     map[string][]string
	push      chan *endpoint.ClusterLoadAssignment
	pushCDS   chan []*cluster.Cluster // a new set of clusters, sent as one CDS reply
	requests  chan *discovery.DiscoveryRequest
}

func (f *fakeIstiod) StreamAggregatedResources(s discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	reqs := make(chan *discovery.DiscoveryRequest)
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				close(reqs)
				return
			}
			reqs <- r
		}
	}()
	nonce := 0
	reply := func(typ string, msgs ...proto.Message) error {
		nonce++
		resp := &discovery.DiscoveryResponse{TypeUrl: typ, VersionInfo: "v1", Nonce: string(rune('a' + nonce))}
		for _, m := range msgs {
			a, err := anypb.New(m)
			if err != nil {
				return err
			}
			resp.Resources = append(resp.Resources, a)
		}
		return s.Send(resp)
	}
	for {
		select {
		case r, ok := <-reqs:
			if !ok {
				return nil
			}
			if f.requests != nil {
				f.requests <- r
			}
			if r.ResponseNonce != "" {
				continue // an ACK
			}
			var err error
			switch r.TypeUrl {
			case TypeCluster:
				var ms []proto.Message
				for _, c := range f.clusters {
					ms = append(ms, c)
				}
				err = reply(TypeCluster, ms...)
			case TypeListener:
				var ms []proto.Message
				for _, l := range f.listeners {
					ms = append(ms, l)
				}
				err = reply(TypeListener, ms...)
			case TypeEndpoint:
				var ms []proto.Message
				for _, n := range r.ResourceNames {
					if c, ok := f.endpoints[n]; ok {
						ms = append(ms, c)
					}
				}
				err = reply(TypeEndpoint, ms...)
			case TypeRoute:
				var ms []proto.Message
				for _, n := range r.ResourceNames {
					if rc, ok := f.routes[n]; ok {
						ms = append(ms, rc)
					}
				}
				err = reply(TypeRoute, ms...)
			case TypeNameTable:
				nonce++
				err = s.Send(&discovery.DiscoveryResponse{TypeUrl: TypeNameTable, Nonce: "nds", Resources: []*anypb.Any{{TypeUrl: TypeNameTable, Value: nameTable(f.names)}}})
			}
			if err != nil {
				return err
			}
		case c := <-f.push:
			if err := reply(TypeEndpoint, c); err != nil {
				return err
			}
		case cs := <-f.pushCDS:
			var ms []proto.Message
			for _, c := range cs {
				ms = append(ms, c)
			}
			if err := reply(TypeCluster, ms...); err != nil {
				return err
			}
		}
	}
}

func edsCluster(name string) *cluster.Cluster {
	return &cluster.Cluster{Name: name, ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_EDS},
		EdsClusterConfig: &cluster.Cluster_EdsClusterConfig{ServiceName: name}}
}

func serve(t *testing.T, f *fakeIstiod) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(g, f)
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	return l.Addr().String()
}

// meshWithAddresses is what a faithful istiod gives a sidecar for want below.
func meshWithAddresses() *fakeIstiod {
	dns := &cluster.Cluster{Name: "outbound|443||api.example.com", ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STRICT_DNS},
		LoadAssignment: cla("outbound|443||api.example.com", "api.example.com:443")}
	return &fakeIstiod{
		clusters: []*cluster.Cluster{
			edsCluster("outbound|8080||web.service.consul"), edsCluster("outbound|5432||pg-a.service.consul"),
			edsCluster("outbound|5432||pg-b.service.consul"), dns, edsCluster("outbound|443||kubernetes.default.svc.cluster.local"),
		},
		endpoints: map[string]*endpoint.ClusterLoadAssignment{
			"outbound|8080||web.service.consul":                  cla("outbound|8080||web.service.consul", "10.0.0.1:8080", "unhealthy.10.0.0.2:8080"),
			"outbound|5432||pg-a.service.consul":                 cla("outbound|5432||pg-a.service.consul", "10.0.1.1:5432"),
			"outbound|5432||pg-b.service.consul":                 cla("outbound|5432||pg-b.service.consul", "10.0.2.1:15432"),
			"outbound|443||kubernetes.default.svc.cluster.local": cla("outbound|443||kubernetes.default.svc.cluster.local", "127.0.0.1:6443"),
		},
		listeners: []*listener.Listener{listenerOn("0.0.0.0", 8080), listenerOn("240.241.0.1", 5432), listenerOn("240.241.0.2", 5432)},
		names: map[string][]string{
			"web.service.consul": {"240.241.0.3"}, "pg-a.service.consul": {"240.241.0.1"}, "pg-b.service.consul": {"240.241.0.2"},
			"api.example.com": {"240.241.0.4"}, "kubernetes.default.svc.cluster.local": {"10.96.0.1"},
		},
		push:    make(chan *endpoint.ClusterLoadAssignment),
		pushCDS: make(chan []*cluster.Cluster),
	}
}

func wantMesh() View {
	svc := func(host string, addrs []string, port, protocol string, number uint32, eps ...Endpoint) *Service {
		s := &Service{Host: host, Addresses: addrs, Ports: map[string]Port{port: {Number: number, Protocol: protocol}}, Endpoints: map[string]Endpoint{}}
		for _, e := range eps {
			e.PortName = port
			s.Endpoints[e.Address+"/"+port] = e
		}
		return s
	}
	return View{
		"web.service.consul":  svc("web.service.consul", nil, "http-8080", "HTTP", 8080, Endpoint{Address: "10.0.0.1", Port: 8080}),
		"pg-a.service.consul": svc("pg-a.service.consul", nil, "tcp-5432", "TCP", 5432, Endpoint{Address: "10.0.1.1", Port: 5432}),
		"pg-b.service.consul": svc("pg-b.service.consul", []string{"240.241.0.2"}, "tcp-5432", "TCP", 5432, Endpoint{Address: "10.0.2.1", Port: 15432}),
		"api.example.com":     svc("api.example.com", nil, "tls-443", "TLS", 443, Endpoint{Address: "api.example.com", Port: 443}),
	}
}

func dialFake(t *testing.T, f *fakeIstiod) *Proxy {
	t.Helper()
	p, err := DialProxy(ProxyConfig{Address: serve(t, f), Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProxyViewFaithful(t *testing.T) {
	p := dialFake(t, meshWithAddresses())
	v := p.View()
	if d := DiffSidecar(wantMesh(), v); len(d) > 0 {
		t.Fatalf("differences against a faithful sidecar view:\n%s", strings.Join(d, "\n"))
	}
	if got := v.Clusters["outbound|8080||web.service.consul"]; !slices.Equal(got.Unhealthy, []string{"10.0.0.2:8080"}) {
		t.Errorf("unhealthy endpoints %v", got.Unhealthy)
	}
	if got := v.Names["pg-a.service.consul"]; !slices.Equal(got, []string{"240.241.0.1"}) {
		t.Errorf("name table entry %v", got)
	}
	r := p.Replies()
	for _, typ := range []string{TypeCluster, TypeEndpoint, TypeListener, TypeNameTable} {
		if r[typ] != 1 {
			t.Errorf("%d replies of %s, want 1", r[typ], typ)
		}
	}
}

// TestProxyRoutes: the proxy asks for the route tables its listeners'
// HTTP connection managers name, and shows their weighted routes.
func TestProxyRoutes(t *testing.T) {
	f := meshWithAddresses()
	m, err := anypb.New(&hcm.HttpConnectionManager{RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{RouteConfigName: "8080"}}})
	if err != nil {
		t.Fatal(err)
	}
	f.listeners[0].FilterChains = []*listener.FilterChain{{Filters: []*listener.Filter{{Name: "envoy.filters.network.http_connection_manager",
		ConfigType: &listener.Filter_TypedConfig{TypedConfig: m}}}}}
	f.routes = map[string]*route.RouteConfiguration{"8080": {Name: "8080", VirtualHosts: []*route.VirtualHost{{
		Name: "web.service.consul:8080", Domains: []string{"web.service.consul", "web.service.consul:8080"},
		Routes: []*route.Route{
			{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Path{Path: "/old"}},
				Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "outbound|8080|v1|web.service.consul"}}}},
			{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
				Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_WeightedClusters{WeightedClusters: &route.WeightedCluster{
					Clusters: []*route.WeightedCluster_ClusterWeight{
						{Name: "outbound|8080|v1|web.service.consul", Weight: wrapperspb.UInt32(90)},
						{Name: "outbound|8080|v2|web.service.consul", Weight: wrapperspb.UInt32(10)},
					}}}}}},
		},
	}}}}
	p := dialFake(t, f)
	vhs := p.View().Routes["8080"]
	if len(vhs) != 1 || len(vhs[0].Routes) != 2 {
		t.Fatalf("route table 8080: %+v", vhs)
	}
	if r := vhs[0].Routes[0]; r.Match != "path:/old" || r.Clusters["outbound|8080|v1|web.service.consul"] != 0 || len(r.Clusters) != 1 {
		t.Errorf("first route %+v", r)
	}
	if r := vhs[0].Routes[1]; r.Match != "prefix:/" || r.Clusters["outbound|8080|v1|web.service.consul"] != 90 || r.Clusters["outbound|8080|v2|web.service.consul"] != 10 {
		t.Errorf("weighted route %+v", r)
	}
	if n := p.Replies()[TypeRoute]; n != 1 {
		t.Errorf("%d route replies, want 1", n)
	}
}

// TestDiffSidecar: each way a sidecar's view can fail names the host.
func TestDiffSidecar(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(f *fakeIstiod)
		want   []string
	}{
		{"TCP service without an address (istiod's shared listener)", func(f *fakeIstiod) {
			delete(f.names, "pg-a.service.consul")
			f.listeners = []*listener.Listener{listenerOn("0.0.0.0", 8080), listenerOn("0.0.0.0", 5432), listenerOn("240.241.0.2", 5432)}
		}, []string{
			"host pg-a.service.consul port 5432 (TCP): no address, so no listener of its own; the sidecar's shared 0.0.0.0_5432 sends its traffic wherever istiod picks",
			"host pg-a.service.consul: not in the sidecar's DNS name table",
		}},
		{"a listener missing", func(f *fakeIstiod) {
			f.listeners = f.listeners[:2]
		}, []string{"host pg-b.service.consul port 5432 (TCP): no listener 240.241.0.2_5432 of its own in the sidecar"}},
		{"the registry's address differs", func(f *fakeIstiod) {
			f.names["pg-b.service.consul"] = []string{"240.241.0.9"}
		}, []string{
			"host pg-b.service.consul: the name table resolves it to addresses [240.241.0.9], want [240.241.0.2]",
		}},
		{"two hosts share an address", func(f *fakeIstiod) {
			f.names["web.service.consul"] = []string{"240.241.0.1"}
		}, []string{"host web.service.consul: address 240.241.0.1 is also pg-a.service.consul's"}},
		{"an endpoint missing, one extra, a wrong target port", func(f *fakeIstiod) {
			f.endpoints["outbound|8080||web.service.consul"] = cla("outbound|8080||web.service.consul", "10.0.0.2:8080")
			f.endpoints["outbound|5432||pg-b.service.consul"] = cla("outbound|5432||pg-b.service.consul", "10.0.2.1:5432")
		}, []string{
			"host pg-b.service.consul port 5432: cluster outbound|5432||pg-b.service.consul sends traffic to 10.0.2.1:5432, which is not a healthy instance",
			"host pg-b.service.consul port 5432: healthy endpoint 10.0.2.1:15432 missing from cluster outbound|5432||pg-b.service.consul",
			"host web.service.consul port 8080: cluster outbound|8080||web.service.consul sends traffic to 10.0.0.2:8080, which is not a healthy instance",
			"host web.service.consul port 8080: healthy endpoint 10.0.0.1:8080 missing from cluster outbound|8080||web.service.consul",
		}},
		{"a cluster missing and one left over", func(f *fakeIstiod) {
			f.clusters[0] = edsCluster("outbound|8080||old.service.consul")
			f.endpoints["outbound|8080||old.service.consul"] = cla("outbound|8080||old.service.consul")
		}, []string{
			"host old.service.consul: extra outbound cluster outbound|8080||old.service.consul in the sidecar",
			"host web.service.consul port 8080: no outbound cluster outbound|8080||web.service.consul in the sidecar",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := meshWithAddresses()
			tc.mutate(f)
			got := DiffSidecar(wantMesh(), dialFake(t, f).View())
			if !slices.Equal(got, tc.want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestProxyEvents: every assignment istiod sends is recorded, each with
// when it arrived.
func TestProxyEvents(t *testing.T) {
	f := meshWithAddresses()
	p := dialFake(t, f)
	_, next := p.Events(0)
	name := "outbound|5432||pg-a.service.consul"
	f.push <- cla(name)
	f.push <- cla(name, "10.0.1.1:5432")
	deadline := time.After(10 * time.Second)
	for {
		evs, _ := p.Events(next)
		if len(evs) == 2 {
			if len(evs[0].Endpoints) != 0 || !slices.Equal(evs[1].Endpoints, []string{"10.0.1.1:5432"}) || evs[1].At.Before(evs[0].At) {
				t.Fatalf("events %+v", evs)
			}
			break
		}
		select {
		case <-p.Changed():
		case <-deadline:
			t.Fatalf("events %+v", evs)
		}
	}
	if r := p.Replies()[TypeEndpoint]; r != 3 {
		t.Errorf("%d EDS replies, want 3", r)
	}
}

// TestProxyStreamBroken: a watcher learns that the stream ended.
func TestProxyStreamBroken(t *testing.T) {
	f := meshWithAddresses()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(g, f)
	go func() { _ = g.Serve(l) }()
	p, err := DialProxy(ProxyConfig{Address: l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	changed := p.Changed()
	g.Stop()
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("no change signalled when the stream broke")
	}
	if p.Err() == nil {
		t.Fatal("Err is nil after the stream broke")
	}
}

func TestDecodeNameTableRejectsGarbage(t *testing.T) {
	if _, err := decodeNameTable([]byte{0x0a, 0x05, 0x01}); err == nil {
		t.Fatal("a truncated name table decoded without error")
	}
}

// TestWatchDetectsBriefLoss is the control for the fault tests' watcher: an
// endpoint removed and re-added 20 ms later is reported, with how long it
// was gone (as received: arrival jitter makes it shorter or longer than
// the 20 ms the fake held it); assignments that keep it are not.
func TestWatchDetectsBriefLoss(t *testing.T) {
	f := meshWithAddresses()
	p := dialFake(t, f)
	name := "outbound|5432||pg-a.service.consul"
	kept := map[string][]string{name: {"10.0.1.1:5432"}}
	_, base := p.Events(0)
	w := p.Watch()
	f.push <- cla(name, "10.0.1.1:5432", "10.0.1.2:5432") // a new instance: no loss
	f.push <- cla(name, "10.0.1.2:5432")                  // the loss
	time.Sleep(20 * time.Millisecond)                     // the fault's duration, not a wait for anything
	f.push <- cla(name, "10.0.1.1:5432", "10.0.1.2:5432")
	waitEvents(t, p, base+3)
	r := w.Report(kept)
	if r.Assignments != 3 || r.Broken != nil {
		t.Fatalf("report %+v", r)
	}
	if len(r.Losses) != 1 {
		t.Fatalf("losses %v, want the one brief loss", r.Losses)
	}
	if l := r.Losses[0]; l.Endpoint != "10.0.1.1:5432" || l.For <= 0 || l.For > 5*time.Second {
		t.Errorf("loss %v", l)
	}
	t.Logf("detected: %v", r.Losses[0])
}

// TestWatchCountsClusterRemoval: a whole cluster leaving CDS is a loss of
// each of its kept endpoints, even though no assignment without them
// arrives; it ends when the cluster is back and its endpoints assigned.
func TestWatchCountsClusterRemoval(t *testing.T) {
	f := meshWithAddresses()
	p := dialFake(t, f)
	name := "outbound|5432||pg-a.service.consul"
	kept := map[string][]string{name: {"10.0.1.1:5432"}, "outbound|8080||web.service.consul": {"10.0.0.1:8080"}}
	_, base := p.Events(0)
	w := p.Watch()
	var without []*cluster.Cluster
	for _, c := range f.clusters {
		if c.Name != name {
			without = append(without, c)
		}
	}
	f.pushCDS <- without
	waitEvent(t, p, base, func(e EDSEvent) bool { return e.Cluster == name && e.Removed })
	f.pushCDS <- f.clusters // back: the proxy subscribes again and the fake assigns it
	waitEvent(t, p, base, func(e EDSEvent) bool { return e.Cluster == name && len(e.Endpoints) > 0 })
	r := w.Report(kept)
	if r.Broken != nil {
		t.Fatalf("report %+v", r)
	}
	if len(r.Losses) != 1 {
		t.Fatalf("losses %v, want the cluster's removal", r.Losses)
	}
	if l := r.Losses[0]; l.Cluster != name || l.Endpoint != "10.0.1.1:5432" || !l.ClusterRemoved || l.For <= 0 {
		t.Errorf("loss %v", l)
	}
	t.Logf("detected: %v", r.Losses[0])
}

func TestWatchNoLoss(t *testing.T) {
	f := meshWithAddresses()
	p := dialFake(t, f)
	name := "outbound|5432||pg-a.service.consul"
	_, base := p.Events(0)
	w := p.Watch()
	f.push <- cla(name, "10.0.1.1:5432", "10.0.1.2:5432")
	waitEvents(t, p, base+1)
	if r := w.Report(map[string][]string{name: {"10.0.1.1:5432"}}); len(r.Losses) != 0 || r.Assignments != 1 {
		t.Fatalf("report %+v", r)
	}
}

// waitEvent waits until an event from index from on matches.
func waitEvent(t *testing.T, p *Proxy, from int, match func(EDSEvent) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		evs, _ := p.Events(from)
		if slices.ContainsFunc(evs, match) {
			return
		}
		select {
		case <-p.Changed():
		case <-deadline:
			t.Fatalf("no matching event in %+v", evs)
		}
	}
}

// waitEvents waits until n assignments were received in all.
func waitEvents(t *testing.T, p *Proxy, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if _, got := p.Events(0); got >= n {
			return
		}
		select {
		case <-p.Changed():
		case <-deadline:
			_, got := p.Events(0)
			t.Fatalf("%d assignments, want %d", got, n)
		}
	}
}

// TestProxyTakesLargeReplies: istiod's CDS reply to a sidecar at 10k
// services is over gRPC's default 4 MiB receive limit (4.8 MB measured);
// the proxy must take it.
func TestProxyTakesLargeReplies(t *testing.T) {
	f := meshWithAddresses()
	pad := strings.Repeat("x", 230)
	for i := range 20000 { // 5 MB of cluster names
		// STATIC, so that the proxy's EDS request stays small: only the
		// reply's size matters here.
		f.clusters = append(f.clusters, &cluster.Cluster{Name: fmt.Sprintf("outbound|%d||s%05d.%s.example.com", 8000+i%1000, i, pad),
			ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC}})
	}
	p, err := DialProxy(ProxyConfig{Address: serve(t, f), Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(p.View().Clusters); got != len(f.clusters) {
		t.Fatalf("%d clusters, want %d", got, len(f.clusters))
	}
}

// TestTCPClusters: a listener's TCP proxies name the cluster that owns its
// address and port (which entry istiod let keep a shared one).
func TestTCPClusters(t *testing.T) {
	l := listenerOn("10.96.0.1", 443)
	one, err := anypb.New(&tcpproxy.TcpProxy{ClusterSpecifier: &tcpproxy.TcpProxy_Cluster{Cluster: "outbound|443||kubernetes.default.svc.cluster.local"}})
	if err != nil {
		t.Fatal(err)
	}
	split, err := anypb.New(&tcpproxy.TcpProxy{ClusterSpecifier: &tcpproxy.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxy.TcpProxy_WeightedCluster{
		Clusters: []*tcpproxy.TcpProxy_WeightedCluster_ClusterWeight{{Name: "a", Weight: 1}, {Name: "b", Weight: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := anypb.New(&core.Address{})
	l.FilterChains = []*listener.FilterChain{{Filters: []*listener.Filter{
		{Name: "istio.stats", ConfigType: &listener.Filter_TypedConfig{TypedConfig: other}},
		{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listener.Filter_TypedConfig{TypedConfig: one}},
	}}}
	l.DefaultFilterChain = &listener.FilterChain{Filters: []*listener.Filter{
		{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listener.Filter_TypedConfig{TypedConfig: split}},
	}}
	if got := tcpClusters(l); !slices.Equal(got, []string{"outbound|443||kubernetes.default.svc.cluster.local", "a", "b"}) {
		t.Errorf("clusters %q", got)
	}
}
