package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/registry-adapter/registry-adapter/fidelity"
	"github.com/registry-adapter/registry-adapter/sinks/kube"
)

// kubeSinkConfig is an adapter writing to the harness's kube-apiserver only.
func kubeSinkConfig(consulAddr, owner string) string {
	return fmt.Sprintf(`
server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}"}
debounce: {quiet: 50ms, max: 300ms}
sink: kubernetes
output: {namespace: %s}
kubernetesSink:
  kubeconfig: %q
  owner: %s
  leaderElection: {leaseName: %s, leaseDuration: 4s, renewDeadline: 3s, retryPeriod: 500ms}
# Emptying a source is held whatever its size; minInstances 1 puts this small
# fleet under the share rule too. 0.7: the test's own deregistrations (at most
# 2 of 3 within a window) pass.
guard: {minInstances: 1, maxDeletionShare: 0.7}
sources:
- name: dc1
  consul: {address: "%s", wait: 2s, requestTimeout: 1s, backoffMin: 100ms, backoffMax: 1s, minQueryInterval: 50ms}
`, kubeSinkNamespace, kubeconfig, owner, owner, consulAddr)
}

// kubeSinkNamespace is where the sink writes: the Kubernetes sink, unlike
// the xDS one, needs its output namespace to exist.
const kubeSinkNamespace = "registry-adapter-entries"

// meshK8sOnly is a mesh config whose only config source is the Kubernetes API.
const meshK8sOnly = "rootNamespace: istio-system\ntrustDomain: cluster.local\nconfigSources:\n- address: k8s://\n"

// faithfulKube is holds for the Kubernetes sink: istiod's registry is
// compared with registered, an expectation written by hand from what the
// test registered, then with the adapter's own render (which proves
// delivery only), with the one label the sink adds (the owner label, which
// decides ownership in the API) set aside.
func faithfulKube(t *testing.T, a *adapterProc, p *istiodProc, registered fidelity.View) error {
	t.Helper()
	want, got, err := renderAndRead(a, p)
	if err != nil {
		return err
	}
	for _, svc := range got {
		for k, ep := range svc.Endpoints {
			delete(ep.Labels, kube.LabelOwner)
			svc.Endpoints[k] = ep
		}
	}
	if d := fidelity.Diff(registered, got); len(d) > 0 {
		return fmt.Errorf("istiod's registry differs from what the test registered:\n%s", strings.Join(d, "\n"))
	}
	if d := fidelity.Diff(want, got); len(d) > 0 {
		return fmt.Errorf("istiod's registry differs from the adapter's own conversion:\n%s", strings.Join(d, "\n"))
	}
	return nil
}

// ownedVersions is name@resourceVersion of every object the owner has in ns.
func ownedVersions(t *testing.T, ns, owner string) []string {
	t.Helper()
	var out []string
	for _, gvr := range []struct{ kind, res string }{{"ServiceEntry", "se"}, {"WorkloadEntry", "we"}} {
		g := seGVR
		if gvr.kind == "WorkloadEntry" {
			g = weGVR
		}
		list, err := kubeDynamic(t).Resource(g).Namespace(ns).List(context.Background(),
			metav1.ListOptions{LabelSelector: kube.LabelOwner + "=" + owner})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range list.Items {
			out = append(out, gvr.res+"/"+u.GetName()+"@"+u.GetResourceVersion())
		}
	}
	return sortStrings(out)
}

// ownedObjects is kind/name uid=UID rv=resourceVersion of every object
// the owner has in ns: a deleted and recreated object has a new UID, a
// rewritten one a new resourceVersion.
func ownedObjects(t *testing.T, ns, owner string) []string {
	t.Helper()
	var out []string
	for kind, g := range map[string]schema.GroupVersionResource{"se": seGVR, "we": weGVR} {
		list, err := kubeDynamic(t).Resource(g).Namespace(ns).List(context.Background(),
			metav1.ListOptions{LabelSelector: kube.LabelOwner + "=" + owner})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range list.Items {
			out = append(out, fmt.Sprintf("%s/%s uid=%s rv=%s", kind, u.GetName(), u.GetUID(), u.GetResourceVersion()))
		}
	}
	return sortStrings(out)
}

// TestKubeSinkConsulIstiod: the adapter with sink: kubernetes, real Consul, and
// an istiod that reads config only from the Kubernetes API (k8s://). The
// fidelity checker passes after register, change, deregister, a Consul crash
// (killed, back empty, fleet re-registered) and an adapter restart; the
// objects are listed from the API as `kubectl get serviceentries` does.
func TestKubeSinkConsulIstiod(t *testing.T) {
	installIstioCRDs(t)
	const ns, owner = kubeSinkNamespace, "e2e-full"
	kubeNamespace(t, ns)
	t.Cleanup(func() { deleteIstioObjects(t, ns) })
	consul := newConsulAgent(t, freePort(t))
	consul.start(t)
	registerTxn(t, consul.client, vm{"web", "web-1", "10.7.0.1"}, vm{"web", "web-2", "10.7.0.2"}, vm{"db", "db-1", "10.7.1.1"})

	a := startAdapter(t, kubeSinkConfig(consul.addr, owner), 0)
	p := startIstiod(t, meshK8sOnly)
	p.waitReady(t)
	step := func(what string, registered ...vm) {
		t.Helper()
		eventually(t, 60*time.Second, what+": istiod (reading k8s://) holds what is registered", func() error {
			return faithfulKube(t, a, p, expectVMs(registered...))
		})
	}
	step("register", vm{"web", "web-1", "10.7.0.1"}, vm{"web", "web-2", "10.7.0.2"}, vm{"db", "db-1", "10.7.1.1"})
	if got := kubeNames(t, seGVR, ns); !slices.Contains(got, "web.service.consul") && !slices.Contains(got, "web-service-consul") {
		t.Fatalf("kubectl get serviceentries -n %s: %v", ns, got)
	}
	t.Logf("serviceentries: %v; workloadentries: %v", kubeNames(t, seGVR, ns), kubeNames(t, weGVR, ns))

	registerTxn(t, consul.client, vm{"web", "web-3", "10.7.0.3"})
	deregister(t, consul.client, "web-1", "web")
	step("change", vm{"web", "web-2", "10.7.0.2"}, vm{"web", "web-3", "10.7.0.3"}, vm{"db", "db-1", "10.7.1.1"})

	deregister(t, consul.client, "db-1", "db")
	step("deregister", vm{"web", "web-2", "10.7.0.2"}, vm{"web", "web-3", "10.7.0.3"})
	for _, n := range kubeNames(t, seGVR, ns) {
		if strings.HasPrefix(n, "db") {
			t.Fatalf("ServiceEntry %s still in the API after db was deregistered", n)
		}
	}

	// Consul crashes: the adapter keeps its last state, so the objects stay
	// exactly as they are (no write at all while Consul is down): the same
	// objects (UIDs) at the same resourceVersions.
	before := ownedObjects(t, ns, owner)
	unchanged := func(when string) {
		t.Helper()
		if after := ownedObjects(t, ns, owner); !slices.Equal(before, after) {
			t.Fatalf("owned objects deleted, recreated or rewritten %s:\nbefore %v\nafter  %v", when, before, after)
		}
	}
	consul.kill(t)
	waitStale(t, a.debugAddr, "dc1", true, 30*time.Second)
	unchanged("while Consul was down")
	// It comes back empty (a fresh dev agent): the guard holds the mass
	// deletion, and no owned object is deleted.
	consul.start(t)
	eventually(t, 60*time.Second, "the guard holds the empty catalog's deletion", func() error {
		held, err := heldChanges(t, a.debugAddr)
		if err != nil {
			return err
		}
		if len(held) != 1 || held[0].Source != "dc1" || held[0].Removes != 2 {
			return fmt.Errorf("held %+v", held)
		}
		return nil
	})
	unchanged("while the guard held the deletion")
	// The fleet is registered again: nothing is held any more, everything
	// converges, and the objects are the very same ones, unwritten.
	registerTxn(t, consul.client, vm{"web", "web-2", "10.7.0.2"}, vm{"web", "web-3", "10.7.0.3"})
	step("consul crash", vm{"web", "web-2", "10.7.0.2"}, vm{"web", "web-3", "10.7.0.3"})
	eventually(t, 30*time.Second, "nothing held once the fleet is back", func() error {
		if held, err := heldChanges(t, a.debugAddr); err != nil || len(held) != 0 {
			return fmt.Errorf("held %+v %v", held, err)
		}
		return nil
	})
	unchanged("after the fleet came back")

	// The adapter restarts: one list, nothing rewritten, istiod unaffected.
	before = ownedVersions(t, ns, owner)
	a.restart(t)
	eventually(t, 30*time.Second, "restarted adapter leads and listed", func() error {
		if a.metric(t, "registry_adapter_kube_leader") != 1 {
			return fmt.Errorf("not leading yet")
		}
		if a.metric(t, "registry_adapter_kube_request_duration_seconds_count", "verb=list") < 2 {
			return fmt.Errorf("not listed yet")
		}
		return nil
	})
	registerTxn(t, consul.client, vm{"web", "web-4", "10.7.0.4"})
	step("adapter restart", vm{"web", "web-2", "10.7.0.2"}, vm{"web", "web-3", "10.7.0.3"}, vm{"web", "web-4", "10.7.0.4"})
	after := ownedVersions(t, ns, owner)
	var rewritten []string
	for _, v := range before {
		if !slices.Contains(after, v) {
			rewritten = append(rewritten, v)
		}
	}
	// In the default (inline) mode web-4 is an endpoint of the web
	// ServiceEntry, the one object the change may rewrite: the restart itself
	// rewrites nothing.
	if len(rewritten) != 1 || !strings.HasPrefix(rewritten[0], "se/web") {
		t.Errorf("after the restart and one new web instance, rewritten %v, want only the web ServiceEntry:\nbefore %v\nafter  %v", rewritten, before, after)
	}
	if got := a.metric(t, "registry_adapter_kube_applies_total"); got != 1 {
		t.Errorf("the restarted adapter applied %v objects, want 1 (the web ServiceEntry)", got)
	}
}
