package azure

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v8"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

// skipResourceGroup is the reason a VM of a resource group the source
// does not read is left out.
const skipResourceGroup = "resource-group-filtered"

// skipReasons are the values of the skipped metric's "reason" label.
var skipReasons = cloudsource.SkipReasons(skipResourceGroup)

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
	resourceGroups map[string]bool
	*cloudsource.Mapping
}

func newMapper(cfg *Config) (*mapper, error) {
	mp, err := cfg.NewMapping(hostSample, cloudsource.Rules{OptOut: cfg.OptOutTag, Service: cfg.ServiceTag, Ports: cfg.PortsTag})
	if err != nil {
		return nil, err
	}
	return &mapper{cfg: cfg, Mapping: mp, resourceGroups: cloudsource.SetOf(cfg.ResourceGroups, strings.ToLower)}, nil
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
		mv := m.mapVM(vm, inv)
		var v cloudsource.Verdict
		if health != nil && len(mv.Names) > 0 {
			mapped[mv.Instance.ID] = true
			health.Record(mv.Instance.ID, vmHealthVerdict(vm))
			v = health.Get(mv.Instance.ID)
		}
		services.Add(res.Take(str(vm.ID), str(vm.Name), &mv, v), mv.Instance, mv.Ports)
	}
	if health != nil {
		health.Retain(mapped)
	}
	res.Groups = services.Groups(func(name string) (string, error) {
		return m.Host(hostData{Service: name, Subscription: m.cfg.SubscriptionID})
	}, res.HostFailed)
	return res
}

// mapVM maps one running VM of a resource group the source reads by the
// shared rules, from its tags (whose names are case-insensitive in Azure).
func (m *mapper) mapVM(vm *armcompute.VirtualMachine, inv inventory) cloudsource.Mapped {
	if vm == nil {
		return cloudsource.Skipped(cloudsource.SkipNoService)
	}
	if m.resourceGroups != nil && !m.resourceGroups[strings.ToLower(resourceGroupOf(str(vm.ID)))] {
		return cloudsource.Skipped(skipResourceGroup)
	}
	if !running(vm) {
		return cloudsource.Skipped(cloudsource.SkipNotRunning)
	}
	var tags map[string]string
	if len(vm.Tags) > 0 {
		tags = make(map[string]string, len(vm.Tags))
		for k, v := range vm.Tags {
			tags[k] = str(v)
		}
	}
	return m.Map([]cloudsource.Tags{{Kind: "tag", Values: tags, FoldKeys: true, Separators: serviceSeparators}}, func(out *model.Instance) string {
		addr, vnet, why := m.address(vm, inv)
		if out.Address = addr; addr == "" {
			return why
		}
		out.ID = str(vm.ID)
		if vm.Properties != nil && str(vm.Properties.VMID) != "" {
			out.ID = str(vm.Properties.VMID)
		}
		out.Network = cmp.Or(m.cfg.Network, vnet)
		out.Locality = str(vm.Location)
		if len(vm.Zones) > 0 && str(vm.Zones[0]) != "" && out.Locality != "" {
			// The zone as AKS labels nodes (topology.kubernetes.io/zone): eastus-1.
			out.Locality += "/" + out.Locality + "-" + str(vm.Zones[0])
		}
		out.Labels = model.LabelsFromMap(tags)
		out.Identity = identity(vm)
		return ""
	})
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
	case cloudsource.AddressPublic:
		if primary != nil && primary.Properties.PublicIPAddress != nil {
			pip := primary.Properties.PublicIPAddress
			if pip.Properties != nil && str(pip.Properties.IPAddress) != "" {
				addr = str(pip.Properties.IPAddress)
			} else if p := inv.publicIPs[strings.ToLower(str(pip.ID))]; p != nil && p.Properties != nil {
				addr = str(p.Properties.IPAddress)
			}
		}
		addr = cloudsource.ValidIP(addr, false)
	case cloudsource.AddressIPv6:
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
