package gce

import (
	"fmt"
	"strconv"
	"strings"

	compute "google.golang.org/api/compute/v1"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// skipZone is the reason an instance of a zone the source does not read
// is left out.
const skipZone = "zone-filtered"

// skipReasons are the values of the skipped metric's "reason" label.
var skipReasons = cloudsource.SkipReasons(skipZone)

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

// The kinds of an instance's sets of keys: labels, and metadata items
// (which alone can hold the ports).
const (
	kindLabel    = "label"
	kindMetadata = "metadata item"
)

// mapper turns instances into groups.
type mapper struct {
	cfg   *Config
	zones map[string]bool
	*cloudsource.Mapping
}

func newMapper(cfg *Config) (*mapper, error) {
	mp, err := cfg.NewMapping(hostSample, cloudsource.Rules{OptOut: cfg.OptOutLabel, Service: cfg.ServiceLabel,
		Ports: cfg.PortsMetadataKey, PortsIn: kindMetadata})
	if err != nil {
		return nil, err
	}
	return &mapper{cfg: cfg, Mapping: mp, zones: cloudsource.SetOf(cfg.Zones, nil)}, nil
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
		mi := m.mapInstance(in)
		var v cloudsource.Verdict
		if health != nil {
			v = health(id)
		}
		services.Add(res.Take(id, in.Name, &mi, v), mi.Instance, mi.Ports)
	}
	res.Groups = services.Groups(func(name string) (string, error) {
		return m.Host(hostData{Service: name, Project: m.cfg.Project})
	}, res.HostFailed)
	return res
}

// mapInstance maps one running instance of a zone the source reads by the
// shared rules, from its labels and metadata items.
func (m *mapper) mapInstance(in *compute.Instance) cloudsource.Mapped {
	if in.Status != "RUNNING" {
		return cloudsource.Skipped(cloudsource.SkipNotRunning)
	}
	zone := lastSegment(in.Zone)
	if m.zones != nil && !m.zones[zone] {
		return cloudsource.Skipped(skipZone)
	}
	meta := map[string]string{}
	if in.Metadata != nil {
		for _, it := range in.Metadata.Items {
			if it != nil && it.Value != nil {
				meta[it.Key] = *it.Value
			}
		}
	}
	tags := []cloudsource.Tags{
		{Kind: kindLabel, Values: in.Labels, Separators: labelServiceSeparators},
		{Kind: kindMetadata, Values: meta, Separators: metadataServiceSeparators},
	}
	return m.Map(tags, func(out *model.Instance) string {
		var nic *compute.NetworkInterface
		if len(in.NetworkInterfaces) > 0 {
			nic = in.NetworkInterfaces[0]
		}
		if out.Address = m.address(nic); out.Address == "" {
			return fmt.Sprintf("no %s address on the first network interface", m.cfg.AddressType)
		}
		out.ID = strconv.FormatUint(in.Id, 10)
		out.Network = m.cfg.Network
		if out.Network == "" && nic != nil {
			out.Network = lastSegment(nic.Network)
		}
		if zone != "" {
			out.Locality = regionOf(zone) + "/" + zone
		}
		for _, sa := range in.ServiceAccounts {
			if sa != nil && sa.Email != "" {
				out.Identity = sa.Email
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
		out.Labels = model.LabelsFromMap(labels)
		return ""
	})
}

// address picks the configured kind of address of a network interface.
func (m *mapper) address(nic *compute.NetworkInterface) string {
	if nic == nil {
		return ""
	}
	valid := cloudsource.ValidIP
	switch m.cfg.AddressType {
	case cloudsource.AddressPublic:
		for _, ac := range nic.AccessConfigs {
			if ac != nil {
				if a := valid(ac.NatIP, false); a != "" {
					return a
				}
			}
		}
	case cloudsource.AddressIPv6:
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
