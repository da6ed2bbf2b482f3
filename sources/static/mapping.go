package static

import "github.com/registry-adapter/registry-adapter/model"

// groups maps the configured services: one scope per service, named after
// it. Instances have no health to report: each is served.
func groups(cfg Config) []model.Group {
	var out []model.Group
	for _, svc := range cfg.Services {
		ms := model.Service{
			Name: svc.Name, Host: svc.Host, Labels: model.LabelsFromMap(svc.Labels), Annotations: model.LabelsFromMap(svc.Annotations),
		}
		for _, p := range svc.Ports {
			proto, ok := model.ParseProtocol(p.Protocol)
			if !ok {
				proto = model.ProtocolTCP
			}
			ms.Ports = append(ms.Ports, model.Port{Number: p.Number, Protocol: proto})
		}
		for _, in := range svc.Instances {
			ms.Instances = append(ms.Instances, model.Instance{
				ID: in.ID, Address: in.Address, Ports: model.TargetPortsFromMap(in.Ports), Labels: model.LabelsFromMap(in.Labels), Locality: in.Locality,
				Network: in.Network, Weight: in.Weight, Identity: in.Identity, ServiceAccount: in.ServiceAccount,
				Health: model.HealthUnknown,
			})
		}
		out = append(out, model.Group{Scope: svc.Name, Services: []model.Service{ms}})
	}
	return out
}
