package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The committed default render must pass, and each mistake below must be caught, by the layer named.
func TestRenderedManifests(t *testing.T) {
	orig, err := os.ReadFile("../../manifests/registry-adapter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new, want string
	}{
		{"valid as committed", "", "", ""},
		{"unknown field (strict decoding)", "  revisionHistoryLimit: 5", "  revisionHistoryLimt: 5", `unknown field "spec.revisionHistoryLimt"`},
		{"wrong type (strict decoding)", "containerPort: 15010", `containerPort: "15010x"`, "cannot unmarshal string"},
		{"duplicate key", "  replicas: 2\n", "  replicas: 2\n  replicas: 3\n", `key "replicas" already set`},
		{"bad quantity", "memory: 512Mi", "memory: 512MiB", "quantities must match"},
		{"long port name (API validation)", "name: http-monitoring", "name: http-monitoring-port", "must be no more than 15 characters"},
		{"invalid label value (API validation)", "app: istiod", `app: "istiod!"`, "a valid label must be"},
		{"privilege escalation (pod security)", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "pod security (restricted)"},
		{"root allowed (pod security)", "runAsNonRoot: true", "runAsNonRoot: false", "pod security (restricted)"},
		{"loopback debug listener", "debugListen: 0.0.0.0:15014", "debugListen: 127.0.0.1:15014", "loopback"},
		{"admin listener on the pod address", "adminListen: 127.0.0.1:15015", "adminListen: 0.0.0.0:15015", "not a loopback address"},
		{"admin listener on the monitoring port", "adminListen: 127.0.0.1:15015", "adminListen: 127.0.0.1:15014", "the admin port is the container port http-monitoring"},
		{"egress without DNS", "{port: 53, protocol: UDP}", "{port: 54, protocol: UDP}", "without a rule for DNS"},
		{"state file on the read-only root filesystem", "    log:\n      format: json", "    stateFile:\n      path: /var/lib/registry-adapter/state.json\n    log:\n      format: json", "its directory is not a writable volume mount"},
		{"writable mount that is not the state file's", "readOnly: true", "readOnly: false", "is not readOnly"},
		{"listener port mismatch", "listen: 0.0.0.0:15010", "listen: 0.0.0.0:15011", "is not the grpc-xds container port"},
		{"shards without their ports", "shards: 1", "shards: 2", "shard 1 listens on 15011, want a container port grpc-xds-1 15011"},
		{"token outside mounts", "tokenFile: /etc/registry-adapter/consul/token", "tokenFile: /etc/consul/token", "not a volume mount"},
		{"service misses the pods", "targetPort: grpc-xds", "targetPort: grpc", "is no container port"},
		{"readiness probe path", "path: /readyz", "path: /ready", `readinessProbe path "/ready"`},
		{"sidecar injection", `sidecar.istio.io/inject: "false"`, `sidecar.istio.io/inject: "true"`, "sidecar.istio.io/inject"},
		{"PDB that blocks drains", "minAvailable: 1", "minAvailable: 2", "blocks every drain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := string(orig)
			if c.old != "" {
				if !strings.Contains(text, c.old) {
					t.Fatalf("the render no longer contains %q: update the test", c.old)
				}
				text = strings.Replace(text, c.old, c.new, 1)
			}
			file := filepath.Join(t.TempDir(), "render.yaml")
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, errs := validateFile(file)
			got := errors.Join(errs...)
			switch {
			case c.want == "" && got != nil:
				t.Fatalf("want valid, got:\n%v", got)
			case c.want != "" && got == nil:
				t.Fatalf("want an error containing %q, got none", c.want)
			case c.want != "" && !strings.Contains(got.Error(), c.want):
				t.Fatalf("want an error containing %q, got:\n%v", c.want, got)
			}
		})
	}
}

func TestDashboard(t *testing.T) {
	old := os.Stdout
	os.Stdout, _ = os.Open(os.DevNull)
	defer func() { os.Stdout = old }()
	if err := checkDashboard("../../manifests/grafana/registry-adapter-dashboard.json"); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	err := os.WriteFile(bad, []byte(`{"title":"x","uid":"x","schemaVersion":39,"panels":[{"id":1,"type":"timeseries","title":"t",
		"gridPos":{"h":1,"w":30,"x":0,"y":0},"datasource":{"uid":"${datasource}"},"targets":[{"refId":"A","expr":"sum(rate(registry_adapter_x[5m])"}]}]}`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	err = checkDashboard(bad)
	for _, want := range []string{"no datasource variable", "does not fit 24 columns", "unclosed"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error containing %q, got %v", want, err)
		}
	}
}

func TestIstiodValues(t *testing.T) {
	files := []string{"../../manifests/istiod-values.yaml", "../../manifests/istiod-values-shards.yaml",
		"../../manifests/istiod-values-plaintext.yaml"}
	if err := checkIstiodValues(files); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile("../../manifests/istiod-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ old, new, want string }{
		{"  - address: k8s://\n", "", "no k8s://"},
		{"mode: SIMPLE", "mode: ISTIO_MUTUAL", "silently uses plaintext"},
		{"mode: SIMPLE", "mode: MUTUAL", "silently uses plaintext"},
		{"credentialName: registry-adapter-tls", "credentialName: registry-adapter-tls\n      caCertificates: x", "exclude each other"},
		{"credentialName: registry-adapter-tls", "unused: x", "unknown field"},
		{"credentialName: registry-adapter-tls", "# no CA", "system roots"},
		{"tlsSettings:", "tlsSetting:", "unknown field"},
		{"      - registry-adapter.istio-system.svc\n", "      - registry-adapter\n", "subjectAltNames"},
		{"      sni: registry-adapter.istio-system.svc\n", "", ".sni"},
		{"    tlsSettings:\n      mode: SIMPLE\n      sni: registry-adapter.istio-system.svc\n      subjectAltNames:\n      - registry-adapter.istio-system.svc\n      credentialName: registry-adapter-tls\n", "", "no tlsSettings"},
	} {
		text := string(orig)
		if !strings.Contains(text, c.old) {
			t.Fatalf("istiod-values.yaml no longer contains %q: update the test", c.old)
		}
		file := filepath.Join(t.TempDir(), "values.yaml")
		if err := os.WriteFile(file, []byte(strings.Replace(text, c.old, c.new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := checkIstiodFile(file); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q -> %q: want an error containing %q, got %v", c.old, c.new, c.want, err)
		}
	}
	// A file path where istiod wants the PEM.
	file := filepath.Join(t.TempDir(), "values.yaml")
	text := "meshConfig:\n  configSources:\n  - address: k8s://\n  - address: " + adapterSource +
		"\n    tlsSettings: {mode: SIMPLE, caCertificates: /etc/ca.crt, subjectAltNames: [" + adapterHost + "]}\n"
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkIstiodFile(file); err == nil || !strings.Contains(err.Error(), "not a file path") {
		t.Errorf("want the file-path error, got %v", err)
	}
}
