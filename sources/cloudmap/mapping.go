package cloudmap

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/servicediscovery/types"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// Attributes Cloud Map reserves, and the ones ECS adds, that the mapping
// reads.
const (
	AttrIPv4  = "AWS_INSTANCE_IPV4"
	AttrIPv6  = "AWS_INSTANCE_IPV6"
	AttrCNAME = "AWS_INSTANCE_CNAME"
	AttrPort  = "AWS_INSTANCE_PORT"
	AttrZone  = "AVAILABILITY_ZONE"
)

// AutoRegistrationAttribute marks an instance that registers itself with
// istiod through a WorkloadGroup: the source leaves it out.
const AutoRegistrationAttribute = cloudsource.AutoRegistrationGroup

// kindAttribute names the attributes in log details.
const kindAttribute = "attribute"

// skipReasons are the values of the skipped metric's "reason" label.
var skipReasons = []string{
	cloudsource.SkipOptOut, cloudsource.SkipAutoRegistered, cloudsource.SkipInvalidService, cloudsource.SkipNoPorts,
	cloudsource.SkipInvalidPorts, cloudsource.SkipPortConflict, cloudsource.SkipNoAddress,
}

// hostData is what hostTemplate sees.
type hostData struct {
	Service   string
	Namespace string
	Region    string
}

// hostSample is what hostTemplate is checked on at start.
var hostSample = hostData{Service: "web", Namespace: "prod.local", Region: "us-east-1"}

// mapper maps the instances of one service.
type mapper struct {
	cfg *Config
	*cloudsource.Mapping
}

func newMapper(cfg *Config) (*mapper, error) {
	m := &mapper{cfg: cfg}
	var err error
	m.Mapping, err = cfg.NewMapping(hostSample, cloudsource.Rules{OptOut: cfg.OptOutAttribute, Ports: cfg.PortsAttribute,
		WithoutPortsKey: m.instancePort, AutoRegistration: cloudsource.IsAutoRegistrationTag})
	return m, err
}

// serviceResult is the outcome of mapping one service's instances.
type serviceResult struct {
	cloudsource.Result
	// group is nil when no instance of the service is served.
	group *model.Group
}

// mapService maps the complete list of one service's instances.
func (m *mapper) mapService(name string, instances []types.HttpInstanceSummary) serviceResult {
	res := serviceResult{Result: cloudsource.NewResult(len(instances))}
	instances = slices.Clone(instances)
	slices.SortFunc(instances, func(a, b types.HttpInstanceSummary) int {
		return cmp.Compare(aws.ToString(a.InstanceId), aws.ToString(b.InstanceId))
	})
	host, err := m.Host(hostData{Service: name, Namespace: m.cfg.Namespace, Region: m.cfg.Region})
	if err != nil {
		res.HostFailed(name, len(instances), err)
		return res
	}
	svc := model.Service{Name: name, Host: host}
	ports := map[uint32]model.Port{}
	for _, in := range instances {
		id := aws.ToString(in.InstanceId)
		mi := m.mapInstance(in)
		if mi.Reason != "" {
			res.Skip(name+"/"+id, "", mi.Reason, mi.Detail, 1)
			continue
		}
		// Instances are visited in ID order: on a protocol conflict the
		// lowest instance ID wins, so the outcome is stable.
		for _, p := range mi.Ports {
			if old, ok := ports[p.Number]; ok && old != p {
				res.Skip(name+"/"+id, "", cloudsource.SkipPortConflict, fmt.Sprintf(
					"port %d is %s on an instance with a lower ID, %s here; %s is kept", p.Number, old.Protocol, p.Protocol, old.Protocol), 1)
				continue
			}
			ports[p.Number] = p
		}
		svc.Instances = append(svc.Instances, mi.Instance)
	}
	if len(svc.Instances) == 0 {
		return res
	}
	for _, p := range ports {
		svc.Ports = append(svc.Ports, p)
	}
	slices.SortFunc(svc.Ports, func(a, b model.Port) int { return cmp.Compare(a.Number, b.Number) })
	res.group = &model.Group{Scope: name, Services: []model.Service{svc}}
	return res
}

// mapInstance maps one instance by the shared rules, from its attributes.
func (m *mapper) mapInstance(in types.HttpInstanceSummary) cloudsource.Mapped {
	attrs := in.Attributes
	return m.Map([]cloudsource.Tags{{Kind: kindAttribute, Values: attrs}}, func(out *model.Instance) string {
		if out.Address = m.address(attrs); out.Address == "" {
			return fmt.Sprintf("no valid %s attribute", m.addressAttribute())
		}
		out.ID = aws.ToString(in.InstanceId)
		out.Network = m.cfg.Network
		out.Locality = m.cfg.Region
		if z := attrs[AttrZone]; z != "" {
			out.Locality += "/" + z
		}
		var labels map[string]string
		for k, v := range attrs {
			if strings.HasPrefix(k, "AWS_") {
				continue
			}
			if labels == nil {
				labels = map[string]string{}
			}
			labels[k] = v
		}
		out.Labels = model.LabelsFromMap(labels)
		switch in.HealthStatus {
		case types.HealthStatusHealthy:
			out.Health = model.HealthPassing
		case types.HealthStatusUnhealthy:
			out.Health = model.HealthCritical
		}
		return ""
	})
}

// instancePort gives the ports of an instance without the ports attribute
// (Rules.WithoutPortsKey): with AWS_INSTANCE_PORT, that port (TCP) when no
// ports are configured, the one configured port (targeting it) when one
// is, else the configured ports.
func (m *mapper) instancePort(tags []cloudsource.Tags, mi *cloudsource.Mapped) (ports []model.Port, reason, detail string) {
	v, ok := tags[0].Values[AttrPort]
	if !ok {
		if len(m.ConfigPorts) == 0 {
			return nil, cloudsource.SkipNoPorts, fmt.Sprintf("no %s or %s attribute and no ports configured", m.cfg.PortsAttribute, AttrPort)
		}
		return m.ConfigPorts, "", ""
	}
	n, err := cloudsource.ParsePort(v)
	if err != nil {
		return nil, cloudsource.SkipInvalidPorts, fmt.Sprintf("%s %s: %v", kindAttribute, AttrPort, err)
	}
	switch len(m.ConfigPorts) {
	case 0:
		return []model.Port{{Number: n, Protocol: model.ProtocolTCP}}, "", ""
	case 1:
		if p := m.ConfigPorts[0].Number; n != p {
			mi.Instance.Ports = model.TargetPortsFromMap(map[uint32]uint32{p: n})
		}
	}
	return m.ConfigPorts, "", ""
}

func (m *mapper) addressAttribute() string {
	switch m.cfg.AddressType {
	case AddressIPv6:
		return AttrIPv6
	case AddressCNAME:
		return AttrCNAME
	default:
		return AttrIPv4
	}
}

var cnameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$`)

// address reads the configured address attribute.
func (m *mapper) address(attrs map[string]string) string {
	v := strings.TrimSpace(attrs[m.addressAttribute()])
	if m.cfg.AddressType == AddressCNAME {
		v = strings.TrimSuffix(strings.ToLower(v), ".")
		if len(v) > 253 || !cnameRE.MatchString(v) {
			return ""
		}
		return v
	}
	a, err := netip.ParseAddr(v)
	if err != nil || a.Is6() != (m.cfg.AddressType == AddressIPv6) || a.Zone() != "" {
		return ""
	}
	return a.String()
}
