package cloudmap

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sd "github.com/aws/aws-sdk-go-v2/service/servicediscovery"
	"github.com/aws/aws-sdk-go-v2/service/servicediscovery/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/awsapi/mototest"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource/cloudsourcetest"
	"github.com/registry-adapter/registry-adapter/sources/poll"
)

const testRegion = "us-east-1"

var (
	moto        *mototest.Server
	motoMissing error
	motoURL     string

	testTransport = http.DefaultTransport.(*http.Transport).Clone()
	testHTTP      = &http.Client{Transport: testTransport}
)

func TestMain(m *testing.M) {
	mototest.TestEnv()
	moto, motoMissing = mototest.Start()
	if moto != nil {
		motoURL = moto.URL
	}
	code := m.Run()
	moto.Stop()
	testTransport.CloseIdleConnections()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func needMoto(t *testing.T) {
	t.Helper()
	mototest.Need(t, moto, motoMissing)
}

// cloud is the test's own Cloud Map client.
type cloud struct {
	t  *testing.T
	sd *sd.Client
}

func newCloud(t *testing.T) *cloud {
	return &cloud{t: t, sd: sd.New(sd.Options{
		Region: testRegion, BaseEndpoint: aws.String(motoURL), HTTPClient: testHTTP,
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
	reg := prometheus.NewRegistry()
	rep := sources.NewReporter("cloudmap-test", sources.NewMetrics(reg))
	opts := sources.Options{Name: "cloudmap-test", Logger: zaptest.NewLogger(t), Reporter: rep, Registerer: reg}
	src, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	src.Lister.maxAttempts = 1
	src.Poll = poll.New(testPoll, src.Lister, opts)
	return cloudsourcetest.Start(t, src, cloudsourcetest.Options{Buffer: 100, Reporter: rep, Registry: reg})
}
