package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// chartSinks are the values of config.sink the chart takes; the alerts it
// renders may differ with each.
var chartSinks = []string{"xds", "kubernetes", "both"}

// helmTool is helm, built or located once as hack/chart-check.sh does
// (hack/tools.sh, cached).
var helmTool = sync.OnceValues(func() (string, error) {
	var out bytes.Buffer
	err := command(repoRoot, nil, &out, "bash", "-c", `source hack/tools.sh && tools_helm >&2 && echo "$HELM"`)
	return strings.TrimSpace(out.String()), err
})

// helmTemplate renders the chart with helm.
func helmTemplate(t *testing.T, set ...string) string {
	t.Helper()
	helmBin, err := helmTool()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"template", "registry-adapter", "manifests/chart/registry-adapter", "--namespace", "istio-system"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	home := t.TempDir()
	var out bytes.Buffer
	if err := command(repoRoot, []string{"HELM_CACHE_HOME=" + home, "HELM_CONFIG_HOME=" + home, "HELM_DATA_HOME=" + home},
		&out, helmBin, args...); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// manifestcheckTool is hack/manifestcheck, built (when its sources
// change) or located as hack/chart-check.sh does.
var manifestcheckTool = sync.OnceValues(func() (string, error) {
	var out bytes.Buffer
	err := command(repoRoot, nil, &out, "bash", "-c", `source hack/tools.sh && tools_manifestcheck >&2 && echo "$MC"`)
	return strings.TrimSpace(out.String()), err
})

// chartAlertMetrics renders the chart with its alerts on, for each sink,
// and has `manifestcheck alerts` parse every alert with Prometheus's own
// PromQL parser (hack/manifestcheck, the module that carries Prometheus's
// code); it returns each metric an alert selects, with the alerts that do.
func chartAlertMetrics(t *testing.T) map[string][]string {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for _, sink := range chartSinks {
		f := filepath.Join(dir, "sink-"+sink+".yaml")
		if err := os.WriteFile(f, []byte(helmTemplate(t, "prometheusRule.enabled=true", "config.sink="+sink)), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	mc, err := manifestcheckTool()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := command(repoRoot, nil, &out, mc, append([]string{"alerts"}, files...)...); err != nil {
		t.Fatal(err)
	}
	var alerts []struct {
		Alert   string
		Metrics []string
	}
	if err := json.Unmarshal(out.Bytes(), &alerts); err != nil {
		t.Fatalf("manifestcheck alerts: %v: %.300s", err, out.String())
	}
	names := map[string][]string{}
	for _, a := range alerts {
		for _, m := range a.Metrics {
			if !slices.Contains(names[m], a.Alert) {
				names[m] = append(names[m], a.Alert)
			}
		}
	}
	return names
}

// prometheusOwn are the series Prometheus makes itself for every target:
// no exporter exposes them.
var prometheusOwn = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}

// bornWithFirstEvent are the metrics an alert reads whose series cannot
// exist before their first event, with why the alert still works. Each is
// a known delay, not a miss: keep the list short.
var bornWithFirstEvent = map[string]string{
	// Labelled by the API's answer (kind, reason: an HTTP status among
	// others), unknown until it comes. RegistryAdapterKubeWriteErrors is
	// rate() with a for: clause, for errors that persist: a series born at
	// 1 shows its rate from its second error, one scrape later.
	"registry_adapter_kube_errors_total": "its labels come with the first error; the alert is for persistent errors",
}

// TestAlertsParseAndNameLiveMetrics: every alert the chart renders (with
// its alerts on, for each sink) is valid PromQL to Prometheus's own parser
// (make chart-check checks that too, and runs promtool when it is built),
// and every metric it names has a series on a running adapter's /metrics:
// an alert on a misspelt metric never fires. The adapter runs what the
// alerts watch: a Consul source, both sinks (xDS over
// TLS, to a connected istiod, and the Kubernetes API), so that a metric
// missing here is one no installation exposes, or one that only appears
// after its first event (which rate(), increase() and absent() then
// misread).
func TestAlertsParseAndNameLiveMetrics(t *testing.T) {
	t.Parallel()
	names := chartAlertMetrics(t)
	if len(names) == 0 {
		t.Fatal("the alerts name no metric")
	}

	installIstioCRDs(t)
	const ns = "alerts-live"
	kubeNamespace(t, ns)
	c, consulAddr := startConsul(t, 0)
	register(t, c, "web", "vm-1", "10.72.0.1", 8080, nil, map[string]string{"protocol": "http"})
	dir := t.TempDir()
	const san = "registry-adapter.istio-system.svc"
	caPEM := writeKeyPair(t, dir, san)
	a := startAdapter(t, fmt.Sprintf(`
server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}", tls: {certFile: %q, keyFile: %q}}
debounce: {quiet: 50ms, max: 300ms}
output: {namespace: %s}
sink: both
kubernetesSink: {kubeconfig: %q, owner: e2e-alerts, leaderElection: {enabled: false}}
sources:
- name: dc1
  consul: {address: %q}
`, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), ns, kubeconfig, consulAddr), 0)
	p := startIstiod(t, tlsMesh(a.xdsAddr, caPEM, san))
	p.waitReady(t)
	url := "http://" + a.debugAddr + "/metrics"
	// The first reply on a stream is a sync; only a change after it is
	// measured from change to ACK (what RegistryAdapterIstiodNotAcking reads).
	eventually(t, 60*time.Second, "istiod ACKed its first ServiceEntries", func() error {
		if metric(t, url, "registry_adapter_server_client_acked", "type=networking.istio.io/v1/ServiceEntry") != 1 {
			return fmt.Errorf("not ACKed yet")
		}
		return nil
	})
	register(t, c, "web", "vm-2", "10.72.0.2", 8080, nil, map[string]string{"protocol": "http"})
	eventually(t, 60*time.Second, "istiod ACKed a change", func() error {
		if metric(t, url, "registry_adapter_server_change_to_ack_seconds_count") == 0 {
			return fmt.Errorf("no ACK of a change yet")
		}
		return nil
	})

	_, body, err := httpGet(url)
	if err != nil {
		t.Fatal(err)
	}
	tp := expfmt.NewTextParser(model.UTF8Validation)
	families, err := tp.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	exposed := map[string]bool{}
	for name, f := range families {
		if len(f.GetMetric()) == 0 {
			continue
		}
		exposed[name] = true
		if f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY {
			for _, s := range []string{"_count", "_sum", "_bucket"} {
				exposed[name+s] = true
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		if slices.Contains(prometheusOwn, name) {
			continue
		}
		if why, ok := bornWithFirstEvent[name]; ok {
			t.Logf("%s: no series before its first event (%s)", name, why)
			continue
		}
		if !exposed[name] {
			t.Errorf("alerts %v name %s, which has no series on the running adapter's /metrics", names[name], name)
		}
	}
	t.Logf("%d metrics named by the alerts, each exposed", len(names))
}
