package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/registry-adapter/registry-adapter/fidelity"
	"github.com/registry-adapter/registry-adapter/sources/awsapi/mototest"
)

// startMoto runs moto_server, the AWS API emulator this machine image ships,
// on a free loopback port.
func startMoto(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		t.Fatalf("moto_server is not on PATH: %v", err)
	}
	port := freePort(t)
	p := launch(t, bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	eventually(t, 30*time.Second, "moto answering", func() error {
		select {
		case <-p.done:
			return fmt.Errorf("moto exited: %s", p.output())
		default:
		}
		code, _, err := httpGet(url + "/moto-api/")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("moto: %d %v", code, err)
		}
		return nil
	})
	return url
}

// TestEC2InstancesReachIstiod: instances tagged in (emulated) EC2 become
// endpoints in a real istiod; with health on, one whose status checks turn
// impaired leaves istiod's view and comes back when they pass; a
// terminated one leaves it.
func TestEC2InstancesReachIstiod(t *testing.T) {
	// The adapter reads AWS credentials from its environment, as in
	// production (the default chain); t.Setenv rules out t.Parallel.
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	const secret = "e2e-aws-secret-that-must-never-be-logged"
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	moto := startMoto(t)
	ctx := context.Background()
	client := awsec2.New(awsec2.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(moto),
		Credentials: credentials.NewStaticCredentialsProvider("testing", secret, ""),
	})
	images, err := client.DescribeImages(ctx, &awsec2.DescribeImagesInput{})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("DescribeImages: %v", err)
	}
	run, err := client.RunInstances(ctx, &awsec2.RunInstancesInput{
		ImageId: images.Images[0].ImageId, InstanceType: types.InstanceTypeT3Micro,
		MinCount: aws.Int32(2), MaxCount: aws.Int32(2),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{
			{Key: aws.String("mesh-service"), Value: aws.String("billing")},
			{Key: aws.String("mesh-ports"), Value: aws.String("http:8080")},
			{Key: aws.String("version"), Value: aws.String("v7")},
		}}},
	})
	if err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	var ips, addrs []string
	for _, in := range run.Instances {
		addrs = append(addrs, aws.ToString(in.PrivateIpAddress))
		ips = append(ips, aws.ToString(in.PrivateIpAddress)+"/http-8080")
	}
	slices.Sort(ips)
	// The mesh-ports tag gives the port; other tags become labels.
	// The network is the instances' VPC (the source's default).
	vpc := aws.ToString(run.Instances[0].VpcId)
	billing := func(addrs ...string) fidelity.View {
		s := located(service("billing.us-east-1.ec2", "HTTP", 8080, 0, addrs...), "us-east-1/us-east-1a")
		for _, a := range addrs {
			labelled(s, a, map[string]string{"version": "v7"})
		}
		for k, e := range s.Endpoints {
			e.Network = vpc
			s.Endpoints[k] = e
		}
		return expect(s)
	}

	// moto reports every instance's status checks ok: the proxy impairs
	// the ones the test names, in moto's own DescribeInstanceStatus answer.
	status, err := mototest.NewStatusProxy(moto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(status.Close)
	a := startAdapter(t, fmt.Sprintf(`
server: {listen: "{{XDS}}", debugListen: "{{DEBUG}}"}
debounce: {quiet: 50ms, max: 300ms}
sources:
- name: aws
  ec2: {region: us-east-1, endpoint: %q, refreshInterval: 1s, health: {enabled: true}}
`, status.URL), 0)
	p := startIstiod(t, meshFor(a.xdsAddr))
	p.waitReady(t)
	const host = "billing.us-east-1.ec2"
	eventually(t, 30*time.Second, "EC2 instances in istiod", func() error {
		if got := p.endpoints(t, host); !slices.Equal(got, ips) {
			return fmt.Errorf("endpoints %v, want %v", got, ips)
		}
		return holds(t, a, p, billing(addrs...))
	})

	// Health: instance 0's system status check fails, then passes again.
	impaired := aws.ToString(run.Instances[0].InstanceId)
	healthyOnly := []string{aws.ToString(run.Instances[1].PrivateIpAddress) + "/http-8080"}
	status.Set(impaired, "impaired")
	start := time.Now()
	eventually(t, 30*time.Second, "impaired instance gone from istiod", func() error {
		if got := p.endpoints(t, host); !slices.Equal(got, healthyOnly) {
			return fmt.Errorf("endpoints %v, want %v", got, healthyOnly)
		}
		return holds(t, a, p, billing(addrs[1]))
	})
	t.Logf("impaired instance left istiod's view %s after its status changed (refreshInterval 1s, debounce max 300ms)",
		time.Since(start).Round(10*time.Millisecond))
	status.Set(impaired, "")
	eventually(t, 30*time.Second, "instance back in istiod once its checks pass", func() error {
		if got := p.endpoints(t, host); !slices.Equal(got, ips) {
			return fmt.Errorf("endpoints %v, want %v", got, ips)
		}
		return holds(t, a, p, billing(addrs...))
	})

	if _, err := client.TerminateInstances(ctx, &awsec2.TerminateInstancesInput{InstanceIds: []string{aws.ToString(run.Instances[0].InstanceId)}}); err != nil {
		t.Fatal(err)
	}
	left := []string{aws.ToString(run.Instances[1].PrivateIpAddress) + "/http-8080"}
	eventually(t, 30*time.Second, "terminated instance gone from istiod", func() error {
		if got := p.endpoints(t, host); !slices.Equal(got, left) {
			return fmt.Errorf("endpoints %v, want %v", got, left)
		}
		return holds(t, a, p, billing(addrs[1]))
	})
	shown := a.output()
	for _, path := range []string{"/debug/sources", "/debug/resources", "/readyz", "/metrics"} {
		_, body, _ := httpGet("http://" + a.debugAddr + path)
		shown += string(body)
	}
	if strings.Contains(shown, secret) || strings.Contains(shown, secret[:12]) {
		t.Error("the AWS secret key appears in the adapter's logs or debug output")
	}
}
