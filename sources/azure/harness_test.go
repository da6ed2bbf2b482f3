package azure

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/registry-adapter/registry-adapter/sources/cloudsource/cloudsourcetest"
)

const (
	subscription = "11111111-2222-3333-4444-555555555555"
	tenant       = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
)

// fakeARM is an httptest TLS server speaking Azure Resource Manager's wire
// format for the three subscription-wide lists the source makes, shaped from
// the SDK's generated examples and models (Virtual Machines - List All with
// statusOnly=true, api-version 2025-04-01; Network Interfaces and Public IP
// Addresses - List All, api-version 2025-03-01): {"value": [...],
// "nextLink": "<absolute URL>"}, errors as {"error": {"code", "message"}}.
type fakeARM struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	vms      map[string]map[string]any // by name
	nics     map[string]map[string]any // by name
	pips     map[string]map[string]any // by name
	pageSize int
	// failAlways answers every request of an API ("virtualMachines",
	// "networkInterfaces", "publicIPAddresses") with this, until cleared.
	failAlways map[string]*armFailure
	// failures are one-shot answers by API, a nil entry letting one
	// request through.
	failures map[string][]*armFailure
	// stats
	listStarts cloudsourcetest.ListStarts // first-page virtualMachines requests
	requests   []string
}

type armFailure struct {
	status int
	code   string
	header http.Header
}

func newFakeARM(t *testing.T) *fakeARM {
	f := &fakeARM{
		t: t, vms: map[string]map[string]any{}, nics: map[string]map[string]any{}, pips: map[string]map[string]any{},
		pageSize: 2, failAlways: map[string]*armFailure{}, failures: map[string][]*armFailure{},
	}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// transport is the TLS client transport trusting the server's certificate.
func (f *fakeARM) transport(t *testing.T) policy.Transporter {
	c := f.srv.Client()
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// fakeCredential hands out a fixed token, checked by the server.
type fakeCredential struct{}

func (fakeCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "fake-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func rgID(rg string) string { return "/subscriptions/" + subscription + "/resourceGroups/" + rg }

// azvm describes a test VM with one NIC (named <name>-nic).
type azvm struct {
	name, rg, location, zone string
	vmID                     string
	tags                     map[string]string
	power                    string // running (default), deallocated, stopped, starting...
	ip, ipv6, publicIP       string
	vnet                     string
	principalID              string
	userAssigned             string // a user-assigned identity's principal ID
	// nicRefCase, when set, is how the VM spells its NIC's resource group
	// (Azure IDs are case-insensitive and references do vary).
	nicRefCase string
}

// put adds or replaces a VM with its NIC (and public IP).
func (f *fakeARM) put(v azvm) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v.location = cmp.Or(v.location, "eastus")
	v.vnet = cmp.Or(v.vnet, "vnet-"+v.rg)
	vmID := rgID(v.rg) + "/providers/Microsoft.Compute/virtualMachines/" + v.name
	nicID := rgID(v.rg) + "/providers/Microsoft.Network/networkInterfaces/" + v.name + "-nic"
	nicRef := nicID
	if v.nicRefCase != "" {
		nicRef = rgID(v.nicRefCase) + "/providers/Microsoft.Network/networkInterfaces/" + v.name + "-nic"
	}
	subnetID := rgID(v.rg) + "/providers/Microsoft.Network/virtualNetworks/" + v.vnet + "/subnets/default"
	power := cmp.Or(v.power, "running")
	powerText := map[string]string{"running": "VM running", "deallocated": "VM deallocated", "stopped": "VM stopped",
		"starting": "VM starting", "stopping": "VM stopping", "deallocating": "VM deallocating"}[power]
	vm := map[string]any{
		"name":     v.name,
		"id":       vmID,
		"type":     "Microsoft.Compute/virtualMachines",
		"location": v.location,
		"properties": map[string]any{
			"vmId":            v.vmID,
			"hardwareProfile": map[string]any{"vmSize": "Standard_D2s_v3"},
			"storageProfile": map[string]any{
				"imageReference": map[string]any{"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
				"osDisk": map[string]any{"osType": "Linux", "name": v.name + "_OsDisk_1", "createOption": "FromImage",
					"caching": "ReadWrite", "managedDisk": map[string]any{"storageAccountType": "Premium_LRS",
						"id": rgID(v.rg) + "/providers/Microsoft.Compute/disks/" + v.name + "_OsDisk_1"}, "deleteOption": "Delete"},
				"dataDisks": []any{},
			},
			"osProfile": map[string]any{"computerName": v.name, "adminUsername": "azureuser",
				"linuxConfiguration": map[string]any{"disablePasswordAuthentication": true, "provisionVMAgent": true}},
			"networkProfile": map[string]any{"networkInterfaces": []any{
				map[string]any{"id": nicRef, "properties": map[string]any{"primary": true, "deleteOption": "Delete"}},
			}},
			"provisioningState": "Succeeded",
			"timeCreated":       "2024-05-01T10:00:00.0000000+00:00",
			"instanceView": map[string]any{"statuses": []any{
				map[string]any{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded",
					"time": "2024-05-01T10:01:00.0000000+00:00"},
				map[string]any{"code": "PowerState/" + power, "level": "Info", "displayStatus": powerText},
			}},
		},
	}
	if v.tags != nil {
		vm["tags"] = v.tags
	}
	if v.zone != "" {
		vm["zones"] = []any{v.zone}
	}
	switch {
	case v.principalID != "":
		vm["identity"] = map[string]any{"type": "SystemAssigned", "principalId": v.principalID, "tenantId": tenant}
	case v.userAssigned != "":
		vm["identity"] = map[string]any{"type": "UserAssigned", "userAssignedIdentities": map[string]any{
			rgID(v.rg) + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + v.name + "-id": map[string]any{
				"principalId": v.userAssigned, "clientId": "99999999-0000-0000-0000-000000000000"},
		}}
	}
	f.vms[v.name] = vm

	var ipConfigs []any
	ipc := map[string]any{
		"name": "ipconfig1", "id": nicID + "/ipConfigurations/ipconfig1", "etag": `W/"00000000-0000-0000-0000-000000000001"`,
		"type": "Microsoft.Network/networkInterfaces/ipConfigurations",
		"properties": map[string]any{
			"provisioningState": "Succeeded", "privateIPAddress": v.ip, "privateIPAllocationMethod": "Dynamic",
			"subnet": map[string]any{"id": subnetID}, "primary": true, "privateIPAddressVersion": "IPv4",
		},
	}
	if v.publicIP != "" {
		pipID := rgID(v.rg) + "/providers/Microsoft.Network/publicIPAddresses/" + v.name + "-ip"
		ipc["properties"].(map[string]any)["publicIPAddress"] = map[string]any{"id": pipID}
		f.pips[v.name] = map[string]any{
			"name": v.name + "-ip", "id": pipID, "location": v.location, "type": "Microsoft.Network/publicIPAddresses",
			"etag": `W/"00000000-0000-0000-0000-000000000002"`,
			"sku":  map[string]any{"name": "Standard", "tier": "Regional"},
			"properties": map[string]any{
				"provisioningState": "Succeeded", "resourceGuid": "00000000-0000-0000-0000-000000000003",
				"ipAddress": v.publicIP, "publicIPAddressVersion": "IPv4", "publicIPAllocationMethod": "Static",
				"idleTimeoutInMinutes": 4, "ipTags": []any{},
				"ipConfiguration": map[string]any{"id": nicID + "/ipConfigurations/ipconfig1"},
			},
		}
	}
	ipConfigs = append(ipConfigs, ipc)
	if v.ipv6 != "" {
		ipConfigs = append(ipConfigs, map[string]any{
			"name": "ipconfig-v6", "id": nicID + "/ipConfigurations/ipconfig-v6",
			"type": "Microsoft.Network/networkInterfaces/ipConfigurations",
			"properties": map[string]any{
				"provisioningState": "Succeeded", "privateIPAddress": v.ipv6, "privateIPAllocationMethod": "Dynamic",
				"subnet": map[string]any{"id": subnetID}, "primary": false, "privateIPAddressVersion": "IPv6",
			},
		})
	}
	f.nics[v.name] = map[string]any{
		"name": v.name + "-nic", "id": nicID, "location": v.location, "type": "Microsoft.Network/networkInterfaces",
		"etag": `W/"00000000-0000-0000-0000-000000000004"`,
		"properties": map[string]any{
			"provisioningState": "Succeeded", "resourceGuid": "00000000-0000-0000-0000-000000000005",
			"ipConfigurations": ipConfigs,
			"dnsSettings":      map[string]any{"dnsServers": []any{}, "appliedDnsServers": []any{}},
			"macAddress":       "00-0D-3A-00-00-01", "enableAcceleratedNetworking": true, "enableIPForwarding": false,
			"primary": true, "virtualMachine": map[string]any{"id": vmID}, "nicType": "Standard",
		},
	}
}

func (f *fakeARM) remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.vms, name)
	delete(f.nics, name)
	delete(f.pips, name)
}

func (f *fakeARM) setPower(name, power string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.vms[name]["properties"].(map[string]any)["instanceView"].(map[string]any)["statuses"].([]any)
	st[1] = map[string]any{"code": "PowerState/" + power, "level": "Info", "displayStatus": "VM " + power}
}

func (f *fakeARM) setFailAlways(api string, fl *armFailure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAlways[api] = fl
}

func (f *fakeARM) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query()
	f.requests = append(f.requests, r.URL.RequestURI())
	prefix := "/subscriptions/" + subscription + "/providers/"
	var api, version string
	var items map[string]map[string]any
	switch strings.ToLower(r.URL.Path) {
	case strings.ToLower(prefix + "Microsoft.Compute/virtualMachines"):
		api, version, items = "virtualMachines", "2025-04-01", f.vms
		if q.Get("statusOnly") != "true" {
			f.t.Errorf("virtualMachines list without statusOnly=true: %s", r.URL)
		}
		if q.Get("$skiptoken") == "" {
			f.listStarts.Start()
		}
	case strings.ToLower(prefix + "Microsoft.Network/networkInterfaces"):
		api, version, items = "networkInterfaces", "2025-03-01", f.nics
	case strings.ToLower(prefix + "Microsoft.Network/publicIPAddresses"):
		api, version, items = "publicIPAddresses", "2025-03-01", f.pips
	}

	switch {
	case r.Method != http.MethodGet || api == "":
		armError(w, &armFailure{status: 404, code: "ResourceNotFound"})
		return
	case r.Header.Get("Authorization") != "Bearer fake-token":
		armError(w, &armFailure{status: 401, code: "AuthenticationFailed"})
		return
	case q.Get("api-version") != version:
		armError(w, &armFailure{status: 400, code: "InvalidApiVersionParameter"})
		return
	}
	if fl := f.failAlways[api]; fl != nil {
		armError(w, fl)
		return
	}
	if fls := f.failures[api]; len(fls) > 0 {
		f.failures[api] = fls[1:]
		if fls[0] != nil {
			armError(w, fls[0])
			return
		}
	}
	names := make([]string, 0, len(items))
	for n := range items {
		names = append(names, n)
	}
	slices.Sort(names)
	start := 0
	if tok := q.Get("$skiptoken"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n > len(names) {
			armError(w, &armFailure{status: 400, code: "InvalidSkipToken"})
			return
		}
		start = n
	}
	end := min(start+f.pageSize, len(names))
	value := []any{}
	for _, n := range names[start:end] {
		value = append(value, items[n])
	}
	resp := map[string]any{"value": value}
	if end < len(names) {
		next := q
		next.Set("$skiptoken", strconv.Itoa(end))
		resp["nextLink"] = f.srv.URL + r.URL.Path + "?" + next.Encode()
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("x-ms-ratelimit-remaining-subscription-reads", "11999")
	_ = json.NewEncoder(w).Encode(resp)
}

func armError(w http.ResponseWriter, fl *armFailure) {
	for k, v := range fl.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("x-ms-error-code", fl.code)
	w.WriteHeader(fl.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": fl.code, "message": fmt.Sprintf("fake %d %s", fl.status, fl.code),
	}})
}
