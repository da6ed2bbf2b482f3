package consul

import (
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/model"
)

// Which entries are instances of the service, and each served instance's
// health, locality, weight and network.

// Consul's special check IDs for maintenance mode.
const (
	nodeMaintCheckID      = "_node_maintenance"
	serviceMaintCheckPrfx = "_service_maintenance:"
	// consul-k8s marks the services it synced from Kubernetes with this meta.
	externalSourceMeta = "external-source"
)

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

// instances are the served candidates (passing, and warning with
// includeWarning) as model instances, sorted by ID (nil when none is), and,
// when the mapper keeps them, the plain tags of each by ID.
func (m *mapper) instances(cands []candidate, svcPort map[string]uint32, dc string) ([]model.Instance, map[string][]string) {
	var tags map[string][]string
	// Sized once: the store keeps this slice as long as the service lives.
	out := make([]model.Instance, 0, len(cands))
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
			Ports:    targetPorts(c.ports, svcPort),
		}
		if m.networkKey != "" {
			if v := c.e.Node.Meta[m.networkKey]; v != "" {
				inst.Network = v
			}
		}
		out = append(out, inst)
		if m.keepPlainTags {
			if t := plainTags(c.e.Service.Tags); len(t) > 0 {
				if tags == nil {
					tags = map[string][]string{}
				}
				tags[c.id] = t
			}
		}
	}
	if len(out) == 0 {
		return nil, tags
	}
	slices.SortFunc(out, func(a, b model.Instance) int { return strings.Compare(a.ID, b.ID) })
	return out, tags
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
