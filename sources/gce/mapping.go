package gce

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"

	compute "google.golang.org/api/compute/v1"

	"github.com/registry-adapter/registry-adapter/model"
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
)

var skipReasons = []string{
	skipNotRunning, skipZone, skipOptOut, skipAutoRegistered, skipNoService,
	skipInvalidService, skipNoPorts, skipInvalidPorts, skipNoAddress,
}

// hostData is what hostTemplate sees.
type hostData struct {
	Service string
	Project string
}

func parseHostTemplate(text string) (*template.Template, error) {
	t, err := template.New("hostTemplate").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	// Execute once so that a reference to an unknown field fails at start.
	if _, err := renderHost(t, hostData{Service: "web", Project: "my-project"}); err != nil {
		return nil, err
	}
	return t, nil
}

var hostRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func renderHost(t *template.Template, d hostData) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(b.String())), ".")
	if len(h) > 253 || !hostRE.MatchString(h) {
		return "", fmt.Errorf("%q is not a DNS name", h)
	}
	return h, nil
}

// serviceNameRE is what a service name must look like: it is the scope key
// and goes into the host.
var serviceNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// splitServices splits a list of service names on any of seps, lower-cases
// them and drops duplicates. It returns the valid names and the invalid ones.
func splitServices(v, seps string) (names, invalid []string) {
	for _, n := range strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(seps, r) || r == ' ' }) {
		n = strings.ToLower(n)
		switch {
		case len(n) > 63 || !serviceNameRE.MatchString(n):
			invalid = append(invalid, n)
		case !slices.Contains(names, n):
			names = append(names, n)
		}
	}
	return names, invalid
}

// parsePorts parses a port list such as "http:8080,grpc:9090": entries are
// "<protocol>:<number>" or a bare number (TCP), separated by commas or
// spaces. The protocol is an Istio protocol name in any case; a name with a
// suffix ("http-admin") takes the protocol of its prefix.
func parsePorts(s string) ([]model.Port, error) {
	var out []model.Port
	seen := map[uint32]bool{}
	for _, e := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		proto := model.ProtocolTCP
		num := e
		if name, n, ok := strings.Cut(e, ":"); ok {
			num = n
			p, ok := model.ParseProtocol(name)
			if !ok {
				prefix, _, _ := strings.Cut(name, "-")
				if p, ok = model.ParseProtocol(prefix); !ok {
					return nil, fmt.Errorf("%q: unknown protocol %q", e, name)
				}
			}
			proto = p
		}
		n, err := strconv.ParseUint(num, 10, 32)
		if err != nil || n == 0 || n > 65535 {
			return nil, fmt.Errorf("%q: port must be 1-65535", e)
		}
		if seen[uint32(n)] {
			return nil, fmt.Errorf("%q: port %d listed twice", e, n)
		}
		seen[uint32(n)] = true
		out = append(out, model.Port{Number: uint32(n), Protocol: proto})
	}
	if len(out) == 0 {
		return nil, errors.New("no ports")
	}
	return out, nil
}

// isAutoRegistrationKey reports whether k spells istio.io/autoRegistrationGroup
// in any of the forms a cloud allows for label, tag or metadata keys (which
// cannot all hold '.' or '/'): compared case-insensitively on letters and
// digits only, so "istio-io-autoregistrationgroup" also matches.
func isAutoRegistrationKey(k string) bool {
	var b strings.Builder
	for _, r := range strings.ToLower(k) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String() == "istioioautoregistrationgroup"
}

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
	t, err := parseHostTemplate(cfg.HostTemplate)
	if err != nil {
		return nil, fmt.Errorf("hostTemplate: %w", err)
	}
	m := &mapper{cfg: cfg, host: t, configPorts: cfg.configPorts()}
	if len(cfg.Zones) > 0 {
		m.zones = map[string]bool{}
		for _, z := range cfg.Zones {
			m.zones[z] = true
		}
	}
	return m, nil
}

// problem is an instance left out, or partly left out, because of its data.
type problem struct {
	name   string
	reason string
	detail string
}

// mapResult is the outcome of mapping one list.
type mapResult struct {
	groups  []model.Group
	seen    int
	skipped map[string]int
	// problems are per instance (keyed by instance ID) and worth a log line.
	problems map[string]problem
}

// mapInstances maps every instance of a complete list.
func (m *mapper) mapInstances(instances []*compute.Instance) mapResult {
	res := mapResult{seen: len(instances), skipped: map[string]int{}, problems: map[string]problem{}}
	type svcAcc struct {
		ports     map[model.Port]bool
		instances []model.Instance
	}
	services := map[string]*svcAcc{}
	for _, in := range instances {
		id := strconv.FormatUint(in.Id, 10)
		names, inst, reason, detail := m.mapInstance(in)
		if reason != "" {
			res.skipped[reason]++
			if detail != "" {
				res.problems[id] = problem{name: in.Name, reason: reason, detail: detail}
			}
		}
		if len(names) == 0 {
			continue
		}
		for _, n := range names {
			acc := services[n]
			if acc == nil {
				acc = &svcAcc{ports: map[model.Port]bool{}}
				services[n] = acc
			}
			for _, p := range inst.ports {
				acc.ports[p] = true
			}
			acc.instances = append(acc.instances, inst.Instance)
		}
	}
	for name, acc := range services {
		host, err := renderHost(m.host, hostData{Service: name, Project: m.cfg.Project})
		if err != nil {
			res.skipped[skipInvalidService] += len(acc.instances)
			res.problems["service/"+name] = problem{name: name, reason: skipInvalidService, detail: "hostTemplate: " + err.Error()}
			continue
		}
		svc := model.Service{Name: name, Host: host}
		for p := range acc.ports {
			svc.Ports = append(svc.Ports, p)
		}
		slices.SortFunc(svc.Ports, func(a, b model.Port) int {
			return cmp.Or(cmp.Compare(a.Number, b.Number), cmp.Compare(a.Protocol, b.Protocol))
		})
		slices.SortFunc(acc.instances, func(a, b model.Instance) int { return cmp.Compare(a.ID, b.ID) })
		svc.Instances = acc.instances
		res.groups = append(res.groups, model.Group{Scope: name, Services: []model.Service{svc}})
	}
	slices.SortFunc(res.groups, func(a, b model.Group) int { return cmp.Compare(a.Scope, b.Scope) })
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
		if isAutoRegistrationKey(k) {
			return nil, out, skipAutoRegistered, ""
		}
	}
	for k := range meta {
		if isAutoRegistrationKey(k) {
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
		names, invalid = splitServices(v, "_")
	} else if v, ok := meta[m.cfg.ServiceLabel]; ok {
		names, invalid = splitServices(v, ",")
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
		p, err := parsePorts(v)
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
			Labels:   labels,
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
	valid := func(s string, v6 bool) string {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Is6() != v6 {
			return ""
		}
		return a.String()
	}
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
