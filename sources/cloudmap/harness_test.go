package cloudmap

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sd "github.com/aws/aws-sdk-go-v2/service/servicediscovery"
	"github.com/aws/aws-sdk-go-v2/service/servicediscovery/types"
	"go.uber.org/goleak"

	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/awsapi/mototest"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource/cloudsourcetest"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

const testRegion = "us-east-1"

// harness is the moto server every test in the package shares, and the
// tests' own HTTP client.
var harness = mototest.NewHarness()

func TestMain(m *testing.M) { os.Exit(harness.Main(m, func() error { return goleak.Find() })) }

// cloud is the test's own Cloud Map client.
type cloud struct {
	t  *testing.T
	sd *sd.Client
}

func newCloud(t *testing.T) *cloud {
	return &cloud{t: t, sd: sd.New(sd.Options{
		Region: testRegion, BaseEndpoint: aws.String(harness.URL), HTTPClient: harness.HTTP,
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", ""),
	}, func(o *sd.Options) {
		o.APIOptions = append(o.APIOptions, noEndpointHostPrefix)
	})}
}

func (c *cloud) namespace(name string) string {
	c.t.Helper()
	ctx := context.Background()
	if _, err := c.sd.CreateHttpNamespace(ctx, &sd.CreateHttpNamespaceInput{Name: aws.String(name)}); err != nil {
		c.t.Fatalf("CreateHttpNamespace: %v", err)
	}
	out, err := c.sd.ListNamespaces(ctx, &sd.ListNamespacesInput{})
	if err != nil {
		c.t.Fatalf("ListNamespaces: %v", err)
	}
	for _, ns := range out.Namespaces {
		if aws.ToString(ns.Name) == name {
			return aws.ToString(ns.Id)
		}
	}
	c.t.Fatalf("namespace %s not listed", name)
	return ""
}

func (c *cloud) service(nsID, name string, customHealth bool) string {
	c.t.Helper()
	in := &sd.CreateServiceInput{Name: aws.String(name), NamespaceId: aws.String(nsID)}
	if customHealth {
		in.HealthCheckCustomConfig = &types.HealthCheckCustomConfig{}
	}
	out, err := c.sd.CreateService(context.Background(), in)
	if err != nil {
		c.t.Fatalf("CreateService: %v", err)
	}
	return aws.ToString(out.Service.Id)
}

func (c *cloud) register(svcID, id string, attrs map[string]string) {
	c.t.Helper()
	if _, err := c.sd.RegisterInstance(context.Background(), &sd.RegisterInstanceInput{
		ServiceId: aws.String(svcID), InstanceId: aws.String(id), Attributes: attrs,
	}); err != nil {
		c.t.Fatalf("RegisterInstance: %v", err)
	}
}

func (c *cloud) deregister(svcID, id string) {
	c.t.Helper()
	if _, err := c.sd.DeregisterInstance(context.Background(), &sd.DeregisterInstanceInput{
		ServiceId: aws.String(svcID), InstanceId: aws.String(id),
	}); err != nil {
		c.t.Fatalf("DeregisterInstance: %v", err)
	}
}

func (c *cloud) health(svcID, id string, status types.CustomHealthStatus) {
	c.t.Helper()
	if _, err := c.sd.UpdateInstanceCustomHealthStatus(context.Background(), &sd.UpdateInstanceCustomHealthStatusInput{
		ServiceId: aws.String(svcID), InstanceId: aws.String(id), Status: status,
	}); err != nil {
		c.t.Fatalf("UpdateInstanceCustomHealthStatus: %v", err)
	}
}

var testPoll = poll.Config{RefreshInterval: 100 * time.Millisecond, Timeout: 10 * time.Second, MaxBackoff: 200 * time.Millisecond}

// startSource runs a Cloud Map source on cfg until the test ends, on a fast
// schedule (poll.Config.Validate insists on at least 1s) with one SDK
// attempt per request.
func startSource(t *testing.T, cfg Config) *cloudsourcetest.Running {
	t.Helper()
	cfg.Config = poll.Config{RefreshInterval: time.Second}
	return cloudsourcetest.StartNew(t, "cloudmap-test", func(opts sources.Options) (*Source, error) { return New(cfg, opts) },
		func(src *Source, opts sources.Options) {
			src.Lister.maxAttempts = 1
			src.Poll = poll.New(testPoll, src.Lister, opts)
		})
}
