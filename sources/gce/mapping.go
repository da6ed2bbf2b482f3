package gce

import (
	"fmt"
	"strconv"
	"strings"
	"text/template"

	compute "google.golang.org/api/compute/v1"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// Reasons an instance (or one of its service names) is left out, the values
// of the skipped metric's "reason" label.
const (
	skipNotRunning     = "not-running"
	skipZone           = "zone-filtered"
	skipOptOut         = "opted-out"
	skipAutoRegistered = "auto-registered"
	skipNoService      = "no-service"
	skipInvalidService = "invalid-service"
	skipNoPorts        = "no-ports"
	skipInvalidPorts   = "invalid-ports"
	skipNoAddress      = "no-address"
	skipUnhealthy      = cloudsource.SkipUnhealthy
)

var skipReasons = []string{
	skipNotRunning, skipZone, skipOptOut, skipAutoRegistered, skipNoService,
	skipInvalidService, skipNoPorts, skipInvalidPorts, skipNoAddress, skipUnhealthy,
}

// hostData is what hostTemplate sees.
type hostData struct {
	Service string
	Project string
}

// hostSample is what hostTemplate is checked on at start.
var hostSample = hostData{Service: "web", Project: "my-project"}

// The separators of service names: label values allow only [a-z0-9_-];
// a metadata item is a comma-separated list.
const (
	labelServiceSeparators    = "_ "
	metadataServiceSeparators = ", "
)

// lastSegment returns what follows the last '/' of a resource URL.
func lastSegment(u string) string {
	return u[strings.LastIndexByte(u, '/')+1:]
}

// regionOf returns the region of a zone name ("us-central1-a" -> "us-central1").
func regionOf(zone string) string {
	if i := strings.LastIndexByte(zone, '-'); i > 0 {
		return zone[:i]
	}
	return zone
}

// mapper turns instances into groups.
type mapper struct {
	cfg         *Config
	host        *template.Template
	zones       map[string]bool
	configPorts []model.Port
}

func newMapper(cfg *Config) (*mapper, error) {
	t, err := sources.ParseHostTemplate("hostTemplate", cfg.HostTemplate, hostSample)
	if err != nil {
		return nil, err
	}
	m := &mapper{cfg: cfg, host: t, configPorts: cfg.ConfigPorts()}
	if len(cfg.Zones) > 0 {
		m.zones = map[string]bool{}
		for _, z := range cfg.Zones {
			m.zones[z] = true
		}
	}
	return m, nil
}

// mapInstances maps every instance of a complete list. health, when not
// nil, is each instance's health: a critical instance is left out (reason
// unhealthy), so that the adapter sees it removed and the mass-deletion
// guard counts it like any other removal.
func (m *mapper) mapInstances(instances []*compute.Instance, health func(id string) cloudsource.Verdict) cloudsource.Result {
	res := cloudsource.NewResult(len(instances))
	services := cloudsource.Services{}
	for _, in := range instances {
		id := strconv.FormatUint(in.Id, 10)
		names, inst, reason, detail := m.mapInstance(in)
		var v cloudsource.Verdict
		if health != nil {
			v = health(id)
		}
		names, reason, detail = res.WithHealth(v, &inst.Instance, names, reason, detail)
		if reason != "" {
			res.Skipped[reason]++
			if detail != "" {
				res.Problems[id] = cloudsource.Problem{Name: in.Name, Reason: reason, Detail: detail}
			}
		}
		services.Add(names, inst.Instance, inst.ports)
	}
	res.Groups = services.Groups(func(name string) (string, error) {
		return sources.RenderHost(m.host, hostData{Service: name, Project: m.cfg.Project})
	}, func(name string, instances int, err error) {
		res.Skipped[skipInvalidService] += instances
		res.Problems["service/"+name] = cloudsource.Problem{Name: name, Reason: skipInvalidService, Detail: "hostTemplate: " + err.Error()}
	})
	return res
}

type mappedInstance struct {
	model.Instance
	ports []model.Port
}

// mapInstance maps one instance to the names of its services and its
// model.Instance. When it is left out (no names) or some of its service
// names are, reason says why and detail is worth logging.
func (m *mapper) mapInstance(in *compute.Instance) (names []string, out mappedInstance, reason, detail string) {
	if in.Status != "RUNNING" {
		return nil, out, skipNotRunning, ""
	}
	zone := lastSegment(in.Zone)
	if m.zones != nil && !m.zones[zone] {
		return nil, out, skipZone, ""
	}
	meta := map[string]string{}
	if in.Metadata != nil {
		for _, it := range in.Metadata.Items {
			if it != nil && it.Value != nil {
				meta[it.Key] = *it.Value
			}
		}
	}
	for k := range in.Labels {
		if cloudsource.IsAutoRegistrationKey(k) {
			return nil, out, skipAutoRegistered, ""
		}
	}
	for k := range meta {
		if cloudsource.IsAutoRegistrationKey(k) {
			return nil, out, skipAutoRegistered, ""
		}
	}
	if v, ok := in.Labels[m.cfg.OptOutLabel]; ok && !strings.EqualFold(v, "false") {
		return nil, out, skipOptOut, ""
	}
	if v, ok := meta[m.cfg.OptOutLabel]; ok && !strings.EqualFold(strings.TrimSpace(v), "false") {
		return nil, out, skipOptOut, ""
	}

	var invalid []string
	if v, ok := in.Labels[m.cfg.ServiceLabel]; ok {
		names, invalid = cloudsource.SplitServices(v, labelServiceSeparators)
	} else if v, ok := meta[m.cfg.ServiceLabel]; ok {
		names, invalid = cloudsource.SplitServices(v, metadataServiceSeparators)
	} else {
		return nil, out, skipNoService, ""
	}
	if len(invalid) > 0 {
		reason = skipInvalidService
		detail = fmt.Sprintf("invalid service names %q", invalid)
	}
	if len(names) == 0 {
		if reason == "" {
			reason = skipNoService
		}
		return nil, out, reason, detail
	}

	ports := m.configPorts
	if v, ok := meta[m.cfg.PortsMetadataKey]; ok {
		p, err := cloudsource.ParsePorts(v)
		if err != nil {
			return nil, out, skipInvalidPorts, fmt.Sprintf("metadata %s: %v", m.cfg.PortsMetadataKey, err)
		}
		ports = p
	}
	if len(ports) == 0 {
		return nil, out, skipNoPorts, fmt.Sprintf("no %s metadata item and no ports configured", m.cfg.PortsMetadataKey)
	}

	var nic *compute.NetworkInterface
	if len(in.NetworkInterfaces) > 0 {
		nic = in.NetworkInterfaces[0]
	}
	addr := m.address(nic)
	if addr == "" {
		return nil, out, skipNoAddress, fmt.Sprintf("no %s address on the first network interface", m.cfg.AddressType)
	}
	network := m.cfg.Network
	if network == "" && nic != nil {
		network = lastSegment(nic.Network)
	}
	locality := ""
	if zone != "" {
		locality = regionOf(zone) + "/" + zone
	}
	var identity string
	for _, sa := range in.ServiceAccounts {
		if sa != nil && sa.Email != "" {
			identity = sa.Email
			break
		}
	}
	var labels map[string]string
	if len(in.Labels) > 0 {
		labels = make(map[string]string, len(in.Labels))
		for k, v := range in.Labels {
			labels[k] = v
		}
	}
	out = mappedInstance{
		Instance: model.Instance{
			ID:       strconv.FormatUint(in.Id, 10),
			Address:  addr,
			Labels:   model.LabelsFromMap(labels),
			Locality: locality,
			Network:  network,
			Health:   model.HealthUnknown,
			Identity: identity,
		},
		ports: ports,
	}
	return names, out, reason, detail
}

// address picks the configured kind of address of a network interface.
func (m *mapper) address(nic *compute.NetworkInterface) string {
	if nic == nil {
		return ""
	}
	valid := cloudsource.ValidIP
	switch m.cfg.AddressType {
	case AddressPublic:
		for _, ac := range nic.AccessConfigs {
			if ac != nil {
				if a := valid(ac.NatIP, false); a != "" {
					return a
				}
			}
		}
	case AddressIPv6:
		if a := valid(nic.Ipv6Address, true); a != "" {
			return a
		}
		for _, ac := range nic.Ipv6AccessConfigs {
			if ac != nil {
				if a := valid(ac.ExternalIpv6, true); a != "" {
					return a
				}
			}
		}
	default:
		return valid(nic.NetworkIP, false)
	}
	return ""
}
