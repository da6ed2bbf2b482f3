package gce

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/registry-adapter/registry-adapter/sources/cloudsource/cloudsourcetest"
)

// fakeCompute is an httptest server speaking the Compute Engine v1 REST wire
// format for GET projects/{project}/aggregated/instances, shaped from the
// API's discovery document (compute-api.json): the aggregated list holds
// every zone in `items`, a zone with nothing on the page carries a
// NO_RESULTS_ON_PAGE warning instead of instances, and pages are chained
// with an opaque nextPageToken.
type fakeCompute struct {
	t       *testing.T
	srv     *httptest.Server
	project string

	mu        sync.Mutex
	zones     []string                  // every zone of the project, in order
	instances map[string]map[string]any // by name
	pageSize  int
	// failures are answers given instead of a page, first to last; a nil
	// entry lets a request through (to fail a later page).
	failures []*failure
	// failAlways answers every request with this, until cleared.
	failAlways *failure
	// unreachable zones are reported as such.
	unreachable map[string]bool
	// backends are the backend services health reads (health_test.go).
	backends backendState
	// stats
	requests   int
	listStarts cloudsourcetest.ListStarts
	filters    []string
	tokens     []string
}

type failure struct {
	status int
	body   string
	header http.Header
}

func newFakeCompute(t *testing.T, project string, zones ...string) *fakeCompute {
	f := &fakeCompute{
		t: t, project: project, zones: zones, instances: map[string]map[string]any{},
		pageSize: 2, unreachable: map[string]bool{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

const selfLinkBase = "https://www.googleapis.com/compute/v1/"

// vm describes a test instance.
type vm struct {
	name, zone, status string
	id                 uint64
	labels             map[string]string
	metadata           map[string]string
	ip, natIP, ipv6    string
	network            string
	serviceAccount     string
}

// put adds or replaces an instance.
func (f *fakeCompute) put(v vm) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances[v.name] = f.instanceJSON(v)
}

func (f *fakeCompute) remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.instances, name)
}

func (f *fakeCompute) setStatus(name, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances[name]["status"] = status
}

func (f *fakeCompute) setFailAlways(fl *failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAlways = fl
}

func (f *fakeCompute) setUnreachable(zone string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unreachable[zone] = on
}

// instanceJSON is an Instance resource as the API returns it.
func (f *fakeCompute) instanceJSON(v vm) map[string]any {
	zoneURL := selfLinkBase + "projects/" + f.project + "/zones/" + v.zone
	region := v.zone[:strings.LastIndexByte(v.zone, '-')]
	network := cmp.Or(v.network, "default")
	nic := map[string]any{
		"kind":        "compute#networkInterface",
		"name":        "nic0",
		"network":     selfLinkBase + "projects/" + f.project + "/global/networks/" + network,
		"subnetwork":  selfLinkBase + "projects/" + f.project + "/regions/" + region + "/subnetworks/" + network,
		"networkIP":   v.ip,
		"fingerprint": "Q7lYc1FVbJw=",
		"stackType":   "IPV4_ONLY",
	}
	if v.natIP != "" {
		nic["accessConfigs"] = []any{map[string]any{
			"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT", "name": "External NAT",
			"natIP": v.natIP, "networkTier": "PREMIUM",
		}}
	}
	if v.ipv6 != "" {
		nic["stackType"] = "IPV4_IPV6"
		nic["ipv6AccessType"] = "INTERNAL"
		nic["ipv6Address"] = v.ipv6
		nic["internalIpv6PrefixLength"] = 96
	}
	in := map[string]any{
		"kind":              "compute#instance",
		"id":                strconv.FormatUint(v.id, 10), // uint64 travels as a string
		"creationTimestamp": "2024-05-01T10:00:00.000-07:00",
		"name":              v.name,
		"machineType":       zoneURL + "/machineTypes/e2-small",
		"status":            cmp.Or(v.status, "RUNNING"),
		"zone":              zoneURL,
		"canIpForward":      false,
		"networkInterfaces": []any{nic},
		"disks": []any{map[string]any{
			"kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE",
			"source": zoneURL + "/disks/" + v.name, "deviceName": v.name, "index": 0, "boot": true,
			"autoDelete": true, "interface": "SCSI", "diskSizeGb": "10",
		}},
		"metadata": map[string]any{
			"kind":        "compute#metadata",
			"fingerprint": "o2kH8mX3V8o=",
		},
		"selfLink":           zoneURL + "/instances/" + v.name,
		"scheduling":         map[string]any{"onHostMaintenance": "MIGRATE", "automaticRestart": true, "preemptible": false},
		"cpuPlatform":        "Intel Broadwell",
		"labelFingerprint":   "42WmSpB8rSM=",
		"fingerprint":        "Tgm6vQvvP7I=",
		"lastStartTimestamp": "2024-05-01T10:00:10.000-07:00",
	}
	if v.labels != nil {
		in["labels"] = v.labels
	}
	if len(v.metadata) > 0 {
		var items []any
		keys := make([]string, 0, len(v.metadata))
		for k := range v.metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			items = append(items, map[string]any{"key": k, "value": v.metadata[k]})
		}
		in["metadata"].(map[string]any)["items"] = items
	}
	if v.serviceAccount != "" {
		in["serviceAccounts"] = []any{map[string]any{
			"email": v.serviceAccount, "scopes": []any{"https://www.googleapis.com/auth/cloud-platform"},
		}}
	}
	return in
}

func (f *fakeCompute) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Contains(r.URL.Path, "/backendServices/") {
		f.serveBackend(w, r)
		return
	}
	f.requests++
	q := r.URL.Query()
	if q.Get("pageToken") == "" {
		f.listStarts.Start()
	}
	f.filters = append(f.filters, q.Get("filter"))
	f.tokens = append(f.tokens, q.Get("pageToken"))

	want := "/compute/v1/projects/" + f.project + "/aggregated/instances"
	if r.Method != http.MethodGet || r.URL.Path != want {
		writeError(w, &failure{status: 404, body: apiError(404, "notFound", "The resource '"+r.URL.Path+"' was not found")})
		return
	}
	if q.Get("alt") != "json" {
		f.t.Errorf("alt=%q, want json", q.Get("alt"))
	}
	if f.failAlways != nil {
		writeError(w, f.failAlways)
		return
	}
	if len(f.failures) > 0 {
		fl := f.failures[0]
		f.failures = f.failures[1:]
		if fl != nil {
			writeError(w, fl)
			return
		}
	}

	// Instances in aggregated order: by zone, then name.
	type entry struct {
		zone string
		in   map[string]any
	}
	var all []entry
	for _, in := range f.instances {
		all = append(all, entry{zone: in["zone"].(string)[strings.LastIndexByte(in["zone"].(string), '/')+1:], in: in})
	}
	slices.SortFunc(all, func(a, b entry) int {
		return cmp.Or(cmp.Compare(slices.Index(f.zones, a.zone), slices.Index(f.zones, b.zone)),
			cmp.Compare(a.in["name"].(string), b.in["name"].(string)))
	})
	start := 0
	if tok := q.Get("pageToken"); tok != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tok, "tok-"))
		if err != nil || n > len(all) {
			writeError(w, &failure{status: 400, body: apiError(400, "invalid", "Invalid value for field 'pageToken': '"+tok+"'.")})
			return
		}
		start = n
	}
	size := f.pageSize
	if mr := q.Get("maxResults"); mr != "" {
		size, _ = strconv.Atoi(mr)
	}
	end := min(start+size, len(all))
	page := all[start:end]

	items := map[string]any{}
	for _, z := range f.zones {
		scope := "zones/" + z
		var ins []any
		for _, e := range page {
			if e.zone == z {
				ins = append(ins, e.in)
			}
		}
		switch {
		case f.unreachable[z]:
			items[scope] = map[string]any{"warning": map[string]any{
				"code": "UNREACHABLE", "message": "Scope '" + scope + "' is unreachable.",
				"data": []any{map[string]any{"key": "scope", "value": scope}},
			}}
		case len(ins) > 0:
			items[scope] = map[string]any{"instances": ins}
		default:
			items[scope] = map[string]any{"warning": map[string]any{
				"code":    "NO_RESULTS_ON_PAGE",
				"message": "There are no results for scope '" + scope + "' on this page.",
				"data":    []any{map[string]any{"key": "scope", "value": scope}},
			}}
		}
	}
	resp := map[string]any{
		"kind":     "compute#instanceAggregatedList",
		"id":       "projects/" + f.project + "/aggregated/instances",
		"items":    items,
		"selfLink": selfLinkBase + "projects/" + f.project + "/aggregated/instances",
	}
	var unreachable []any
	for _, z := range f.zones {
		if f.unreachable[z] {
			unreachable = append(unreachable, "zones/"+z)
		}
	}
	if unreachable != nil {
		resp["unreachables"] = unreachable
	}
	if end < len(all) {
		resp["nextPageToken"] = fmt.Sprintf("tok-%d", end)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(resp)
}

// apiError is the JSON error body of a Google API.
func apiError(code int, reason, message string) string {
	status := map[int]string{400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}[code]
	b, _ := json.Marshal(map[string]any{"error": map[string]any{
		"code": code, "message": message, "status": status,
		"errors": []any{map[string]any{"message": message, "domain": "usageLimits", "reason": reason}},
	}})
	return string(b)
}

func writeError(w http.ResponseWriter, fl *failure) {
	for k, v := range fl.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(fl.status)
	_, _ = w.Write([]byte(fl.body))
}

var (
	errInternal = &failure{status: 500, body: apiError(500, "backendError", "Internal error. Please try again or contact Google Support.")}
	errRate403  = &failure{status: 403, body: apiError(403, "rateLimitExceeded",
		"Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of service 'compute.googleapis.com'.")}
	errRate429 = &failure{status: 429, body: apiError(429, "rateLimitExceeded", "Rate Limit Exceeded"),
		header: http.Header{"Retry-After": {"1"}}}
)
