package main

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsyaml "sigs.k8s.io/yaml"
)

// The adapter's configuration, as far as the checks below need it.
type adapterConfig struct {
	Server struct {
		Listen         string `json:"listen"`
		DebugListen    string `json:"debugListen"`
		AdminListen    string `json:"adminListen"`
		AdminTokenFile string `json:"adminTokenFile"`
		Shards         int    `json:"shards"`
		TLS            struct {
			CertFile string `json:"certFile"`
			KeyFile  string `json:"keyFile"`
		} `json:"tls"`
	} `json:"server"`
	StateFile struct {
		Path string `json:"path"`
	} `json:"stateFile"`
	Sources []struct {
		Name   string `json:"name"`
		Consul *struct {
			TokenFile string `json:"tokenFile"`
			TLS       struct {
				CAFile   string `json:"caFile"`
				CertFile string `json:"certFile"`
				KeyFile  string `json:"keyFile"`
			} `json:"tls"`
		} `json:"consul"`
	} `json:"sources"`
}

const (
	configPath   = "/etc/registry-adapter/config.yaml"
	xdsPort      = "grpc-xds"
	monitorPort  = "http-monitoring"
	metricsLabel = "app.kubernetes.io/component"
)

// crossCheck checks the documents of one render against each other and against what the adapter needs.
func crossCheck(docs []*doc) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	var deps []*appsv1.Deployment
	configMaps := map[string]*corev1.ConfigMap{}
	serviceAccounts := map[string]bool{}
	var services []*corev1.Service
	var pdbs []*policyv1.PodDisruptionBudget
	var netpols []*networkingv1.NetworkPolicy
	var monitors []*monitoringv1.ServiceMonitor
	secrets := map[string]*corev1.Secret{}
	var certs []*cmv1.Certificate
	issuers := map[string]*cmv1.Issuer{}
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			deps = append(deps, o)
		case *corev1.ConfigMap:
			configMaps[o.Name] = o
		case *corev1.ServiceAccount:
			serviceAccounts[o.Name] = true
		case *corev1.Service:
			services = append(services, o)
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, o)
		case *networkingv1.NetworkPolicy:
			netpols = append(netpols, o)
		case *monitoringv1.ServiceMonitor:
			monitors = append(monitors, o)
		case *corev1.Secret:
			secrets[o.Name] = o
		case *cmv1.Certificate:
			certs = append(certs, o)
		case *cmv1.Issuer:
			issuers[o.Name] = o
		}
	}
	if len(deps) != 1 {
		return append(errs, fmt.Errorf("want exactly one Deployment, found %d", len(deps)))
	}
	dep := deps[0]
	pod := &dep.Spec.Template
	podLabels := labels.Set(pod.Labels)
	if len(pod.Spec.Containers) != 1 {
		return append(errs, fmt.Errorf("Deployment %s: want one container, found %d", dep.Name, len(pod.Spec.Containers)))
	}
	ctr := &pod.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range ctr.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, name := range []string{xdsPort, monitorPort} {
		if ports[name] == 0 {
			bad("Deployment %s: no container port named %s", dep.Name, name)
		}
	}
	// With server.shards K the adapter listens on the grpc-xds port + i for shard i: grpc-xds-<i>. xdsPorts maps
	// each of those port numbers to its name.
	xdsPorts := map[int32]string{}
	for name, n := range ports {
		if name == xdsPort || strings.HasPrefix(name, xdsPort+"-") {
			xdsPorts[n] = name
		}
	}
	podPort := func(p intstr.IntOrString) (int32, bool) {
		if p.Type == intstr.String {
			n, ok := ports[p.StrVal]
			return n, ok
		}
		for _, n := range ports {
			if n == p.IntVal {
				return n, true
			}
		}
		return 0, false
	}
	if dep.Spec.Replicas != nil && *dep.Spec.Replicas < 2 {
		bad("Deployment %s: %d replica(s): istiod loses its config source during every rollout or drain", dep.Name, *dep.Spec.Replicas)
	}
	if pod.Labels["sidecar.istio.io/inject"] != "false" {
		bad("Deployment %s: pod label sidecar.istio.io/inject must be \"false\"", dep.Name)
	}

	// Probes: on the monitoring port, /healthz for liveness and /readyz for readiness.
	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"livenessProbe", "/healthz", ctr.LivenessProbe}, {"readinessProbe", "/readyz", ctr.ReadinessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			bad("Deployment %s: %s: want an httpGet probe on %s", dep.Name, p.name, p.path)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			bad("Deployment %s: %s path %q, want %s", dep.Name, p.name, p.probe.HTTPGet.Path, p.path)
		}
		if n, ok := podPort(p.probe.HTTPGet.Port); !ok || n != ports[monitorPort] {
			bad("Deployment %s: %s port %s is not the %s container port", dep.Name, p.name, p.probe.HTTPGet.Port.String(), monitorPort)
		}
	}
	if ctr.StartupProbe != nil && ctr.StartupProbe.HTTPGet != nil {
		if _, ok := podPort(ctr.StartupProbe.HTTPGet.Port); !ok {
			bad("Deployment %s: startupProbe port %s is no container port", dep.Name, ctr.StartupProbe.HTTPGet.Port.String())
		}
	}

	// Volumes: ConfigMaps come from this render, Secrets exist beforehand (listed, not checked).
	mounts := map[string]string{} // mount path -> volume name
	writable := map[string]bool{} // mount paths not readOnly: only the state file's directory may be
	for _, m := range ctr.VolumeMounts {
		mounts[path.Clean(m.MountPath)] = m.Name
		writable[path.Clean(m.MountPath)] = !m.ReadOnly
	}
	var configMap *corev1.ConfigMap
	configKey := ""
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		cm := configMaps[v.ConfigMap.Name]
		if cm == nil {
			bad("Deployment %s: volume %s: ConfigMap %s is not in the render", dep.Name, v.Name, v.ConfigMap.Name)
			continue
		}
		for _, m := range ctr.VolumeMounts {
			if m.Name == v.Name && m.MountPath == configPath {
				configMap, configKey = cm, m.SubPath
			}
		}
	}
	if sa := pod.Spec.ServiceAccountName; sa != "" && sa != "default" && !serviceAccounts[sa] {
		bad("Deployment %s: ServiceAccount %s is not in the render", dep.Name, sa)
	}

	// The adapter's configuration against the pod.
	stateDir := ""
	if configMap == nil || configMap.Data[configKey] == "" {
		bad("Deployment %s: nothing mounted at %s (a ConfigMap key via subPath)", dep.Name, configPath)
	} else {
		var cfg adapterConfig
		if err := sigsyaml.Unmarshal([]byte(configMap.Data[configKey]), &cfg); err != nil {
			bad("ConfigMap %s %s: %v", configMap.Name, configKey, err)
		}
		// The root filesystem is read-only: the state file's directory must be a writable volume.
		if cfg.StateFile.Path != "" {
			stateDir = path.Dir(cfg.StateFile.Path)
			if !writable[stateDir] {
				bad("config stateFile.path %q: its directory is not a writable volume mount of the container", cfg.StateFile.Path)
			}
		}
		checkListen := func(key, addr, portName string, reachable bool) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				bad("config %s %q: %v", key, addr, err)
				return
			}
			if n, _ := strconv.Atoi(port); int32(n) != ports[portName] {
				bad("config %s %q: port is not the %s container port %d", key, addr, portName, ports[portName])
			}
			if ip := net.ParseIP(host); reachable && (host == "localhost" || ip != nil && ip.IsLoopback()) {
				bad("config %s %q: loopback, so kubelet probes and Prometheus cannot reach it", key, addr)
			}
		}
		checkListen("server.listen", cfg.Server.Listen, xdsPort, true)
		shards := max(cfg.Server.Shards, 1)
		for i := 1; i < shards; i++ {
			name := fmt.Sprintf("%s-%d", xdsPort, i)
			if want := ports[xdsPort] + int32(i); ports[name] != want {
				bad("config server.shards %d: shard %d listens on %d, want a container port %s %d", shards, i, want, name, want)
			}
		}
		if len(xdsPorts) != shards {
			bad("config server.shards %d: %d xDS container ports (%s, %s-<i>)", shards, len(xdsPorts), xdsPort, xdsPort)
		}
		checkListen("server.debugListen", cfg.Server.DebugListen, monitorPort, true)
		// The admin endpoints (every address and identity served, pprof, the guard's release) on loopback only:
		// reached with kubectl port-forward, by no NetworkPolicy peer, on no container or Service port.
		if host, port, err := net.SplitHostPort(cfg.Server.AdminListen); err != nil {
			bad("config server.adminListen %q: %v", cfg.Server.AdminListen, err)
		} else {
			if ip := net.ParseIP(host); cfg.Server.AdminTokenFile == "" && (ip == nil || !ip.IsLoopback()) {
				bad("config server.adminListen %q: not a loopback address (and no adminTokenFile): the admin endpoints are open to the network", cfg.Server.AdminListen)
			}
			n, _ := strconv.Atoi(port)
			for name, p := range ports {
				if int(p) == n {
					bad("config server.adminListen %q: the admin port is the container port %s", cfg.Server.AdminListen, name)
				}
			}
		}
		inMount := func(key, file string) {
			if file == "" {
				return
			}
			if _, ok := mounts[path.Dir(file)]; !ok {
				bad("config %s %q: its directory is not a volume mount of the container", key, file)
			}
		}
		inMount("server.tls.certFile", cfg.Server.TLS.CertFile)
		inMount("server.tls.keyFile", cfg.Server.TLS.KeyFile)
		if cfg.Server.TLS.CertFile != "" {
			tlsSecret := ""
			for _, v := range pod.Spec.Volumes {
				if v.Secret != nil && mounts[path.Dir(cfg.Server.TLS.CertFile)] == v.Name {
					tlsSecret = v.Secret.SecretName
				}
			}
			errs = append(errs, checkServingTLS(tlsSecret, services, xdsPortsOf(ports), secrets, certs, issuers)...)
		}
		for i, s := range cfg.Sources {
			if s.Consul != nil {
				p := fmt.Sprintf("sources[%d].consul", i)
				inMount(p+".tokenFile", s.Consul.TokenFile)
				inMount(p+".tls.caFile", s.Consul.TLS.CAFile)
				inMount(p+".tls.certFile", s.Consul.TLS.CertFile)
				inMount(p+".tls.keyFile", s.Consul.TLS.KeyFile)
			}
		}
	}

	for p, w := range writable {
		if w && p != stateDir {
			bad("Deployment %s: volume mount %s is not readOnly (only the state file's directory may be written)", dep.Name, p)
		}
	}

	// Services: each selects the pods and targets existing ports; the monitoring port only on a headless one.
	var metricsServices []*corev1.Service
	xdsServices := map[int32]bool{}
	for _, s := range services {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
			bad("Service %s: selector %v does not select the pods", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			n, ok := podPort(target)
			if !ok {
				bad("Service %s port %s: targetPort %s is no container port", s.Name, p.Name, target.String())
				continue
			}
			if name, ok := xdsPorts[n]; ok {
				xdsServices[n] = true
				if p.Name != name || p.AppProtocol == nil || *p.AppProtocol != "grpc" {
					bad("Service %s: the xDS port %d must be named %s with appProtocol grpc", s.Name, n, name)
				}
				if p.Port != n {
					bad("Service %s port %s: %d, want the container port %d (istiod lists <service>:%d)", s.Name, p.Name, p.Port, n, n)
				}
			}
			switch n {
			case ports[monitorPort]:
				if s.Spec.ClusterIP != corev1.ClusterIPNone {
					bad("Service %s: carries the monitoring port but is not headless", s.Name)
				}
				metricsServices = append(metricsServices, s)
			}
		}
	}
	if len(xdsServices) != len(xdsPorts) {
		bad("want one Service port per xDS container port (%d), found %d", len(xdsPorts), len(xdsServices))
	}

	for _, p := range pdbs {
		if sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector); err != nil || sel.Empty() || !sel.Matches(podLabels) {
			bad("PodDisruptionBudget %s: selector does not select the pods", p.Name)
		}
		if p.Spec.MinAvailable != nil && p.Spec.MinAvailable.Type == intstr.Int && dep.Spec.Replicas != nil &&
			p.Spec.MinAvailable.IntVal >= *dep.Spec.Replicas {
			bad("PodDisruptionBudget %s: minAvailable %d with %d replicas blocks every drain", p.Name, p.Spec.MinAvailable.IntVal, *dep.Spec.Replicas)
		}
	}

	for _, np := range netpols {
		if sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); err != nil || sel.Empty() || !sel.Matches(podLabels) {
			bad("NetworkPolicy %s: podSelector does not select the pods", np.Name)
		}
		admitted := map[int32]bool{}
		for i, r := range np.Spec.Ingress {
			if len(r.From) == 0 {
				bad("NetworkPolicy %s ingress[%d]: no from: open to every peer", np.Name, i)
			}
			for _, p := range r.Ports {
				if p.Port == nil {
					bad("NetworkPolicy %s ingress[%d]: a rule for every port", np.Name, i)
					continue
				}
				n, ok := podPort(*p.Port)
				if !ok {
					bad("NetworkPolicy %s ingress[%d]: port %s is no container port", np.Name, i, p.Port.String())
				}
				admitted[n] = true
			}
		}
		if slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			// Without DNS the adapter resolves neither its registries nor the API server.
			dns := false
			for _, r := range np.Spec.Egress {
				for _, p := range r.Ports {
					dns = dns || p.Port != nil && p.Port.IntValue() == 53 && (p.Protocol == nil || *p.Protocol == corev1.ProtocolUDP)
				}
			}
			if !dns {
				bad("NetworkPolicy %s: an egress policy without a rule for DNS (53/UDP)", np.Name)
			}
		}
		for n, name := range xdsPorts {
			if !admitted[n] {
				bad("NetworkPolicy %s: admits nobody to the xDS port %s: istiod cannot connect to that shard", np.Name, name)
			}
		}
	}

	for _, m := range monitors {
		sel, err := metav1.LabelSelectorAsSelector(&m.Spec.Selector)
		var picked []*corev1.Service
		for _, s := range services {
			if err == nil && !sel.Empty() && sel.Matches(labels.Set(s.Labels)) {
				picked = append(picked, s)
			}
		}
		if len(picked) != 1 || len(metricsServices) == 0 || picked[0] != metricsServices[0] {
			names := []string{}
			for _, s := range picked {
				names = append(names, s.Name)
			}
			bad("ServiceMonitor %s: selects Services [%s], want only the headless metrics Service", m.Name, strings.Join(names, " "))
			continue
		}
		for i, e := range m.Spec.Endpoints {
			found := false
			for _, p := range picked[0].Spec.Ports {
				found = found || p.Name == e.Port
			}
			if !found {
				bad("ServiceMonitor %s endpoints[%d]: Service %s has no port %q", m.Name, i, picked[0].Name, e.Port)
			}
			if e.Path != "" && e.Path != "/metrics" {
				bad("ServiceMonitor %s endpoints[%d]: path %q, the adapter serves /metrics", m.Name, i, e.Path)
			}
		}
	}
	return errs
}
