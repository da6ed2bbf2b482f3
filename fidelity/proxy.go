package fidelity

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// The xDS types a sidecar asks istiod for. NDS is Istio's own: the name
// table its agent answers DNS from when DNS capture is on
// (pilot/pkg/xds/nds.go).
const (
	TypeCluster   = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	TypeEndpoint  = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	TypeListener  = "type.googleapis.com/envoy.config.listener.v3.Listener"
	TypeRoute     = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	TypeNameTable = "type.googleapis.com/istio.networking.nds.v1.NameTable"
)

// ProxyConfig says who the checker pretends to be.
type ProxyConfig struct {
	// Address is istiod's xDS address: its plaintext gRPC port (15010 in a
	// cluster, --grpcAddr), which answers without credentials. For an istiod
	// that serves only 15012, pass DialOptions with TLS credentials and a
	// bearer token (see README, "Checking what a sidecar receives").
	Address string
	// Namespace is the namespace the sidecar runs in: exportTo and Sidecar
	// resources decide what it sees.
	Namespace string
	// IP is the sidecar's own address (default 192.0.2.10, TEST-NET-1, which
	// no registry should hold).
	IP string
	// ClusterID is istiod's cluster name (default "Kubernetes").
	ClusterID string
	// DialOptions replace the default plaintext credentials.
	DialOptions []grpc.DialOption
}

func (c *ProxyConfig) setDefaults() {
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if c.IP == "" {
		c.IP = "192.0.2.10"
	}
	if c.ClusterID == "" {
		c.ClusterID = "Kubernetes"
	}
}

// node is what a sidecar injected with DNS capture and automatic address
// allocation sends. The metadata keys are istiod's (pkg/model/proxy.go,
// NodeMetadata): ISTIO_META_DNS_CAPTURE=true and
// ISTIO_META_DNS_AUTO_ALLOCATE=true in the agent's environment become
// DNS_CAPTURE and DNS_AUTO_ALLOCATE; booleans travel as strings. istiod reads
// the proxy's type, IP and namespace from the node ID.
func (c ProxyConfig) node() (*core.Node, error) {
	meta, err := structpb.NewStruct(map[string]any{
		"NAMESPACE":         c.Namespace,
		"CLUSTER_ID":        c.ClusterID,
		"INSTANCE_IPS":      c.IP,
		"INTERCEPTION_MODE": "REDIRECT",
		"DNS_CAPTURE":       "true",
		"DNS_AUTO_ALLOCATE": "true",
		"WORKLOAD_NAME":     "registry-adapter-check",
		"LABELS":            map[string]any{"app": "registry-adapter-check"},
	})
	if err != nil {
		return nil, err
	}
	return &core.Node{
		Id:       fmt.Sprintf("sidecar~%s~registry-adapter-check.%s~%s.svc.cluster.local", c.IP, c.Namespace, c.Namespace),
		Metadata: meta,
	}, nil
}

// EDSEvent is one ClusterLoadAssignment as the sidecar received it, or an
// EDS cluster leaving the sidecar's clusters (Removed, no endpoints): a
// sidecar sends nothing to the endpoints of a cluster it no longer has.
type EDSEvent struct {
	At        time.Time
	Cluster   string
	Endpoints []string // "address:port" of every endpoint not marked unhealthy, sorted
	Removed   bool
}

// Proxy is a sidecar's ADS stream to istiod, held open. It subscribes to
// clusters, listeners and the name table, to the endpoints of every EDS
// cluster and the HTTP route tables (RDS) of every listener istiod gives
// it, and acknowledges every reply as Envoy does. It
// does not reconnect: a broken stream is reported by Err, because a watcher
// must know that it missed events.
type Proxy struct {
	cfg    ProxyConfig
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every reply
	err        error
	clusters   map[string]*cluster.Cluster
	edsNames   []string // the EDS resources subscribed to, sorted
	edsPending bool     // the EDS subscription changed and istiod has not answered since
	endpoints  map[string]*endpoint.ClusterLoadAssignment
	listeners  map[string]*listener.Listener
	rdsNames   []string // the route tables subscribed to, sorted
	rdsPending bool
	routes     map[string]*route.RouteConfiguration
	names      map[string][]string
	answered   map[string]bool
	replies    map[string]int
	events     []EDSEvent
}

// maxReply bounds one reply from istiod. Envoy has no such limit, and
// gRPC's default (4 MiB) is below what istiod sends a sidecar at 10k
// services (measured: a 4.8 MB CDS reply).
const maxReply = 1 << 30

// dialOptions are the configured options (plaintext by default) with the
// reply limit raised.
func (cfg ProxyConfig) dialOptions() []grpc.DialOption {
	opts := slices.Clone(cfg.DialOptions)
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxReply)))
}

// DialProxy connects as a sidecar and starts the stream. Use Wait before
// reading a View, and Close when done.
func DialProxy(cfg ProxyConfig) (*Proxy, error) {
	cfg.setDefaults()
	opts := cfg.dialOptions()
	node, err := cfg.node()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cfg.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("fidelity: xDS client for %s: %w", cfg.Address, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		cfg: cfg, conn: conn, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{}),
		clusters: map[string]*cluster.Cluster{}, endpoints: map[string]*endpoint.ClusterLoadAssignment{},
		listeners: map[string]*listener.Listener{}, names: map[string][]string{}, routes: map[string]*route.RouteConfiguration{},
		answered: map[string]bool{}, replies: map[string]int{},
	}
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err == nil {
		for _, typ := range []string{TypeCluster, TypeListener, TypeNameTable} {
			if err = stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: typ}); err != nil {
				break
			}
		}
	}
	if err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("fidelity: ADS stream to %s: %w", cfg.Address, err)
	}
	go p.run(stream, node)
	return p, nil
}

// Close ends the stream.
func (p *Proxy) Close() {
	p.cancel()
	<-p.done
	p.conn.Close()
}

// run receives replies and sends the acknowledgements and EDS subscriptions
// (the only sender once DialProxy returned).
func (p *Proxy) run(stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, node *core.Node) {
	defer close(p.done)
	for {
		resp, err := stream.Recv()
		if err != nil {
			p.fail(fmt.Errorf("fidelity: xDS stream from istiod at %s: %w", p.cfg.Address, err))
			return
		}
		subscribe, err := p.apply(resp, time.Now())
		ack := &discovery.DiscoveryRequest{Node: node, TypeUrl: resp.TypeUrl, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}
		if err != nil {
			// A reply this client cannot read is NACKed, as Envoy would, and
			// the stream is reported broken: the view is no longer istiod's.
			ack.ErrorDetail = status.New(codes.InvalidArgument, err.Error()).Proto()
			p.fail(err)
		}
		switch resp.TypeUrl {
		case TypeEndpoint:
			p.mu.Lock()
			ack.ResourceNames = p.edsNames
			p.mu.Unlock()
		case TypeRoute:
			p.mu.Lock()
			ack.ResourceNames = p.rdsNames
			p.mu.Unlock()
		}
		if err := stream.Send(ack); err != nil {
			p.fail(fmt.Errorf("fidelity: ack %s: %w", resp.TypeUrl, err))
			return
		}
		if subscribe.names != nil {
			if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: subscribe.typ, ResourceNames: subscribe.names}); err != nil {
				p.fail(fmt.Errorf("fidelity: subscribe to %s: %w", subscribe.typ, err))
				return
			}
		}
	}
}

func (p *Proxy) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// subscription is a changed set of resource names to ask for, of a type a
// sidecar asks for by name (EDS, RDS); names is nil for no change.
type subscription struct {
	typ   string
	names []string
}

// apply takes one reply into the view. It returns the new EDS subscription
// when the clusters changed which endpoints a sidecar must ask for, and the
// new RDS subscription when the listeners changed which route tables.
func (p *Proxy) apply(resp *discovery.DiscoveryResponse, at time.Time) (subscription, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer func() {
		close(p.changed)
		p.changed = make(chan struct{})
	}()
	p.replies[resp.TypeUrl]++
	p.answered[resp.TypeUrl] = true
	switch resp.TypeUrl {
	case TypeCluster:
		clusters := map[string]*cluster.Cluster{}
		var eds []string
		for _, r := range resp.Resources {
			c := &cluster.Cluster{}
			if err := r.UnmarshalTo(c); err != nil {
				return subscription{}, fmt.Errorf("fidelity: decode cluster: %w", err)
			}
			clusters[c.Name] = c
			if c.GetType() == cluster.Cluster_EDS {
				eds = append(eds, edsName(c))
			}
		}
		p.clusters = clusters
		slices.Sort(eds)
		if slices.Equal(eds, p.edsNames) {
			return subscription{}, nil
		}
		for name := range p.endpoints {
			if _, ok := slices.BinarySearch(eds, name); !ok {
				delete(p.endpoints, name)
			}
		}
		for _, name := range p.edsNames {
			if _, ok := slices.BinarySearch(eds, name); !ok {
				p.events = append(p.events, EDSEvent{At: at, Cluster: name, Removed: true})
			}
		}
		p.edsNames = eds
		p.edsPending = true
		if eds == nil {
			eds = []string{} // nil would be a wildcard subscription
		}
		return subscription{TypeEndpoint, eds}, nil
	case TypeEndpoint:
		p.edsPending = false
		// istiod may send only the assignments that changed (allowed for
		// EDS); the others stand.
		for _, r := range resp.Resources {
			cla := &endpoint.ClusterLoadAssignment{}
			if err := r.UnmarshalTo(cla); err != nil {
				return subscription{}, fmt.Errorf("fidelity: decode endpoints: %w", err)
			}
			p.endpoints[cla.ClusterName] = cla
			healthy, _ := lbEndpoints(cla)
			p.events = append(p.events, EDSEvent{At: at, Cluster: cla.ClusterName, Endpoints: healthy})
		}
	case TypeListener:
		listeners := map[string]*listener.Listener{}
		var rds []string
		for _, r := range resp.Resources {
			l := &listener.Listener{}
			if err := r.UnmarshalTo(l); err != nil {
				return subscription{}, fmt.Errorf("fidelity: decode listener: %w", err)
			}
			listeners[l.Name] = l
			rds = append(rds, routeTables(l)...)
		}
		p.listeners = listeners
		slices.Sort(rds)
		rds = slices.Compact(rds)
		if slices.Equal(rds, p.rdsNames) {
			return subscription{}, nil
		}
		for name := range p.routes {
			if _, ok := slices.BinarySearch(rds, name); !ok {
				delete(p.routes, name)
			}
		}
		p.rdsNames = rds
		p.rdsPending = true
		if rds == nil {
			rds = []string{}
		}
		return subscription{TypeRoute, rds}, nil
	case TypeRoute:
		p.rdsPending = false
		for _, r := range resp.Resources {
			rc := &route.RouteConfiguration{}
			if err := r.UnmarshalTo(rc); err != nil {
				return subscription{}, fmt.Errorf("fidelity: decode route table: %w", err)
			}
			p.routes[rc.Name] = rc
		}
	case TypeNameTable:
		names := map[string][]string{}
		for _, r := range resp.Resources {
			t, err := decodeNameTable(r.Value)
			if err != nil {
				return subscription{}, err
			}
			maps.Copy(names, t)
		}
		p.names = names
	}
	return subscription{}, nil
}

// routeTables are the RDS route tables a listener's HTTP connection
// managers name.
func routeTables(l *listener.Listener) []string {
	var out []string
	chains := slices.Clone(l.GetFilterChains())
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(chains, d)
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			m := &hcm.HttpConnectionManager{}
			if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(m) != nil {
				continue
			}
			if n := m.GetRds().GetRouteConfigName(); n != "" {
				out = append(out, n)
			}
		}
	}
	return out
}

func sidecarRoute(r *route.Route) SidecarHTTPRoute {
	out := SidecarHTTPRoute{Clusters: map[string]uint32{}}
	m := r.GetMatch()
	switch {
	case m.GetPrefix() != "" || m.GetPathSpecifier() == nil:
		out.Match = "prefix:" + m.GetPrefix()
	case m.GetPath() != "":
		out.Match = "path:" + m.GetPath()
	case m.GetSafeRegex() != nil:
		out.Match = "regex:" + m.GetSafeRegex().GetRegex()
	case m.GetPathSeparatedPrefix() != "":
		out.Match = "prefix:" + m.GetPathSeparatedPrefix()
	}
	var headers []string
	for _, h := range m.GetHeaders() {
		headers = append(headers, h.GetName())
	}
	if len(headers) > 0 {
		out.Match += " headers:" + strings.Join(headers, ",")
	}
	a := r.GetRoute()
	if c := a.GetCluster(); c != "" {
		out.Clusters[c] = 0
	}
	for _, wc := range a.GetWeightedClusters().GetClusters() {
		out.Clusters[wc.GetName()] = wc.GetWeight().GetValue()
	}
	return out
}

func edsName(c *cluster.Cluster) string {
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.Name
}

// lbEndpoints lists a load assignment's endpoints as "address:port", those
// a sidecar would send traffic to and those marked unhealthy or draining.
func lbEndpoints(cla *endpoint.ClusterLoadAssignment) (healthy, unhealthy []string) {
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				continue
			}
			s := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
			switch e.GetHealthStatus() {
			case core.HealthStatus_UNHEALTHY, core.HealthStatus_DRAINING, core.HealthStatus_TIMEOUT:
				unhealthy = append(unhealthy, s)
			default:
				healthy = append(healthy, s)
			}
		}
	}
	slices.Sort(healthy)
	slices.Sort(unhealthy)
	return healthy, unhealthy
}

// Err is why the stream ended, or nil while it is open.
func (p *Proxy) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Changed is closed at the next reply (or when the stream fails).
func (p *Proxy) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

func (p *Proxy) syncedLocked() bool {
	for _, t := range []string{TypeCluster, TypeListener, TypeNameTable} {
		if !p.answered[t] {
			return false
		}
	}
	if p.edsPending || p.rdsPending {
		return false
	}
	for _, n := range p.edsNames {
		if _, ok := p.endpoints[n]; !ok {
			return false
		}
	}
	for _, n := range p.rdsNames {
		if _, ok := p.routes[n]; !ok {
			return false
		}
	}
	return true
}

// Wait blocks until istiod answered every type and the endpoints of every
// cluster, or ctx ends, or the stream fails.
func (p *Proxy) Wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		synced, err, changed := p.syncedLocked(), p.err, p.changed
		p.mu.Unlock()
		switch {
		case err != nil:
			return err
		case synced:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fidelity: istiod at %s did not answer every type a sidecar asks for: %w", p.cfg.Address, ctx.Err())
		case <-changed:
		}
	}
}

// Replies counts istiod's replies by type URL since the stream started.
func (p *Proxy) Replies() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.replies)
}

// Events returns the endpoint assignments received from index from on, and
// the index to ask from next time.
func (p *Proxy) Events(from int) ([]EDSEvent, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if from > len(p.events) {
		from = len(p.events)
	}
	return slices.Clone(p.events[from:]), len(p.events)
}

// SidecarView is what a sidecar was given: its outbound clusters with their
// endpoints, its listeners, its HTTP route tables and its DNS name table.
type SidecarView struct {
	Clusters  map[string]SidecarCluster
	Listeners map[string]SidecarListener
	Routes    map[string][]SidecarVirtualHost // route table name -> virtual hosts
	Names     map[string][]string             // host -> IPs, from NDS
}

// SidecarVirtualHost is one virtual host of an HTTP route table.
type SidecarVirtualHost struct {
	Name    string
	Domains []string
	Routes  []SidecarHTTPRoute
}

// SidecarHTTPRoute is one HTTP route: what it matches and where it sends
// requests.
type SidecarHTTPRoute struct {
	// Match is "prefix:/x", "path:/x" or "regex:..." for the path, then
	// " headers:<names>" when it matches headers.
	Match string
	// Clusters are the clusters requests go to, with their weights (0 for a
	// route to one cluster).
	Clusters map[string]uint32
}

// SidecarCluster is one cluster and where it sends traffic.
type SidecarCluster struct {
	Name      string
	Type      string   // EDS, STRICT_DNS, ORIGINAL_DST...
	Endpoints []string // "address:port", sorted
	Unhealthy []string // endpoints istiod sent marked unhealthy or draining
	// Details are each endpoint's locality and weight, by "address:port".
	Details map[string]SidecarEndpoint
	// SubjectAltNames are the identities the cluster's Istio mutual TLS
	// (the tlsMode-istio transport socket) accepts from its endpoints.
	SubjectAltNames []string
}

// SidecarEndpoint is what a load assignment says about one endpoint.
type SidecarEndpoint struct {
	// Locality is "region/zone/subzone" as Istio writes a locality, without
	// trailing empty parts: the locality of the LocalityLbEndpoints the
	// endpoint is in.
	Locality string
	// Weight is the endpoint's load_balancing_weight (istiod sends 1 for an
	// instance without a weight).
	Weight uint32
}

// SidecarListener is one listener's bind address, and where its TCP
// traffic goes.
type SidecarListener struct {
	Name    string
	Address string
	Port    uint32
	// TCPClusters are the clusters its TCP proxies forward to, in filter
	// chain order: for an outbound TCP listener of one service, that
	// service's cluster (which entry owns a shared address and port).
	TCPClusters []string
}

// tcpClusters lists the clusters l's TCP proxy filters forward to.
func tcpClusters(l *listener.Listener) []string {
	var out []string
	chains := l.GetFilterChains()
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(slices.Clip(chains), dc)
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			tp := &tcpproxy.TcpProxy{}
			if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(tp) != nil {
				continue
			}
			if c := tp.GetCluster(); c != "" {
				out = append(out, c)
			}
			for _, wc := range tp.GetWeightedClusters().GetClusters() {
				out = append(out, wc.GetName())
			}
		}
	}
	return out
}

// View is the sidecar's configuration now.
func (p *Proxy) View() SidecarView {
	p.mu.Lock()
	defer p.mu.Unlock()
	v := SidecarView{Clusters: map[string]SidecarCluster{}, Listeners: map[string]SidecarListener{}, Routes: map[string][]SidecarVirtualHost{}, Names: map[string][]string{}}
	for name, rc := range p.routes {
		for _, vh := range rc.GetVirtualHosts() {
			sv := SidecarVirtualHost{Name: vh.GetName(), Domains: slices.Clone(vh.GetDomains())}
			for _, r := range vh.GetRoutes() {
				sv.Routes = append(sv.Routes, sidecarRoute(r))
			}
			v.Routes[name] = append(v.Routes[name], sv)
		}
	}
	for name, c := range p.clusters {
		sc := SidecarCluster{Name: name, Type: c.GetType().String()}
		cla := c.GetLoadAssignment() // DNS clusters carry their endpoints inline
		if c.GetType() == cluster.Cluster_EDS {
			cla = p.endpoints[edsName(c)]
		}
		sc.Endpoints, sc.Unhealthy = lbEndpoints(cla)
		sc.Details = endpointDetails(cla)
		sc.SubjectAltNames = istioMutualSANs(c)
		v.Clusters[name] = sc
	}
	for name, l := range p.listeners {
		sa := l.GetAddress().GetSocketAddress()
		v.Listeners[name] = SidecarListener{Name: name, Address: sa.GetAddress(), Port: sa.GetPortValue(), TCPClusters: tcpClusters(l)}
	}
	for h, ips := range p.names {
		v.Names[h] = slices.Clone(ips)
	}
	return v
}

// endpointDetails reads each endpoint's locality and weight.
func endpointDetails(cla *endpoint.ClusterLoadAssignment) map[string]SidecarEndpoint {
	out := map[string]SidecarEndpoint{}
	for _, l := range cla.GetEndpoints() {
		loc := strings.TrimRight(strings.Join([]string{l.GetLocality().GetRegion(), l.GetLocality().GetZone(), l.GetLocality().GetSubZone()}, "/"), "/")
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				continue
			}
			out[fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())] = SidecarEndpoint{Locality: loc, Weight: e.GetLoadBalancingWeight().GetValue()}
		}
	}
	return out
}

// istioMutualSANs lists the subject alt names that the cluster's
// tlsMode-istio transport socket match verifies, sorted.
func istioMutualSANs(c *cluster.Cluster) []string {
	var out []string
	for _, m := range c.GetTransportSocketMatches() {
		if m.GetMatch().GetFields()["tlsMode"].GetStringValue() != "istio" {
			continue
		}
		ctx := &tlsv3.UpstreamTlsContext{}
		if err := m.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
			continue
		}
		vc := ctx.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext()
		for _, san := range vc.GetMatchTypedSubjectAltNames() {
			out = append(out, san.GetMatcher().GetExact()+san.GetMatcher().GetPrefix())
		}
		for _, san := range vc.GetMatchSubjectAltNames() {
			out = append(out, san.GetExact()+san.GetPrefix())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
