package adapter

import (
	"errors"
	"fmt"
	"slices"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
)

// SourceLimits caps what one source may deliver (sources[].limits). Whoever
// can register in the registry (a Consul agent token, a cloud tag) writes
// this data, and the adapter holds all of it and serves it to istiod: a
// runaway registration loop or a hostile registrant must not grow the
// adapter or istiod without bound.
//
// A cap on one item (the labels of an instance, the ports of a service) is a
// limit of that item: the instance or service is left out, by name (logged
// and counted in registry_adapter_rejected_items_total{reason="limit"}), and
// the rest of the source flows. Only a cap that no one item breaks (the
// services or instances of the whole source) holds the source: such a batch
// is a failed sync, it is not applied, the source keeps its last good state
// and is restarted with backoff (so that it sends its whole state again), and
// its status and registry_adapter_source_errors_total{kind="limit"} name the
// cap. Zero is the default; the defaults are far above a 100k-instance source.
type SourceLimits struct {
	// Services bounds the services of the source.
	Services int `yaml:"services"`
	// Instances bounds the instances of the source, over all its services.
	Instances int `yaml:"instances"`
	// LabelsPerInstance bounds the labels of one instance.
	LabelsPerInstance int `yaml:"labelsPerInstance"`
	// LabelValueBytes bounds each label key and value, of services and
	// instances.
	LabelValueBytes int `yaml:"labelValueBytes"`
	// PortsPerService bounds the ports of one service, and of one instance
	// in the sources whose instances declare their own (Consul).
	PortsPerService int `yaml:"portsPerService"`
}

// The defaults of SourceLimits.
const (
	DefaultSourceServices          = 100_000
	DefaultSourceInstances         = 1_000_000
	DefaultSourceLabelsPerInstance = 256
	DefaultSourceLabelValueBytes   = 4096
	DefaultSourcePortsPerService   = 256
)

// effective returns l with each unset cap at its default.
func (l SourceLimits) effective() SourceLimits {
	def := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	return SourceLimits{
		Services:          def(l.Services, DefaultSourceServices),
		Instances:         def(l.Instances, DefaultSourceInstances),
		LabelsPerInstance: def(l.LabelsPerInstance, DefaultSourceLabelsPerInstance),
		LabelValueBytes:   def(l.LabelValueBytes, DefaultSourceLabelValueBytes),
		PortsPerService:   def(l.PortsPerService, DefaultSourcePortsPerService),
	}
}

// ItemLimits are the per-item caps a source applies itself, where only it
// can name the offender (sources.Options.Limits).
func (l SourceLimits) ItemLimits() sources.Limits {
	return sources.Limits{PortsPerInstance: l.effective().PortsPerService}
}

// Validate reports every negative cap.
func (l SourceLimits) Validate() error {
	var errs []error
	for _, c := range []struct {
		key string
		v   int
	}{{"services", l.Services}, {"instances", l.Instances}, {"labelsPerInstance", l.LabelsPerInstance},
		{"labelValueBytes", l.LabelValueBytes}, {"portsPerService", l.PortsPerService}} {
		if c.v < 0 {
			errs = append(errs, fmt.Errorf("limits.%s %d: must be positive (0 or unset for the default)", c.key, c.v))
		}
	}
	return errors.Join(errs...)
}

// sourceTally counts what the adapter accepted of one source, per scope, to
// check each batch against the source's caps before it is applied.
type sourceTally struct {
	source string
	limits SourceLimits
	scopes map[string]scopeCount
	total  scopeCount
}

type scopeCount struct{ services, instances int }

func newSourceTally(source string, l SourceLimits) *sourceTally {
	return &sourceTally{source: source, limits: l.effective(), scopes: make(map[string]scopeCount)}
}

// admit checks a batch (full: the source's whole state, replacing every
// scope). It leaves out each service and instance beyond a per-item cap,
// with a message naming it (left), and then checks the source's totals: if
// they are within the caps, the batch is counted as accepted and returned
// (a copy, where something was left out: the source's own slices are never
// changed); if not, err names the cap and nothing is counted. It costs the
// batch, not the source: the scopes it does not name are not visited.
func (t *sourceTally) admit(groups []model.Group, full bool) (admitted []model.Group, left []string, err error) {
	l := t.limits
	total := t.total
	if full {
		total = scopeCount{}
	}
	admitted = groups
	// touched holds the new count of each scope the batch names (a later
	// group of one scope replaces an earlier one, as in the store).
	touched := make(map[string]scopeCount, len(groups))
	for gi, g := range groups {
		kept, why := t.checkGroup(g)
		if why != nil {
			if len(left) == 0 {
				admitted = slices.Clone(groups)
			}
			admitted[gi] = kept
			left = append(left, why...)
			g = kept
		}
		var c scopeCount
		for _, svc := range g.Services {
			c.services++
			c.instances += len(svc.Instances)
		}
		old, ok := touched[g.Scope]
		if !ok && !full {
			old = t.scopes[g.Scope]
		}
		total.services += c.services - old.services
		total.instances += c.instances - old.instances
		touched[g.Scope] = c
	}
	if total.services > l.Services {
		return nil, left, fmt.Errorf("source %q: %d services, more than limits.services %d", t.source, total.services, l.Services)
	}
	if total.instances > l.Instances {
		return nil, left, fmt.Errorf("source %q: %d instances, more than limits.instances %d", t.source, total.instances, l.Instances)
	}
	if full {
		t.scopes = make(map[string]scopeCount, len(touched))
	}
	for scope, c := range touched {
		if c.services == 0 {
			delete(t.scopes, scope)
		} else {
			t.scopes[scope] = c
		}
	}
	t.total = total
	return admitted, left, nil
}

// checkGroup returns g without the services and instances beyond a per-item
// cap, and why each was left out; why is nil (and g returned as it is) when
// nothing was.
func (t *sourceTally) checkGroup(g model.Group) (model.Group, []string) {
	var why []string
	var services []model.Service // nil until something is left out
	for si, svc := range g.Services {
		if reason := t.checkService(svc); reason != "" {
			why = append(why, reason)
			if services == nil {
				services = slices.Clone(g.Services[:si])
			}
			continue
		}
		var instances []model.Instance // nil until something is left out
		for ii, inst := range svc.Instances {
			if reason := t.checkInstance(svc.Host, inst); reason != "" {
				why = append(why, reason)
				if instances == nil {
					instances = slices.Clone(svc.Instances[:ii])
				}
				continue
			}
			if instances != nil {
				instances = append(instances, inst)
			}
		}
		if instances != nil {
			if len(instances) == 0 {
				instances = nil // no instance left, as a source says it
			}
			svc.Instances = instances
			if services == nil {
				services = slices.Clone(g.Services[:si])
			}
		}
		if services != nil {
			services = append(services, svc)
		}
	}
	if why == nil {
		return g, nil
	}
	return model.Group{Scope: g.Scope, Services: services}, why
}

// checkService says why a service is beyond a per-item cap, or "".
func (t *sourceTally) checkService(svc model.Service) string {
	if n := len(svc.Ports); n > t.limits.PortsPerService {
		return fmt.Sprintf("source %q: service %s has %d ports, more than limits.portsPerService %d; left out",
			t.source, svc.Host, n, t.limits.PortsPerService)
	}
	return t.checkLabels(svc.Host, "", svc.Labels)
}

// checkInstance says why an instance is beyond a per-item cap, or "".
func (t *sourceTally) checkInstance(host string, inst model.Instance) string {
	l := t.limits
	switch {
	case inst.Labels.Len() > l.LabelsPerInstance:
		return fmt.Sprintf("source %q: service %s instance %s has %d labels, more than limits.labelsPerInstance %d; left out",
			t.source, host, inst.ID, inst.Labels.Len(), l.LabelsPerInstance)
	case inst.Ports.Len() > l.PortsPerService:
		return fmt.Sprintf("source %q: service %s instance %s has %d ports, more than limits.portsPerService %d; left out",
			t.source, host, inst.ID, inst.Ports.Len(), l.PortsPerService)
	}
	return t.checkLabels(host, inst.ID, inst.Labels)
}

func (t *sourceTally) checkLabels(host, instance string, labels model.Labels) string {
	limit := t.limits.LabelValueBytes
	for k, v := range labels.All() {
		if len(k) <= limit && len(v) <= limit {
			continue
		}
		where := "service " + host
		if instance != "" {
			where += " instance " + instance
		}
		if len(k) > limit {
			return fmt.Sprintf("source %q: %s has a label key of %d bytes (%.32q...), more than limits.labelValueBytes %d; left out",
				t.source, where, len(k), k, limit)
		}
		return fmt.Sprintf("source %q: %s label %.64q has a value of %d bytes, more than limits.labelValueBytes %d; left out",
			t.source, where, k, len(v), limit)
	}
	return ""
}
