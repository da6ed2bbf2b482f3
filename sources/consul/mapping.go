package consul

import (
	"fmt"
	"text/template"

	"github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// The pure mapping from Consul health entries to the model. Nothing here does
// I/O or logs: problems are returned as issues and the caller logs and counts
// them, so that every rule can be tested with a table. mapService runs the
// steps; each concern has its file: host.go (the host), instance.go (which
// entries count, health, served instances, locality, weight), address.go
// (instance and virtual addresses), ports.go (instance and service ports,
// protocols), tags.go (tags, meta, labels).

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

// problemFunc records an issue (mapService's problem).
type problemFunc func(reason, format string, args ...any)

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
	eligible, defaultName, dc := m.eligible(entries, problem)
	r.dc = dc
	if len(eligible) == 0 {
		return r
	}
	dc = firstNonEmpty(m.datacenter, dc)
	host, err := m.host(name, peer, dc, eligible[0].Service)
	if err != nil {
		problem("host", "cannot make a host name: %v", err)
		r.invalid = true
		return r
	}
	cands, portsByName := m.candidates(eligible, defaultName, problem)
	if len(portsByName) == 0 {
		if len(cands) > 0 {
			problem("port", "no instance has a port")
		}
		r.invalid = true
		return r
	}
	ports, svcPort, defaulted := m.servicePorts(cands, portsByName, problem)
	r.defaulted = defaulted
	svc := &model.Service{Name: name, Host: host, Ports: ports, Addresses: m.virtualAddresses(cands, problem)}
	svc.Instances, r.tags = m.instances(cands, svcPort, dc)
	r.svc = svc
	return r
}

// eligible returns the entries that are part of the service (malformed ones
// reported, skipped ones left out: see skipReason), the default port name of
// its multi-port instances, and the datacenter seen on the entries.
func (m *mapper) eligible(entries []*api.ServiceEntry, problem problemFunc) (eligible []*api.ServiceEntry, defaultName, dc string) {
	var defaultNames []string
	for i, e := range entries {
		if e == nil || e.Service == nil || e.Node == nil {
			problem("entry", "entry %d has no node or no service", i)
			continue
		}
		if dc == "" {
			dc = e.Node.Datacenter
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
	defaultName, _ = mostCommon(defaultNames)
	return eligible, defaultName, dc
}

// candidates are the eligible entries with their address and ports, healthy
// or not (the service's ports must not change when instances fail), with
// each port name's instance ports. An entry with a duplicate id, an invalid
// address or port is reported and left out.
func (m *mapper) candidates(eligible []*api.ServiceEntry, defaultName string, problem problemFunc) ([]candidate, map[string][]int) {
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
		ports = withTaggedPort(ports, defaultName, tport)
		for _, p := range ports {
			portsByName[p.name] = append(portsByName[p.name], p.port)
		}
		cands = append(cands, candidate{e: e, id: id, addr: addr, ports: ports})
	}
	return cands, portsByName
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

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
