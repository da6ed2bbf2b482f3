package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v8"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

// The API names of the requests metric.
const (
	apiVMs       = "virtualMachines"
	apiNICs      = "networkInterfaces"
	apiPublicIPs = "publicIPAddresses"
)

// azureAPI is the three Azure Resource Manager calls the source makes, each
// followed through nextLink to the end.
type azureAPI interface {
	listVMs(ctx context.Context, page func()) ([]*armcompute.VirtualMachine, error)
	listNICs(ctx context.Context, page func()) ([]*armnetwork.Interface, error)
	listPublicIPs(ctx context.Context, page func()) ([]*armnetwork.PublicIPAddress, error)
}

// armAPI is azureAPI over the SDK clients.
type armAPI struct {
	vms  *armcompute.VirtualMachinesClient
	nics *armnetwork.InterfacesClient
	pips *armnetwork.PublicIPAddressesClient
}

func (a armAPI) listVMs(ctx context.Context, page func()) ([]*armcompute.VirtualMachine, error) {
	// statusOnly=true adds each VM's instance view (its power state).
	return drain(ctx, a.vms.NewListAllPager(&armcompute.VirtualMachinesClientListAllOptions{StatusOnly: new("true")}),
		func(r armcompute.VirtualMachinesClientListAllResponse) ([]*armcompute.VirtualMachine, *string) {
			return r.Value, r.NextLink
		}, page)
}

func (a armAPI) listNICs(ctx context.Context, page func()) ([]*armnetwork.Interface, error) {
	return drain(ctx, a.nics.NewListAllPager(nil),
		func(r armnetwork.InterfacesClientListAllResponse) ([]*armnetwork.Interface, *string) {
			return r.Value, r.NextLink
		}, page)
}

func (a armAPI) listPublicIPs(ctx context.Context, page func()) ([]*armnetwork.PublicIPAddress, error) {
	return drain(ctx, a.pips.NewListAllPager(nil),
		func(r armnetwork.PublicIPAddressesClientListAllResponse) ([]*armnetwork.PublicIPAddress, *string) {
			return r.Value, r.NextLink
		}, page)
}

// drain reads every page of a pager, refusing a nextLink seen before (a
// server looping would otherwise hold the list until its timeout).
func drain[R any, T any](ctx context.Context, p *runtime.Pager[R], items func(R) ([]T, *string), page func()) ([]T, error) {
	var out []T
	seen := map[string]bool{}
	for p.More() {
		r, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		page()
		v, next := items(r)
		out = append(out, v...)
		if next != nil && *next != "" {
			if seen[*next] {
				return nil, errors.New("the same nextLink was returned twice")
			}
			seen[*next] = true
		}
	}
	return out, nil
}

// lister reads a subscription; it implements poll.Lister.
type lister struct {
	cfg     *Config
	mapper  *mapper
	metrics *cloudsource.Metrics
	log     *zap.Logger

	// Tests set these: the credential, and the transports of the compute
	// and network clients (the SDK's fake servers, or an httptest client).
	credential       azcore.TokenCredential
	computeTransport policy.Transporter
	networkTransport policy.Transporter

	*cloudsource.Client[azureAPI]
	problems *cloudsource.ProblemLog
	// health is the last known Application Health of each VM (only List
	// uses it).
	health *cloudsource.HealthBook
}

var _ poll.Lister = (*lister)(nil)

// newLister makes the lister of a prepared configuration (cloudsource.New).
func newLister(cfg *Config, opts sources.Options) (*lister, prometheus.Collector, error) {
	m, err := newMapper(cfg)
	l := &lister{cfg: cfg, mapper: m, metrics: newMetrics(opts.Name), log: opts.Logger,
		problems: cloudsource.NewProblemLog(opts.Logger, "VM left out of the mesh"), health: cloudsource.NewHealthBook()}
	l.Client = cloudsource.NewClient(l.newAPI)
	if u := cfg.Endpoint; strings.HasPrefix(u, "http://") {
		opts.Logger.Warn("endpoint is plain http: access tokens are sent in clear text", zap.String("endpoint", u))
	}
	return l, l.metrics, err
}

// newAPI makes the API clients (cloudsource.Client). The transport is the
// clients' own, unless a test set theirs.
func (l *lister) newAPI(context.Context) (azureAPI, *http.Transport, error) {
	cred := l.credential
	if cred == nil {
		c, err := newCredential(l.cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("azure credential: %w", err)
		}
		cred = c
	}
	own := http.DefaultTransport.(*http.Transport).Clone()
	opts := func(tr policy.Transporter) *arm.ClientOptions {
		if tr == nil {
			tr = &http.Client{Transport: own}
		}
		o := &arm.ClientOptions{
			ClientOptions: policy.ClientOptions{
				// The poll helper retries, backing off and honouring
				// Retry-After; the SDK's own retries would hide throttling.
				Retry:     policy.RetryOptions{MaxRetries: -1},
				Telemetry: policy.TelemetryOptions{ApplicationID: "registry-adapter"},
				Transport: tr,
			},
			// Registering resource providers needs write access; a reader
			// must not try.
			DisableRPRegistration: true,
		}
		if l.cfg.Endpoint != "" {
			c := cloud.AzurePublic
			c.Services = map[cloud.ServiceName]cloud.ServiceConfiguration{cloud.ResourceManager: {
				Endpoint: l.cfg.Endpoint,
				Audience: cloud.AzurePublic.Services[cloud.ResourceManager].Audience,
			}}
			o.Cloud = c
			if u, err := url.Parse(l.cfg.Endpoint); err == nil && u.Scheme == "http" {
				o.InsecureAllowCredentialWithHTTP = true
			}
		}
		return o
	}
	vms, err := armcompute.NewVirtualMachinesClient(l.cfg.SubscriptionID, cred, opts(l.computeTransport))
	if err != nil {
		return nil, nil, err
	}
	nics, err := armnetwork.NewInterfacesClient(l.cfg.SubscriptionID, cred, opts(l.networkTransport))
	if err != nil {
		return nil, nil, err
	}
	pips, err := armnetwork.NewPublicIPAddressesClient(l.cfg.SubscriptionID, cred, opts(l.networkTransport))
	if err != nil {
		return nil, nil, err
	}
	return armAPI{vms: vms, nics: nics, pips: pips}, own, nil
}

// newCredential returns DefaultAzureCredential (environment, workload
// identity, managed identity, Azure CLI...), or, with clientId, the workload
// identity (when AZURE_FEDERATED_TOKEN_FILE is set) and then the
// user-assigned managed identity of that client ID.
func newCredential(cfg *Config) (azcore.TokenCredential, error) {
	if cfg.ClientID == "" {
		return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{TenantID: cfg.TenantID})
	}
	var chain []azcore.TokenCredential
	if os.Getenv("AZURE_FEDERATED_TOKEN_FILE") != "" {
		wi, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientID: cfg.ClientID, TenantID: cfg.TenantID,
		})
		if err != nil {
			return nil, err
		}
		chain = append(chain, wi)
	}
	mi, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
		ID: azidentity.ClientID(cfg.ClientID),
	})
	if err != nil {
		return nil, err
	}
	chain = append(chain, mi)
	return azidentity.NewChainedTokenCredential(chain, nil)
}

// List returns one group per service name. Any failed page fails the list.
func (l *lister) List(ctx context.Context) ([]model.Group, error) {
	api, err := l.API(ctx)
	if err != nil {
		return nil, err
	}
	counter := func(name string) func() {
		return func() { l.metrics.Requests.WithLabelValues(name, "ok").Inc() }
	}
	inv := inventory{nics: map[string]*armnetwork.Interface{}, publicIPs: map[string]*armnetwork.PublicIPAddress{}}
	if inv.vms, err = api.listVMs(ctx, counter(apiVMs)); err != nil {
		return nil, l.failed(apiVMs, err)
	}
	nics, err := api.listNICs(ctx, counter(apiNICs))
	if err != nil {
		return nil, l.failed(apiNICs, err)
	}
	for _, n := range nics {
		if n != nil && n.ID != nil {
			inv.nics[strings.ToLower(*n.ID)] = n
		}
	}
	if l.cfg.AddressType == cloudsource.AddressPublic {
		pips, err := api.listPublicIPs(ctx, counter(apiPublicIPs))
		if err != nil {
			return nil, l.failed(apiPublicIPs, err)
		}
		for _, p := range pips {
			if p != nil && p.ID != nil {
				inv.publicIPs[strings.ToLower(*p.ID)] = p
			}
		}
	}
	var health *cloudsource.HealthBook
	if l.cfg.Health.Enabled {
		health = l.health
	}
	res := l.mapper.mapInventory(inv, health)
	l.metrics.ObserveResult(res)
	l.problems.Log(res.Problems)
	return res.Groups, nil
}

// failed classifies and counts an error of one API.
func (l *lister) failed(api string, err error) error {
	err = classify(err)
	l.metrics.Requests.WithLabelValues(api, cloudsource.RequestResult(err)).Inc()
	return fmt.Errorf("azure %s list, subscription %s: %w", api, l.cfg.SubscriptionID, err)
}

// msRetryHeaders are Azure's retry hints in milliseconds, read before
// Retry-After.
var msRetryHeaders = []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"}

// classify shortens Resource Manager errors to one line and marks Azure
// throttling (HTTP 429) as a *poll.ThrottledError with the server's retry
// hint.
func classify(err error) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return err
	}
	err = &responseError{re: re}
	if re.StatusCode != http.StatusTooManyRequests {
		return err
	}
	var h http.Header
	if re.RawResponse != nil {
		h = re.RawResponse.Header
	}
	return &poll.ThrottledError{Err: err, RetryAfter: cloudsource.RetryAfterHeader(h, time.Now(), msRetryHeaders...)}
}

// responseError is an *azcore.ResponseError said in one line: "GET <path>:
// HTTP 429 TooManyRequests: <message>". The SDK's own text spans a dozen
// lines and repeats the body.
type responseError struct{ re *azcore.ResponseError }

func (e *responseError) Unwrap() error { return e.re }

func (e *responseError) Error() string {
	var b strings.Builder
	if r := e.re.RawResponse; r != nil && r.Request != nil {
		fmt.Fprintf(&b, "%s %s: ", r.Request.Method, r.Request.URL.Path)
	}
	fmt.Fprintf(&b, "HTTP %d", e.re.StatusCode)
	if e.re.ErrorCode != "" {
		b.WriteString(" " + e.re.ErrorCode)
	}
	if e.re.RawResponse != nil {
		var body struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if p, err := runtime.Payload(e.re.RawResponse); err == nil && json.Unmarshal(p, &body) == nil && body.Error.Message != "" {
			b.WriteString(": " + body.Error.Message)
		}
	}
	return b.String()
}
