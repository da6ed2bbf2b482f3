package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/sinks/kube"
)

// The Kubernetes sink's write loop against the real kube-apiserver, through
// faultProxy, a reverse proxy that fails chosen requests the way the API
// server does (its Status bodies, Retry-After on 429) or holds them until
// the client gives up: what the sink sees is client-go's own handling of
// each, over HTTP. sinks/kube/sink_test.go covers the same loop against
// client-go's fake, branch by branch.

// proxyFault fails requests of one verb on one resource.
type proxyFault struct {
	verb     string // create, apply, update, delete, get, list
	resource string // serviceentries, workloadentries, leases
	name     string // the object's name; "" matches any
	// status is the HTTP status to answer with; 0 holds the request until
	// the client gives up (a timeout).
	status     int
	retryAfter string // the Retry-After header, when set
	times      int    // requests to fail; -1 until cleared
	hits       int
}

// faultProxy forwards everything to the harness's kube-apiserver but what a
// fault matches.
type faultProxy struct {
	url string

	mu     sync.Mutex
	faults []*proxyFault
}

func startFaultProxy(t *testing.T) *faultProxy {
	t.Helper()
	target, err := url.Parse(kubeREST(t).Host)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	// The harness's API server has a self-signed certificate; its
	// kubeconfig skips verification too.
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	p := &faultProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := p.match(r); f != nil {
			p.fail(w, r, f)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

// restConfig is the harness's client configuration, through the proxy.
func (p *faultProxy) restConfig(t *testing.T) *rest.Config {
	rc := rest.CopyConfig(kubeREST(t))
	rc.Host = p.url
	rc.TLSClientConfig = rest.TLSClientConfig{}
	return rc
}

func (p *faultProxy) inject(f *proxyFault) *proxyFault {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, f)
	return f
}

func (p *faultProxy) clear(f *proxyFault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f.times = 0
}

func (p *faultProxy) hitsOf(f *proxyFault) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return f.hits
}

// requestOf names a request as the sink's requests are named, from its
// method, path (/apis/GROUP/VERSION/namespaces/NS/RESOURCE[/NAME]) and, for
// a PATCH, its content type.
func requestOf(r *http.Request) (verb, resource, name string) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	for i := 0; i+2 < len(parts); i++ {
		if parts[i] == "namespaces" {
			resource = parts[i+2]
			if i+3 < len(parts) {
				name = parts[i+3]
			}
			break
		}
	}
	switch r.Method {
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodDelete:
		verb = "delete"
	case http.MethodPatch:
		verb = "patch"
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/apply-patch") {
			verb = "apply"
		}
	case http.MethodGet:
		verb = "list"
		if name != "" {
			verb = "get"
		}
	}
	return verb, resource, name
}

func (p *faultProxy) match(r *http.Request) *proxyFault {
	verb, resource, name := requestOf(r)
	if verb == "create" && name == "" {
		// A create names its object in the body; the faults of a create match
		// any name.
		name = "*"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.faults {
		if f.verb == verb && f.resource == resource && (f.name == "" || f.name == name || name == "*") &&
			(f.times < 0 || f.hits < f.times) {
			f.hits++
			return f
		}
	}
	return nil
}

// fail answers as the API server does: a Status object with the code's
// reason, or nothing until the client gives up.
func (p *faultProxy) fail(w http.ResponseWriter, r *http.Request, f *proxyFault) {
	if f.status == 0 {
		// Read the body first: net/http notices that the client hung up
		// (and cancels r.Context()) only once it is read.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
		return
	}
	reason := map[int]metav1.StatusReason{
		http.StatusForbidden: metav1.StatusReasonForbidden, http.StatusConflict: metav1.StatusReasonConflict,
		http.StatusTooManyRequests: metav1.StatusReasonTooManyRequests, http.StatusInternalServerError: metav1.StatusReasonInternalError,
		http.StatusServiceUnavailable: metav1.StatusReasonServiceUnavailable,
	}[f.status]
	body, _ := json.Marshal(metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Message: "injected by the test's proxy", Reason: reason, Code: int32(f.status),
	})
	w.Header().Set("Content-Type", "application/json")
	if f.retryAfter != "" {
		w.Header().Set("Retry-After", f.retryAfter)
	}
	w.WriteHeader(f.status)
	_, _ = w.Write(body)
}

// TestKubeSinkAPIFaults: each error the API server can answer a write with
// is retried until the write lands, and counted by reason unless client-go
// handled it (a 429 carries Retry-After, which client-go waits out and
// retries itself) or it is resolved by reading the object (a 409 on an
// object the sink owns).
func TestKubeSinkAPIFaults(t *testing.T) {
	installIstioCRDs(t)
	for i, c := range []struct {
		name       string
		verb       string
		status     int
		retryAfter string
		times      int
		reason     string // the errors_total reason counted, "" for none
	}{
		{"403 on create", "create", http.StatusForbidden, "", 2, "403"},
		{"429 with Retry-After on create", "create", http.StatusTooManyRequests, "1", 1, ""},
		{"timeout on create", "create", 0, "", 1, "timeout"},
		{"500 on list at start", "list", http.StatusInternalServerError, "", 1, "500"},
		{"409 on apply", "apply", http.StatusConflict, "", 1, ""},
		{"500 on apply", "apply", http.StatusInternalServerError, "", 2, "500"},
		{"503 on delete", "delete", http.StatusServiceUnavailable, "", 2, "503"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := fmt.Sprintf("kube-sink-fault-%d", i)
			kubeNamespace(t, ns)
			proxy := startFaultProxy(t)
			cfg := noLeaderElection()
			cfg.RequestTimeout = 2 * time.Second
			s := startSinkVia(t, ns, cfg, proxy.restConfig(t))
			// web is there before each fault, written through the proxy with
			// no fault set.
			s.Apply(served.KindServiceEntry, []served.Entry{seUpsert(t, ns, "web", "web.example", 80, "a")}, nil)
			s.MarkReady()
			eventually(t, 30*time.Second, "web written", func() error { _, err := getSE(t, ns, "web"); return err })
			f := &proxyFault{verb: c.verb, resource: "serviceentries", status: c.status, retryAfter: c.retryAfter, times: c.times}
			var done func() error
			switch c.verb {
			case "create":
				proxy.inject(f)
				s.Apply(served.KindServiceEntry, []served.Entry{seUpsert(t, ns, "api", "api.example", 80, "a")}, nil)
				done = func() error { _, err := getSE(t, ns, "api"); return err }
			case "list":
				// The list every start of a leader's term makes.
				s.stop()
				proxy.inject(f)
				s = startSinkVia(t, ns, cfg, proxy.restConfig(t))
				s.Apply(served.KindServiceEntry, []served.Entry{
					seUpsert(t, ns, "web", "web.example", 80, "a"), seUpsert(t, ns, "api", "api.example", 80, "a")}, nil)
				s.MarkReady()
				done = func() error { _, err := getSE(t, ns, "api"); return err }
			case "apply":
				proxy.inject(f)
				s.Apply(served.KindServiceEntry, []served.Entry{seUpsert(t, ns, "web", "web.example", 80, "b")}, nil)
				done = func() error {
					web, err := getSE(t, ns, "web")
					if err != nil {
						return err
					}
					if team := web.GetLabels()["team"]; team != "b" {
						return fmt.Errorf("team %q", team)
					}
					return nil
				}
			case "delete":
				proxy.inject(f)
				s.Apply(served.KindServiceEntry, nil, []string{ns + "/web"})
				done = func() error {
					if _, err := getSE(t, ns, "web"); !apierrors.IsNotFound(err) {
						return fmt.Errorf("web still there (%v)", err)
					}
					return nil
				}
			}
			eventually(t, 60*time.Second, c.verb+" done despite the faults", done)
			if got := proxy.hitsOf(f); got != c.times {
				t.Errorf("the proxy failed %d requests, want %d", got, c.times)
			}
			want := 0.0
			if c.reason != "" {
				want = float64(c.times)
				if got := gatheredWhere(t, s.reg, "registry_adapter_kube_errors_total", "reason", c.reason); got != want {
					t.Errorf("errors_total{reason=%q} %v, want %v", c.reason, got, want)
				}
			}
			if got := gathered(t, s.reg, "registry_adapter_kube_errors_total"); got != want {
				t.Errorf("errors_total %v in all, want %v", got, want)
			}
			if got := gathered(t, s.reg, "registry_adapter_kube_conflicts_total"); got != 0 {
				t.Errorf("conflicts_total %v: no fault here is another owner's object", got)
			}
		})
	}
}

// TestKubeSinkReplacedObjects: an object the sink wrote, deleted and
// re-created by someone else while the sink still holds its UID, is neither
// changed by the next write nor deleted when the adapter drops the name:
// the API server refuses the apply and the delete on their UID, and the sink
// leaves the object alone and counts a conflict.
func TestKubeSinkReplacedObjects(t *testing.T) {
	installIstioCRDs(t)
	const ns = "kube-sink-replaced"
	kubeNamespace(t, ns)
	s := startSink(t, ns, noLeaderElection())
	s.Apply(served.KindServiceEntry, []served.Entry{
		seUpsert(t, ns, "db", "db.example", 5432, "a"), seUpsert(t, ns, "old", "old.example", 80, "a")}, nil)
	s.MarkReady()
	for _, name := range []string{"db", "old"} {
		eventually(t, 30*time.Second, name+" written", func() error { _, err := getSE(t, ns, name); return err })
	}
	c := kubeDynamic(t).Resource(seGVR).Namespace(ns)
	ctx := context.Background()
	handRV := map[string]string{}
	for _, name := range []string{"db", "old"} {
		if err := c.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		hand := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
			"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{"team": "hand"}},
			"spec":     map[string]any{"hosts": []any{name + ".hand.example"}, "resolution": "DNS"},
		}}
		created, err := c.Create(ctx, hand, metav1.CreateOptions{FieldManager: "kubectl-create"})
		if err != nil {
			t.Fatal(err)
		}
		handRV[name] = created.GetResourceVersion()
	}
	// The sink has not listed since: it still believes db and old are its own.
	s.Apply(served.KindServiceEntry, []served.Entry{seUpsert(t, ns, "db", "db.example", 5432, "b")}, []string{ns + "/old"})
	eventually(t, 30*time.Second, "both refused writes counted as conflicts", func() error {
		if got := gathered(t, s.reg, "registry_adapter_kube_conflicts_total"); got != 2 {
			return fmt.Errorf("conflicts_total %v, want 2", got)
		}
		return nil
	})
	for _, name := range []string{"db", "old"} {
		got, err := getSE(t, ns, name)
		if err != nil {
			t.Fatalf("%s, made by hand, is gone: %v", name, err)
		}
		if got.GetResourceVersion() != handRV[name] || got.GetLabels()["team"] != "hand" {
			t.Errorf("%s, made by hand, was modified: rv %s -> %s, labels %v", name, handRV[name], got.GetResourceVersion(), got.GetLabels())
		}
	}
	if got := gathered(t, s.reg, "registry_adapter_kube_errors_total"); got != 0 {
		t.Errorf("errors_total %v: a refused UID is a conflict, not an error", got)
	}
}

// TestKubeSinkLeaseLost: when the API server stops renewing the leader's
// Lease (every Lease request fails), the leader stops writing within its
// renew deadline; changes received meanwhile are kept, and written once the
// Lease is renewed again.
func TestKubeSinkLeaseLost(t *testing.T) {
	installIstioCRDs(t)
	const ns = "kube-sink-lease-lost"
	kubeNamespace(t, ns)
	proxy := startFaultProxy(t)
	cfg := kube.Config{Owner: "e2e-lease-lost", Workers: 1, LeaderElection: kube.LeaderElectionConfig{
		LeaseName: "e2e-lease-lost", LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond}}
	s := startSinkVia(t, ns, cfg, proxy.restConfig(t))
	s.Apply(served.KindServiceEntry, []served.Entry{seUpsert(t, ns, "one", "one.example", 80, "a")}, nil)
	s.MarkReady()
	eventually(t, 30*time.Second, "one written by the leader", func() error { _, err := getSE(t, ns, "one"); return err })
	outage := proxy.inject(&proxyFault{verb: "update", resource: "leases", status: http.StatusServiceUnavailable, times: -1})
	getOutage := proxy.inject(&proxyFault{verb: "get", resource: "leases", status: http.StatusServiceUnavailable, times: -1})
	eventually(t, 30*time.Second, "the leader stepped down", func() error {
		if s.Leading() || gathered(t, s.reg, "registry_adapter_kube_leader") != 0 {
			return fmt.Errorf("still leading")
		}
		return nil
	})
	applies := gathered(t, s.reg, "registry_adapter_kube_applies_total")
	s.Apply(served.KindServiceEntry, []served.Entry{seUpsert(t, ns, "two", "two.example", 80, "a")}, nil)
	proxy.clear(outage)
	proxy.clear(getOutage)
	eventually(t, 30*time.Second, "leading again, and two written", func() error {
		if !s.Leading() {
			return fmt.Errorf("not leading")
		}
		_, err := getSE(t, ns, "two")
		return err
	})
	if got := gathered(t, s.reg, "registry_adapter_kube_applies_total"); got != applies+1 {
		t.Errorf("applies %v after the outage, want %v: only two is new", got, applies+1)
	}
	if proxy.hitsOf(outage)+proxy.hitsOf(getOutage) == 0 {
		t.Error("no Lease request failed: the outage was not exercised")
	}
}
