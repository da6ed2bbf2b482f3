// Package convert turns the normalized model into Istio ServiceEntry and
// WorkloadEntry resources. Everything here is a pure function of its input:
// the same services always give byte-identical resources and versions, on any
// replica, after any restart.
package convert

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/convert/validation"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

// Metadata keys the adapter writes. The selector label ties a ServiceEntry to
// its WorkloadEntries; the rest are for humans and for tracing a resource
// back to the registry.
const (
	LabelService      = "registry-adapter.io/service"
	AnnotationSource  = "registry-adapter.io/source"
	AnnotationSvcName = "registry-adapter.io/service-name"
	AnnotationID      = "registry-adapter.io/instance-id"
	AnnotationIdent   = "registry-adapter.io/identity"
)

// Contribution is one source's view of a service, in configuration order.
type Contribution struct {
	Source  string
	Service model.Service
}

// Rejection says why an item was left out of what istiod receives.
type Rejection struct {
	Kind   served.Kind
	Name   string // the resource or item that was dropped
	Source string
	// Code classifies the reason with a small fixed vocabulary, for metrics.
	Code   string
	Reason string
}

// Rejection codes.
const (
	CodePort      = "invalid-port"
	CodeConflict  = "port-conflict"
	CodeDuplicate = "duplicate-instance"
	CodeLabel     = "invalid-label"
	CodeInvalid   = "failed-validation"
	CodeReserved  = "reserved-metadata"
	CodeAddress   = "invalid-address"
	// CodeRefusedAddress: a registry gave the service an address it may not
	// have (outside output.addresses.allow, reserved, or claimed by another
	// host too); the service is served without it.
	CodeRefusedAddress = "refused-address"
)

func (r Rejection) String() string {
	return fmt.Sprintf("%s %q from source %q: %s", r.Kind, r.Name, r.Source, r.Reason)
}

// Service converts every contribution for one host into resources: a
// ServiceEntry and, in workloadentry mode, one WorkloadEntry per instance.
// Contributions must be in configuration order: when two sources disagree on
// a service's ports, the earlier source wins and the later is rejected.
// Resources that would fail istiod's validation are rejected with a reason;
// the rest are still returned.
//
// Service sees one host alone: the addresses its registry claims are served
// when the options' policy accepts them, and nothing is allocated. The
// adapter uses ServiceAt, with the addresses package vip decides from every
// host's claims.
func Service(host string, contribs []Contribution, opts Options) ([]*served.Resource, []Rejection) {
	claims, rejected := Claims(host, contribs, opts)
	var addrs []string
	if len(claims) > 0 {
		if cfg, err := opts.Addresses.Config(); err == nil {
			policy := cfg.Policy()
			for _, a := range claims {
				if why := policy.Check(a); why != "" {
					rejected = append(rejected, Rejection{Kind: served.KindServiceEntry, Name: host, Source: contribs[0].Source,
						Code: CodeRefusedAddress, Reason: fmt.Sprintf("address %s is %s", a, why)})
					continue
				}
				addrs = append(addrs, a.String())
			}
		}
	}
	res, more := ServiceAt(host, addrs, contribs, opts)
	return res, append(rejected, more...)
}

// ServiceAt is Service with the host's addresses decided by package vip,
// which needs every host's claims (Claims) and the set of hosts, and so runs
// before conversion. They become spec.addresses as they are.
func ServiceAt(host string, addresses []string, contribs []Contribution, opts Options) ([]*served.Resource, []Rejection) {
	return ServiceAtReusing(host, addresses, contribs, opts, nil)
}

// Scratch is the label and annotation maps of one conversion, kept for the
// next: a cold sync of 50k services made five maps per service, a sixth of
// its CPU (measured, BENCHMARKS.md). Not safe for concurrent use.
type Scratch struct {
	maps []map[string]string
	used int
	// The ServiceEntry, its ports and endpoints, and the WorkloadEntries,
	// with the capacity of their slices.
	se        *networking.ServiceEntry
	ports     []networking.ServicePort
	endpoints []*networking.WorkloadEntry
	wes       []*networking.WorkloadEntry
	wesUsed   int
}

// serviceEntry returns an empty ServiceEntry and n empty ports for it.
func (s *Scratch) serviceEntry(n int) (*networking.ServiceEntry, []networking.ServicePort) {
	if s == nil {
		return &networking.ServiceEntry{}, make([]networking.ServicePort, n)
	}
	if s.se == nil {
		s.se = &networking.ServiceEntry{}
	} else {
		hosts, ports := s.se.Hosts[:0], s.se.Ports[:0]
		if s.se.Endpoints != nil {
			s.endpoints = s.se.Endpoints[:0]
		}
		s.se.Reset()
		s.se.Hosts, s.se.Ports = hosts, ports
	}
	if cap(s.ports) < n {
		s.ports = make([]networking.ServicePort, n)
	}
	ports := s.ports[:n]
	for i := range ports {
		ports[i].Reset()
	}
	return s.se, ports
}

// endpointList is where a ServiceEntry's first endpoint is appended: the
// previous conversion's list, emptied, or nil.
func (s *Scratch) endpointList() []*networking.WorkloadEntry {
	if s == nil || s.endpoints == nil {
		return nil
	}
	return s.endpoints[:0]
}

// workloadEntry returns an empty WorkloadEntry.
func (s *Scratch) workloadEntry() *networking.WorkloadEntry {
	if s == nil {
		return &networking.WorkloadEntry{}
	}
	if s.wesUsed == len(s.wes) {
		s.wes = append(s.wes, &networking.WorkloadEntry{})
	}
	we := s.wes[s.wesUsed]
	s.wesUsed++
	we.Reset()
	return we
}

// newMap returns an empty map, a reused one when s holds one.
func (s *Scratch) newMap(hint int) map[string]string {
	if s == nil {
		return make(map[string]string, hint)
	}
	if s.used == len(s.maps) {
		s.maps = append(s.maps, make(map[string]string, hint))
	}
	m := s.maps[s.used]
	s.used++
	return m
}

// reset makes every map s handed out empty again, for the next conversion.
func (s *Scratch) reset() {
	if s == nil {
		return
	}
	for _, m := range s.maps[:s.used] {
		clear(m)
	}
	s.used = 0
	s.wesUsed = 0
	// A scratch is kept from conversion to conversion: what one service of
	// thousands of instances needed is not kept for the next.
	if len(s.maps) > scratchKeeps {
		clear(s.maps)
		s.maps = s.maps[:0]
	}
	if len(s.wes) > scratchKeeps {
		s.wes = nil
	}
	if cap(s.endpoints) > scratchKeeps {
		s.endpoints = nil
	}
	if cap(s.ports) > scratchKeeps {
		s.ports = nil
	}
	if s.se != nil && (cap(s.se.Ports) > scratchKeeps || cap(s.se.Endpoints) > scratchKeeps) {
		s.se = nil
	}
}

// scratchKeeps is the number of maps, WorkloadEntries and endpoints a
// Scratch keeps for the next conversion.
const scratchKeeps = 64

// ServiceAtReusing is ServiceAt with the maps of scratch: the resources it
// returns are serialized (Resource.Entry, Version) as usual, but their
// Spec, Labels and Annotations hold maps that the next call with the same
// scratch empties and refills. For a caller that keeps only what is
// serialized, as the adapter's pipeline does; a nil scratch is ServiceAt.
func ServiceAtReusing(host string, addresses []string, contribs []Contribution, opts Options, scratch *Scratch) ([]*served.Resource, []Rejection) {
	if len(contribs) == 0 {
		return nil, nil
	}
	scratch.reset()
	opts.Namespace = opts.NamespaceFor(host)
	c := conversion{host: host, seName: ResourceName(host), base: contribs[0], opts: opts, addresses: addresses, scratch: scratch}
	c.normalizePorts()
	c.collectInstances(contribs)
	se := c.serviceEntrySpec()
	seMeta := c.serviceEntryMeta()
	entries := c.instances(se)
	out := c.finish(se, seMeta, entries)
	if len(out) > 0 {
		out = append(out, c.traffic(seMeta)...)
	}
	return out, c.rejected
}

// Claims returns the addresses the registries give host: the first
// contribution's own (model.Service.Addresses: Consul's consul-virtual, a
// source's virtual address key), else the value of output.addresses.key on
// the service or its served instances. A value that is not an IP address
// is rejected alone. Claims are not checked here: package vip decides
// which ones a host keeps (the policy, and no address for two hosts).
func Claims(host string, contribs []Contribution, opts Options) ([]netip.Addr, []Rejection) {
	if len(contribs) == 0 {
		return nil, nil
	}
	c := conversion{host: host, seName: ResourceName(host), base: contribs[0], opts: opts}
	if len(c.base.Service.Addresses) == 0 && opts.Addresses.Key == "" {
		return nil, nil
	}
	if out := c.registryAddresses(); len(out) > 0 || opts.Addresses.Key == "" {
		return out, c.rejected
	}
	// The key's value on the instances counts only for the instances that
	// are served: the ones whose source agrees on the ports, not critical.
	rejected := c.rejected
	c.normalizePorts()
	c.collectInstances(contribs)
	c.rejected = rejected
	if a, ok := c.keyAddress(); ok {
		return []netip.Addr{a}, c.rejected
	}
	return nil, c.rejected
}

// conversion is the state of one Service call, passed from step to step.
type conversion struct {
	host, seName string
	base         Contribution // the first contribution, whose ports and metadata win
	opts         Options
	addresses    []string // the host's addresses, decided by package vip
	ports        []model.Port
	served       []sourcedInstance // instances not critical, in contribution order
	sourceNames  []string          // the sources that contributed, for the annotation
	rejected     []Rejection
	scratch      *Scratch // nil: fresh maps
}

type sourcedInstance struct {
	source string
	inst   *model.Instance // in its contribution, which is read only
}

func (c *conversion) reject(r Rejection) { c.rejected = append(c.rejected, r) }

// normalizePorts takes the first contribution's ports, leaving out the ones
// istiod would reject the whole ServiceEntry for.
func (c *conversion) normalizePorts() {
	var dropped []string
	c.ports, dropped = normalizePorts(c.base.Service.Ports)
	for _, reason := range dropped {
		c.reject(Rejection{Kind: served.KindServiceEntry, Name: c.host, Source: c.base.Source, Code: CodePort, Reason: reason})
	}
}

// collectInstances gathers the instances to serve from every contribution
// whose ports agree with the first one's; a duplicate instance id within a
// source is rejected, critical instances are left out, and so is an
// instance whose address is the client's own host (model.LocalAddress),
// whatever its source: registry data does not pick the client's addresses.
func (c *conversion) collectInstances(contribs []Contribution) {
	for i, contrib := range contribs {
		if i > 0 && !samePorts(c.ports, contrib.Service.Ports) {
			c.reject(Rejection{
				Kind: served.KindServiceEntry, Name: c.host, Source: contrib.Source, Code: CodeConflict,
				Reason: fmt.Sprintf("conflict: ports %s differ from %s of source %q, which wins by configuration order",
					describePorts(contrib.Service.Ports), describePorts(c.ports), c.base.Source),
			})
			continue
		}
		c.sourceNames = append(c.sourceNames, contrib.Source)
		// Duplicates are looked for among the instances before this one: a
		// service has a handful, and a map per service was a fifth of a
		// conversion's garbage (measured, BENCHMARKS.md). Past
		// linearUpTo instances, a map keeps it linear.
		var seen map[string]bool
		if len(contrib.Service.Instances) > linearUpTo {
			seen = make(map[string]bool, len(contrib.Service.Instances))
		}
		for j, inst := range contrib.Service.Instances {
			if duplicateID(contrib.Service.Instances, j, seen) {
				c.reject(Rejection{Kind: served.KindWorkloadEntry, Name: inst.ID, Source: contrib.Source, Code: CodeDuplicate,
					Reason: fmt.Sprintf("duplicate instance id in service %q", c.host)})
				continue
			}
			if inst.Health == model.HealthCritical {
				continue
			}
			if why := model.LocalAddress(inst.Address); why != "" && !c.opts.allowsLocal(why) {
				c.reject(Rejection{Kind: served.KindWorkloadEntry, Name: inst.ID, Source: contrib.Source, Code: CodeAddress,
					Reason: fmt.Sprintf("address %s of an instance of %s is %s: it would send the clients' traffic to their own host; left it out",
						inst.Address, c.host, why)})
				continue
			}
			if c.served == nil {
				c.served = make([]sourcedInstance, 0, countInstances(contribs[i:]))
			}
			c.served = append(c.served, sourcedInstance{contrib.Source, &contrib.Service.Instances[j]})
		}
	}
}

func countInstances(contribs []Contribution) int {
	n := 0
	for _, c := range contribs {
		n += len(c.Service.Instances)
	}
	return n
}

// linearUpTo is the number of instances up to which duplicateID compares
// IDs pairwise instead of with a map.
const linearUpTo = 16

// duplicateID reports whether instance j's ID is that of an earlier
// instance; seen, when not nil, holds the earlier IDs and is updated.
func duplicateID(insts []model.Instance, j int, seen map[string]bool) bool {
	id := insts[j].ID
	if seen != nil {
		if seen[id] {
			return true
		}
		seen[id] = true
		return false
	}
	for _, earlier := range insts[:j] {
		if earlier.ID == id {
			return true
		}
	}
	return false
}

// serviceEntrySpec builds the ServiceEntry without endpoints or selector.
func (c *conversion) serviceEntrySpec() *networking.ServiceEntry {
	// One allocation for the ports, not one per port; none with a scratch.
	se, ports := c.scratch.serviceEntry(len(c.ports))
	se.Hosts = append(se.Hosts, c.host)
	se.Location = networking.ServiceEntry_Location(networking.ServiceEntry_Location_value[c.opts.Location])
	se.Resolution = networking.ServiceEntry_STATIC
	se.ExportTo = c.opts.ExportTo
	for i, p := range c.ports {
		ports[i].Number, ports[i].Protocol, ports[i].Name = p.Number, string(p.Protocol), PortName(p)
		se.Ports = append(se.Ports, &ports[i])
	}
	for _, s := range c.served {
		if !model.IsIP(s.inst.Address) {
			// A hostname endpoint needs istiod to resolve it.
			se.Resolution = networking.ServiceEntry_DNS
			break
		}
	}
	se.Addresses = c.addresses
	return se
}

// registryAddresses are the registry's own addresses for the service (the
// first contribution's, like its ports). One that is not an IP is rejected
// alone: istiod would reject the whole ServiceEntry for it. CIDRs are not
// taken from registries: istiod allows them only with resolution NONE or
// STATIC, and a VIP is one address.
func (c *conversion) registryAddresses() []netip.Addr {
	var out []netip.Addr
	for _, a := range c.base.Service.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.Zone() != "" {
			c.reject(Rejection{Kind: served.KindServiceEntry, Name: c.host, Source: c.base.Source, Code: CodeAddress,
				Reason: fmt.Sprintf("address %q is not an IP address; dropped it", a)})
			continue
		}
		if ip = ip.Unmap(); !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out
}

// keyAddress is the address output.addresses.key gives the service: its
// own label, or else the one value its served instances agree on. A value
// that is not an IP, or instances that disagree, are rejected (for the
// address only), and allocation applies.
func (c *conversion) keyAddress() (netip.Addr, bool) {
	key := c.opts.Addresses.Key
	if key == "" {
		return netip.Addr{}, false
	}
	parse := func(v string) (netip.Addr, bool) {
		ip, err := netip.ParseAddr(v)
		if err != nil && strings.Count(v, "-") == 3 && !strings.Contains(v, ".") {
			// 10-99-0-1: GCE label values cannot hold ".".
			if ip4, err4 := netip.ParseAddr(strings.ReplaceAll(v, "-", ".")); err4 == nil && ip4.Is4() {
				ip, err = ip4, nil
			}
		}
		if err != nil || ip.Zone() != "" {
			c.reject(Rejection{Kind: served.KindServiceEntry, Name: c.host, Source: c.base.Source, Code: CodeAddress,
				Reason: fmt.Sprintf("%s %q is not an IP address; allocating instead", key, v)})
			return netip.Addr{}, false
		}
		return ip.Unmap(), true
	}
	if v, ok := c.base.Service.Labels.Get(key); ok {
		return parse(v)
	}
	var found netip.Addr
	for _, si := range c.served {
		v, ok := si.inst.Labels.Get(key)
		if !ok {
			continue
		}
		a, ok := parse(v)
		if !ok {
			return netip.Addr{}, false
		}
		if found.IsValid() && a != found {
			c.reject(Rejection{Kind: served.KindServiceEntry, Name: c.host, Source: si.source, Code: CodeAddress,
				Reason: fmt.Sprintf("instances disagree on %s (%s, %s); allocating instead", key, found, a)})
			return netip.Addr{}, false
		}
		found = a
	}
	return found, found.IsValid()
}

// serviceEntryMeta builds the ServiceEntry's labels and annotations from the
// first contribution's, dropping what a registry may not set.
func (c *conversion) serviceEntryMeta() validation.Meta {
	labels, bad := sanitizeLabelsInto(c.scratch.newMap(c.base.Service.Labels.Len()+2), c.base.Service.Labels, c.opts.Labels, c.opts.Addresses.Key)
	for _, k := range bad {
		c.reject(labelRejection(served.KindServiceEntry, c.host, c.base.Source, k))
	}
	labels[served.LabelManagedBy] = served.ManagedByValue
	labels[LabelService] = LabelValue(c.seName)
	ann, reserved := sanitizeAnnotationsInto(c.scratch.newMap(c.base.Service.Annotations.Len()+3), c.base.Service.Annotations)
	for _, k := range reserved {
		c.reject(labelRejection(served.KindServiceEntry, c.host, c.base.Source, k))
	}
	ann[AnnotationSource] = strings.Join(c.sourceNames, ",")
	if c.base.Service.Name != "" {
		ann[AnnotationSvcName] = c.base.Service.Name
	}
	return validation.Meta{Name: c.seName, Namespace: c.opts.Namespace, Labels: labels, Annotations: ann}
}

// instances represents each served instance: inline mode adds it to se's
// endpoints; workloadentry mode returns a WorkloadEntry for it and gives se
// the selector. An instance that would fail validation is rejected alone.
func (c *conversion) instances(se *networking.ServiceEntry) []*served.Resource {
	if c.opts.Mode == ModeInline {
		c.inlineEndpoints(se)
		return nil
	}
	selector := LabelValue(c.seName)
	var entries []*served.Resource
	for _, s := range c.served {
		we, labels, ann, errs := workloadEntry(*s.inst, s.source, c.ports, c.opts, true, c.scratch)
		for _, k := range errs {
			c.reject(labelRejection(served.KindWorkloadEntry, s.inst.ID, s.source, k))
		}
		name := ResourceName(c.seName + "-" + s.source + "-" + s.inst.ID)
		labels[served.LabelManagedBy] = served.ManagedByValue
		labels[LabelService] = selector
		// Labels go on the metadata only: istiod merges metadata labels into
		// the spec's (ConvertWorkloadEntry), so a copy in the spec would only
		// add bytes to every push.
		if err := validation.WorkloadEntry(validation.Meta{Name: name, Namespace: c.opts.Namespace, Labels: labels, Annotations: ann}, we); err != nil {
			c.reject(Rejection{Kind: served.KindWorkloadEntry, Name: name, Source: s.source, Code: CodeInvalid, Reason: err.Error()})
			continue
		}
		entries = append(entries, served.New(served.KindWorkloadEntry, c.opts.Namespace, name, labels, ann, we, c.opts.CreateTime))
	}
	se.WorkloadSelector = &networking.WorkloadSelector{Labels: map[string]string{LabelService: selector}}
	return entries
}

// inlineEndpoints puts the served instances into se's endpoints, sorted by
// address.
func (c *conversion) inlineEndpoints(se *networking.ServiceEntry) {
	servicePorts := make(map[string]struct{}, len(se.Ports))
	for _, p := range se.Ports {
		servicePorts[p.Name] = struct{}{}
	}
	for _, s := range c.served {
		we, labels, _, errs := workloadEntry(*s.inst, s.source, c.ports, c.opts, false, c.scratch)
		for _, k := range errs {
			c.reject(labelRejection(served.KindWorkloadEntry, s.inst.ID, s.source, k))
		}
		we.Labels = labels
		// Validated here with the ServiceEntry's rules for endpoints, so
		// that one bad instance is left out alone and the ServiceEntry's
		// own validation need not look at endpoints again.
		if err := validation.InlineEndpoint(se, servicePorts, we); err != nil {
			c.reject(Rejection{Kind: served.KindWorkloadEntry, Name: s.inst.ID, Source: s.source, Code: CodeInvalid, Reason: err.Error()})
			continue
		}
		if se.Endpoints == nil {
			se.Endpoints = c.scratch.endpointList()
		}
		se.Endpoints = append(se.Endpoints, we)
	}
	slices.SortStableFunc(se.Endpoints, func(a, b *networking.WorkloadEntry) int { return cmp.Compare(a.Address, b.Address) })
}

// finish validates the ServiceEntry and returns it first, then the
// WorkloadEntries; nothing when the ServiceEntry is rejected.
func (c *conversion) finish(se *networking.ServiceEntry, meta validation.Meta, entries []*served.Resource) []*served.Resource {
	validate := validation.ServiceEntry
	if c.opts.Mode == ModeInline {
		validate = validation.ServiceEntryCheckedEndpoints
	}
	if err := validate(meta, se); err != nil {
		// Without its ServiceEntry a WorkloadEntry serves no host; leave them
		// out too rather than feed istiod orphans.
		c.reject(Rejection{Kind: served.KindServiceEntry, Name: c.seName, Source: c.base.Source, Code: CodeInvalid, Reason: err.Error()})
		return nil
	}
	out := make([]*served.Resource, 0, 1+len(entries))
	out = append(out, served.New(served.KindServiceEntry, c.opts.Namespace, c.seName, meta.Labels, meta.Annotations, se, c.opts.CreateTime))
	return append(out, entries...)
}

// workloadEntry builds the spec and metadata of one instance. It returns the
// keys of the labels and annotations it had to drop. Without withAnnotations
// (an inline endpoint, which has no metadata of its own) it builds no
// annotations but still reports the reserved ones, as a WorkloadEntry would.
func workloadEntry(inst model.Instance, source string, ports []model.Port, opts Options, withAnnotations bool, scratch *Scratch) (*networking.WorkloadEntry, map[string]string, map[string]string, []string) {
	we := scratch.workloadEntry()
	we.Address, we.Network, we.Locality, we.Weight = inst.Address, inst.Network, inst.Locality, inst.Weight
	if opts.SetServiceAccount {
		we.ServiceAccount = inst.ServiceAccount
	}
	for _, p := range ports {
		if target, ok := inst.Ports.Get(p.Number); ok && target != p.Number {
			if we.Ports == nil {
				we.Ports = make(map[string]uint32)
			}
			we.Ports[PortName(p)] = target
		}
	}
	labels, dropped := sanitizeLabelsInto(scratch.newMap(inst.Labels.Len()+2), inst.Labels, opts.Labels, opts.Addresses.Key)
	if !withAnnotations {
		return we, labels, nil, append(dropped, reservedAnnotations(inst.Annotations)...)
	}
	ann, reserved := sanitizeAnnotationsInto(scratch.newMap(inst.Annotations.Len()+3), inst.Annotations)
	dropped = append(dropped, reserved...)
	ann[AnnotationSource] = source
	ann[AnnotationID] = inst.ID
	if inst.Identity != "" {
		ann[AnnotationIdent] = inst.Identity
	}
	return we, labels, ann, dropped
}

// PortName is the name a service port gets: "<protocol>-<number>".
func PortName(p model.Port) string {
	return lowerProtocol(p.Protocol) + "-" + strconv.FormatUint(uint64(p.Number), 10)
}

// lowerProtocol is strings.ToLower of p, without allocating for the
// protocols Istio knows.
func lowerProtocol(p model.Protocol) string {
	switch p {
	case model.ProtocolHTTP:
		return "http"
	case model.ProtocolHTTP2:
		return "http2"
	case model.ProtocolHTTPS:
		return "https"
	case model.ProtocolGRPC:
		return "grpc"
	case model.ProtocolGRPCWeb:
		return "grpc-web"
	case model.ProtocolTCP:
		return "tcp"
	case model.ProtocolTLS:
		return "tls"
	}
	return strings.ToLower(string(p))
}

// normalizePorts sorts ports by number and drops the ones istiod would reject
// the whole ServiceEntry for, saying why: numbers outside 1-65535, and a second
// declaration of a number already declared (kept: the lowest protocol name,
// so the choice does not depend on registry order).
func normalizePorts(ports []model.Port) ([]model.Port, []string) {
	out := make([]model.Port, 0, len(ports))
	var dropped []string
	for _, p := range ports {
		if p.Number == 0 || p.Number > 65535 {
			dropped = append(dropped, fmt.Sprintf("port %d is outside 1-65535; dropped the port", p.Number))
			continue
		}
		if p.Protocol == "" {
			p.Protocol = model.ProtocolTCP
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b model.Port) int {
		return cmp.Or(cmp.Compare(a.Number, b.Number), cmp.Compare(a.Protocol, b.Protocol))
	})
	kept := out[:0]
	for _, p := range out {
		if n := len(kept); n > 0 && kept[n-1].Number == p.Number {
			if kept[n-1].Protocol != p.Protocol {
				dropped = append(dropped, fmt.Sprintf("port %d declared as both %s and %s; kept %s",
					p.Number, kept[n-1].Protocol, p.Protocol, kept[n-1].Protocol))
			}
			continue
		}
		kept = append(kept, p)
	}
	return kept, dropped
}

func samePorts(a, b []model.Port) bool {
	nb, _ := normalizePorts(b)
	return slices.EqualFunc(a, nb, func(x, y model.Port) bool { return x.Number == y.Number && x.Protocol == y.Protocol })
}

func describePorts(ports []model.Port) string {
	parts := make([]string, 0, len(ports))
	norm, _ := normalizePorts(ports)
	for _, p := range norm {
		parts = append(parts, PortName(p))
	}
	return "[" + strings.Join(parts, ",") + "]"
}
