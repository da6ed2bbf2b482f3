// Package adsc_test checks the adapter against Istio's own MCP-over-xDS
// client, configured exactly as istiod configures it for an `xds://` entry of
// meshConfig.configSources (pilot/pkg/bootstrap/configcontroller.go,
// initConfigSources, case XDS): pkg/adsc with ConfigInitialRequests(), node
// metadata GENERATOR=api, istiod's keepalive dial option and plaintext
// credentials, feeding a validating in-memory config store
// (pilot/pkg/config/memory) whose HasSynced is the client's.
//
// The server side is the production path: a test source -> adapter.Adapter
// -> server.Cache -> server.Server on a loopback listener.
package adsc_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"istio.io/istio/pilot/pkg/config/memory"
	pilotmodel "istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/adsc"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/gvk"
	"istio.io/istio/pkg/keepalive"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/vip"
)

const (
	sourceName = "dc1"
	// waitFor bounds every wait on an event. Generous: the race detector
	// and a busy 2-core machine slow everything down.
	waitFor = 20 * time.Second
	// quietWindow is how long a negative ("nothing was sent") is observed,
	// after the positive precondition (the client's requests reached the
	// server) was established by an event.
	quietWindow = 300 * time.Millisecond
)

// --- waiting helpers ---------------------------------------------------------

// eventually polls cond until it returns nil or timeout passes, then fails
// with the last error cond returned.
func eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// consistently fails if cond returns an error at any poll during window.
func consistently(t testing.TB, window time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		if err := cond(); err != nil {
			t.Fatalf("condition broken within %s: %v", window, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// --- a scripted source ---------------------------------------------------------

// scriptedSource implements sources.Source: it sends exactly the batches the
// test hands it, and nothing before the first one (a registry still loading).
type scriptedSource struct {
	batches chan []model.Group
}

var _ sources.Source = (*scriptedSource)(nil)

func newScriptedSource() *scriptedSource {
	return &scriptedSource{batches: make(chan []model.Group)}
}

func (s *scriptedSource) Run(ctx context.Context, out chan<- []model.Group) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case b := <-s.batches:
			select {
			case out <- b:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// send hands one batch to the adapter (blocks until the source took it).
func (s *scriptedSource) send(t testing.TB, groups ...model.Group) {
	t.Helper()
	select {
	case s.batches <- groups:
	case <-time.After(waitFor):
		t.Fatal("the adapter did not take the source's batch")
	}
}

func group(svc model.Service) model.Group {
	return model.Group{Scope: svc.Name, Services: []model.Service{svc}}
}

func removed(scope string) model.Group { return model.Group{Scope: scope} }

// --- the adapter under test ----------------------------------------------------

type adapterEnv struct {
	src  *scriptedSource
	srv  *server.Server
	addr string
	opts convert.Options
}

// startAdapter runs source -> adapter -> cache -> xDS server on 127.0.0.1:0,
// as cmd/registry-adapter wires them, and stops everything at cleanup.
func startAdapter(t *testing.T, opts convert.Options) *adapterEnv {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	cache := server.NewCache(nil)
	cfg := server.Config{Listen: "127.0.0.1:0"}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, cache, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	src := newScriptedSource()
	ad := adapter.New([]adapter.NamedSource{{
		Name: sourceName, Source: src, Reporter: sources.NewReporter(sourceName, nil),
	}}, adapter.Settings{
		Output: opts,
		// Short windows keep the test fast; the deletion guard keeps its
		// production defaults (the fixtures are below its minimum size).
		Debounce: adapter.DebounceConfig{Quiet: 10 * time.Millisecond, Max: 100 * time.Millisecond},
	}, cache, nil, log)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	serveErr := make(chan error, 1)
	go func() { defer wg.Done(); serveErr <- srv.Serve(ctx, lis) }()
	go func() { defer wg.Done(); _ = ad.Run(ctx) }()
	// Registered first, so it runs last: clients are closed before the
	// server stops (and no goroutine logs after the test ends).
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if err := <-serveErr; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &adapterEnv{src: src, srv: srv, addr: lis.Addr().String(), opts: opts}
}

// --- istiod's config-source client ---------------------------------------------

type event struct {
	kind    string
	name    string // namespace/name
	event   pilotmodel.Event
	version string
}

// istiodClient is the pair istiod builds per xds:// config source.
type istiodClient struct {
	mcp *adsc.ADSC
	ctl *memory.Controller

	mu      sync.Mutex
	events  []event
	replies map[string]int // type URL -> responses received
}

// connectLikeIstiod mirrors initConfigSources' XDS case in
// pilot/pkg/bootstrap/configcontroller.go, with istiod's defaults for a pod
// named istiod-test in istio-system without a revision, and a configSource
// without tlsSettings (getTransportCredentials: insecure).
func connectLikeIstiod(t *testing.T, addr string) *istiodClient {
	t.Helper()
	const (
		namespace = "istio-system" // args.Namespace
		podName   = "istiod-test"  // args.PodName
		revision  = ""             // args.Revision
	)
	xdsMCP, err := adsc.New(addr, &adsc.ADSConfig{
		InitialDiscoveryRequests: adsc.ConfigInitialRequests(),
		Config: adsc.Config{
			Namespace: namespace,
			Workload:  podName,
			Revision:  revision,
			Meta: pilotmodel.NodeMetadata{
				Generator:     "api",
				IstioRevision: revision,
			}.ToStruct(),
			GrpcOpts: []grpc.DialOption{
				keepalive.DefaultOption().ConvertToClientOption(),
				grpc.WithTransportCredentials(insecure.NewCredentials()),
			},
		},
	})
	if err != nil {
		t.Fatalf("adsc.New: %v", err)
	}
	store := memory.Make(collections.Pilot)
	configController := memory.NewController(store)
	configController.RegisterHasSyncedHandler(xdsMCP.HasSynced)
	xdsMCP.Store = configController

	c := &istiodClient{mcp: xdsMCP, ctl: configController, replies: map[string]int{}}
	// What istiod's serviceentry controller does: watch both kinds.
	for _, k := range []config.GroupVersionKind{gvk.ServiceEntry, gvk.WorkloadEntry} {
		configController.RegisterEventHandler(k, func(_, cur config.Config, ev pilotmodel.Event) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.events = append(c.events, event{
				kind: cur.GroupVersionKind.Kind, name: cur.Namespace + "/" + cur.Name, event: ev, version: cur.ResourceVersion,
			})
		})
	}

	stop := make(chan struct{})
	drained := make(chan struct{})
	// adsc offers every response on XDSUpdates without blocking; reading
	// them only observes which types were answered.
	go func() {
		defer close(drained)
		for {
			select {
			case msg := <-xdsMCP.XDSUpdates:
				if msg != nil {
					c.mu.Lock()
					c.replies[msg.TypeUrl]++
					c.mu.Unlock()
				}
			case <-stop:
				return
			}
		}
	}()
	if err := xdsMCP.Run(); err != nil {
		t.Fatalf("MCP: failed running %v", err)
	}
	// istiod runs every config store it collected.
	go configController.Run(stop)
	t.Cleanup(func() {
		xdsMCP.Close()
		close(stop)
		<-drained
	})
	return c
}

// missingReplies names the requested types c has no reply for.
func missingReplies(c *istiodClient, requested []*discovery.DiscoveryRequest) error {
	got := c.repliedTypes()
	var missing []string
	for _, r := range requested {
		if got[r.TypeUrl] == 0 {
			missing = append(missing, r.TypeUrl)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no reply for %v", missing)
	}
	return nil
}

// synced is istiod's readiness condition for this config source.
func (c *istiodClient) synced() error {
	if !c.mcp.HasSynced() {
		return errors.New("adsc: not every requested type was answered")
	}
	if !c.ctl.HasSynced() {
		return errors.New("memory config controller not synced")
	}
	return nil
}

func (c *istiodClient) repliedTypes() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.replies)
}

// eventsSince returns the store events recorded from index i on, and the
// current count.
func (c *istiodClient) eventsSince(i int) ([]event, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events[i:]), len(c.events)
}

func (c *istiodClient) eventCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// waitEvent waits for an event of kind on name (namespace/name), recorded at
// index from or later.
func (c *istiodClient) waitEvent(t *testing.T, from int, kind, name string, ev pilotmodel.Event) {
	t.Helper()
	eventually(t, waitFor, func() error {
		evs, _ := c.eventsSince(from)
		for _, e := range evs {
			if e.kind == kind && e.name == name && e.event == ev {
				return nil
			}
		}
		return fmt.Errorf("no %s event for %s %s; got %v", ev, kind, name, evs)
	})
}

// --- expected state ------------------------------------------------------------

// want maps a kind to the resources convert produces, by namespace/name.
type want map[config.GroupVersionKind]map[string]*served.Resource

var kindGVK = map[served.Kind]config.GroupVersionKind{
	served.KindServiceEntry:  gvk.ServiceEntry,
	served.KindWorkloadEntry: gvk.WorkloadEntry,
}

// expect converts services the way the adapter does for a single source.
func expect(t *testing.T, opts convert.Options, svcs ...model.Service) want {
	t.Helper()
	w := want{gvk.ServiceEntry: {}, gvk.WorkloadEntry: {}}
	// Hosts without addresses get one from the adapter's allocator, which
	// depends on the set of hosts: a fresh allocator over the same set
	// gives the same addresses (a few hosts in a /6 never collide).
	cfg, err := opts.Addresses.Config()
	if err != nil {
		t.Fatal(err)
	}
	vips, err := vip.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hosts := make([]string, 0, len(svcs))
	for _, svc := range svcs {
		hosts = append(hosts, svc.Host)
	}
	vips.Sync(hosts, func(string) bool { return true })
	for _, svc := range svcs {
		res, rejected := convert.ServiceAt(svc.Host, vips.Addresses(svc.Host), []convert.Contribution{{Source: sourceName, Service: svc}}, opts)
		if len(rejected) > 0 {
			t.Fatalf("fixture %s has rejections: %v", svc.Host, rejected)
		}
		for _, r := range res {
			w[kindGVK[r.Kind]][r.Key()] = r
		}
	}
	return w
}

func (w want) get(t *testing.T, k config.GroupVersionKind, name string) *served.Resource {
	t.Helper()
	r := w[k][name]
	if r == nil {
		t.Fatalf("fixture has no %s %s; has %v", k.Kind, name, slices.Sorted(maps.Keys(w[k])))
	}
	return r
}

// diff compares the store with w: exactly the same names per kind, and for
// each the labels, annotations, spec, version (ResourceVersion) and
// creation time convert produced. Every other kind must be empty.
func (c *istiodClient) diff(w want, opts convert.Options) error {
	var errs []error
	for _, s := range collections.Pilot.All() {
		k := s.GroupVersionKind()
		got := c.ctl.List(k, "")
		exp := w[k]
		gotNames := make([]string, 0, len(got))
		for _, cfg := range got {
			gotNames = append(gotNames, cfg.Namespace+"/"+cfg.Name)
		}
		sort.Strings(gotNames)
		if wantNames := slices.Sorted(maps.Keys(exp)); !slices.Equal(gotNames, wantNames) {
			errs = append(errs, fmt.Errorf("%s: store has %v, want %v", k.Kind, gotNames, wantNames))
			continue
		}
		for _, cfg := range got {
			key := cfg.Namespace + "/" + cfg.Name
			r := exp[key]
			if cfg.GroupVersionKind != k {
				errs = append(errs, fmt.Errorf("%s %s: GroupVersionKind %v", k.Kind, key, cfg.GroupVersionKind))
			}
			if cfg.Namespace != r.Namespace || cfg.Name != r.Name {
				errs = append(errs, fmt.Errorf("%s %s: namespace/name %q/%q, want %q/%q", k.Kind, key, cfg.Namespace, cfg.Name, r.Namespace, r.Name))
			}
			if !maps.Equal(cfg.Labels, r.Labels) {
				errs = append(errs, fmt.Errorf("%s %s: labels %v, want %v", k.Kind, key, cfg.Labels, r.Labels))
			}
			if !maps.Equal(cfg.Annotations, r.Annotations) {
				errs = append(errs, fmt.Errorf("%s %s: annotations %v, want %v", k.Kind, key, cfg.Annotations, r.Annotations))
			}
			if cfg.ResourceVersion != r.Version {
				errs = append(errs, fmt.Errorf("%s %s: ResourceVersion %q, want %q", k.Kind, key, cfg.ResourceVersion, r.Version))
			}
			if !cfg.CreationTimestamp.Equal(opts.CreateTime) {
				errs = append(errs, fmt.Errorf("%s %s: creationTimestamp %s, want %s", k.Kind, key, cfg.CreationTimestamp, opts.CreateTime))
			}
			spec, ok := cfg.Spec.(proto.Message)
			if !ok || !proto.Equal(spec, r.Spec) {
				errs = append(errs, fmt.Errorf("%s %s: spec\n  got  %v\n  want %v", k.Kind, key, cfg.Spec, r.Spec))
			}
		}
	}
	return errors.Join(errs...)
}

// --- fixtures ------------------------------------------------------------------

func testOptions(mode convert.Mode) convert.Options {
	o := convert.Options{Namespace: "registry", Mode: mode}
	o.SetDefaults()
	return o
}

func webService(weight uint32, extra ...model.Instance) model.Service {
	return model.Service{
		Name: "web", Host: "web.service.consul",
		Ports:       []model.Port{{Number: 8080, Protocol: model.ProtocolHTTP}, {Number: 9090, Protocol: model.ProtocolGRPC}},
		Labels:      model.LabelsFromMap(map[string]string{"team": "frontend"}),
		Annotations: model.LabelsFromMap(map[string]string{"example.com/owner": "web-team"}),
		Instances: append([]model.Instance{
			{ID: "node1/web", Address: "10.0.0.1", Labels: model.LabelsFromMap(map[string]string{"version": "v1"}), Health: model.HealthPassing},
			{
				ID: "node2/web", Address: "10.0.0.2", Ports: model.TargetPortsFromMap(map[uint32]uint32{8080: 18080}),
				Labels: model.LabelsFromMap(map[string]string{"version": "v2"}), Locality: "us-east-1/us-east-1a", Network: "vpc-1",
				Weight: weight, Identity: "arn:aws:iam::1:role/web", Health: model.HealthPassing,
			},
		}, extra...),
	}
}

func dbService() model.Service {
	// A hostname endpoint: the ServiceEntry gets DNS resolution.
	return model.Service{
		Name: "db", Host: "db.service.consul",
		Ports:     []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}},
		Instances: []model.Instance{{ID: "n1/db", Address: "db-1.internal.example.com"}},
	}
}

func cacheService(tier string) model.Service {
	return model.Service{
		Name: "cache", Host: "cache.service.consul",
		Ports:     []model.Port{{Number: 6379, Protocol: model.ProtocolRedis}},
		Labels:    model.LabelsFromMap(map[string]string{"tier": tier}),
		Instances: []model.Instance{{ID: "n1/cache", Address: "10.0.1.1"}},
	}
}

func sentinelService() model.Service {
	return model.Service{
		Name: "sentinel", Host: "sentinel.service.consul",
		Ports:     []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}},
		Instances: []model.Instance{{ID: "n1/sentinel", Address: "10.0.9.9"}},
	}
}

// --- tests -----------------------------------------------------------------------

// TestIstiodConfigSourceClient walks one adapter through istiod's life cycle
// with Istio's own client: unsynced while the registry loads, the full state
// on the first reply, incremental changes, and a late second istiod.
func TestIstiodConfigSourceClient(t *testing.T) {
	opts := testOptions(convert.ModeWorkloadEntry)
	env := startAdapter(t, opts)
	se, we := gvk.ServiceEntry, gvk.WorkloadEntry
	seKind, weKind := se.Kind, we.Kind

	istiod := connectLikeIstiod(t, env.addr)
	requested := adsc.ConfigInitialRequests()

	t.Run("no reply before the source's first sync", func(t *testing.T) {
		// Precondition, by event: every initial request reached the server.
		eventually(t, waitFor, func() error {
			clients := env.srv.Clients()
			if len(clients) != 1 {
				return fmt.Errorf("%d clients connected", len(clients))
			}
			for _, r := range requested {
				if _, ok := clients[0].Types[r.TypeUrl]; !ok {
					return fmt.Errorf("no request for %s yet", r.TypeUrl)
				}
			}
			return nil
		})
		if got := env.srv.Clients()[0].NodeID; !strings.HasPrefix(got, "sidecar~") || !strings.Contains(got, "~istiod-test.istio-system~") {
			t.Errorf("node id %q is not istiod's", got)
		}
		consistently(t, quietWindow, func() error {
			if err := istiod.synced(); err == nil {
				return errors.New("client synced although the source has not delivered anything")
			}
			if got := istiod.repliedTypes(); len(got) > 0 {
				return fmt.Errorf("server replied before the first sync: %v", got)
			}
			for typ, ts := range env.srv.Clients()[0].Types {
				if ts.SentNonce != "" {
					return fmt.Errorf("server sent %s", typ)
				}
			}
			return nil
		})
	})

	initial := expect(t, opts, webService(7), dbService(), cacheService("gold"))
	env.src.send(t, group(webService(7)), group(dbService()), group(cacheService("gold")))

	t.Run("every requested type synced", func(t *testing.T) {
		eventually(t, waitFor, istiod.synced)
		if len(requested) != 16 {
			t.Errorf("ConfigInitialRequests has %d types, the protocol notes say 16", len(requested))
		}
		// adsc marks a type synced before it hands the reply to the
		// goroutine counting replies, so the count may lag a moment.
		eventually(t, waitFor, func() error { return missingReplies(istiod, requested) })
		got := istiod.repliedTypes()
		for typ := range got {
			if !slices.ContainsFunc(requested, func(r *discovery.DiscoveryRequest) bool { return r.TypeUrl == typ }) {
				t.Errorf("reply for %s, which was never requested", typ)
			}
		}
	})

	t.Run("full state decoded into the store", func(t *testing.T) {
		eventually(t, waitFor, func() error { return istiod.diff(initial, opts) })
		// Spot checks of what the diff covers, spelled out.
		web := istiod.ctl.Get(se, "web.service.consul", "registry")
		if web == nil {
			t.Fatal("registry/web.service.consul not in the store")
		}
		if web.Labels["team"] != "frontend" || web.Labels[served.LabelManagedBy] != served.ManagedByValue {
			t.Errorf("web labels %v", web.Labels)
		}
		if web.Annotations["example.com/owner"] != "web-team" || web.Annotations[convert.AnnotationSource] != sourceName {
			t.Errorf("web annotations %v", web.Annotations)
		}
		if n := len(istiod.ctl.List(we, "registry")); n != 4 {
			t.Errorf("%d WorkloadEntries, want 4 (web x2, db, cache)", n)
		}
	})

	webKey := "registry/web.service.consul"
	web1 := wantKeyFor(t, initial, we, "10.0.0.1")
	web2 := wantKeyFor(t, initial, we, "10.0.0.2")
	dbWE := wantKeyFor(t, initial, we, "db-1.internal.example.com")
	name := func(key string) (string, string) {
		ns, n, _ := strings.Cut(key, "/")
		return n, ns
	}
	rv := func(k config.GroupVersionKind, key string) string {
		n, ns := name(key)
		if c := istiod.ctl.Get(k, n, ns); c != nil {
			return c.ResourceVersion
		}
		return "<absent>"
	}

	t.Run("changes: update, delete, add; unchanged resources not re-stored", func(t *testing.T) {
		webSEBefore, web1Before := rv(se, webKey), rv(we, web1)
		mark := istiod.eventCount()

		// One batch: cache's labels change (ServiceEntry update), web2's
		// weight changes (WorkloadEntry update), web gains an instance
		// (WorkloadEntry add), db is gone (ServiceEntry and WorkloadEntry
		// delete). web's ServiceEntry and web1 stay the same.
		extra := model.Instance{ID: "node3/web", Address: "10.0.0.3", Health: model.HealthPassing}
		changed := expect(t, opts, webService(9, extra), cacheService("silver"))
		env.src.send(t, group(webService(9, extra)), group(cacheService("silver")), removed("db"))
		eventually(t, waitFor, func() error { return istiod.diff(changed, opts) })

		istiod.waitEvent(t, mark, seKind, "registry/cache.service.consul", pilotmodel.EventUpdate)
		istiod.waitEvent(t, mark, weKind, web2, pilotmodel.EventUpdate)
		istiod.waitEvent(t, mark, weKind, wantKeyFor(t, changed, we, "10.0.0.3"), pilotmodel.EventAdd)
		istiod.waitEvent(t, mark, seKind, "registry/db.service.consul", pilotmodel.EventDelete)
		istiod.waitEvent(t, mark, weKind, dbWE, pilotmodel.EventDelete)
		if got, want := rv(se, "registry/cache.service.consul"), changed.get(t, se, "registry/cache.service.consul").Version; got != want {
			t.Errorf("cache ServiceEntry ResourceVersion %q, want the new version %q", got, want)
		}

		// A later, unrelated change: once its events arrived, every event of
		// the batch above was delivered too (handlers see events in order).
		env.src.send(t, group(sentinelService()))
		sentinel := expect(t, opts, sentinelService())
		istiod.waitEvent(t, mark, seKind, "registry/sentinel.service.consul", pilotmodel.EventAdd)
		istiod.waitEvent(t, mark, weKind, wantKeyFor(t, sentinel, we, "10.0.9.9"), pilotmodel.EventAdd)

		evs, _ := istiod.eventsSince(mark)
		for _, e := range evs {
			if (e.kind == seKind && e.name == webKey) || (e.kind == weKind && e.name == web1) {
				t.Errorf("unchanged %s %s was re-stored: %v event", e.kind, e.name, e.event)
			}
		}
		if got := rv(se, webKey); got != webSEBefore {
			t.Errorf("unchanged web ServiceEntry ResourceVersion went %q -> %q", webSEBefore, got)
		}
		if got := rv(we, web1); got != web1Before {
			t.Errorf("unchanged WorkloadEntry %s ResourceVersion went %q -> %q", web1, web1Before, got)
		}
		maps.Copy(changed[se], sentinel[se])
		maps.Copy(changed[we], sentinel[we])
		if err := istiod.diff(changed, opts); err != nil {
			t.Error(err)
		}
		initial = changed
	})

	t.Run("a second istiod connecting later gets the full state", func(t *testing.T) {
		late := connectLikeIstiod(t, env.addr)
		eventually(t, waitFor, late.synced)
		eventually(t, waitFor, func() error { return late.diff(initial, opts) })
		eventually(t, waitFor, func() error { return missingReplies(late, requested) })
		if err := istiod.diff(initial, opts); err != nil {
			t.Errorf("first client drifted: %v", err)
		}
	})
}

// TestIstiodConfigSourceClientInline checks inline mode: endpoints inside the
// ServiceEntry, no WorkloadEntries, and an endpoint change updating the
// ServiceEntry.
func TestIstiodConfigSourceClientInline(t *testing.T) {
	opts := testOptions(convert.ModeInline)
	env := startAdapter(t, opts)
	istiod := connectLikeIstiod(t, env.addr)

	env.src.send(t, group(webService(7)), group(dbService()))
	eventually(t, waitFor, istiod.synced)
	w := expect(t, opts, webService(7), dbService())
	if len(w[gvk.WorkloadEntry]) != 0 {
		t.Fatalf("inline mode produced WorkloadEntries: %v", slices.Collect(maps.Keys(w[gvk.WorkloadEntry])))
	}
	eventually(t, waitFor, func() error { return istiod.diff(w, opts) })

	mark := istiod.eventCount()
	env.src.send(t, group(webService(3)))
	w2 := expect(t, opts, webService(3), dbService())
	eventually(t, waitFor, func() error { return istiod.diff(w2, opts) })
	istiod.waitEvent(t, mark, gvk.ServiceEntry.Kind, "registry/web.service.consul", pilotmodel.EventUpdate)
	c := istiod.ctl.Get(gvk.ServiceEntry, "web.service.consul", "registry")
	if c == nil {
		t.Fatal("web ServiceEntry missing")
	}
	if got := c.Spec.(proto.Message); !proto.Equal(got, w2.get(t, gvk.ServiceEntry, "registry/web.service.consul").Spec) {
		t.Errorf("web spec %v", got)
	}
}

// wantKeyFor finds the WorkloadEntry of w with the given address.
func wantKeyFor(t *testing.T, w want, k config.GroupVersionKind, address string) string {
	t.Helper()
	for key, r := range w[k] {
		if we, ok := r.Spec.(interface{ GetAddress() string }); ok && we.GetAddress() == address {
			return key
		}
	}
	t.Fatalf("no %s with address %s in %v", k.Kind, address, slices.Sorted(maps.Keys(w[k])))
	return ""
}
