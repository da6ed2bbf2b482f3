package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/registry-adapter/registry-adapter/fidelity"
	"github.com/registry-adapter/registry-adapter/sinks/kube"
)

// The chart as the test fixture: what `helm install` would create, run the way the cluster would run it.
//
// For each example values file of a sink (manifests/chart/registry-adapter/ci/sink-*-values.yaml) the chart is
// rendered with `helm template`, every object is applied to the harness's kube-apiserver, and the Deployment's pod
// is run by podRun below as a kubelet and a container runtime would: the image's file system (hack/image.sh build,
// then unpacked), the ConfigMap and Secrets read back from the API server and written at the Deployment's mount
// paths with its modes and fsGroup, the service-account token from the TokenRequest API when the pod mounts one,
// the container's command, args and env, its user and group, and a read-only root (a private mount namespace and a
// chroot: root, and util-linux's unshare, are needed). The adapter then calls the API server as the chart's service
// account, under the chart's Roles.
//
// What differs from a cluster, the minimum for a loopback test (each rewrite is counted, so that a chart change
// that makes one miss fails here):
//   - ports: ports.grpc, ports.monitoring and ports.admin are set (--set) to free ports, so that three pods share
//     the host's network;
//   - in the rendered config.yaml, the 0.0.0.0 the Deployment binds becomes 127.0.0.1, and the Consul address of
//     the values (consul-server.consul.svc:8500, a cluster DNS name) becomes the test agent's;
//   - KUBERNETES_SERVICE_HOST and _PORT, which the kubelet sets to the kubernetes Service, name the test's API
//     server, and ca.crt is its serving certificate;
//   - istiod's mesh config is manifests/istiod-values.yaml's meshConfig (or, for sink both, the configSources the
//     release's NOTES print) with the adapter's cluster DNS name:port in the address replaced by 127.0.0.1:<port>;
//     sni, subjectAltNames and credentialName stay as written, so istiod verifies the certificate as in a cluster,
//     with the CA it reads from the Secret in istio-system through the API.
//
// One istiod reads manifests/istiod-values.yaml (k8s:// and the xds sink's release, over TLS with the chart's
// generated key pair): it holds the xds release's services through xDS and the kubernetes and both releases'
// through k8s://. A second istiod reads only the both release's xDS listener, as NOTES tell. Each release reads its
// own Consul agent, whose services carry the release's prefix, and each check looks at that prefix's hosts only.

// chartCase is one sink's values file, run as a release.
type chartCase struct {
	sink, release, prefix string
	outputNamespace       string   // "" for the xDS sink
	ports                 []string // --set for ports.grpc, ports.monitoring, ports.admin

	consul *consulAgent
	render []*unstructured.Unstructured
	pod    *adapterProc
	root   string
}

var (
	helmOnce sync.Once
	helmBin  string
	helmErr  error
)

// helm builds or locates helm as hack/chart-check.sh does (hack/tools.sh, cached).
func helm(t *testing.T, args ...string) string {
	t.Helper()
	helmOnce.Do(func() {
		var out bytes.Buffer
		helmErr = command(repoRoot, nil, &out, "bash", "-c", `source hack/tools.sh && tools_helm >&2 && echo "$HELM"`)
		helmBin = strings.TrimSpace(out.String())
	})
	if helmErr != nil {
		t.Fatal(helmErr)
	}
	home := t.TempDir()
	var out bytes.Buffer
	env := []string{"HELM_CACHE_HOME=" + home, "HELM_CONFIG_HOME=" + home, "HELM_DATA_HOME=" + home}
	if err := command(repoRoot, env, &out, helmBin, args...); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

const chartDir = "manifests/chart/registry-adapter"

// renderChart is `helm template` of the chart with a ci/ values file, as objects.
func renderChart(t *testing.T, release, values string, set ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", "istio-system", "-f", filepath.Join(chartDir, "ci", values)}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(helm(t, args...), "\n---") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("helm template %s: %v", values, err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs
}

// gvrOf maps the kinds the chart renders to their resources; a new kind fails here, to be added knowingly.
func gvrOf(t *testing.T, u *unstructured.Unstructured) (schema.GroupVersionResource, bool) {
	t.Helper()
	res := map[string]string{"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "Secret": "secrets",
		"ConfigMap": "configmaps", "Service": "services", "Deployment": "deployments", "Role": "roles",
		"RoleBinding": "rolebindings", "NetworkPolicy": "networkpolicies", "PodDisruptionBudget": "poddisruptionbudgets"}
	r, ok := res[u.GetKind()]
	if !ok {
		t.Fatalf("the render has a %s (%s): teach chart_test.go to apply it", u.GetKind(), u.GetName())
	}
	gv, err := schema.ParseGroupVersion(u.GetAPIVersion())
	if err != nil {
		t.Fatal(err)
	}
	return gv.WithResource(r), u.GetKind() == "Namespace"
}

// applyRender applies every object as `helm install` would (namespaces first), with server-side apply, as the
// cluster's admin.
func applyRender(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	c := kubeDynamic(t)
	sorted := slices.Clone(objs)
	slices.SortStableFunc(sorted, func(a, b *unstructured.Unstructured) int {
		rank := func(u *unstructured.Unstructured) int {
			if u.GetKind() == "Namespace" {
				return 0
			}
			return 1
		}
		return rank(a) - rank(b)
	})
	for _, u := range sorted {
		gvr, cluster := gvrOf(t, u)
		data, err := u.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		ri := c.Resource(gvr)
		var r interface {
			Patch(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*unstructured.Unstructured, error)
		} = ri
		if !cluster {
			r = ri.Namespace(u.GetNamespace())
		}
		force := true
		if _, err := r.Patch(context.Background(), u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "helm", Force: &force}); err != nil {
			t.Fatalf("apply %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
}

// typed decodes the one object of kind (and name, if given) of a render.
func typed[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind && (name == "" || u.GetName() == name) {
			out := new(T)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
				t.Fatal(err)
			}
			return out
		}
	}
	t.Fatalf("no %s %s in the render", kind, name)
	return nil
}

// rewrite replaces old with new exactly n times in s, failing otherwise.
func rewrite(t *testing.T, what, s, old, new string, n int) string {
	t.Helper()
	if got := strings.Count(s, old); got != n {
		t.Fatalf("%s: %q occurs %d times, want %d (did the chart change?):\n%s", what, old, got, n, s)
	}
	return strings.ReplaceAll(s, old, new)
}

var (
	imageOnce sync.Once
	imageRoot string
	imageErr  error
)

// imageRootfs builds the adapter's image as `make image` does (hack/image.sh) and unpacks its file system.
func imageRootfs(t *testing.T) string {
	t.Helper()
	imageOnce.Do(func() {
		dir, err := os.MkdirTemp("", "registry-adapter-image-")
		if err != nil {
			imageErr = err
			return
		}
		layout, root := filepath.Join(dir, "image"), filepath.Join(dir, "root")
		if imageErr = command(repoRoot, nil, nil, "bash", "hack/image.sh", "build", layout); imageErr != nil {
			return
		}
		imageErr = command(repoRoot, nil, nil, "bash", "hack/image.sh", "unpack", root, layout)
		imageRoot = root
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return imageRoot
}

// apiServerCA is the harness API server's serving certificate (self-signed by kube-apiserver), the pod's ca.crt.
func apiServerCA(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(kubeconfig), "certs", "apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kubeClientset(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	c, err := kubernetes.NewForConfig(kubeREST(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// podFiles writes what the kubelet would mount for the Deployment's pod into root, and returns the container's
// environment. configRewrite is applied to files from ConfigMaps (the rendered config.yaml).
func podFiles(t *testing.T, dep *appsv1.Deployment, root string, configRewrite func(string) string) []string {
	t.Helper()
	ctx := context.Background()
	cs := kubeClientset(t)
	ns := dep.Namespace
	spec := dep.Spec.Template.Spec
	ctr := spec.Containers[0]
	gid := -1
	if spec.SecurityContext != nil && spec.SecurityContext.FSGroup != nil {
		gid = int(*spec.SecurityContext.FSGroup)
	}
	write := func(path string, data []byte, mode os.FileMode) {
		t.Helper()
		dst := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, mode); err != nil {
			t.Fatal(err)
		}
		// The kubelet gives volume files the pod's fsGroup.
		if err := os.Chown(dst, 0, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dst, mode); err != nil {
			t.Fatal(err)
		}
	}
	token := func(audiences []string, seconds *int64) []byte {
		t.Helper()
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, spec.ServiceAccountName, &authv1.TokenRequest{
			Spec: authv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: seconds}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("token for service account %s/%s: %v", ns, spec.ServiceAccountName, err)
		}
		return []byte(tr.Status.Token)
	}
	mode := func(m *int32, def os.FileMode) os.FileMode {
		if m == nil {
			return def
		}
		return os.FileMode(*m)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range ctr.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Fatalf("mount %s: no volume", m.Name)
		}
		switch {
		case v.ConfigMap != nil:
			cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if m.SubPath == "" || len(v.ConfigMap.Items) > 0 {
				t.Fatalf("mount %s: only a ConfigMap key by subPath is emulated", m.Name)
			}
			write(m.MountPath, []byte(configRewrite(cm.Data[m.SubPath])), mode(v.ConfigMap.DefaultMode, 0o644))
		case v.Secret != nil:
			sec, err := cs.CoreV1().Secrets(ns).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("mount %s: Secret %s: %v (the pod would stay ContainerCreating)", m.Name, v.Secret.SecretName, err)
			}
			items := v.Secret.Items
			if len(items) == 0 {
				for k := range sec.Data {
					items = append(items, corev1.KeyToPath{Key: k, Path: k})
				}
			}
			for _, it := range items {
				data, ok := sec.Data[it.Key]
				if !ok {
					t.Fatalf("mount %s: Secret %s has no key %s", m.Name, sec.Name, it.Key)
				}
				write(filepath.Join(m.MountPath, it.Path), data, mode(it.Mode, mode(v.Secret.DefaultMode, 0o644)))
			}
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.ServiceAccountToken == nil {
					t.Fatalf("mount %s: only serviceAccountToken projections are emulated", m.Name)
				}
				var aud []string
				if a := src.ServiceAccountToken.Audience; a != "" {
					aud = []string{a}
				}
				write(filepath.Join(m.MountPath, src.ServiceAccountToken.Path), token(aud, src.ServiceAccountToken.ExpirationSeconds),
					mode(v.Projected.DefaultMode, 0o644))
			}
		default:
			t.Fatalf("mount %s: volume type not emulated", m.Name)
		}
	}
	if spec.AutomountServiceAccountToken != nil && *spec.AutomountServiceAccountToken {
		const dir = "/var/run/secrets/kubernetes.io/serviceaccount"
		exp := int64(3607)
		write(dir+"/token", token(nil, &exp), 0o644)
		write(dir+"/ca.crt", apiServerCA(t), 0o644)
		write(dir+"/namespace", []byte(ns), 0o644)
	}

	// The environment: what the runtime and the kubelet set, then the container's own.
	_, apiPort, _ := strings.Cut(strings.TrimPrefix(kubeREST(t).Host, "https://"), ":")
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=" + dep.Name + "-test",
		"KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT=" + apiPort}
	if len(ctr.EnvFrom) > 0 {
		t.Fatal("envFrom is not emulated")
	}
	for _, e := range ctr.Env {
		if e.ValueFrom != nil {
			t.Fatalf("env %s: valueFrom is not emulated", e.Name)
		}
		env = append(env, e.Name+"="+e.Value)
	}
	return env
}

// podRun runs the pod's container from root (a copy of the image's file system with the pod's files): in a
// private mount namespace the root becomes read-only (readOnlyRootFilesystem) with /proc, /dev and /sys from the
// host, then chroot runs the container's command as its user and group with the pod's fsGroup.
func podRun(t *testing.T, dep *appsv1.Deployment, root string, env []string) *process {
	t.Helper()
	spec := dep.Spec.Template.Spec
	ctr := spec.Containers[0]
	uid, gid, fsGroup := int64(0), int64(0), int64(-1)
	if sc := spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
		if sc.FSGroup != nil {
			fsGroup = *sc.FSGroup
		}
	}
	readOnly := false
	if sc := ctr.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
		readOnly = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
	}
	if uid == 0 {
		t.Fatal("the chart runs the adapter as root")
	}
	argv := append(slices.Clone(ctr.Command), ctr.Args...)
	if len(argv) == 0 {
		t.Fatal("the Deployment sets no command: the image's entrypoint would run, which this test does not read")
	}
	for _, d := range []string{"proc", "dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := map[string]string{}
	for _, b := range []string{"unshare", "mount", "chroot", "sh"} {
		p, err := exec.LookPath(b)
		if err != nil {
			t.Fatalf("%s (util-linux, coreutils) is needed to run the pod: %v", b, err)
		}
		bin[b] = p
	}
	ro := ""
	if readOnly {
		ro = fmt.Sprintf("%s -o remount,bind,ro %q && ", bin["mount"], root)
	}
	groups := ""
	if fsGroup >= 0 {
		groups = fmt.Sprintf("--groups=%d ", fsGroup)
	}
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = strconv.Quote(a)
	}
	script := fmt.Sprintf(`set -e
%[1]s --bind %[2]q %[2]q
%[1]s --rbind /proc %[2]q/proc
%[1]s --rbind /dev %[2]q/dev
%[1]s --rbind /sys %[2]q/sys
%[3]sexec %[4]s --userspec=%[5]d:%[6]d %[7]s%[2]q %[8]s`,
		bin["mount"], root, ro, bin["chroot"], uid, gid, groups, strings.Join(quoted, " "))
	cmd := exec.Command(bin["unshare"], "--mount", "--propagation", "private", bin["sh"], "-c", script)
	cmd.Env = env
	return launchCmd(t, filepath.Base(argv[0]), cmd)
}

// copyRoot copies the image's file system for one pod.
func copyRoot(t *testing.T, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "root")
	if err := command("", nil, nil, "cp", "-a", from, to); err != nil {
		t.Fatal(err)
	}
	return to
}

// startChartCase renders the case's values, applies the render, and starts its pod against its Consul agent.
func startChartCase(t *testing.T, c *chartCase) {
	t.Helper()
	grpc, mon := freePort(t), freePort(t)
	c.ports = []string{fmt.Sprintf("ports.grpc=%d", grpc), fmt.Sprintf("ports.monitoring=%d", mon), fmt.Sprintf("ports.admin=%d", freePort(t))}
	c.render = renderChart(t, c.release, "sink-"+c.sink+"-values.yaml", c.ports...)
	applyRender(t, c.render)
	dep := typed[appsv1.Deployment](t, c.render, "Deployment", "")
	c.root = copyRoot(t, imageRootfs(t))
	env := podFiles(t, dep, c.root, func(cfg string) string {
		cfg = rewrite(t, c.release+" config.yaml", cfg, "0.0.0.0:", "127.0.0.1:", 2)
		return rewrite(t, c.release+" config.yaml", cfg, "consul-server.consul.svc:8500", c.consul.addr, 1)
	})
	// The configuration as the test reads it (renderAndRead): the pod's files under its root.
	command := dep.Spec.Template.Spec.Containers[0].Command
	i := slices.Index(command, "--config")
	if i < 0 || i+1 >= len(command) {
		t.Fatalf("the container's command %q names no --config", command)
	}
	cfg, err := os.ReadFile(filepath.Join(c.root, command[i+1]))
	if err != nil {
		t.Fatal(err)
	}
	hostConfig := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(hostConfig, bytes.ReplaceAll(cfg, []byte(" /etc/registry-adapter/"), []byte(" "+c.root+"/etc/registry-adapter/")), 0o600); err != nil {
		t.Fatal(err)
	}
	c.pod = &adapterProc{configPath: hostConfig, xdsAddr: fmt.Sprintf("127.0.0.1:%d", grpc), debugAddr: fmt.Sprintf("127.0.0.1:%d", mon)}
	c.pod.process = podRun(t, dep, c.root, env)
}

// waitReady is the kubelet's readiness probe: /readyz on the monitoring port answers 200.
func (c *chartCase) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, 90*time.Second, c.release+" ready (/readyz)", func() error {
		select {
		case <-c.pod.done:
			t.Fatalf("%s exited:\n%s", c.release, c.pod.output())
		default:
		}
		code, body, err := httpGet("http://" + c.pod.debugAddr + "/readyz")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("readyz %d %v %.300s", code, err, body)
		}
		return nil
	})
}

// onlyPrefix keeps the hosts of a view that start with prefix (each release's Consul names its services so).
func onlyPrefix(v fidelity.View, prefix string) fidelity.View {
	out := fidelity.View{}
	for h, s := range v {
		if strings.HasPrefix(h, prefix) {
			out[h] = s
		}
	}
	return out
}

// chartHolds is holds for one release on a shared istiod: istiod's registry (the release's hosts), against the
// hand-written expectation and the adapter's own conversion; with sidecar, what a sidecar receives too; with
// dropOwner, the Kubernetes sink's owner label set aside (it is the sink's, not the registry's).
func chartHolds(t *testing.T, c *chartCase, p *istiodProc, want fidelity.View, sidecar, dropOwner bool) error {
	t.Helper()
	conv, got, err := renderAndRead(c.pod, p)
	if err != nil {
		return err
	}
	got = onlyPrefix(got, c.prefix)
	if dropOwner {
		for _, svc := range got {
			for k, ep := range svc.Endpoints {
				delete(ep.Labels, kube.LabelOwner)
				svc.Endpoints[k] = ep
			}
		}
	}
	if d := fidelity.Diff(want, got); len(d) > 0 {
		return fmt.Errorf("istiod's registry differs from what the test registered:\n%s", strings.Join(d, "\n"))
	}
	if d := fidelity.Diff(conv, got); len(d) > 0 {
		return fmt.Errorf("istiod's registry differs from the adapter's own conversion:\n%s", strings.Join(d, "\n"))
	}
	if !sidecar {
		return nil
	}
	px, err := p.sidecar(t)
	if err != nil {
		return err
	}
	view := px.View()
	for name := range view.Clusters {
		if parts := strings.Split(name, "|"); len(parts) == 4 && !strings.HasPrefix(parts[3], c.prefix) {
			delete(view.Clusters, name)
		}
	}
	if d := fidelity.DiffSidecar(want, view); len(d) > 0 {
		return fmt.Errorf("a sidecar's view differs:\n%s", strings.Join(d, "\n"))
	}
	return nil
}

// meshFromValues reads an istiod Helm values file's meshConfig and points the adapter's address at addr.
func meshFromValues(t *testing.T, file, adapterAddr string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, file))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		MeshConfig map[string]any `json:"meshConfig"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	mesh, err := yaml.Marshal(v.MeshConfig)
	if err != nil {
		t.Fatal(err)
	}
	return rewrite(t, file, string(mesh), "xds://registry-adapter.istio-system.svc:15010", "xds://"+adapterAddr, 1)
}

// meshFromNotes is the configSources block the release's NOTES print (hack/chart-notes.sh), with the adapter's
// address pointed at its pod.
func meshFromNotes(t *testing.T, c *chartCase, host string) string {
	t.Helper()
	args := []string{"hack/chart-notes.sh", c.release, "istio-system", "-f", filepath.Join(chartDir, "ci", "sink-"+c.sink+"-values.yaml")}
	for _, s := range c.ports {
		args = append(args, "--set", s)
	}
	var out bytes.Buffer
	if err := command(repoRoot, nil, &out, "bash", args...); err != nil {
		t.Fatal(err)
	}
	notes := out.String()
	start := strings.Index(notes, "     meshConfig:")
	if start < 0 {
		t.Fatalf("the %s NOTES print no meshConfig:\n%s", c.release, notes)
	}
	var block []string
	for _, line := range strings.Split(notes[start:], "\n") {
		if strings.TrimSpace(line) == "" {
			break
		}
		block = append(block, strings.TrimPrefix(line, "     "))
	}
	var mesh struct {
		MeshConfig map[string]any `json:"meshConfig"`
	}
	if err := yaml.Unmarshal([]byte(strings.Join(block, "\n")), &mesh); err != nil {
		t.Fatalf("the %s NOTES' meshConfig: %v\n%s", c.release, err, strings.Join(block, "\n"))
	}
	b, err := yaml.Marshal(mesh.MeshConfig)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(c.pod.xdsAddr, ":")
	return rewrite(t, c.release+" NOTES", string(b), "xds://"+host+":"+port, "xds://"+c.pod.xdsAddr, 1)
}

// userSecret creates a Secret as a user does before `helm install` (kubectl create secret ...).
func userSecret(t *testing.T, name string, typ corev1.SecretType, data map[string][]byte) {
	t.Helper()
	_, err := kubeClientset(t).CoreV1().Secrets("istio-system").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "istio-system"}, Type: typ, Data: data}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// prefixed is expectVMs for vms whose services carry prefix.
func prefixed(prefix string, vms ...vm) []vm {
	out := make([]vm, len(vms))
	for i, v := range vms {
		out[i] = vm{prefix + v.service, prefix + v.node, v.addr}
	}
	return out
}

// TestChartInstall: the chart's three sink examples, installed as the chart renders them and run as its pod would
// run, pass register, change and deregister with the fidelity checker: the xDS sink through istiod's TLS config
// source (manifests/istiod-values.yaml, the chart's generated key pair), the Kubernetes sink through istiod's
// k8s:// with every write made as the chart's service account under the chart's Role, and both sinks through
// each.
func TestChartInstall(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("REGISTRY_ADAPTER_REQUIRE_NETNS") == "1" {
			t.Fatal("running the chart's pod needs root (a mount namespace and chroot)")
		}
		t.Skip("running the chart's pod needs root (a mount namespace and chroot)")
	}
	t.Parallel()
	installIstioCRDs(t)
	imageRootfs(t)

	cases := []*chartCase{
		{sink: "xds", release: "registry-adapter", prefix: "x-"},
		{sink: "kubernetes", release: "registry-adapter-kube", prefix: "k-", outputNamespace: "registry-adapter-entries"},
		{sink: "both", release: "registry-adapter-both", prefix: "b-", outputNamespace: "registry-adapter-both"},
	}
	// What a user creates before `helm install` (NOTES name both): the Consul ACL token, and for the both
	// example its own key pair (tls.existingSecret) with the CA for istiod.
	userSecret(t, "registry-adapter-consul-token", corev1.SecretTypeOpaque, map[string][]byte{"token": []byte("e2e-consul-token")})
	bothHost := "registry-adapter-both.istio-system.svc"
	keys := t.TempDir()
	bothCA := writeKeyPair(t, keys, bothHost)
	crt, _ := os.ReadFile(filepath.Join(keys, "tls.crt"))
	key, _ := os.ReadFile(filepath.Join(keys, "tls.key"))
	userSecret(t, "registry-adapter-both-tls", corev1.SecretTypeTLS, map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": []byte(bothCA)})
	t.Cleanup(func() {
		for _, c := range cases {
			if c.outputNamespace != "" {
				deleteIstioObjects(t, c.outputNamespace)
			}
		}
	})

	initial := []vm{{"web", "web-1", "10.71.0.1"}, {"web", "web-2", "10.71.0.2"}, {"db", "db-1", "10.71.1.1"}}
	for _, c := range cases {
		c.consul = newConsulAgent(t, freePort(t))
		c.consul.start(t)
		registerTxn(t, c.consul.client, prefixed(c.prefix, initial...)...)
	}
	for _, c := range cases {
		startChartCase(t, c)
	}
	for _, c := range cases {
		c.waitReady(t)
	}
	// The istiods below read only their test group's namespaces (groupLabel): the Kubernetes sinks' output
	// namespaces, and istio-system (the chart's Secrets).
	groupNamespace(t, "istio-system")
	for _, c := range cases {
		if c.outputNamespace != "" {
			groupNamespace(t, c.outputNamespace)
		}
	}
	xds, both := cases[0], cases[2]

	// istiod as manifests/istiod-values.yaml configures it: k8s:// and the xds release over TLS, the CA read from
	// the chart's Secret registry-adapter-tls in istio-system.
	mainIstiod := startIstiod(t, meshFromValues(t, "manifests/istiod-values.yaml", xds.pod.xdsAddr))
	// The both release's xDS half, read by an istiod that does not read its namespace, as its NOTES say.
	remote := startIstiod(t, meshFromNotes(t, both, bothHost))
	mainIstiod.waitReady(t)
	remote.waitReady(t)

	step := func(what string, registered ...vm) {
		t.Helper()
		for _, c := range cases {
			want := expectVMs(prefixed(c.prefix, registered...)...)
			if c.outputNamespace != "" { // else the chart's default, which expectVMs states
				for _, s := range want {
					s.Namespace = c.outputNamespace
				}
			}
			var checks []func() error
			switch c.sink {
			case "xds":
				checks = append(checks, func() error { return chartHolds(t, c, mainIstiod, want, true, false) })
			case "kubernetes":
				checks = append(checks, func() error { return chartHolds(t, c, mainIstiod, want, true, true) })
			case "both":
				checks = append(checks,
					func() error { return chartHolds(t, c, mainIstiod, want, true, true) },
					func() error { return chartHolds(t, c, remote, want, true, false) })
			}
			for i, check := range checks {
				eventually(t, 60*time.Second, fmt.Sprintf("%s: release %s (sink %s, check %d)", what, c.release, c.sink, i+1), check)
			}
		}
	}
	step("register", initial...)
	for _, c := range cases {
		registerTxn(t, c.consul.client, prefixed(c.prefix, vm{"web", "web-3", "10.71.0.3"})...)
		deregister(t, c.consul.client, c.prefix+"web-1", c.prefix+"web")
	}
	step("change", vm{"web", "web-2", "10.71.0.2"}, vm{"web", "web-3", "10.71.0.3"}, vm{"db", "db-1", "10.71.1.1"})
	for _, c := range cases {
		deregister(t, c.consul.client, c.prefix+"db-1", c.prefix+"db")
	}
	step("deregister", vm{"web", "web-2", "10.71.0.2"}, vm{"web", "web-3", "10.71.0.3"})

	// The Kubernetes sinks wrote as the chart's service account, without one refused request; the xDS ones served
	// istiod over TLS (the certificate metric exists only with TLS).
	for _, c := range cases {
		if c.outputNamespace != "" {
			if n := c.pod.metric(t, "registry_adapter_kube_errors_total", "reason=403"); n != 0 {
				t.Errorf("%s: %v Kubernetes API requests forbidden:\n%s", c.release, n, tail(c.pod.output(), 20))
			}
			if n := c.pod.metric(t, "registry_adapter_kube_leader"); n != 1 {
				t.Errorf("%s: registry_adapter_kube_leader %v", c.release, n)
			}
			if names := kubeNames(t, seGVR, c.outputNamespace); len(names) != 1 || !strings.HasPrefix(names[0], c.prefix+"web") {
				t.Errorf("%s: ServiceEntries in %s: %v", c.release, c.outputNamespace, names)
			}
		}
		if c.sink != "kubernetes" {
			if n := c.pod.metric(t, "registry_adapter_server_tls_cert_expiry_timestamp_seconds"); n == 0 {
				t.Errorf("%s serves without TLS", c.release)
			}
			if n := c.pod.metric(t, "registry_adapter_server_connected_clients"); n != 1 {
				t.Errorf("%s: %v istiods connected, want 1", c.release, n)
			}
		}
	}
}
