package adapter

import (
	"errors"
	"fmt"

	"github.com/registry-adapter/registry-adapter/model"
)

// SourceLimits caps what one source may deliver (sources[].limits). Whoever
// can register in the registry (a Consul agent token, a cloud tag) writes
// this data, and the adapter holds all of it and serves it to istiod: a
// runaway registration loop or a hostile registrant must not grow the
// adapter or istiod without bound. A batch beyond a cap is a failed sync of
// its source: it is not applied, the source keeps its last good state and is
// restarted with backoff (so that it sends its whole state again), and its
// status and registry_adapter_source_errors_total{kind="limit"} name the cap.
// Zero is the default; the defaults are far above a 100k-instance source.
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
}

// The defaults of SourceLimits.
const (
	DefaultSourceServices          = 100_000
	DefaultSourceInstances         = 1_000_000
	DefaultSourceLabelsPerInstance = 256
	DefaultSourceLabelValueBytes   = 4096
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
	}
}

// Validate reports every negative cap.
func (l SourceLimits) Validate() error {
	var errs []error
	for _, c := range []struct {
		key string
		v   int
	}{{"services", l.Services}, {"instances", l.Instances}, {"labelsPerInstance", l.LabelsPerInstance}, {"labelValueBytes", l.LabelValueBytes}} {
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
// scope) and, if it is within the caps, counts it as accepted. It costs the
// batch, not the source: the scopes it does not name are not visited.
func (t *sourceTally) admit(groups []model.Group, full bool) error {
	l := t.limits
	total := t.total
	if full {
		total = scopeCount{}
	}
	// touched holds the new count of each scope the batch names (a later
	// group of one scope replaces an earlier one, as in the store).
	touched := make(map[string]scopeCount, len(groups))
	for _, g := range groups {
		var c scopeCount
		for _, svc := range g.Services {
			c.services++
			c.instances += len(svc.Instances)
			if err := t.checkLabels(svc.Host, "", svc.Labels); err != nil {
				return err
			}
			for _, inst := range svc.Instances {
				if inst.Labels.Len() > l.LabelsPerInstance {
					return fmt.Errorf("source %q: service %s instance %s has %d labels, more than limits.labelsPerInstance %d",
						t.source, svc.Host, inst.ID, inst.Labels.Len(), l.LabelsPerInstance)
				}
				if err := t.checkLabels(svc.Host, inst.ID, inst.Labels); err != nil {
					return err
				}
			}
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
		return fmt.Errorf("source %q: %d services, more than limits.services %d", t.source, total.services, l.Services)
	}
	if total.instances > l.Instances {
		return fmt.Errorf("source %q: %d instances, more than limits.instances %d", t.source, total.instances, l.Instances)
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
	return nil
}

func (t *sourceTally) checkLabels(host, instance string, labels model.Labels) error {
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
			return fmt.Errorf("source %q: %s has a label key of %d bytes (%.32q...), more than limits.labelValueBytes %d",
				t.source, where, len(k), k, limit)
		}
		return fmt.Errorf("source %q: %s label %.64q has a value of %d bytes, more than limits.labelValueBytes %d",
			t.source, where, k, len(v), limit)
	}
	return nil
}
