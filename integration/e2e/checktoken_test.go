package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckTokenFromAnotherHost: `check` against istiod from a non-loopback
// address, as from a pod in a cluster (issue 18, item 5). istiod's
// monitoring listener (the debug API over plain HTTP) and its secure xDS
// listener (the same API over xDS, TLS) listen on the host end of a veth
// pair; check runs inside the network namespace at the other end, so istiod
// sees a non-loopback caller. Over plain HTTP, without a token istiod
// answers 401, and with one check refuses to send it in clear text (before,
// it did: the token can ask istiod's CA for certificates). Over xDS on TLS,
// istiod's certificate verified with the root of the istio-ca-root-cert
// ConfigMap, a token of a service account of istio-system for another
// audience is refused, and one for the audience istio-ca (istiod's default
// TOKEN_AUDIENCES, checked by a TokenReview against the kube-apiserver) is
// accepted: check finds istiod faithful.
func TestCheckTokenFromAnotherHost(t *testing.T) {
	t.Parallel()
	l := makeNetns(t)
	// istiod writes istio-ca-root-cert only into the namespaces it reads.
	groupNamespace(t, "istio-system")
	a := startAdapter(t, staticConfig, 0)
	mon := freeAddrOn(t, l.hostIP)
	secure := freeAddrOn(t, l.hostIP)
	runDir := t.TempDir()
	mesh := filepath.Join(runDir, "mesh.yaml")
	if err := os.WriteFile(mesh, []byte(meshFor(a.xdsAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := launchIstiod(t, runDir, []string{"ISTIOD_EXTRA_ARGS=--monitoringAddr=" + mon + " --secureGRPCAddr=" + secure}, mesh)
	if err != nil {
		t.Fatal(err)
	}
	p.waitReady(t)

	k := kubeAPI(t)
	const sa = "registry-adapter-check"
	k.post(t, "/api/v1/namespaces/istio-system/serviceaccounts", map[string]any{
		"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]any{"name": sa}})
	dir := t.TempDir()
	good := filepath.Join(dir, "good-token")
	wrongAud := filepath.Join(dir, "wrong-audience-token")
	writeSecret(t, good, k.serviceAccountToken(t, "istio-system", sa, "istio-ca"))
	writeSecret(t, wrongAud, k.serviceAccountToken(t, "istio-system", sa, "https://kubernetes.default.svc.cluster.local"))
	// istiod's root certificate, as a pod mounts it from the ConfigMap
	// istiod writes into every namespace.
	root := filepath.Join(dir, "root-cert.pem")
	eventually(t, 60*time.Second, "istiod wrote istio-ca-root-cert", func() error {
		code, body := k.get(t, "/api/v1/namespaces/istio-system/configmaps/istio-ca-root-cert")
		var cm struct {
			Data map[string]string `json:"data"`
		}
		if err := json.Unmarshal(body, &cm); err != nil || code != http.StatusOK || cm.Data["root-cert.pem"] == "" {
			return fmt.Errorf("%d %v", code, err)
		}
		writeSecret(t, root, cm.Data["root-cert.pem"])
		return nil
	})

	// The adapter binary reads only local files for a static source: it
	// runs unchanged in the namespace.
	check := func(extra ...string) (int, string) {
		args := append([]string{"netns", "exec", l.ns, adapterBin, "check", "--config", a.configPath,
			"--timeout", "30s", "--log-level", "error"}, extra...)
		out, err := exec.Command("ip", args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}
	if code, out := check("--istiod", "http://"+mon); code != 1 || !strings.Contains(out, "401") {
		t.Errorf("plain HTTP without a token: exit %d, want 1 with istiod's 401:\n%s", code, out)
	}
	if code, out := check("--istiod", "http://"+mon, "--istiod-token-file", good); code != 1 || !strings.Contains(out, "clear text") {
		t.Errorf("plain HTTP with a token: exit %d, want 1 refusing to send it:\n%s", code, out)
	}
	overXDS := []string{"--istiod-xds", secure, "--istiod-ca-file", root}
	// istiod's TLS port may still be starting (EOF): retried until istiod
	// answers, which must be its refusal.
	eventually(t, 60*time.Second, "over xDS, a token with the wrong audience is refused by istiod", func() error {
		code, out := check(append(overXDS, "--istiod-token-file", wrongAud)...)
		if code != 1 || !strings.Contains(out, "Unauthenticated") {
			return fmt.Errorf("exit %d, want 1 with istiod's refusal:\n%s", code, out)
		}
		return nil
	})
	eventually(t, 60*time.Second, "check over xDS with the istio-ca token finds istiod faithful", func() error {
		code, out := check(append(overXDS, "--istiod-token-file", good)...)
		if code != 0 || !strings.Contains(out, "istiod is faithful") {
			return fmt.Errorf("exit %d:\n%s", code, out)
		}
		return nil
	})
	// The token is a secret: check never prints it.
	tok, _ := os.ReadFile(good)
	if _, out := check(append(overXDS, "--istiod-token-file", good)...); strings.Contains(out, strings.TrimSpace(string(tok))) {
		t.Errorf("check printed the token")
	}
}

// freeAddrOn is a free TCP port on ip.
func freeAddrOn(t *testing.T, ip string) string {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

func writeSecret(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// get GETs path and returns the status code and the answer.
func (k *kubeClient) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, k.server+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+k.token)
	resp, err := k.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// serviceAccountToken asks the TokenRequest API for a token of the service
// account with this audience, as a projected volume gets from the kubelet.
func (k *kubeClient) serviceAccountToken(t *testing.T, ns, name, audience string) string {
	t.Helper()
	code, body := k.postBody(t, "/api/v1/namespaces/"+ns+"/serviceaccounts/"+name+"/token",
		map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
			"spec": map[string]any{"audiences": []string{audience}, "expirationSeconds": 600}})
	var tr struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || code != http.StatusCreated || tr.Status.Token == "" {
		t.Fatalf("TokenRequest for %s/%s: %d %v", ns, name, code, err)
	}
	return tr.Status.Token
}
