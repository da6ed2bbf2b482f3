package cloudsource

import (
	"fmt"
	"strings"
	"text/template"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// Reasons an instance (or part of it) is left out, shared by the cloud
// sources: the values of their skipped metric's "reason" label. A source
// adds its own (GCE's zone-filtered, Azure's resource-group-filtered).
const (
	SkipNotRunning     = "not-running"
	SkipOptOut         = "opted-out"
	SkipAutoRegistered = "auto-registered"
	SkipNoService      = "no-service"
	SkipInvalidService = "invalid-service"
	SkipNoPorts        = "no-ports"
	SkipInvalidPorts   = "invalid-ports"
	SkipPortConflict   = "port-conflict"
	SkipNoAddress      = "no-address"
)

// Tags is one of an instance's sets of keys and values, as its cloud
// stores them: EC2 or Azure tags, GCE labels or metadata items, Cloud Map
// attributes.
type Tags struct {
	// Kind names the set in log details ("tag", "label", "metadata item",
	// "attribute").
	Kind   string
	Values map[string]string
	// FoldKeys makes keys compare case-insensitively (Azure's tag names).
	FoldKeys bool
	// Separators split the service names of a value (SplitServices).
	Separators string
}

// Get returns the value under key, and whether the set has it.
func (t Tags) Get(key string) (string, bool) {
	if v, ok := t.Values[key]; ok || !t.FoldKeys {
		return v, ok
	}
	for k, v := range t.Values {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

// Rules are the decisions every cloud source makes on an instance, in this
// order: left out when any key of its tags marks it auto-registered, or
// when the opt-out key is set to anything but "false"; its services are
// named by the service key, its ports by the ports key (else the
// configured ports); and it is left out without an address. A source keeps
// what its API alone knows: whether an instance runs, where its address,
// zone, identity and health are in its wire format.
type Rules struct {
	// OptOut, Service and Ports are the configured keys. Without a Service
	// key (Cloud Map, whose registry names the services) Map leaves
	// Mapped.Names empty: the instance is served unless Reason is set.
	OptOut, Service, Ports string
	// PortsIn is the Kind of the only set the ports key is read from (GCE:
	// metadata items, not labels); empty: the first set that has it.
	PortsIn string
	// ConfigPorts are the configured ports, those of an instance without
	// the ports key.
	ConfigPorts []model.Port
	// WithoutPortsKey, when set, replaces ConfigPorts for an instance
	// without the ports key (Cloud Map reads AWS_INSTANCE_PORT); it may
	// set the instance's target ports, and returns a reason to leave the
	// instance out. Empty ports and no reason: the instance has no ports.
	WithoutPortsKey func(tags []Tags, m *Mapped) (ports []model.Port, reason, detail string)
	// AutoRegistration reports whether a key marks an instance that
	// registers itself; nil: IsAutoRegistrationKey.
	AutoRegistration func(key string) bool
	// AddressType names the address in the detail of one left out for
	// having none.
	AddressType string
}

// Mapped is one instance mapped: the names of its services, its
// model.Instance and the ports it listens on. When it is left out (no
// names, or Reason set without a Service key) or some of its service names
// are, Reason says why and Detail is worth logging.
type Mapped struct {
	Names    []string
	Instance model.Instance
	Ports    []model.Port
	Reason   string
	Detail   string
}

// Skipped is an instance left out for reason, with nothing worth logging.
func Skipped(reason string) Mapped { return Mapped{Reason: reason} }

// Map makes the shared decisions on an instance whose sets of tags are
// tags, by precedence (GCE: labels, then metadata items): every set is
// searched for the auto-registration and opt-out keys, and the first that
// has the service (ports) key names its services (ports). build then fills
// in the instance from the source's wire format (Health starts unknown):
// one it leaves without an address is left out, and the detail is build's
// answer, else "no <addressType> address".
func (r *Rules) Map(tags []Tags, build func(inst *model.Instance) (why string)) Mapped {
	auto := r.AutoRegistration
	if auto == nil {
		auto = IsAutoRegistrationKey
	}
	for _, t := range tags {
		for k := range t.Values {
			if auto(k) {
				return Skipped(SkipAutoRegistered)
			}
		}
	}
	for _, t := range tags {
		if v, ok := t.Get(r.OptOut); ok && !strings.EqualFold(strings.TrimSpace(v), "false") {
			return Skipped(SkipOptOut)
		}
	}
	var m Mapped
	if r.Service != "" {
		if m = r.services(tags); len(m.Names) == 0 {
			return m
		}
	}
	if reason, detail := r.ports(tags, &m); reason != "" {
		return Mapped{Reason: reason, Detail: detail}
	}
	m.Instance.Health = model.HealthUnknown
	why := build(&m.Instance)
	if m.Instance.Address == "" {
		if why == "" {
			why = fmt.Sprintf("no %s address", r.AddressType)
		}
		return Mapped{Reason: SkipNoAddress, Detail: why}
	}
	return m
}

// services reads the service names from the first set that has the service
// key: Names empty (and Reason set) when there is none.
func (r *Rules) services(tags []Tags) (m Mapped) {
	for _, t := range tags {
		v, ok := t.Get(r.Service)
		if !ok {
			continue
		}
		names, invalid := SplitServices(v, t.Separators)
		if len(invalid) > 0 {
			m.Reason, m.Detail = SkipInvalidService, fmt.Sprintf("%s %s: invalid service names %q", t.Kind, r.Service, invalid)
		}
		if len(names) == 0 && m.Reason == "" {
			m.Reason, m.Detail = SkipNoService, fmt.Sprintf("%s %s is empty", t.Kind, r.Service)
		}
		m.Names = names
		return m
	}
	return Skipped(SkipNoService)
}

// ports sets m.Ports from the ports key, or else the configured ports (or
// WithoutPortsKey's), and returns why the instance is left out.
func (r *Rules) ports(tags []Tags, m *Mapped) (reason, detail string) {
	kind := r.PortsIn
	for _, t := range tags {
		if r.PortsIn != "" && t.Kind != r.PortsIn {
			continue
		}
		if kind == "" {
			kind = t.Kind
		}
		if v, ok := t.Get(r.Ports); ok {
			p, err := ParsePorts(v)
			if err != nil {
				return SkipInvalidPorts, fmt.Sprintf("%s %s: %v", t.Kind, r.Ports, err)
			}
			m.Ports = p
			return "", ""
		}
	}
	m.Ports = r.ConfigPorts
	if r.WithoutPortsKey != nil {
		var reason, detail string
		if m.Ports, reason, detail = r.WithoutPortsKey(tags, m); reason != "" {
			return reason, detail
		}
	}
	if len(m.Ports) == 0 {
		return SkipNoPorts, fmt.Sprintf("no %s %s and no ports configured", r.Ports, kind)
	}
	return "", ""
}

// Take counts an instance mapped by a source that serves it in the
// services it names: the health verdict v applies to it (WithHealth), and
// a reason counts in Skipped, with a detail a problem under key (its ID)
// and name (its human name). It returns the names it is served under.
func (r *Result) Take(key, name string, m *Mapped, v Verdict) []string {
	m.Names, m.Reason, m.Detail = r.WithHealth(v, &m.Instance, m.Names, m.Reason, m.Detail)
	if m.Reason != "" {
		r.Skip(key, name, m.Reason, m.Detail, 1)
	}
	return m.Names
}

// Hosts makes the hosts of a cloud source's services from its
// hostTemplate.
type Hosts struct {
	// Template is the parsed hostTemplate; tests set one that Validate
	// would refuse.
	Template *template.Template
}

// NewHosts parses hostTemplate (checked on sample, the source's template
// data).
func NewHosts(hostTemplate string, sample any) (Hosts, error) {
	t, err := sources.ParseHostTemplate("hostTemplate", hostTemplate, sample)
	return Hosts{Template: t}, err
}

// Host renders the host of the service whose template data is data. The
// error is a problem of the whole service: see Result.HostFailed.
func (h Hosts) Host(data any) (string, error) { return sources.RenderHost(h.Template, data) }

// HostFailed counts the instances of a service left out because its host
// could not be made.
func (r *Result) HostFailed(service string, instances int, err error) {
	r.Skipped[SkipInvalidService] += instances
	r.Problems["service/"+service] = Problem{Name: service, Reason: SkipInvalidService, Detail: "hostTemplate: " + err.Error()}
}
