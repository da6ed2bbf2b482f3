package consul

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/registry-adapter/registry-adapter/model"
)

// Ports: each instance's, the service's (the most common per port name), the
// per-instance target ports, and each port's protocol.

// namedPort is a port of an instance, named so that it can be matched across
// instances: name is the Consul port name for multi-port services, "" for
// the single Port.
type namedPort struct {
	name string
	port int
}

// instancePorts lists an instance's ports. defaultName is the name of the
// multi-port default port, which a single-port instance's Port maps to when
// instances of one service mix both styles.
func instancePorts(s *api.AgentService, defaultName string) ([]namedPort, error) {
	var ps []namedPort
	if len(s.Ports) > 0 {
		for _, p := range s.Ports {
			if p.Port <= 0 || p.Port > 65535 {
				return nil, fmt.Errorf("port %q is %d", p.Name, p.Port)
			}
			ps = append(ps, namedPort{p.Name, p.Port})
		}
		return ps, nil
	}
	switch {
	case s.Port == 0:
		return nil, nil // no port: the instance uses the service ports
	case s.Port < 0 || s.Port > 65535:
		return nil, fmt.Errorf("port is %d", s.Port)
	}
	return []namedPort{{defaultName, s.Port}}, nil
}

// withTaggedPort gives the default port the port of the tagged address an
// instance's address came from (0: none).
func withTaggedPort(ports []namedPort, defaultName string, tport int) []namedPort {
	if tport <= 0 || tport > 65535 {
		return ports
	}
	replaced := false
	for i := range ports {
		if ports[i].name == defaultName {
			ports[i].port, replaced = tport, true
		}
	}
	if !replaced && len(ports) == 0 {
		ports = []namedPort{{defaultName, tport}}
	}
	return ports
}

// servicePorts are the service's ports, sorted by number: per port name, the
// most common instance port, with the most common protocol the instances
// declare for it; svcPort maps each port name to its number, and defaulted
// lists the ports no instance gives a protocol (config entries may). A name
// whose number another name already took is reported and dropped.
func (m *mapper) servicePorts(cands []candidate, portsByName map[string][]int, problem problemFunc) (ports []model.Port, svcPort map[string]uint32, defaulted []uint32) {
	svcPort = map[string]uint32{}
	used := map[uint32]string{}
	for _, pname := range slices.Sorted(maps.Keys(portsByName)) {
		n, _ := mostCommon(portsByName[pname])
		num := uint32(n)
		if other, dup := used[num]; dup {
			problem("port", "port %q would use service port %d already used by port %q; dropped", pname, num, other)
			continue
		}
		used[num] = pname
		svcPort[pname] = num

		var raws []string
		for _, c := range cands {
			if slices.ContainsFunc(c.ports, func(p namedPort) bool { return p.name == pname }) {
				if v := m.protocolValue(c.e.Service, pname); v != "" {
					raws = append(raws, strings.ToLower(v))
				}
			}
		}
		proto := m.defaultProtocol
		if raw, ok := mostCommon(raws); ok {
			if p, known := model.ParseProtocol(raw); known {
				proto = p
			} else {
				problem("protocol", "unknown protocol %q on port %d; using %s", raw, num, m.defaultProtocol)
			}
		} else {
			defaulted = append(defaulted, num)
		}
		ports = append(ports, model.Port{Number: num, Protocol: proto, Name: portName(pname)})
	}
	slices.SortFunc(ports, func(a, b model.Port) int { return int(a.Number) - int(b.Number) })
	return ports, svcPort, defaulted
}

// targetPorts maps each service port an instance listens on elsewhere to its
// own port.
func targetPorts(ports []namedPort, svcPort map[string]uint32) model.TargetPorts {
	var targets map[uint32]uint32
	for _, p := range ports {
		sp, ok := svcPort[p.name]
		if ok && uint32(p.port) != sp {
			if targets == nil {
				targets = map[uint32]uint32{}
			}
			targets[sp] = uint32(p.port)
		}
	}
	return model.TargetPortsFromMap(targets)
}

// portName turns a Consul port name into a port name Istio accepts (a DNS
// label), or "" to let the conversion name it.
func portName(n string) string {
	if n == "" {
		return ""
	}
	h, err := model.SanitizeHost(strings.ReplaceAll(n, ".", "-"))
	if err != nil {
		return ""
	}
	return h
}
