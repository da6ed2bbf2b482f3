package cloudmap

import (
	"cmp"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/servicediscovery/types"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
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

// Reasons an instance (or part of it) is left out: the values of the
// skipped metric's "reason" label.
const (
	skipOptOut         = "opted-out"
	skipAutoRegistered = "auto-registered"
	skipInvalidService = "invalid-service"
	skipNoPorts        = "no-ports"
	skipInvalidPorts   = "invalid-ports"
	skipPortConflict   = "port-conflict"
	skipNoAddress      = "no-address"
)

var skipReasons = []string{
	skipOptOut, skipAutoRegistered, skipInvalidService, skipNoPorts, skipInvalidPorts, skipPortConflict, skipNoAddress,
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
	cfg         *Config
	host        *template.Template
	configPorts []model.Port
}

func newMapper(cfg *Config) (*mapper, error) {
	t, err := sources.ParseHostTemplate("hostTemplate", cfg.HostTemplate, hostSample)
	if err != nil {
		return nil, err
	}
	return &mapper{cfg: cfg, host: t, configPorts: cfg.ConfigPorts()}, nil
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
	host, err := sources.RenderHost(m.host, hostData{Service: name, Namespace: m.cfg.Namespace, Region: m.cfg.Region})
	if err != nil {
		res.Skipped[skipInvalidService] = len(instances)
		res.Problems["service/"+name] = cloudsource.Problem{Reason: skipInvalidService, Detail: "hostTemplate: " + err.Error()}
		return res
	}
	svc := model.Service{Name: name, Host: host}
	ports := map[uint32]model.Port{}
	for _, in := range instances {
		id := aws.ToString(in.InstanceId)
		inst, instPorts, reason, detail := m.mapInstance(in)
		if reason != "" {
			res.Skipped[reason]++
			if detail != "" {
				res.Problems[name+"/"+id] = cloudsource.Problem{Reason: reason, Detail: detail}
			}
			continue
		}
		// Instances are visited in ID order: on a protocol conflict the
		// lowest instance ID wins, so the outcome is stable.
		for _, p := range instPorts {
			if old, ok := ports[p.Number]; ok && old != p {
				res.Skipped[skipPortConflict]++
				res.Problems[name+"/"+id] = cloudsource.Problem{Reason: skipPortConflict, Detail: fmt.Sprintf(
					"port %d is %s on an instance with a lower ID, %s here; %s is kept", p.Number, old.Protocol, p.Protocol, old.Protocol)}
				continue
			}
			ports[p.Number] = p
		}
		svc.Instances = append(svc.Instances, inst)
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

// mapInstance maps one instance; reason says why it is left out.
func (m *mapper) mapInstance(in types.HttpInstanceSummary) (out model.Instance, ports []model.Port, reason, detail string) {
	attrs := in.Attributes
	for k := range attrs {
		if strings.EqualFold(k, AutoRegistrationAttribute) {
			return out, nil, skipAutoRegistered, ""
		}
	}
	if v, ok := attrs[m.cfg.OptOutAttribute]; ok && !strings.EqualFold(strings.TrimSpace(v), "false") {
		return out, nil, skipOptOut, ""
	}

	var targets map[uint32]uint32
	if v, ok := attrs[m.cfg.PortsAttribute]; ok {
		p, err := cloudsource.ParsePorts(v)
		if err != nil {
			return out, nil, skipInvalidPorts, fmt.Sprintf("attribute %s: %v", m.cfg.PortsAttribute, err)
		}
		ports = p
	} else if v, ok := attrs[AttrPort]; ok {
		n, err := cloudsource.ParsePort(v)
		if err != nil {
			return out, nil, skipInvalidPorts, fmt.Sprintf("attribute %s: %v", AttrPort, err)
		}
		switch len(m.configPorts) {
		case 0:
			ports = []model.Port{{Number: n, Protocol: model.ProtocolTCP}}
		case 1:
			ports = m.configPorts
			if n != ports[0].Number {
				targets = map[uint32]uint32{ports[0].Number: n}
			}
		default:
			ports = m.configPorts
		}
	} else {
		ports = m.configPorts
	}
	if len(ports) == 0 {
		return out, nil, skipNoPorts, fmt.Sprintf("no %s or %s attribute and no ports configured", m.cfg.PortsAttribute, AttrPort)
	}

	addr := m.address(attrs)
	if addr == "" {
		return out, nil, skipNoAddress, fmt.Sprintf("no valid %s attribute", m.addressAttribute())
	}
	locality := m.cfg.Region
	if z := attrs[AttrZone]; z != "" {
		locality += "/" + z
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
	health := model.HealthUnknown
	switch in.HealthStatus {
	case types.HealthStatusHealthy:
		health = model.HealthPassing
	case types.HealthStatusUnhealthy:
		health = model.HealthCritical
	}
	out = model.Instance{
		ID:       aws.ToString(in.InstanceId),
		Address:  addr,
		Ports:    model.TargetPortsFromMap(targets),
		Labels:   model.LabelsFromMap(labels),
		Locality: locality,
		Network:  m.cfg.Network,
		Health:   health,
	}
	return out, ports, "", ""
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
