package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/registry-adapter/registry-adapter/served"
	"github.com/registry-adapter/registry-adapter/sinks/kube"
)

// largeInstances is how many instances the large service has: about 71 bytes
// of JSON each (an address, one label, a locality), 1.7 MB as one
// ServiceEntry, over etcd's default limit of 1.5 MiB
// (--max-request-bytes=1572864, which start-kube.sh leaves as it is).
const largeInstances = 24000

// largeAddr is the address of the large service's instance i.
func largeAddr(i int) string { return fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256) }

// TestKubeSinkLargeService: an inline service too large for one object,
// against the real kube-apiserver and etcd, and an istiod reading k8s://.
// First the limit is shown to be real: a sink allowed 3 MiB writes the service
// whole and the API server refuses it (counted too_large, named in the
// log, not retried in a loop), while the other service is written. Then the
// adapter as installed (defaults: kubernetesSink.maxObjectBytes 1 MiB) writes
// it as parts of one host, each under the limit, every instance in exactly
// one; istiod merges them into one service with every endpoint; the small
// service is untouched. (That a restart rewrites no part is checked in
// sinks/kube, where the write loop can be waited on.)
func TestKubeSinkLargeService(t *testing.T) {
	installIstioCRDs(t)
	const ns, owner, host = "registry-adapter-large", "e2e-large", "big.large.example.com"
	kubeNamespace(t, ns)

	// The limit is real.
	{
		spec := &networking.ServiceEntry{
			Hosts: []string{host}, Addresses: []string{"240.240.0.1"}, Location: networking.ServiceEntry_MESH_INTERNAL,
			Resolution: networking.ServiceEntry_STATIC, Ports: []*networking.ServicePort{{Number: 8080, Protocol: "HTTP", Name: "http-8080"}},
		}
		for i := range largeInstances {
			spec.Endpoints = append(spec.Endpoints, &networking.WorkloadEntry{Address: largeAddr(i), Labels: map[string]string{"version": "v1"}, Locality: "dc1/zone-a"})
		}
		whole, err := served.New(served.KindServiceEntry, ns, host,
			map[string]string{served.LabelManagedBy: served.ManagedByValue, "registry-adapter.io/service": host}, nil,
			spec, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)).Entry()
		if err != nil {
			t.Fatal(err)
		}
		cfg := noLeaderElection()
		cfg.Owner, cfg.MaxObjectBytes = owner+"-whole", 3<<20
		s := startSink(t, ns, cfg)
		s.Apply(served.KindServiceEntry, []served.Entry{whole, seUpsert(t, ns, "small", "small.large.example.com", 80, "a")}, nil)
		s.MarkReady()
		eventually(t, 60*time.Second, "the whole service refused by the API, the small one written", func() error {
			if got := gatheredWhere(t, s.reg, "registry_adapter_kube_errors_total", "reason", "too_large"); got != 1 {
				return fmt.Errorf("too_large errors %v, want 1", got)
			}
			_, err := getSE(t, ns, "small")
			return err
		})
		if _, err := getSE(t, ns, host); !apierrors.IsNotFound(err) {
			t.Fatalf("the whole service is in the API (%v): etcd's limit is not what this test assumes", err)
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
    - name: big
      host: %s
      ports: [{number: 8080, protocol: http}]
      instances:
`, ns, kubeconfig, owner, owner, host)
	for i := range largeInstances {
		fmt.Fprintf(&b, "      - {address: %s, labels: {version: v1}, locality: dc1/zone-a}\n", largeAddr(i))
	}
	a := startAdapter(t, b.String(), 0)
	p := startIstiod(t, meshK8sOnly)
	p.waitReady(t)

	// In the API: parts of one host, each under the limit, every instance
	// in one part.
	var parts []string
	eventually(t, 120*time.Second, "the large service written in parts", func() error {
		list, err := kubeDynamic(t).Resource(seGVR).Namespace(ns).List(context.Background(),
			metav1.ListOptions{LabelSelector: "registry-adapter.io/service=" + host})
		if err != nil {
			return err
		}
		parts = parts[:0]
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
			for _, ep := range eps {
				m := ep.(map[string]any)
				if m["locality"] != "dc1/zone-a" || m["labels"].(map[string]any)["version"] != "v1" {
					return fmt.Errorf("%s: endpoint %v", u.GetName(), m)
				}
				seen[m["address"].(string)]++
				eb, _ := json.Marshal(ep)
				epBytes += len(eb) + 1
			}
			parts = append(parts, fmt.Sprintf("%s (%d endpoints, %d bytes)", u.GetName(), len(eps), len(raw)))
		}
		if len(list.Items) < 2 {
			return fmt.Errorf("%d objects: %v", len(list.Items), parts)
		}
		for i := range largeInstances {
			if seen[largeAddr(i)] != 1 {
				return fmt.Errorf("instance %s in %d parts, want 1 (%v)", largeAddr(i), seen[largeAddr(i)], parts)
			}
		}
		if len(seen) != largeInstances {
			return fmt.Errorf("%d distinct endpoints in the parts, want %d", len(seen), largeInstances)
		}
		t.Logf("%d instances, %d bytes of endpoints' JSON (%.1f per endpoint): %v", largeInstances, epBytes, float64(epBytes)/largeInstances, parts)
		return nil
	})
	if _, err := getSE(t, ns, "small.large.example.com"); err != nil {
		t.Fatalf("the small service: %v", err)
	}
	if got := a.metric(t, "registry_adapter_kube_split_services"); got != 1 {
		t.Errorf("registry_adapter_kube_split_services %v, want 1", got)
	}
	if got := a.metric(t, "registry_adapter_kube_errors_total"); got != 0 {
		t.Errorf("registry_adapter_kube_errors_total %v, want 0", got)
	}
	if out := a.output(); !strings.Contains(out, "written in parts") || !strings.Contains(out, host) {
		t.Errorf("no log line names the split service:\n%s", tail(out, 20))
	}

	// istiod merges the parts: one host, every endpoint.
	eventually(t, 120*time.Second, "istiod holds every endpoint of the large service", func() error {
		eps, err := istiodEndpoints(p.httpAddr)
		if err != nil {
			return err
		}
		have := 0
		for k := range eps {
			if strings.HasPrefix(k, host+" ") {
				have++
			}
		}
		if have != largeInstances {
			return fmt.Errorf("%d of %d endpoints of %s", have, largeInstances, host)
		}
		if !eps["small.large.example.com 10.99.0.1/http-80"] {
			return fmt.Errorf("the small service's endpoint is missing")
		}
		for _, i := range []int{0, largeInstances / 2, largeInstances - 1} {
			if !eps[host+" "+largeAddr(i)+"/http-8080"] {
				return fmt.Errorf("endpoint %s missing", largeAddr(i))
			}
		}
		return nil
	})
}
