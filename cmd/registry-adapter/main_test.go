package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

func TestRenderExample(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main([]string{"render", "--config", "../../examples/static.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	// Every document is a Kubernetes object kubectl apply accepts.
	dec := yaml.NewDecoder(&out)
	kinds := map[string]int{}
	endpoints := 0
	for {
		var doc struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Metadata   struct {
				Name, Namespace string
			} `yaml:"metadata"`
			Spec map[string]any `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
		if doc.APIVersion != "networking.istio.io/v1" || doc.Metadata.Name == "" || doc.Metadata.Namespace != "registry-adapter-entries" || len(doc.Spec) == 0 {
			t.Errorf("bad document %+v", doc)
		}
		kinds[doc.Kind]++
		if eps, ok := doc.Spec["endpoints"].([]any); ok {
			endpoints += len(eps)
		}
	}
	// The example sets inline mode: the 3 instances are endpoints.
	if kinds["ServiceEntry"] != 2 || kinds["WorkloadEntry"] != 0 || endpoints != 3 {
		t.Errorf("rendered %v with %d endpoints, want 2 ServiceEntries holding 3 endpoints", kinds, endpoints)
	}
}

// TestRenderIgnoresShards: render prints every resource whatever the
// number of listeners; sharding is how they are served, not what they are.
func TestRenderIgnoresShards(t *testing.T) {
	example, err := os.ReadFile("../../examples/static.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sharded := filepath.Join(t.TempDir(), "sharded.yaml")
	if err := os.WriteFile(sharded, []byte(strings.Replace(string(example), "server:\n", "server:\n  shards: 4\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	var one, four, errOut bytes.Buffer
	if code := Main([]string{"render", "--config", "../../examples/static.yaml"}, &one, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if code := Main([]string{"render", "--config", sharded}, &four, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if one.String() != four.String() || one.Len() == 0 {
		t.Errorf("render with shards: 4 differs from one listener:\n%s\n---- vs ----\n%s", four.String(), one.String())
	}
}

func TestValidateAndErrors(t *testing.T) {
	t.Setenv(configEnv, "")
	dir := t.TempDir()
	// A values override that drops the sources, leaving the rest.
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, []byte("output: {mode: inline}\nsources: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("sources:\n- name: vms\n  static: {servcies: []}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../examples/static.yaml")
	if err != nil {
		t.Fatal(err)
	}
	withShards := func(name, shards string) string {
		p := filepath.Join(dir, name)
		cfg := strings.Replace(string(example), "server:\n", "server:\n  shards: "+shards+"\n", 1)
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sharded, tooMany := withShards("sharded.yaml", "3"), withShards("too-many.yaml", "100")
	cases := []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"validate", "--config", "../../examples/static.yaml"}, 0, "valid (1 sources"},
		{[]string{"validate", "--config", bad}, 1, "sources[0].static.servcies: unknown key"},
		{[]string{"validate", "--config", empty}, 1, "sources: at least one source is required"},
		{[]string{"run", "--config", empty}, 1, "sources: at least one source is required"},
		{[]string{"validate", "--config", sharded}, 0, "3 shards on 127.0.0.1:15010 127.0.0.1:15011 127.0.0.1:15012)"},
		{[]string{"validate", "--config", tooMany}, 1, "server.shards 100: must be between 1 and 64"},
		{[]string{"validate"}, 2, "--config (or $REGISTRY_ADAPTER_CONFIG) is required"},
		{[]string{"render", "--config", filepath.Join(dir, "missing.yaml")}, 1, "no such file"},
		{[]string{"version"}, 0, "registry-adapter "},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{nil, 2, "Usage"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := Main(c.args, &out, &errOut)
		all := out.String() + errOut.String()
		if code != c.code || !strings.Contains(all, c.contains) {
			t.Errorf("%v: exit %d, output %q; want exit %d containing %q", c.args, code, all, c.code, c.contains)
		}
	}
}

// TestVersionAndBuildInfo: the version command and the build_info metric
// report the same version and commit, and the version is a release version
// (the chart, the image and CHANGELOG.md follow it: make release-check).
func TestVersionAndBuildInfo(t *testing.T) {
	oldCommit := commit
	commit = "0123456789ab"
	t.Cleanup(func() { commit = oldCommit })

	var out, errOut bytes.Buffer
	if code := Main([]string{"version"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if want := "registry-adapter " + version + " (commit 0123456789ab, go"; !strings.HasPrefix(out.String(), want) {
		t.Errorf("version printed %q, want prefix %q", out.String(), want)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(version) {
		t.Errorf("version %q is not MAJOR.MINOR.PATCH", version)
	}

	reg := prometheus.NewRegistry()
	registerBuildInfo(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetName() != "registry_adapter_build_info" || len(mfs[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v, want one registry_adapter_build_info series", mfs)
	}
	m := mfs[0].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["version"] != version || labels["revision"] != "0123456789ab" || labels["goversion"] != runtime.Version() || m.GetGauge().GetValue() != 1 {
		t.Errorf("build_info %v = %v, want version %s revision 0123456789ab goversion %s, value 1", labels, m.GetGauge().GetValue(), version, runtime.Version())
	}
}
