package ec2

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"text/template"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// AutoRegistrationTag marks an instance that registers itself with istiod
// through a WorkloadGroup: the source leaves it out to avoid a duplicate.
const AutoRegistrationTag = cloudsource.AutoRegistrationGroup

// Reasons an instance (or part of it) is left out: the values of the
// skipped metric's "reason" label.
const (
	skipNotRunning     = "not-running"
	skipOptOut         = "opted-out"
	skipAutoRegistered = "auto-registered"
	skipNoService      = "no-service"
	skipInvalidService = "invalid-service"
	skipNoPorts        = "no-ports"
	skipInvalidPorts   = "invalid-ports"
	skipPortConflict   = "port-conflict"
	skipNoAddress      = "no-address"
	skipUnhealthy      = cloudsource.SkipUnhealthy
)

var skipReasons = []string{
	skipNotRunning, skipOptOut, skipAutoRegistered, skipNoService, skipInvalidService,
	skipNoPorts, skipInvalidPorts, skipPortConflict, skipNoAddress, skipUnhealthy,
}

// hostData is what hostTemplate sees.
type hostData struct {
	Service string
	Region  string
}

// hostSample is what hostTemplate is checked on at start.
var hostSample = hostData{Service: "web", Region: "us-east-1"}

// serviceSeparators separate the names of the service tag.
const serviceSeparators = ",; \t\n"

// mapper turns a complete list of instances into groups.
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

type mappedInstance struct {
	model.Instance
	ports []model.Port
}

// mapInstances maps every instance of a complete list. The result does not
// depend on the order of instances. health, when not nil, is each
// instance's health: a critical instance is left out (reason unhealthy),
// so that the adapter sees it removed and the mass-deletion guard counts
// it like any other removal.
func (m *mapper) mapInstances(instances []types.Instance, health func(id string) cloudsource.Verdict) cloudsource.Result {
	res := cloudsource.NewResult(len(instances))
	instances = slices.Clone(instances)
	slices.SortFunc(instances, func(a, b types.Instance) int {
		return cmp.Compare(aws.ToString(a.InstanceId), aws.ToString(b.InstanceId))
	})
	type svcAcc struct {
		ports     map[uint32]model.Port
		instances []model.Instance
	}
	services := map[string]*svcAcc{}
	for i := range instances {
		in := &instances[i]
		id := aws.ToString(in.InstanceId)
		names, inst, reason, detail := m.mapInstance(in)
		var v cloudsource.Verdict
		if health != nil {
			v = health(id)
		}
		names, reason, detail = res.WithHealth(v, &inst.Instance, names, reason, detail)
		if reason != "" {
			res.Skipped[reason]++
			if detail != "" {
				res.Problems[id] = cloudsource.Problem{Name: nameTag(in), Reason: reason, Detail: detail}
			}
		}
		for _, n := range names {
			acc := services[n]
			if acc == nil {
				acc = &svcAcc{ports: map[uint32]model.Port{}}
				services[n] = acc
			}
			// Instances are visited in ID order: on a protocol conflict
			// the lowest instance ID wins, so the outcome is stable.
			for _, p := range inst.ports {
				if old, ok := acc.ports[p.Number]; ok && old != p {
					res.Skipped[skipPortConflict]++
					res.Problems[id+"/"+n] = cloudsource.Problem{Name: nameTag(in), Reason: skipPortConflict, Detail: fmt.Sprintf(
						"service %s: port %d is %s on an instance with a lower ID, %s here; %s is kept",
						n, p.Number, old.Protocol, p.Protocol, old.Protocol)}
					continue
				}
				acc.ports[p.Number] = p
			}
			acc.instances = append(acc.instances, inst.Instance)
		}
	}
	for name, acc := range services {
		host, err := sources.RenderHost(m.host, hostData{Service: name, Region: m.cfg.Region})
		if err != nil {
			res.Skipped[skipInvalidService] += len(acc.instances)
			res.Problems["service/"+name] = cloudsource.Problem{Name: name, Reason: skipInvalidService, Detail: "hostTemplate: " + err.Error()}
			continue
		}
		svc := model.Service{Name: name, Host: host, Instances: acc.instances}
		for _, p := range acc.ports {
			svc.Ports = append(svc.Ports, p)
		}
		slices.SortFunc(svc.Ports, func(a, b model.Port) int { return cmp.Compare(a.Number, b.Number) })
		res.Groups = append(res.Groups, model.Group{Scope: name, Services: []model.Service{svc}})
	}
	slices.SortFunc(res.Groups, func(a, b model.Group) int { return cmp.Compare(a.Scope, b.Scope) })
	return res
}

// mapInstance maps one instance to the names of its services and its
// model.Instance. When it is left out (no names) or some of its service
// names are, reason says why and detail is worth logging.
func (m *mapper) mapInstance(in *types.Instance) (names []string, out mappedInstance, reason, detail string) {
	if in.State == nil || in.State.Name != types.InstanceStateNameRunning {
		return nil, out, skipNotRunning, ""
	}
	tags := make(map[string]string, len(in.Tags))
	for _, t := range in.Tags {
		if t.Key != nil {
			tags[*t.Key] = aws.ToString(t.Value)
		}
	}
	for k := range tags {
		if strings.EqualFold(k, AutoRegistrationTag) {
			return nil, out, skipAutoRegistered, ""
		}
	}
	if v, ok := tags[m.cfg.OptOutTag]; ok && !strings.EqualFold(strings.TrimSpace(v), "false") {
		return nil, out, skipOptOut, ""
	}

	v, ok := tags[m.cfg.ServiceTag]
	if !ok {
		return nil, out, skipNoService, ""
	}
	names, invalid := cloudsource.SplitServices(v, serviceSeparators)
	if len(invalid) > 0 {
		reason = skipInvalidService
		detail = fmt.Sprintf("tag %s: invalid service names %q", m.cfg.ServiceTag, invalid)
	}
	if len(names) == 0 {
		if reason == "" {
			reason, detail = skipNoService, fmt.Sprintf("tag %s is empty", m.cfg.ServiceTag)
		}
		return nil, out, reason, detail
	}

	ports := m.configPorts
	if v, ok := tags[m.cfg.PortsTag]; ok {
		p, err := cloudsource.ParsePorts(v)
		if err != nil {
			return nil, out, skipInvalidPorts, fmt.Sprintf("tag %s: %v", m.cfg.PortsTag, err)
		}
		ports = p
	}
	if len(ports) == 0 {
		return nil, out, skipNoPorts, fmt.Sprintf("no %s tag and no ports configured", m.cfg.PortsTag)
	}

	addr := m.address(in)
	if addr == "" {
		return nil, out, skipNoAddress, fmt.Sprintf("no %s address", m.cfg.AddressType)
	}
	network := m.cfg.Network
	if network == "" {
		network = aws.ToString(in.VpcId)
	}
	locality := m.cfg.Region
	if in.Placement != nil && aws.ToString(in.Placement.AvailabilityZone) != "" {
		locality += "/" + aws.ToString(in.Placement.AvailabilityZone)
	}
	var identity string
	if in.IamInstanceProfile != nil {
		identity = aws.ToString(in.IamInstanceProfile.Arn)
	}
	var labels map[string]string
	for k, v := range tags {
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			continue
		}
		if labels == nil {
			labels = make(map[string]string, len(tags))
		}
		labels[k] = v
	}
	out = mappedInstance{
		Instance: model.Instance{
			ID:       aws.ToString(in.InstanceId),
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

// address picks the configured kind of address.
func (m *mapper) address(in *types.Instance) string {
	valid := func(s *string, v6 bool) string { return cloudsource.ValidIP(aws.ToString(s), v6) }
	switch m.cfg.AddressType {
	case AddressPublic:
		return valid(in.PublicIpAddress, false)
	case AddressIPv6:
		if a := valid(in.Ipv6Address, true); a != "" {
			return a
		}
		// The primary network interface's primary IPv6 address, else its
		// first one.
		for _, nic := range in.NetworkInterfaces {
			if nic.Attachment == nil || aws.ToInt32(nic.Attachment.DeviceIndex) != 0 {
				continue
			}
			first := ""
			for _, a := range nic.Ipv6Addresses {
				v := valid(a.Ipv6Address, true)
				if v != "" && aws.ToBool(a.IsPrimaryIpv6) {
					return v
				}
				if first == "" {
					first = v
				}
			}
			return first
		}
		return ""
	default:
		return valid(in.PrivateIpAddress, false)
	}
}

// nameTag is the instance's Name tag, for logs.
func nameTag(in *types.Instance) string {
	for _, t := range in.Tags {
		if aws.ToString(t.Key) == "Name" {
			return aws.ToString(t.Value)
		}
	}
	return ""
}
