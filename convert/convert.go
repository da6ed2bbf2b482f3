// Package convert turns the normalized model into Istio ServiceEntry and
// WorkloadEntry resources. Everything here is a pure function of its input:
// the same services always give byte-identical resources and versions, on any
// replica, after any restart.
package convert

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/model"
)

// Metadata keys the adapter writes. The selector label ties a ServiceEntry to
// its WorkloadEntries; the rest are for humans and for tracing a resource
// back to the registry.
const (
	LabelService      = "registry-adapter.io/service"
	LabelManagedBy    = "app.kubernetes.io/managed-by"
	ManagedByValue    = "registry-adapter"
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
	Kind   Kind
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
func Service(host string, contribs []Contribution, opts Options) ([]*Resource, []Rejection) {
	if len(contribs) == 0 {
		return nil, nil
	}
	var rejected []Rejection
	base := contribs[0]
	seName := ResourceName(host)
	ports, dropped := normalizePorts(base.Service.Ports)
	for _, reason := range dropped {
		rejected = append(rejected, Rejection{Kind: KindServiceEntry, Name: host, Source: base.Source, Code: CodePort, Reason: reason})
	}

	type sourced struct {
		source string
		inst   model.Instance
	}
	var instances []sourced
	var sourceNames []string
	for i, c := range contribs {
		if i > 0 && !samePorts(ports, c.Service.Ports) {
			rejected = append(rejected, Rejection{
				Kind: KindServiceEntry, Name: host, Source: c.Source, Code: CodeConflict,
				Reason: fmt.Sprintf("conflict: ports %s differ from %s of source %q, which wins by configuration order",
					describePorts(c.Service.Ports), describePorts(ports), base.Source),
			})
			continue
		}
		sourceNames = append(sourceNames, c.Source)
		seen := make(map[string]bool, len(c.Service.Instances))
		for _, inst := range c.Service.Instances {
			if seen[inst.ID] {
				rejected = append(rejected, Rejection{Kind: KindWorkloadEntry, Name: inst.ID, Source: c.Source, Code: CodeDuplicate,
					Reason: fmt.Sprintf("duplicate instance id in service %q", host)})
				continue
			}
			seen[inst.ID] = true
			if inst.Health == model.HealthCritical {
				continue
			}
			instances = append(instances, sourced{c.Source, inst})
		}
	}

	selector := LabelValue(seName)
	se := &networking.ServiceEntry{
		Hosts:      []string{host},
		Location:   networking.ServiceEntry_Location(networking.ServiceEntry_Location_value[opts.Location]),
		Resolution: networking.ServiceEntry_STATIC,
		ExportTo:   opts.ExportTo,
	}
	for _, p := range ports {
		se.Ports = append(se.Ports, &networking.ServicePort{Number: p.Number, Protocol: string(p.Protocol), Name: PortName(p)})
	}
	for _, s := range instances {
		if !model.IsIP(s.inst.Address) {
			// A hostname endpoint needs istiod to resolve it.
			se.Resolution = networking.ServiceEntry_DNS
			break
		}
	}

	seLabels, bad := sanitizeLabels(base.Service.Labels)
	for _, k := range bad {
		rejected = append(rejected, labelRejection(KindServiceEntry, host, base.Source, k))
	}
	seLabels[LabelManagedBy] = ManagedByValue
	seLabels[LabelService] = selector
	seAnn, reserved := sanitizeAnnotations(base.Service.Annotations)
	for _, k := range reserved {
		rejected = append(rejected, Rejection{Kind: KindServiceEntry, Name: host, Source: base.Source, Code: CodeReserved,
			Reason: fmt.Sprintf("%q is reserved for Istio; dropped it", k)})
	}
	seAnn[AnnotationSource] = strings.Join(sourceNames, ",")
	if base.Service.Name != "" {
		seAnn[AnnotationSvcName] = base.Service.Name
	}

	var servicePorts map[string]struct{}
	if opts.Mode == ModeInline {
		servicePorts = make(map[string]struct{}, len(se.Ports))
		for _, p := range se.Ports {
			servicePorts[p.Name] = struct{}{}
		}
	}
	var out []*Resource
	var entries []*Resource
	for _, s := range instances {
		we, weLabels, weAnn, errs := workloadEntry(s.inst, s.source, ports, opts)
		for _, k := range errs {
			rejected = append(rejected, labelRejection(KindWorkloadEntry, s.inst.ID, s.source, k))
		}
		if opts.Mode == ModeInline {
			we.Labels = weLabels
			// Validated here with the ServiceEntry's rules for endpoints, so
			// that one bad instance is left out alone and the ServiceEntry's
			// own validation need not look at endpoints again.
			if err := validateInlineEndpoint(se, servicePorts, we); err != nil {
				rejected = append(rejected, Rejection{Kind: KindWorkloadEntry, Name: s.inst.ID, Source: s.source, Code: CodeInvalid, Reason: err.Error()})
				continue
			}
			se.Endpoints = append(se.Endpoints, we)
			continue
		}
		name := ResourceName(seName + "-" + s.source + "-" + s.inst.ID)
		weLabels[LabelManagedBy] = ManagedByValue
		weLabels[LabelService] = selector
		// Labels go on the metadata only: istiod merges metadata labels into
		// the spec's (ConvertWorkloadEntry), so a copy in the spec would only
		// add bytes to every push.
		if err := ValidateWorkloadEntryMeta(ValidationMeta{Name: name, Namespace: opts.Namespace, Labels: weLabels, Annotations: weAnn}, we); err != nil {
			rejected = append(rejected, Rejection{Kind: KindWorkloadEntry, Name: name, Source: s.source, Code: CodeInvalid, Reason: err.Error()})
			continue
		}
		entries = append(entries, newResource(KindWorkloadEntry, opts.Namespace, name, weLabels, weAnn, we, opts))
	}
	if opts.Mode == ModeInline {
		slices.SortStableFunc(se.Endpoints, func(a, b *networking.WorkloadEntry) int { return cmp.Compare(a.Address, b.Address) })
	} else {
		se.WorkloadSelector = &networking.WorkloadSelector{Labels: map[string]string{LabelService: selector}}
	}

	validateSE := ValidateServiceEntryMeta
	if opts.Mode == ModeInline {
		validateSE = validateServiceEntryCheckedEndpoints
	}
	if err := validateSE(ValidationMeta{Name: seName, Namespace: opts.Namespace, Labels: seLabels, Annotations: seAnn}, se); err != nil {
		// Without its ServiceEntry a WorkloadEntry serves no host; leave them
		// out too rather than feed istiod orphans.
		rejected = append(rejected, Rejection{Kind: KindServiceEntry, Name: seName, Source: base.Source, Code: CodeInvalid, Reason: err.Error()})
		return nil, rejected
	}
	out = append(out, newResource(KindServiceEntry, opts.Namespace, seName, seLabels, seAnn, se, opts))
	out = append(out, entries...)
	return out, rejected
}

// labelRejection explains a label or annotation key that was dropped.
func labelRejection(kind Kind, name, source, key string) Rejection {
	if reservedKey(key) {
		return Rejection{Kind: kind, Name: name, Source: source, Code: CodeReserved,
			Reason: fmt.Sprintf("%q is reserved for Istio; dropped it", key)}
	}
	return Rejection{Kind: kind, Name: name, Source: source, Code: CodeLabel,
		Reason: fmt.Sprintf("label key %q is not a valid label key; dropped the label", key)}
}

// reservedKey reports metadata a registry must not set: istiod rejects a
// resource carrying istio.io/dry-run or internal.istio.io/* annotations, and
// an istio.io/rev label would hide the resource from every istiod of
// another revision.
func reservedKey(k string) bool {
	return k == "istio.io/dry-run" || k == "istio.io/rev" || strings.HasPrefix(k, "internal.istio.io/")
}

// workloadEntry builds the spec and metadata of one instance. It returns the
// keys of the labels and annotations it had to drop.
func workloadEntry(inst model.Instance, source string, ports []model.Port, opts Options) (*networking.WorkloadEntry, map[string]string, map[string]string, []string) {
	we := &networking.WorkloadEntry{
		Address:  inst.Address,
		Network:  inst.Network,
		Locality: inst.Locality,
		Weight:   inst.Weight,
	}
	if opts.SetServiceAccount {
		we.ServiceAccount = inst.ServiceAccount
	}
	for _, p := range ports {
		if target, ok := inst.Ports[p.Number]; ok && target != p.Number {
			if we.Ports == nil {
				we.Ports = make(map[string]uint32)
			}
			we.Ports[PortName(p)] = target
		}
	}
	labels, dropped := sanitizeLabels(inst.Labels)
	ann, reserved := sanitizeAnnotations(inst.Annotations)
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
	return fmt.Sprintf("%s-%d", strings.ToLower(string(p.Protocol)), p.Number)
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

// sanitizeLabels returns a valid label map, and the keys it had to drop.
func sanitizeLabels(in map[string]string) (map[string]string, []string) {
	out := make(map[string]string, len(in)+2)
	if keysClean(in) {
		// Nothing to rename, so no two keys can collide and the order does
		// not matter: skip sorting, which every instance would pay.
		for k, v := range in {
			out[k] = LabelValue(v)
		}
		return out, nil
	}
	var dropped []string
	for _, k := range sortedKeys(in) {
		key, ok := LabelKey(k)
		if !ok || reservedKey(key) {
			dropped = append(dropped, k)
			continue
		}
		out[key] = LabelValue(in[k])
	}
	return out, dropped
}

// keysClean reports whether every key of m is a valid label key the adapter
// may pass on unchanged.
func keysClean(m map[string]string) bool {
	for k := range m {
		if !IsLabelKey(k) || reservedKey(k) {
			return false
		}
	}
	return true
}

// sanitizeAnnotations keeps the annotations whose keys are valid, and
// returns the reserved ones it dropped.
func sanitizeAnnotations(in map[string]string) (map[string]string, []string) {
	out := make(map[string]string, len(in)+3)
	if keysClean(in) {
		for k, v := range in {
			out[k] = v
		}
		return out, nil
	}
	var reserved []string
	for _, k := range sortedKeys(in) {
		key, ok := LabelKey(k)
		if !ok {
			continue
		}
		if reservedKey(key) {
			reserved = append(reserved, k)
			continue
		}
		out[key] = in[k]
	}
	return out, reserved
}
