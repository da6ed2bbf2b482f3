package azure

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"text/template"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v8"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// Reasons a VM (or one of its service names) is left out, the values of the
// skipped metric's "reason" label.
const (
	skipNotRunning     = "not-running"
	skipResourceGroup  = "resource-group-filtered"
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
	skipNotRunning, skipResourceGroup, skipOptOut, skipAutoRegistered, skipNoService,
	skipInvalidService, skipNoPorts, skipInvalidPorts, skipNoAddress, skipUnhealthy,
}

// hostData is what hostTemplate sees.
type hostData struct {
	Service      string
	Subscription string
}

// hostSample is what hostTemplate is checked on at start.
var hostSample = hostData{Service: "web", Subscription: "00000000-0000-0000-0000-000000000000"}

// serviceSeparators separate the names of the service tag.
const serviceSeparators = ", ;"

// inventory is one complete read of a subscription.
type inventory struct {
	vms []*armcompute.VirtualMachine
	// nics and publicIPs are by lower-cased resource ID (Azure resource IDs
	// are case-insensitive, and references do not always match the case of
	// the resource).
	nics      map[string]*armnetwork.Interface
	publicIPs map[string]*armnetwork.PublicIPAddress
}

// mapper turns an inventory into groups.
type mapper struct {
	cfg            *Config
	host           *template.Template
	resourceGroups map[string]bool
	configPorts    []model.Port
}

func newMapper(cfg *Config) (*mapper, error) {
	t, err := sources.ParseHostTemplate("hostTemplate", cfg.HostTemplate, hostSample)
	if err != nil {
		return nil, err
	}
	m := &mapper{cfg: cfg, host: t, configPorts: cfg.ConfigPorts()}
	if len(cfg.ResourceGroups) > 0 {
		m.resourceGroups = map[string]bool{}
		for _, rg := range cfg.ResourceGroups {
			m.resourceGroups[strings.ToLower(rg)] = true
		}
	}
	return m, nil
}

type mappedVM struct {
	model.Instance
	ports []model.Port
}

// mapInventory maps a complete read of the subscription. health, when not
// nil, is the book of the VMs' Application Health: each mapped VM's
// vmHealth is recorded in it, and a VM whose last known health is critical
// is left out (reason unhealthy), so that the adapter sees it removed and
// the mass-deletion guard counts it like any other removal.
func (m *mapper) mapInventory(inv inventory, health *cloudsource.HealthBook) cloudsource.Result {
	res := cloudsource.NewResult(len(inv.vms))
	services := cloudsource.Services{}
	mapped := map[string]bool{}
	for _, vm := range inv.vms {
		names, inst, reason, detail := m.mapVM(vm, inv)
		var v cloudsource.Verdict
		if health != nil && len(names) > 0 {
			mapped[inst.ID] = true
			health.Record(inst.ID, vmHealthVerdict(vm))
			v = health.Get(inst.ID)
		}
		names, reason, detail = res.WithHealth(v, &inst.Instance, names, reason, detail)
		if reason != "" {
			res.Skipped[reason]++
			if detail != "" {
				res.Problems[str(vm.ID)] = cloudsource.Problem{Name: str(vm.Name), Reason: reason, Detail: detail}
			}
		}
		services.Add(names, inst.Instance, inst.ports)
	}
	if health != nil {
		health.Retain(mapped)
	}
	res.Groups = services.Groups(func(name string) (string, error) {
		return sources.RenderHost(m.host, hostData{Service: name, Subscription: m.cfg.SubscriptionID})
	}, func(name string, instances int, err error) {
		res.Skipped[skipInvalidService] += instances
		res.Problems["service/"+name] = cloudsource.Problem{Name: name, Reason: skipInvalidService, Detail: "hostTemplate: " + err.Error()}
	})
	return res
}

// tag returns a tag's value; tag names are case-insensitive in Azure.
func tag(tags map[string]*string, name string) (string, bool) {
	if v, ok := tags[name]; ok {
		return str(v), true
	}
	for k, v := range tags {
		if strings.EqualFold(k, name) {
			return str(v), true
		}
	}
	return "", false
}

// mapVM maps one VM to the names of its services and its model.Instance.
// When it is left out (no names) or some of its service names are, reason
// says why and detail is worth logging.
func (m *mapper) mapVM(vm *armcompute.VirtualMachine, inv inventory) (names []string, out mappedVM, reason, detail string) {
	if vm == nil {
		return nil, out, skipNoService, ""
	}
	if m.resourceGroups != nil && !m.resourceGroups[strings.ToLower(resourceGroupOf(str(vm.ID)))] {
		return nil, out, skipResourceGroup, ""
	}
	if !running(vm) {
		return nil, out, skipNotRunning, ""
	}
	for k := range vm.Tags {
		if cloudsource.IsAutoRegistrationKey(k) {
			return nil, out, skipAutoRegistered, ""
		}
	}
	if v, ok := tag(vm.Tags, m.cfg.OptOutTag); ok && !strings.EqualFold(strings.TrimSpace(v), "false") {
		return nil, out, skipOptOut, ""
	}
	v, ok := tag(vm.Tags, m.cfg.ServiceTag)
	if !ok {
		return nil, out, skipNoService, ""
	}
	names, invalid := cloudsource.SplitServices(v, serviceSeparators)
	if len(invalid) > 0 {
		reason = skipInvalidService
		detail = fmt.Sprintf("invalid service names %q", invalid)
	}
	if len(names) == 0 {
		return nil, out, cmp.Or(reason, skipNoService), detail
	}

	ports := m.configPorts
	if v, ok := tag(vm.Tags, m.cfg.PortsTag); ok {
		p, err := cloudsource.ParsePorts(v)
		if err != nil {
			return nil, out, skipInvalidPorts, fmt.Sprintf("tag %s: %v", m.cfg.PortsTag, err)
		}
		ports = p
	}
	if len(ports) == 0 {
		return nil, out, skipNoPorts, fmt.Sprintf("no %s tag and no ports configured", m.cfg.PortsTag)
	}

	addr, vnet, why := m.address(vm, inv)
	if addr == "" {
		return nil, out, skipNoAddress, why
	}
	network := cmp.Or(m.cfg.Network, vnet)
	locality := str(vm.Location)
	if len(vm.Zones) > 0 && str(vm.Zones[0]) != "" && locality != "" {
		// The zone as AKS labels nodes (topology.kubernetes.io/zone): eastus-1.
		locality += "/" + locality + "-" + str(vm.Zones[0])
	}
	var labels map[string]string
	if len(vm.Tags) > 0 {
		labels = make(map[string]string, len(vm.Tags))
		for k, v := range vm.Tags {
			labels[k] = str(v)
		}
	}
	id := str(vm.ID)
	if vm.Properties != nil && str(vm.Properties.VMID) != "" {
		id = str(vm.Properties.VMID)
	}
	out = mappedVM{
		Instance: model.Instance{
			ID:       id,
			Address:  addr,
			Labels:   model.LabelsFromMap(labels),
			Locality: locality,
			Network:  network,
			Health:   model.HealthUnknown,
			Identity: identity(vm),
		},
		ports: ports,
	}
	return names, out, reason, detail
}

// running reports whether the VM's instance view says PowerState/running.
func running(vm *armcompute.VirtualMachine) bool {
	if vm.Properties == nil || vm.Properties.InstanceView == nil {
		return false
	}
	for _, s := range vm.Properties.InstanceView.Statuses {
		if s != nil && strings.EqualFold(str(s.Code), "PowerState/running") {
			return true
		}
	}
	return false
}

// vmHealthVerdict reads the Application Health extension's vmHealth in the
// VM's instance view: HealthState/healthy is passing; unhealthy is
// critical, and so is initializing (the extension's grace period after
// start: a VM is served once its application reports healthy); unknown,
// or no vmHealth (no extension, or none reported yet), is no answer.
func vmHealthVerdict(vm *armcompute.VirtualMachine) cloudsource.Verdict {
	if vm.Properties == nil || vm.Properties.InstanceView == nil || vm.Properties.InstanceView.VMHealth == nil ||
		vm.Properties.InstanceView.VMHealth.Status == nil {
		return cloudsource.Verdict{}
	}
	st := vm.Properties.InstanceView.VMHealth.Status
	code := str(st.Code)
	switch {
	case strings.EqualFold(code, "HealthState/healthy"):
		return cloudsource.Verdict{Health: model.HealthPassing}
	case strings.EqualFold(code, "HealthState/unhealthy"), strings.EqualFold(code, "HealthState/initializing"):
		detail := "application health " + strings.ToLower(strings.TrimPrefix(code, "HealthState/"))
		if d := str(st.DisplayStatus); d != "" {
			detail += " (" + d + ")"
		}
		return cloudsource.Verdict{Health: model.HealthCritical, Detail: detail}
	default:
		return cloudsource.Verdict{}
	}
}

// identity is the system-assigned identity's principal ID, else the first
// user-assigned identity's (by resource ID).
func identity(vm *armcompute.VirtualMachine) string {
	if vm.Identity == nil {
		return ""
	}
	if p := str(vm.Identity.PrincipalID); p != "" {
		return p
	}
	keys := make([]string, 0, len(vm.Identity.UserAssignedIdentities))
	for k := range vm.Identity.UserAssignedIdentities {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v := vm.Identity.UserAssignedIdentities[k]; v != nil && str(v.PrincipalID) != "" {
			return str(v.PrincipalID)
		}
	}
	return ""
}

// address returns the configured kind of address of the VM's primary NIC,
// the ID of its virtual network, or why there is none.
func (m *mapper) address(vm *armcompute.VirtualMachine, inv inventory) (addr, vnet, why string) {
	if vm.Properties == nil || vm.Properties.NetworkProfile == nil || len(vm.Properties.NetworkProfile.NetworkInterfaces) == 0 {
		return "", "", "no network interface"
	}
	refs := vm.Properties.NetworkProfile.NetworkInterfaces
	ref := refs[0]
	for _, r := range refs {
		if r != nil && r.Properties != nil && r.Properties.Primary != nil && *r.Properties.Primary {
			ref = r
			break
		}
	}
	if ref == nil {
		return "", "", "no network interface"
	}
	nic := inv.nics[strings.ToLower(str(ref.ID))]
	if nic == nil || nic.Properties == nil {
		return "", "", fmt.Sprintf("network interface %s not found", str(ref.ID))
	}
	// The primary IPv4 configuration (the first when none says primary).
	var primary *armnetwork.InterfaceIPConfiguration
	primaryFound := false
	var v6 []*armnetwork.InterfaceIPConfiguration
	for _, c := range nic.Properties.IPConfigurations {
		if c == nil || c.Properties == nil {
			continue
		}
		if c.Properties.PrivateIPAddressVersion != nil && *c.Properties.PrivateIPAddressVersion == armnetwork.IPVersionIPv6 {
			v6 = append(v6, c)
			continue
		}
		isPrimary := c.Properties.Primary != nil && *c.Properties.Primary
		if primary == nil || (isPrimary && !primaryFound) {
			primary, primaryFound = c, isPrimary
		}
	}
	if primary != nil && primary.Properties.Subnet != nil {
		vnet = vnetOf(str(primary.Properties.Subnet.ID))
	}
	switch m.cfg.AddressType {
	case AddressPublic:
		if primary != nil && primary.Properties.PublicIPAddress != nil {
			pip := primary.Properties.PublicIPAddress
			if pip.Properties != nil && str(pip.Properties.IPAddress) != "" {
				addr = str(pip.Properties.IPAddress)
			} else if p := inv.publicIPs[strings.ToLower(str(pip.ID))]; p != nil && p.Properties != nil {
				addr = str(p.Properties.IPAddress)
			}
		}
		addr = cloudsource.ValidIP(addr, false)
	case AddressIPv6:
		for _, c := range v6 {
			if addr = cloudsource.ValidIP(str(c.Properties.PrivateIPAddress), true); addr != "" {
				break
			}
		}
		if vnet == "" && len(v6) > 0 && v6[0].Properties.Subnet != nil {
			vnet = vnetOf(str(v6[0].Properties.Subnet.ID))
		}
	default:
		if primary != nil {
			addr = cloudsource.ValidIP(str(primary.Properties.PrivateIPAddress), false)
		}
	}
	if addr == "" {
		return "", "", fmt.Sprintf("no %s address on network interface %s", m.cfg.AddressType, str(nic.Name))
	}
	return addr, vnet, ""
}

// vnetOf returns the virtual network ID of a subnet ID
// (".../virtualNetworks/vnet1/subnets/default" -> ".../virtualNetworks/vnet1").
func vnetOf(subnetID string) string {
	if i := strings.LastIndex(strings.ToLower(subnetID), "/subnets/"); i > 0 {
		return subnetID[:i]
	}
	return ""
}

// resourceGroupOf returns the resource group of a resource ID.
func resourceGroupOf(id string) string {
	parts := strings.Split(id, "/")
	for i := 0; i+1 < len(parts); i++ {
		if strings.EqualFold(parts[i], "resourceGroups") {
			return parts[i+1]
		}
	}
	return ""
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
