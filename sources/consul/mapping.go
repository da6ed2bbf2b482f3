package consul

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// The pure mapping from Consul health entries to the model. Nothing here does
// I/O or logs: problems are returned as issues and the caller logs and counts
// them, so that every rule can be tested with a table.

// Consul's special check IDs for maintenance mode.
const (
	nodeMaintCheckID      = "_node_maintenance"
	serviceMaintCheckPrfx = "_service_maintenance:"
	// consul-k8s marks the services it synced from Kubernetes with this meta.
	externalSourceMeta = "external-source"
)

// hostData is what the host templates can use.
type hostData struct {
	Service    string
	Datacenter string
	Namespace  string
	Partition  string
	Peer       string
}

// mapper holds the parsed mapping configuration.
type mapper struct {
	hostTmpl     *template.Template
	peerHostTmpl *template.Template

	protocolKey      string
	defaultProtocol  model.Protocol
	taggedAddresses  []string
	vipKey           string
	regionKey        string
	zoneKey          string
	network          string
	networkKey       string
	includeWarning   bool
	includeK8sSynced bool
	keepPlainTags    bool
	requiredTags     []string
	datacenter       string
	namespace        string
	partition        string
	// maxPorts bounds the ports of one instance (0: none).
	maxPorts int
	// fault, set by tests only, runs first in every mapping: a deliberate
	// panic there shows what a bug reached by some answer would do.
	fault func(name string, entries []*api.ServiceEntry)
}

func newMapper(c *Config, limits sources.Limits) (*mapper, error) {
	ht, err := parseHostTemplate("hostTemplate", c.HostTemplate)
	if err != nil {
		return nil, err
	}
	pht, err := parseHostTemplate("peerHostTemplate", c.PeerHostTemplate)
	if err != nil {
		return nil, err
	}
	proto, ok := model.ParseProtocol(c.DefaultProtocol)
	if !ok {
		return nil, fmt.Errorf("defaultProtocol: unknown protocol %q", c.DefaultProtocol)
	}
	return &mapper{
		hostTmpl:         ht,
		peerHostTmpl:     pht,
		protocolKey:      c.ProtocolMetaKey,
		defaultProtocol:  proto,
		taggedAddresses:  c.TaggedAddresses,
		vipKey:           c.VirtualAddressKey,
		regionKey:        c.RegionMetaKey,
		zoneKey:          c.ZoneMetaKey,
		network:          c.Network,
		networkKey:       c.NetworkMetaKey,
		includeWarning:   c.IncludeWarning,
		includeK8sSynced: c.IncludeKubernetesSynced,
		keepPlainTags:    c.ConfigEntries.TrafficPolicy,
		requiredTags:     c.RequiredTags,
		datacenter:       c.Datacenter,
		namespace:        c.Namespace,
		partition:        c.Partition,
		maxPorts:         limits.PortsPerInstance,
	}, nil
}

// hostSample is what a host template is tried on at start.
var hostSample = hostData{Service: "web", Datacenter: "dc1", Namespace: "default", Partition: "default", Peer: "peer"}

// parseHostTemplate parses a Consul host template (sources.ParseHostTemplate,
// the template helper of every source) over hostData.
func parseHostTemplate(field, text string) (*template.Template, error) {
	return sources.ParseHostTemplate(field, text, hostSample)
}

// renderHost makes a host from a Consul host template, by the one host
// policy of every source (sources.RenderHost).
func renderHost(t *template.Template, d hostData) (string, error) { return sources.RenderHost(t, d) }

// splitTag splits a "key=value" or "key|value" tag (Istio's old Consul
// registry used '|'). ok is false for plain tags.
func splitTag(tag string) (key, value string, ok bool) {
	i := strings.IndexAny(tag, "=|")
	if i <= 0 {
		return "", "", false
	}
	return tag[:i], tag[i+1:], true
}

// issue is a problem with one instance or service, to be logged and counted.
type issue struct {
	reason  string // metric label: entry, address, port, host, protocol, collision
	message string
}

// mapResult is what one health answer maps to.
type mapResult struct {
	// svc is nil when there is nothing to publish: no eligible instance at
	// all, or the service is invalid.
	svc *model.Service
	// invalid is set when the service itself could not be mapped (its host
	// or every port was invalid); it is then removed downstream.
	invalid bool
	issues  []issue
	// dc is the datacenter seen on the entries, if any.
	dc string
	// defaulted are the service ports whose protocol no meta or tag
	// states, which config entries may still give one.
	defaulted []uint32
	// tags are the plain tags of each served instance, by id (only when
	// the mapper keeps them, for subsets that select by them).
	tags map[string][]string
}

// instanceHealth aggregates the node and service checks of one entry.
// Maintenance mode is a critical check and reported as such.
func instanceHealth(checks api.HealthChecks) (h model.Health, maintenance bool) {
	h = model.HealthPassing
	for _, c := range checks {
		if c == nil {
			continue
		}
		if c.CheckID == nodeMaintCheckID || strings.HasPrefix(c.CheckID, serviceMaintCheckPrfx) {
			maintenance = true
		}
		switch c.Status {
		case api.HealthCritical, api.HealthMaint:
			h = model.HealthCritical
		case api.HealthWarning:
			if h != model.HealthCritical {
				h = model.HealthWarning
			}
		}
	}
	if maintenance {
		h = model.HealthCritical
	}
	return h, maintenance
}

// skipReason says why an entry is not part of the service at all (as opposed
// to being unhealthy), or "" when it is.
func (m *mapper) skipReason(e *api.ServiceEntry) string {
	s := e.Service
	switch {
	case s.Kind != "":
		return "kind " + string(s.Kind)
	case !m.includeK8sSynced && s.Meta[externalSourceMeta] == "kubernetes":
		return "synced from Kubernetes"
	}
	for _, want := range m.requiredTags {
		if !slices.Contains(s.Tags, want) {
			return "missing required tag " + want
		}
	}
	return ""
}

// chooseAddress picks an instance's address: the first configured tagged
// address found on the service, then on the node; else the service address,
// falling back to the node address. A service tagged address may carry its
// own port, returned as port (0 = keep the registered port).
func chooseAddress(prefs []string, svc *api.AgentService, node *api.Node) (addr string, port int) {
	for _, key := range prefs {
		if ta, ok := svc.TaggedAddresses[key]; ok && ta.Address != "" {
			return ta.Address, ta.Port
		}
		if a := node.TaggedAddresses[key]; a != "" {
			return a, 0
		}
	}
	if svc.Address != "" {
		return svc.Address, 0
	}
	return node.Address, 0
}

// normalizeAddress validates an address: an IP address (without zone) or a
// DNS hostname, which is returned in lower case.
func normalizeAddress(a string) (string, error) {
	if a == "" {
		return "", fmt.Errorf("no address (neither service nor node address is set)")
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("address %q has an IPv6 zone", a)
		}
		return ip.String(), nil
	}
	h := strings.TrimSuffix(strings.ToLower(a), ".")
	if len(h) > 253 {
		return "", fmt.Errorf("address %q is not an IP address or a DNS name", a)
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("address %q is not an IP address or a DNS name", a)
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !isAlnum(c) && c != '-' && c != '_' {
				return "", fmt.Errorf("address %q is not an IP address or a DNS name", a)
			}
		}
	}
	return h, nil
}

func isAlnum(c byte) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// portKey identifies a port of a service across its instances: the Consul
// port name for multi-port services, "" for the single Port.
type namedPort struct {
	name string
	port int
}

// instancePorts lists an instance's ports. defaultName is the name of the
// multi-port default port, which a single-port instance's Port maps to when
// instances of one service mix both styles.
func instancePorts(s *api.AgentService, defaultName string) ([]namedPort, error) {
	var ps []namedPort
	if len(s.Ports) > 0 {
		for _, p := range s.Ports {
			if p.Port <= 0 || p.Port > 65535 {
				return nil, fmt.Errorf("port %q is %d", p.Name, p.Port)
			}
			ps = append(ps, namedPort{p.Name, p.Port})
		}
		return ps, nil
	}
	switch {
	case s.Port == 0:
		return nil, nil // no port: the instance uses the service ports
	case s.Port < 0 || s.Port > 65535:
		return nil, fmt.Errorf("port is %d", s.Port)
	}
	return []namedPort{{defaultName, s.Port}}, nil
}

// protocolValue returns the raw protocol an instance declares for the port
// named portName: meta "<key>-<port>", meta "<key>", then tags
// "<key>-<port>=x", "<key>=x" (or '|' instead of '=').
func (m *mapper) protocolValue(s *api.AgentService, portName string) string {
	keys := []string{m.protocolKey}
	if portName != "" {
		keys = []string{m.protocolKey + "-" + portName, m.protocolKey}
	}
	for _, k := range keys {
		if v := s.Meta[k]; v != "" {
			return v
		}
	}
	for _, k := range keys {
		for _, t := range s.Tags {
			if tk, tv, ok := splitTag(t); ok && tk == k && tv != "" {
				return tv
			}
		}
	}
	return ""
}

// isProtocolKey reports whether a meta key or tag key names a protocol (and so
// is not turned into a label).
func (m *mapper) isProtocolKey(k string) bool {
	return k == m.protocolKey || strings.HasPrefix(k, m.protocolKey+"-")
}

// instanceLabels builds labels from key=value / key|value tags and service
// meta (meta wins), as registered; protocol keys are left out. They are made
// valid Kubernetes labels by the one label policy of every source,
// convert's (a changed key or value gets a hash of the original, so two
// that clean up alike stay distinct; reserved keys are dropped and named).
func (m *mapper) instanceLabels(s *api.AgentService) map[string]string {
	labels := map[string]string{}
	add := func(k, v string) {
		if m.isProtocolKey(k) || (m.vipKey != "" && k == m.vipKey) {
			return
		}
		labels[k] = v
	}
	for _, t := range s.Tags {
		if k, v, ok := splitTag(t); ok {
			add(k, v)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Meta)) {
		add(k, s.Meta[k])
	}
	if len(labels) == 0 {
		return nil
	}
	return labels
}

// locality returns "region/zone": node meta keys first, then the service's
// and the node's Consul locality, the region defaulting to the datacenter.
func (m *mapper) locality(s *api.AgentService, n *api.Node, dc string) string {
	var region, zone string
	if m.regionKey != "" {
		region = n.Meta[m.regionKey]
	}
	if m.zoneKey != "" {
		zone = n.Meta[m.zoneKey]
	}
	for _, l := range []*api.Locality{s.Locality, n.Locality} {
		if l == nil {
			continue
		}
		if region == "" {
			region = l.Region
		}
		if zone == "" {
			zone = l.Zone
		}
	}
	if region == "" {
		region = dc
	}
	clean := func(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "/", "-") }
	region, zone = clean(region), clean(zone)
	switch {
	case region == "":
		return ""
	case zone == "":
		return region
	}
	return region + "/" + zone
}

// maxWeight is the largest weight an instance is served with: the one
// Consul's own Envoy configuration uses (agent/xds/endpoints.go clamps
// weights to 1-128), so its mesh and this one balance alike. Envoy refuses
// an endpoint update whose weights add up past 2^32-1 in one locality, and
// istiod's sum saturates there: unclamped, a registrant with weight 2^31
// on two instances would stop updates to the service's endpoints. At 128,
// a locality's sum stays below 2^32 up to 33 million instances, far past
// the adapter's per-source cap (limits.instances).
const maxWeight = 128

// weight is Consul's weight for the instance's health: Weights.Passing, or
// Weights.Warning for an instance in warning (falling back to Passing),
// clamped to maxWeight.
func weight(w api.AgentWeights, h model.Health) uint32 {
	v := w.Passing
	if h == model.HealthWarning && w.Warning > 0 {
		v = w.Warning
	}
	if v <= 0 {
		return 0
	}
	return uint32(min(v, maxWeight))
}

// mostCommon returns the value occurring most often in vs, ties going to the
// smallest; ok is false for an empty slice.
func mostCommon[T interface{ ~int | ~string }](vs []T) (best T, ok bool) {
	counts := map[T]int{}
	for _, v := range vs {
		counts[v]++
	}
	n := 0
	for v, c := range counts {
		if c > n || (c == n && v < best) {
			best, n = v, c
		}
	}
	return best, n > 0
}

// candidate is an eligible entry with its mapped parts.
type candidate struct {
	e     *api.ServiceEntry
	id    string
	addr  string
	ports []namedPort
}

// mapService maps the health entries of one Consul service. peer is the
// cluster peer the service is imported from, or "".
func (m *mapper) mapService(name, peer string, entries []*api.ServiceEntry) mapResult {
	if m.fault != nil {
		m.fault(name, entries)
	}
	var r mapResult
	problem := func(reason, format string, args ...any) {
		r.issues = append(r.issues, issue{reason, fmt.Sprintf(format, args...)})
	}

	// Eligible entries, and the default port name of multi-port instances.
	var eligible []*api.ServiceEntry
	var defaultNames []string
	for i, e := range entries {
		if e == nil || e.Service == nil || e.Node == nil {
			problem("entry", "entry %d has no node or no service", i)
			continue
		}
		if r.dc == "" {
			r.dc = e.Node.Datacenter
		}
		if m.skipReason(e) != "" {
			continue
		}
		if n := len(e.Service.Ports); m.maxPorts > 0 && n > m.maxPorts {
			// Its ports would become the service's, which would then be
			// left out whole for having too many.
			problem("port", "instance %s/%s skipped: %d ports, more than limits.portsPerService %d",
				e.Node.Node, e.Service.ID, n, m.maxPorts)
			continue
		}
		eligible = append(eligible, e)
		for _, p := range e.Service.Ports {
			if p.Default {
				defaultNames = append(defaultNames, p.Name)
			}
		}
	}
	if len(eligible) == 0 {
		return r
	}
	defaultName, _ := mostCommon(defaultNames)

	dc := m.datacenter
	if dc == "" {
		dc = r.dc
	}
	hd := hostData{Service: name, Datacenter: dc, Namespace: m.namespace, Partition: m.partition, Peer: peer}
	if s := eligible[0].Service; s.Namespace != "" {
		hd.Namespace = s.Namespace
	}
	if s := eligible[0].Service; s.Partition != "" {
		hd.Partition = s.Partition
	}
	tmpl := m.hostTmpl
	if peer != "" {
		tmpl = m.peerHostTmpl
	}
	host, err := renderHost(tmpl, hd)
	if err != nil {
		problem("host", "cannot make a host name: %v", err)
		r.invalid = true
		return r
	}

	// Addresses and ports of every eligible instance, healthy or not: the
	// service ports must not change when instances fail.
	var cands []candidate
	seen := map[string]bool{}
	portsByName := map[string][]int{}
	for _, e := range eligible {
		id := e.Node.Node + "/" + e.Service.ID
		if seen[id] {
			problem("entry", "duplicate instance %s", id)
			continue
		}
		seen[id] = true
		rawAddr, tport := chooseAddress(m.taggedAddresses, e.Service, e.Node)
		addr, err := normalizeAddress(rawAddr)
		if err != nil {
			problem("address", "instance %s skipped: %v", id, err)
			continue
		}
		ports, err := instancePorts(e.Service, defaultName)
		if err != nil {
			problem("port", "instance %s skipped: %v", id, err)
			continue
		}
		if tport > 0 && tport <= 65535 {
			// The tagged address's port replaces the default port.
			replaced := false
			for i := range ports {
				if ports[i].name == defaultName {
					ports[i].port, replaced = tport, true
				}
			}
			if !replaced && len(ports) == 0 {
				ports = []namedPort{{defaultName, tport}}
			}
		}
		for _, p := range ports {
			portsByName[p.name] = append(portsByName[p.name], p.port)
		}
		cands = append(cands, candidate{e: e, id: id, addr: addr, ports: ports})
	}
	if len(portsByName) == 0 {
		if len(cands) > 0 {
			problem("port", "no instance has a port")
		}
		r.invalid = true
		return r
	}

	// Service ports: per port name, the most common instance port.
	svcPort := map[string]uint32{}
	var ports []model.Port
	used := map[uint32]string{}
	for _, pname := range slices.Sorted(maps.Keys(portsByName)) {
		n, _ := mostCommon(portsByName[pname])
		num := uint32(n)
		if other, dup := used[num]; dup {
			problem("port", "port %q would use service port %d already used by port %q; dropped", pname, num, other)
			continue
		}
		used[num] = pname
		svcPort[pname] = num

		var raws []string
		for _, c := range cands {
			if slices.ContainsFunc(c.ports, func(p namedPort) bool { return p.name == pname }) {
				if v := m.protocolValue(c.e.Service, pname); v != "" {
					raws = append(raws, strings.ToLower(v))
				}
			}
		}
		proto := m.defaultProtocol
		if raw, ok := mostCommon(raws); ok {
			if p, known := model.ParseProtocol(raw); known {
				proto = p
			} else {
				problem("protocol", "unknown protocol %q on port %d; using %s", raw, num, m.defaultProtocol)
			}
		} else {
			r.defaulted = append(r.defaulted, num)
		}
		ports = append(ports, model.Port{Number: num, Protocol: proto, Name: portName(pname)})
	}
	slices.SortFunc(ports, func(a, b model.Port) int { return int(a.Number) - int(b.Number) })

	svc := &model.Service{Name: name, Host: host, Ports: ports, Addresses: m.virtualAddresses(cands, problem)}
	// Sized once: the store keeps this slice as long as the service lives.
	svc.Instances = make([]model.Instance, 0, len(cands))
	for _, c := range cands {
		h, _ := instanceHealth(c.e.Checks)
		if h == model.HealthCritical || (h == model.HealthWarning && !m.includeWarning) {
			continue
		}
		inst := model.Instance{
			ID:       c.id,
			Address:  c.addr,
			Labels:   model.LabelsFromMap(m.instanceLabels(c.e.Service)),
			Locality: m.locality(c.e.Service, c.e.Node, firstNonEmpty(c.e.Node.Datacenter, dc)),
			Network:  m.network,
			Weight:   weight(c.e.Service.Weights, h),
			Health:   h,
		}
		if m.networkKey != "" {
			if v := c.e.Node.Meta[m.networkKey]; v != "" {
				inst.Network = v
			}
		}
		var targets map[uint32]uint32
		for _, p := range c.ports {
			sp, ok := svcPort[p.name]
			if ok && uint32(p.port) != sp {
				if targets == nil {
					targets = map[uint32]uint32{}
				}
				targets[sp] = uint32(p.port)
			}
		}
		inst.Ports = model.TargetPortsFromMap(targets)
		svc.Instances = append(svc.Instances, inst)
		if m.keepPlainTags {
			if t := plainTags(c.e.Service.Tags); len(t) > 0 {
				if r.tags == nil {
					r.tags = map[string][]string{}
				}
				r.tags[c.id] = t
			}
		}
	}
	if len(svc.Instances) == 0 {
		svc.Instances = nil
	}
	slices.SortFunc(svc.Instances, func(a, b model.Instance) int { return strings.Compare(a.ID, b.ID) })
	r.svc = svc
	return r
}

// plainTags are the tags that are not key=value (nor key|value), sorted,
// each once.
func plainTags(tags []string) []string {
	var out []string
	for _, t := range tags {
		if _, _, kv := splitTag(t); !kv && t != "" {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// consulVirtual is the tagged address in which Consul gives a service its
// virtual IP (transparent proxy): Consul writes it on Connect-native services
// and on sidecar proxies (structs.TaggedAddressVirtualIP).
const consulVirtual = "consul-virtual"

// virtualAddresses are the service's own virtual IPs: Consul's
// consul-virtual tagged address, then the value of the configured meta key
// (or key=value tag), each the most common among the instances. Only IP
// addresses count; anything else is reported and left out.
func (m *mapper) virtualAddresses(cands []candidate, problem func(reason, format string, args ...any)) []string {
	var vips, keyed []string
	for _, c := range cands {
		s := c.e.Service
		if a := s.TaggedAddresses[consulVirtual].Address; a != "" {
			vips = append(vips, a)
		}
		if m.vipKey == "" {
			continue
		}
		if v := s.Meta[m.vipKey]; v != "" {
			keyed = append(keyed, v)
			continue
		}
		for _, t := range s.Tags {
			if k, v, ok := splitTag(t); ok && k == m.vipKey && v != "" {
				keyed = append(keyed, v)
				break
			}
		}
	}
	var out []string
	for _, group := range []struct {
		what string
		vals []string
	}{{consulVirtual, vips}, {m.vipKey, keyed}} {
		v, ok := mostCommon(group.vals)
		if !ok {
			continue
		}
		ip, err := netip.ParseAddr(v)
		if err != nil || ip.Zone() != "" || ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() {
			problem("address", "virtual address %q (%s) is not a usable IP address; left out", v, group.what)
			continue
		}
		if a := ip.Unmap().String(); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// portName turns a Consul port name into a port name Istio accepts (a DNS
// label), or "" to let the conversion name it.
func portName(n string) string {
	if n == "" {
		return ""
	}
	h, err := model.SanitizeHost(strings.ReplaceAll(n, ".", "-"))
	if err != nil {
		return ""
	}
	return h
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// quote renders s as a bexpr string literal.
func quote(s string) string { return strconv.Quote(s) }
