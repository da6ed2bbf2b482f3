package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/sinks/kube"
)

// largeService is an inline service larger than one ServiceEntry may be in
// the Kubernetes API.
type largeService struct {
	name string
	n    int
	fat  bool // eight 40-character labels per instance, as Consul meta gives
	net  int  // second octet of its addresses: 10.<net>.x.y
}

// The two limits: "fat" passes etcd's default of 1.5 MiB
// (--max-request-bytes=1572864, which start-kube.sh leaves as it is) with
// 4,000 instances of 486 bytes of JSON each (1.9 MB); "many" passes Istio's
// CRD limit of 4096 endpoints with 10,000 instances of 77 bytes (an address,
// one label, a locality). Measured: fat in 3 parts, many in 4.
var (
	fatService  = largeService{name: "fat", n: 4000, fat: true, net: 100}
	manyService = largeService{name: "many", n: 10000, net: 101}
)

func (s largeService) host() string { return s.name + ".large.example.com" }

func (s largeService) addr(i int) string { return fmt.Sprintf("10.%d.%d.%d", s.net, i/256, i%256) }

func (s largeService) labels(i int) map[string]string {
	if !s.fat {
		return map[string]string{"version": "v1"}
	}
	out := map[string]string{}
	for k := range 8 {
		out[fmt.Sprintf("meta-%d", k)] = fmt.Sprintf("%08d-%s", i, strings.Repeat("abcdefgh", 4))
	}
	return out
}

// spec is the service as the adapter serves it inline.
func (s largeService) spec() *networking.ServiceEntry {
	spec := &networking.ServiceEntry{
		Hosts: []string{s.host()}, Addresses: []string{"240.240.0.1"}, Location: networking.ServiceEntry_MESH_INTERNAL,
		Resolution: networking.ServiceEntry_STATIC, Ports: []*networking.ServicePort{{Number: 8080, Protocol: "HTTP", Name: "http-8080"}},
	}
	for i := range s.n {
		spec.Endpoints = append(spec.Endpoints, &networking.WorkloadEntry{Address: s.addr(i), Labels: s.labels(i), Locality: "dc1/zone-a"})
	}
	return spec
}

// static is the service in a static source's YAML.
func (s largeService) static(b *strings.Builder) {
	fmt.Fprintf(b, "    - name: %s\n      host: %s\n      ports: [{number: 8080, protocol: http}]\n      instances:\n", s.name, s.host())
	for i := range s.n {
		lb, _ := json.Marshal(s.labels(i))
		fmt.Fprintf(b, "      - {address: %s, labels: %s, locality: dc1/zone-a}\n", s.addr(i), lb)
	}
}

// TestKubeSinkLargeService: inline services too large for one object,
// against the real kube-apiserver and etcd, and an istiod reading k8s://.
// First the limits are shown to be real: the API server refuses many whole
// as invalid (the CRD), and a sink allowed 3 MiB writes fat whole, which the
// API server refuses as too large (etcd), counted and named in the log, not
// retried in a loop, while a small service is written. Then the adapter as installed
// (defaults: kubernetesSink.maxObjectBytes 1 MiB) writes each as parts of one
// host, each under both limits, every instance in exactly one with its own
// fields; istiod merges them into one service per host with every endpoint;
// the small service is untouched. (That a restart rewrites no part is checked
// in sinks/kube, where the write loop can be waited on.)
func TestKubeSinkLargeService(t *testing.T) {
	installIstioCRDs(t)
	const ns, owner = "registry-adapter-large", "e2e-large"
	kubeNamespace(t, ns)

	// The limits are real. The sink splits past 4096 endpoints whatever
	// maxObjectBytes allows, so the CRD's limit is shown by a create of its
	// own; etcd's, by a sink allowed 3 MiB.
	{
		eps := make([]any, manyService.n)
		for i := range eps {
			eps[i] = map[string]any{"address": manyService.addr(i)}
		}
		whole := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
			"metadata": map[string]any{"name": manyService.host(), "namespace": ns},
			"spec": map[string]any{"hosts": []any{manyService.host()}, "resolution": "STATIC", "endpoints": eps,
				"ports": []any{map[string]any{"number": int64(8080), "name": "http-8080", "protocol": "HTTP"}}},
		}}
		_, err := kubeDynamic(t).Resource(seGVR).Namespace(ns).Create(context.Background(), whole, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "4096") {
			t.Fatalf("a ServiceEntry of %d endpoints: %v, want refused as invalid (at most 4096)", manyService.n, err)
		}

		e, err := served.New(served.KindServiceEntry, ns, fatService.host(),
			map[string]string{served.LabelManagedBy: served.ManagedByValue, "registry-adapter.io/service": fatService.host()}, nil,
			fatService.spec(), time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)).Entry()
		if err != nil {
			t.Fatal(err)
		}
		cfg := noLeaderElection()
		cfg.Owner, cfg.MaxObjectBytes = owner+"-whole", 3<<20
		s := startSink(t, ns, cfg)
		s.Apply(served.KindServiceEntry, []served.Entry{e, seUpsert(t, ns, "small", "small.large.example.com", 80, "a")}, nil)
		s.MarkReady()
		eventually(t, 60*time.Second, "fat refused as too large, small written", func() error {
			if got := gatheredWhere(t, s.reg, "registry_adapter_kube_errors_total", "reason", "too_large"); got != 1 {
				return fmt.Errorf("too_large errors %v, want 1", got)
			}
			_, err := getSE(t, ns, "small")
			return err
		})
		if _, err := getSE(t, ns, fatService.host()); !apierrors.IsNotFound(err) {
			t.Fatalf("%s is in the API whole (%v): etcd's limit is not what this test assumes", fatService.host(), err)
		}
		if got := gathered(t, s.reg, "registry_adapter_kube_applies_total"); got != 1 {
			t.Errorf("%v objects written, want 1 (small)", got)
		}
		s.stop()
		deleteIstioObjects(t, ns)
	}

	var b strings.Builder
	fmt.Fprintf(&b, `
server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}"}
debounce: {quiet: 50ms, max: 300ms}
sink: kubernetes
output: {namespace: %s}
kubernetesSink:
  kubeconfig: %q
  owner: %s
  leaderElection: {leaseName: %s, leaseDuration: 4s, renewDeadline: 3s, retryPeriod: 500ms}
sources:
- name: vms
  static:
    services:
    - {name: small, host: small.large.example.com, ports: [{number: 80, protocol: http}], instances: [{address: 10.99.0.1}]}
`, ns, kubeconfig, owner, owner)
	fatService.static(&b)
	manyService.static(&b)
	a := startAdapter(t, b.String(), 0)
	p := startIstiod(t, meshK8sOnly)
	p.waitReady(t)

	// In the API: parts of one host, each under both limits, every instance
	// in one part with its own fields.
	check := func(ls largeService) error {
		list, err := kubeDynamic(t).Resource(seGVR).Namespace(ns).List(context.Background(),
			metav1.ListOptions{LabelSelector: "registry-adapter.io/service=" + ls.host()})
		if err != nil {
			return err
		}
		want := map[string]map[string]string{}
		for i := range ls.n {
			want[ls.addr(i)] = ls.labels(i)
		}
		var parts []string
		seen := map[string]int{}
		epBytes := 0
		for _, u := range list.Items {
			raw, err := json.Marshal(u.Object)
			if err != nil {
				t.Fatal(err)
			}
			if len(raw) > kube.DefaultMaxObjectBytes+64<<10 {
				return fmt.Errorf("%s: %d bytes as stored", u.GetName(), len(raw))
			}
			if !strings.HasSuffix(u.GetAnnotations()[kube.AnnotationPart], fmt.Sprintf("/%d", len(list.Items))) {
				return fmt.Errorf("%s: annotations %v, want part i/%d", u.GetName(), u.GetAnnotations(), len(list.Items))
			}
			eps, _ := u.Object["spec"].(map[string]any)["endpoints"].([]any)
			if len(eps) > 4096 {
				return fmt.Errorf("%s: %d endpoints", u.GetName(), len(eps))
			}
			for _, ep := range eps {
				m := ep.(map[string]any)
				addr, _ := m["address"].(string)
				got := map[string]string{}
				for k, v := range m["labels"].(map[string]any) {
					got[k], _ = v.(string)
				}
				if m["locality"] != "dc1/zone-a" || !maps.Equal(got, want[addr]) {
					return fmt.Errorf("%s: endpoint %v, want labels %v", u.GetName(), m, want[addr])
				}
				seen[addr]++
				eb, _ := json.Marshal(ep)
				epBytes += len(eb) + 1
			}
			parts = append(parts, fmt.Sprintf("%s (%d endpoints, %d bytes)", u.GetName(), len(eps), len(raw)))
		}
		if len(list.Items) < 2 {
			return fmt.Errorf("%s: %d objects: %v", ls.host(), len(list.Items), parts)
		}
		for addr := range want {
			if seen[addr] != 1 {
				return fmt.Errorf("instance %s in %d parts, want 1 (%v)", addr, seen[addr], parts)
			}
		}
		if len(seen) != ls.n {
			return fmt.Errorf("%s: %d distinct endpoints in the parts, want %d", ls.host(), len(seen), ls.n)
		}
		t.Logf("%s: %d instances, %d bytes of endpoints' JSON (%.1f per endpoint): %v", ls.host(), ls.n, epBytes, float64(epBytes)/float64(ls.n), parts)
		return nil
	}
	eventually(t, 120*time.Second, "the fat service written in parts", func() error { return check(fatService) })
	eventually(t, 60*time.Second, "the many service written in parts", func() error { return check(manyService) })
	if _, err := getSE(t, ns, "small.large.example.com"); err != nil {
		t.Fatalf("the small service: %v", err)
	}
	if got := a.metric(t, "registry_adapter_kube_split_services"); got != 2 {
		t.Errorf("registry_adapter_kube_split_services %v, want 2", got)
	}
	if got := a.metric(t, "registry_adapter_kube_errors_total"); got != 0 {
		t.Errorf("registry_adapter_kube_errors_total %v, want 0", got)
	}
	if out := a.output(); !strings.Contains(out, "written in parts") || !strings.Contains(out, fatService.host()) || !strings.Contains(out, manyService.host()) {
		t.Errorf("no log line names the split services:\n%s", tail(out, 20))
	}

	// istiod merges the parts: one service per host, every endpoint.
	eventually(t, 120*time.Second, "istiod holds every endpoint of the large services", func() error {
		eps, err := istiodEndpoints(p.httpAddr)
		if err != nil {
			return err
		}
		for _, ls := range []largeService{fatService, manyService} {
			for i := range ls.n {
				if k := ls.host() + " " + ls.addr(i) + "/http-8080"; !eps[k] {
					return fmt.Errorf("istiod lacks %s", k)
				}
			}
		}
		if !eps["small.large.example.com 10.99.0.1/http-80"] {
			return fmt.Errorf("the small service's endpoint is missing")
		}
		return nil
	})
}
