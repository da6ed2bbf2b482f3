package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// conflictConfig serves four registry services that each collide with the
// cluster's own configuration, as a hostile or careless registrant would:
//   - evil claims 10.96.0.1 on 443, the kubernetes Service's ClusterIP (the
//     issue's attack: consul-virtual set by a registrant);
//   - kdbsquat claims the ClusterIP of a Kubernetes Service kdb on its port,
//     an address the operator allowed ({{ALLOW}});
//   - squat claims the address and port of a hand-written ServiceEntry;
//   - shared has the hand-written ServiceEntry's host.
//
// {{EXTRA}} adds output settings.
const conflictConfig = `
server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}"}
debounce: {quiet: 50ms, max: 200ms}
output:
  addresses: {key: mesh-vip, allow: [240.0.0.0/4, {{ALLOW}}]}
{{EXTRA}}
sources:
- name: vms
  static:
    services:
    - {name: evil, host: evil-{{S}}.example.com, ports: [{number: 443, protocol: tcp}], labels: {mesh-vip: 10.96.0.1}, instances: [{address: 10.81.0.1}]}
    - {name: kdbsquat, host: kdbsquat-{{S}}.example.com, ports: [{number: 5432, protocol: tcp}], labels: {mesh-vip: "{{KDB}}"}, instances: [{address: 10.81.0.2}]}
    - {name: squat, host: squat-{{S}}.example.com, ports: [{number: 7000, protocol: tcp}], labels: {mesh-vip: 240.77.0.1}, instances: [{address: 10.81.0.3}]}
    - {name: shared, host: shared-{{S}}.example.com, ports: [{number: 7000, protocol: tcp}], instances: [{address: 10.81.0.4}]}
`

// TestClusterConfigWinsConflicts: registry data never takes an address, a
// port or a host from the cluster's own configuration, seen in a sidecar's
// listeners and clusters from the real istiod (reading the Kubernetes API
// and the adapter).
//
// istiod gives a shared TCP address:port listener, and a host claimed in two
// namespaces, to the oldest service (model.SortServicesByCreationTime; ties
// by name, then namespace). The test measures that first: with served
// entries stamped 2020-01-01 (the old default) and every address allowed,
// each registry service wins, evil included (10.96.0.1:443, the kubernetes
// Service's). Then with the defaults: evil's address is refused (it is
// outside output.addresses.allow) and it is served its allocated address,
// and the entries are stamped later than anything the cluster created, so
// the Kubernetes Service and the hand-written ServiceEntry keep their
// address, port and host even where the operator allowed the address.
func TestClusterConfigWinsConflicts(t *testing.T) {
	t.Parallel()
	installIstioCRDs(t)
	k := kubeAPI(t)
	sfx := randomSuffix(t)
	ns := "conflict-" + sfx
	k.ensureNamespace(t, ns)
	groupNamespace(t, "default") // kubernetes.default, whose address the registry claims
	kdbIP := k.createTCPService(t, ns, "kdb", 5432)
	seName := "shared-" + sfx
	se := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
		"metadata": map[string]any{"name": seName, "namespace": ns},
		"spec": map[string]any{
			"hosts": []any{"shared-" + sfx + ".example.com"}, "addresses": []any{"240.77.0.1"},
			"ports":      []any{map[string]any{"number": int64(7000), "name": "tcp", "protocol": "TCP"}},
			"resolution": "STATIC", "location": "MESH_INTERNAL",
			"endpoints": []any{map[string]any{"address": "10.70.0.1"}},
		},
	}}
	dyn := kubeDynamic(t)
	if _, err := dyn.Resource(seGVR).Namespace(ns).Create(context.Background(), se, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dyn.Resource(seGVR).Namespace(ns).Delete(context.Background(), seName, metav1.DeleteOptions{})
	})

	cfg := func(allow, extra string) string {
		return strings.NewReplacer("{{S}}", sfx, "{{KDB}}", kdbIP, "{{ALLOW}}", allow, "{{EXTRA}}", extra).Replace(conflictConfig)
	}
	// Measured first: entries stamped 2020-01-01, every address allowed.
	a := startAdapter(t, cfg(kdbIP+"/32, 10.96.0.1/32", "  createTime: 2020-01-01T00:00:00Z"), 0)
	mesh := "rootNamespace: istio-system\ntrustDomain: cluster.local\nconfigSources:\n- address: k8s://\n- address: xds://" + a.xdsAddr + "\n"
	p := startIstiod(t, mesh)
	p.waitReady(t)

	kube := "outbound|443||kubernetes.default.svc.cluster.local"
	kdb := "outbound|5432||kdb." + ns + ".svc.cluster.local"
	host := func(name string) string { return name + "-" + sfx + ".example.com" }
	cluster := func(name string, port int) string { return fmt.Sprintf("outbound|%d||%s", port, host(name)) }
	owns := func(want map[string]string, endpoints []string) func() error {
		return func() error {
			px, err := p.sidecar(t)
			if err != nil {
				return err
			}
			v := px.View()
			var bad []string
			for l, c := range want {
				got, ok := v.Listeners[l]
				if !ok {
					bad = append(bad, fmt.Sprintf("no listener %s", l))
				} else if !slices.Equal(got.TCPClusters, []string{c}) {
					bad = append(bad, fmt.Sprintf("listener %s forwards to %v, want [%s]", l, got.TCPClusters, c))
				}
			}
			if got := v.Clusters[cluster("shared", 7000)].Endpoints; !slices.Equal(got, endpoints) {
				bad = append(bad, fmt.Sprintf("host %s: endpoints %v, want %v", host("shared"), got, endpoints))
			}
			if len(bad) > 0 {
				return fmt.Errorf("%s", strings.Join(bad, "\n"))
			}
			return nil
		}
	}
	eventually(t, 90*time.Second, "stamped 2020-01-01, every registry entry wins (istiod: the oldest wins)", owns(map[string]string{
		"10.96.0.1_443":   cluster("evil", 443),
		kdbIP + "_5432":   cluster("kdbsquat", 5432),
		"240.77.0.1_7000": cluster("squat", 7000),
	}, []string{"10.81.0.4:7000"}))

	// The defaults: the cluster's own configuration wins.
	if err := os.WriteFile(a.configPath, []byte(strings.NewReplacer("{{XDS}}", a.xdsAddr, "{{DEBUG}}", a.debugAddr).Replace(cfg(kdbIP+"/32", ""))), 0o600); err != nil {
		t.Fatal(err)
	}
	a.restart(t)
	// A running istiod keeps a service's creation time while the rest of it
	// is unchanged (model.Service.Equals ignores CreationTime), so kdbsquat,
	// whose address and port stay, would keep its 2020 stamp there until
	// istiod restarts (docs/configuration.md says so for upgrades). A
	// restarted istiod reads the new stamps.
	p = startIstiod(t, mesh)
	p.waitReady(t)
	eventually(t, 90*time.Second, "with the defaults, the cluster's own configuration wins", owns(map[string]string{
		"10.96.0.1_443":   kube,
		kdbIP + "_5432":   kdb,
		"240.77.0.1_7000": "outbound|7000||" + host("shared"),
	}, []string{"10.70.0.1:7000"}))
	// evil is served at its allocated address, on a listener of its own; no
	// listener of the sidecar forwards to it but that one.
	px, err := p.sidecar(t)
	if err != nil {
		t.Fatal(err)
	}
	v := px.View()
	ips := v.Names[host("evil")]
	if len(ips) != 1 || !netip.MustParsePrefix("248.0.0.0/6").Contains(netip.MustParseAddr(ips[0])) {
		t.Fatalf("%s resolves to %v in the sidecar, want its allocated address", host("evil"), ips)
	}
	for name, l := range v.Listeners {
		if slices.Contains(l.TCPClusters, cluster("evil", 443)) && name != ips[0]+"_443" {
			t.Errorf("listener %s forwards to evil", name)
		}
	}
	if l, ok := v.Listeners[ips[0]+"_443"]; !ok || !slices.Equal(l.TCPClusters, []string{cluster("evil", 443)}) {
		t.Errorf("evil's own listener %s_443: %+v", ips[0], l)
	}
	if n := metric(t, "http://"+a.debugAddr+"/metrics", "registry_adapter_rejected_items_total", "reason=refused-address"); n != 1 {
		t.Errorf("refused-address counter %v, want 1 (evil's 10.96.0.1)", n)
	}
}

// createTCPService creates a Service without selector on port (TCP) and
// returns its ClusterIP.
func (k *kubeClient) createTCPService(t *testing.T, namespace, name string, port int) string {
	t.Helper()
	code, body := k.postBody(t, "/api/v1/namespaces/"+namespace+"/services", map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"spec":     map[string]any{"ports": []map[string]any{{"name": "tcp", "port": port, "protocol": "TCP"}}},
	})
	if code >= 300 {
		t.Fatalf("create Service %s/%s: %d %s", namespace, name, code, body)
	}
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, k.server+"/api/v1/namespaces/"+namespace+"/services/"+name, nil)
		req.Header.Set("Authorization", "Bearer "+k.token)
		if resp, err := k.http.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	var svc struct {
		Spec struct {
			ClusterIP string `json:"clusterIP"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(body, &svc); err != nil || svc.Spec.ClusterIP == "" {
		t.Fatalf("Service %s/%s: no ClusterIP (%v): %s", namespace, name, err, body)
	}
	return svc.Spec.ClusterIP
}
