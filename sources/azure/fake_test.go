package azure

import (
	"context"
	"errors"
	"net/http"
	"testing"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
	computefake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v8"
	networkfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v8/fake"
	"go.uber.org/zap/zaptest"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource/cloudsourcetest"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// sdkVM builds a VM as the SDK models it.
func sdkVM(name, vmID, power string, tags map[string]string) *armcompute.VirtualMachine {
	t := map[string]*string{}
	for k, v := range tags {
		t[k] = to.Ptr(v)
	}
	return &armcompute.VirtualMachine{
		ID:       to.Ptr(rgID("rg-fake") + "/providers/Microsoft.Compute/virtualMachines/" + name),
		Name:     to.Ptr(name),
		Location: to.Ptr("northeurope"),
		Zones:    []*string{to.Ptr("3")},
		Tags:     t,
		Identity: &armcompute.VirtualMachineIdentity{PrincipalID: to.Ptr("principal-" + name)},
		Properties: &armcompute.VirtualMachineProperties{
			VMID: to.Ptr(vmID),
			NetworkProfile: &armcompute.NetworkProfile{NetworkInterfaces: []*armcompute.NetworkInterfaceReference{{
				ID:         to.Ptr(rgID("rg-fake") + "/providers/Microsoft.Network/networkInterfaces/" + name + "-nic"),
				Properties: &armcompute.NetworkInterfaceReferenceProperties{Primary: to.Ptr(true)},
			}}},
			InstanceView: &armcompute.VirtualMachineInstanceView{Statuses: []*armcompute.InstanceViewStatus{
				{Code: to.Ptr("ProvisioningState/succeeded")},
				{Code: to.Ptr("PowerState/" + power)},
			}},
		},
	}
}

func sdkNIC(name, ip string) *armnetwork.Interface {
	return &armnetwork.Interface{
		ID:   to.Ptr(rgID("rg-fake") + "/providers/Microsoft.Network/networkInterfaces/" + name + "-nic"),
		Name: to.Ptr(name + "-nic"),
		Properties: &armnetwork.InterfacePropertiesFormat{IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{
			Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
				Primary:                 to.Ptr(true),
				PrivateIPAddress:        to.Ptr(ip),
				PrivateIPAddressVersion: to.Ptr(armnetwork.IPVersionIPv4),
				Subnet:                  &armnetwork.Subnet{ID: to.Ptr(vnet("rg-fake") + "/subnets/default")},
			},
		}}},
	}
}

// TestWithSDKFakeServers drives the real clients through the SDK's own fake
// server transports: two pages of VMs, two of NICs, then a throttled list.
func TestWithSDKFakeServers(t *testing.T) {
	throttle := false
	var statusOnly []string
	vmServer := computefake.VirtualMachinesServer{
		NewListAllPager: func(o *armcompute.VirtualMachinesClientListAllOptions) azfake.PagerResponder[armcompute.VirtualMachinesClientListAllResponse] {
			statusOnly = append(statusOnly, *o.StatusOnly)
			var r azfake.PagerResponder[armcompute.VirtualMachinesClientListAllResponse]
			if throttle {
				r.AddResponseError(http.StatusTooManyRequests, "TooManyRequests")
				return r
			}
			r.AddPage(http.StatusOK, armcompute.VirtualMachinesClientListAllResponse{VirtualMachineListResult: armcompute.VirtualMachineListResult{
				Value: []*armcompute.VirtualMachine{
					sdkVM("a", "vm-a", "running", tags("mesh-service", "pay", "mesh-ports", "grpc:9000")),
					sdkVM("b", "vm-b", "deallocated", tags("mesh-service", "pay", "mesh-ports", "grpc:9000")),
				},
			}}, nil)
			r.AddPage(http.StatusOK, armcompute.VirtualMachinesClientListAllResponse{VirtualMachineListResult: armcompute.VirtualMachineListResult{
				Value: []*armcompute.VirtualMachine{sdkVM("c", "vm-c", "running", tags("mesh-service", "pay", "mesh-ports", "grpc:9000"))},
			}}, nil)
			return r
		},
	}
	netServer := networkfake.ServerFactory{InterfacesServer: networkfake.InterfacesServer{
		NewListAllPager: func(*armnetwork.InterfacesClientListAllOptions) azfake.PagerResponder[armnetwork.InterfacesClientListAllResponse] {
			var r azfake.PagerResponder[armnetwork.InterfacesClientListAllResponse]
			r.AddPage(http.StatusOK, armnetwork.InterfacesClientListAllResponse{InterfaceListResult: armnetwork.InterfaceListResult{
				Value: []*armnetwork.Interface{sdkNIC("a", "10.9.0.1")},
			}}, nil)
			r.AddPage(http.StatusOK, armnetwork.InterfacesClientListAllResponse{InterfaceListResult: armnetwork.InterfaceListResult{
				Value: []*armnetwork.Interface{sdkNIC("b", "10.9.0.2"), sdkNIC("c", "10.9.0.3")},
			}}, nil)
			return r
		},
	}}

	opts := sources.Options{Name: "azure-fake", Logger: zaptest.NewLogger(t), Reporter: sources.NewReporter("azure-fake", nil)}
	s, err := New(Config{SubscriptionID: subscription}, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Lister.credential = &azfake.TokenCredential{}
	s.Lister.computeTransport = computefake.NewVirtualMachinesServerTransport(&vmServer)
	s.Lister.networkTransport = networkfake.NewServerFactoryTransport(&netServer)

	groups, err := s.Lister.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lbl := tags("mesh-service", "pay", "mesh-ports", "grpc:9000")
	want := []model.Group{{Scope: "pay", Services: []model.Service{{
		Name: "pay", Host: "pay.azure.internal", Ports: []model.Port{{Number: 9000, Protocol: model.ProtocolGRPC}},
		Instances: []model.Instance{
			inst("vm-a", "10.9.0.1", "northeurope/northeurope-3", vnet("rg-fake"), lbl, "principal-a"),
			inst("vm-c", "10.9.0.3", "northeurope/northeurope-3", vnet("rg-fake"), lbl, "principal-c"),
		},
	}}}}
	cloudsourcetest.AssertGroups(t, groups, want)
	if len(statusOnly) != 1 || statusOnly[0] != "true" {
		t.Errorf("statusOnly options %q", statusOnly)
	}

	throttle = true
	_, err = s.Lister.List(context.Background())
	var th *poll.ThrottledError
	if !errors.As(err, &th) {
		t.Fatalf("List with a 429 = %v, want a *poll.ThrottledError", err)
	}
}
