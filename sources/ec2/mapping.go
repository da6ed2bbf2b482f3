package ec2

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// AutoRegistrationTag marks an instance that registers itself with istiod
// through a WorkloadGroup: the source leaves it out to avoid a duplicate.
const AutoRegistrationTag = cloudsource.AutoRegistrationGroup

// skipReasons are the values of the skipped metric's "reason" label.
var skipReasons = cloudsource.SkipReasons(cloudsource.SkipPortConflict)

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
	cfg *Config
	*cloudsource.Mapping
}

func newMapper(cfg *Config) (*mapper, error) {
	m, err := cfg.NewMapping(hostSample, cloudsource.Rules{OptOut: cfg.OptOutTag, Service: cfg.ServiceTag, Ports: cfg.PortsTag,
		AutoRegistration: cloudsource.IsAutoRegistrationTag})
	return &mapper{cfg: cfg, Mapping: m}, err
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
		mi := m.mapInstance(in)
		var v cloudsource.Verdict
		if health != nil {
			v = health(id)
		}
		for _, n := range res.Take(id, nameTag(in), &mi, v) {
			acc := services[n]
			if acc == nil {
				acc = &svcAcc{ports: map[uint32]model.Port{}}
				services[n] = acc
			}
			// Instances are visited in ID order: on a protocol conflict
			// the lowest instance ID wins, so the outcome is stable.
			for _, p := range mi.Ports {
				if old, ok := acc.ports[p.Number]; ok && old != p {
					res.Skip(id+"/"+n, nameTag(in), cloudsource.SkipPortConflict, fmt.Sprintf(
						"service %s: port %d is %s on an instance with a lower ID, %s here; %s is kept",
						n, p.Number, old.Protocol, p.Protocol, old.Protocol), 1)
					continue
				}
				acc.ports[p.Number] = p
			}
			acc.instances = append(acc.instances, mi.Instance)
		}
	}
	for name, acc := range services {
		host, err := m.Host(hostData{Service: name, Region: m.cfg.Region})
		if err != nil {
			res.HostFailed(name, len(acc.instances), err)
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

// mapInstance maps one running instance by the shared rules, from its
// tags.
func (m *mapper) mapInstance(in *types.Instance) cloudsource.Mapped {
	if in.State == nil || in.State.Name != types.InstanceStateNameRunning {
		return cloudsource.Skipped(cloudsource.SkipNotRunning)
	}
	tags := make(map[string]string, len(in.Tags))
	for _, t := range in.Tags {
		if t.Key != nil {
			tags[*t.Key] = aws.ToString(t.Value)
		}
	}
	return m.Map([]cloudsource.Tags{{Kind: "tag", Values: tags, Separators: serviceSeparators}}, func(out *model.Instance) string {
		if out.Address = m.address(in); out.Address == "" {
			return ""
		}
		out.ID = aws.ToString(in.InstanceId)
		out.Network = m.cfg.Network
		if out.Network == "" {
			out.Network = aws.ToString(in.VpcId)
		}
		out.Locality = m.cfg.Region
		if in.Placement != nil && aws.ToString(in.Placement.AvailabilityZone) != "" {
			out.Locality += "/" + aws.ToString(in.Placement.AvailabilityZone)
		}
		if in.IamInstanceProfile != nil {
			out.Identity = aws.ToString(in.IamInstanceProfile.Arn)
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
		out.Labels = model.LabelsFromMap(labels)
		return ""
	})
}

// address picks the configured kind of address.
func (m *mapper) address(in *types.Instance) string {
	valid := func(s *string, v6 bool) string { return cloudsource.ValidIP(aws.ToString(s), v6) }
	switch m.cfg.AddressType {
	case cloudsource.AddressPublic:
		return valid(in.PublicIpAddress, false)
	case cloudsource.AddressIPv6:
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
