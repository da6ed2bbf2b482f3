package convert

import (
	"fmt"
	"time"

	"github.com/registry-adapter/registry-adapter/convert/validation"
)

// Mode chooses how instances are represented.
type Mode string

const (
	// ModeWorkloadEntry emits one WorkloadEntry per instance and a ServiceEntry
	// that selects them. An instance change then touches one small resource
	// and takes istiod's cheap endpoint-only (EDS) path.
	ModeWorkloadEntry Mode = "workloadentry"
	// ModeInline puts the endpoints inside the ServiceEntry: fewer objects,
	// but every instance change rewrites the whole ServiceEntry.
	ModeInline Mode = "inline"
)

// Options shape the generated resources.
type Options struct {
	// Namespace the resources are placed in. A ServiceEntry's workloadSelector
	// only selects WorkloadEntries in its own namespace, so both kinds share it.
	Namespace string `yaml:"namespace"`
	Mode      Mode   `yaml:"mode"`
	// Location is MESH_INTERNAL (default) or MESH_EXTERNAL.
	Location string `yaml:"location"`
	// ExportTo limits the namespaces that see the services (default: all).
	ExportTo []string `yaml:"exportTo"`
	// CreateTime is stamped on every resource. istiod orders ServiceEntries
	// that claim the same host by creation time, so it must be identical
	// across restarts and replicas: it is a fixed value, not the clock.
	CreateTime time.Time `yaml:"createTime"`
	// SetServiceAccount copies an instance's configured service account into
	// WorkloadEntry.serviceAccount. Off by default: istiod then insists on
	// mutual TLS toward the workload, which only a workload with a sidecar can do.
	SetServiceAccount bool `yaml:"setServiceAccount"`
}

// DefaultCreateTime is the creation time stamped on resources unless configured.
var DefaultCreateTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// SetDefaults fills unset options.
func (o *Options) SetDefaults() {
	if o.Namespace == "" {
		o.Namespace = "istio-system"
	}
	if o.Mode == "" {
		o.Mode = ModeWorkloadEntry
	}
	if o.Location == "" {
		o.Location = "MESH_INTERNAL"
	}
	if o.CreateTime.IsZero() {
		o.CreateTime = DefaultCreateTime
	}
}

// Validate reports the first invalid option.
func (o *Options) Validate() error {
	if !validation.IsDNS1123Label(o.Namespace) {
		return fmt.Errorf("output.namespace %q: not a valid namespace name", o.Namespace)
	}
	switch o.Mode {
	case ModeWorkloadEntry, ModeInline:
	default:
		return fmt.Errorf("output.mode %q: must be %q or %q", o.Mode, ModeWorkloadEntry, ModeInline)
	}
	switch o.Location {
	case "MESH_INTERNAL", "MESH_EXTERNAL":
	default:
		return fmt.Errorf("output.location %q: must be MESH_INTERNAL or MESH_EXTERNAL", o.Location)
	}
	// istiod's own rules (duplicates, "." next to the own namespace, "*" or
	// "~" mixed with others): breaking one would make it drop every
	// ServiceEntry silently, so it is a configuration error here.
	if err := validation.ExportTo(o.Namespace, o.ExportTo); err != nil {
		return fmt.Errorf("output.exportTo %q: %w", o.ExportTo, err)
	}
	return nil
}
