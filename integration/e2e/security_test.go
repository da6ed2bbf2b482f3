package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/convert"
)

// TestRegistryLabelsCannotJoinKubernetesServices (issue 15 item 1): with the
// adapter's default settings, a Consul service that carries app=X and
// istio=Y does not become an endpoint of the Kubernetes Services in
// istio-system that select app: X or istio: Y, and its reserved tags
// (security.istio.io/tlsMode) do not reach istiod.
//
// The in-run control: a Service in the adapter's own output namespace that
// selects app: X does get the VM. That proves both that istiod processed the
// WorkloadEntry for Kubernetes Services before the negative checks run, and
// that the check would see such an endpoint (it is what happened in
// istio-system when istio-system was the default).
func TestRegistryLabelsCannotJoinKubernetesServices(t *testing.T) {
	t.Parallel()
	kube := kubeAPI(t)
	id := randomSuffix(t)
	ns := convert.DefaultNamespace
	app, istioSel, vm := "victim-"+id, "gw-"+id, "10.77.0.1"

	kube.ensureNamespace(t, ns)
	kube.ensureNamespace(t, "istio-system")
	kube.createService(t, "istio-system", "victim-"+id, map[string]string{"app": app})
	kube.createService(t, "istio-system", "gw-"+id, map[string]string{"istio": istioSel})
	kube.createService(t, ns, "control-"+id, map[string]string{"app": app})
	kube.createService(t, ns, "gwcontrol-"+id, map[string]string{"istio": istioSel})

	c, addr := startConsul(t, 0)
	// WorkloadEntries are what a Kubernetes Service can select; inline
	// endpoints (the default mode) never join one.
	a := startAdapter(t, withMode(consulConfig(addr), modeWorkloadEntry), 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	p.waitReady(t)

	evil := "evil-" + id
	register(t, c, evil, "node-"+id, vm, 8080,
		[]string{"security.istio.io/tlsMode=istio", "istio.io/rev=canary", "topology.kubernetes.io/zone=z"},
		map[string]string{"app": app, "istio": istioSel, "version": "v1"})

	host := func(name, namespace string) string { return name + "." + namespace + ".svc.cluster.local" }
	eventually(t, 90*time.Second, "the VM in istiod, and in the control Service of the output namespace", func() error {
		if got := p.endpointDetails(t, evil+".service.consul"); len(got) != 1 || got[0].Addresses[0] != vm {
			return fmt.Errorf("%s.service.consul endpoints %+v", evil, got)
		}
		if got := p.endpoints(t, host("control-"+id, ns)); !slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, vm+"/") }) {
			return fmt.Errorf("control Service endpoints %q", got)
		}
		// The Services the negative checks below look at are in istiod's
		// registry: their namespaces are in its view (groupNamespace).
		hosts := p.registryHosts(t)
		for _, h := range []string{host("victim-"+id, "istio-system"), host("gw-"+id, "istio-system"), host("gwcontrol-"+id, ns)} {
			if !slices.Contains(hosts, h) {
				return fmt.Errorf("istiod does not hold the Kubernetes Service %s", h)
			}
		}
		return nil
	})

	for _, h := range []string{host("victim-"+id, "istio-system"), host("gw-"+id, "istio-system"), host("gwcontrol-"+id, ns)} {
		if got := p.endpoints(t, h); len(got) != 0 {
			t.Errorf("Kubernetes Service %s selected the registry's VM: endpoints %q", h, got)
		}
	}
	ep := p.endpointDetails(t, evil+".service.consul")[0]
	if ep.TLSMode == "istio" {
		t.Errorf("the registry set the endpoint's TLS mode: %+v", ep)
	}
	// The keys the registry sent. Other reserved keys on the endpoint are
	// legitimate: the adapter's own managed-by label, and the topology labels
	// istiod derives from the locality and its cluster (seen on the first run).
	for k, registry := range map[string]string{"istio": istioSel, "security.istio.io/tlsMode": "istio",
		"istio.io/rev": "canary", "topology.kubernetes.io/zone": "z"} {
		if v, ok := ep.Labels[k]; ok && v == registry {
			t.Errorf("the registry's reserved label %s=%s reached istiod: %v", k, v, ep.Labels)
		}
	}
	if ep.Labels["app"] != app || ep.Labels["version"] != "v1" {
		t.Errorf("app and version should stay usable: %v", ep.Labels)
	}
}

// registryHosts lists the hosts of istiod's service registry
// (/debug/registryz): Kubernetes Services and config-source entries alike.
func (p *istiodProc) registryHosts(t *testing.T) []string {
	t.Helper()
	_, body, err := httpGet("http://" + p.httpAddr + "/debug/registryz")
	if err != nil {
		t.Fatal(err)
	}
	var services []struct {
		Hostname string `json:"hostname"`
	}
	if err := json.Unmarshal(body, &services); err != nil {
		t.Fatalf("registryz: %v: %.200s", err, body)
	}
	var out []string
	for _, s := range services {
		out = append(out, s.Hostname)
	}
	return sortStrings(out)
}

type endpointDetail struct {
	Addresses []string
	Labels    map[string]string
	TLSMode   string
}

// endpointDetails reads istiod's endpoints of host with their labels and TLS
// mode (/debug/endpointShardz).
func (p *istiodProc) endpointDetails(t *testing.T, host string) []endpointDetail {
	t.Helper()
	_, body, err := httpGet("http://" + p.httpAddr + "/debug/endpointShardz")
	if err != nil {
		t.Fatal(err)
	}
	var shards map[string]map[string]struct {
		Shards map[string][]endpointDetail
	}
	if err := json.Unmarshal(body, &shards); err != nil {
		t.Fatal(err)
	}
	var out []endpointDetail
	for _, ns := range shards[host] {
		for _, eps := range ns.Shards {
			out = append(out, eps...)
		}
	}
	return out
}

func randomSuffix(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// kubeClient talks to the harness's kube-apiserver with the admin token of
// its kubeconfig. The API server is on loopback with a self-signed
// certificate, hence no verification.
type kubeClient struct {
	server, token string
	http          *http.Client
}

func kubeAPI(t *testing.T) *kubeClient {
	t.Helper()
	b, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	k := &kubeClient{http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback test API server
	}}}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "server: "); ok {
			k.server = v
		}
		if v, ok := strings.CutPrefix(line, "token: "); ok {
			k.token = v
		}
	}
	if k.server == "" || k.token == "" {
		t.Fatalf("kubeconfig %s: no server or token", kubeconfig)
	}
	return k
}

func (k *kubeClient) post(t *testing.T, path string, obj any) int {
	t.Helper()
	code, body := k.postBody(t, path, obj)
	if code >= 300 && code != http.StatusConflict {
		t.Fatalf("POST %s: %d: %s", path, code, body)
	}
	return code
}

// postBody POSTs obj as JSON and returns the status code and the answer.
func (k *kubeClient) postBody(t *testing.T, path string, obj any) (int, []byte) {
	t.Helper()
	body, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, k.server+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+k.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := k.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var msg bytes.Buffer
	_, _ = msg.ReadFrom(resp.Body)
	return resp.StatusCode, msg.Bytes()
}

// ensureNamespace creates namespace name if it does not exist and puts it
// in the view of the test's istiods (groupNamespace).
func (k *kubeClient) ensureNamespace(t *testing.T, name string) {
	t.Helper()
	groupNamespace(t, name)
}

func (k *kubeClient) createService(t *testing.T, namespace, name string, selector map[string]string) {
	t.Helper()
	if code := k.post(t, "/api/v1/namespaces/"+namespace+"/services", map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"spec": map[string]any{
			"selector": selector,
			"ports":    []map[string]any{{"name": "http", "port": 8080, "protocol": "TCP"}},
		},
	}); code == http.StatusConflict {
		t.Fatalf("Service %s/%s exists already", namespace, name)
	}
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, k.server+"/api/v1/namespaces/"+namespace+"/services/"+name, nil)
		req.Header.Set("Authorization", "Bearer "+k.token)
		if resp, err := k.http.Do(req); err == nil {
			resp.Body.Close()
		}
	})
}
