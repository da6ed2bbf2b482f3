package ec2

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/registry-adapter/registry-adapter/model"
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

// cloud is the test's own view of moto: an EC2 client and a VPC with one
// subnet.
type cloud struct {
	t      *testing.T
	ec2    *awsec2.Client
	creds  aws.CredentialsProvider
	vpc    string
	subnet string
	zone   string
	ami    string
}

func newCloud(t *testing.T) *cloud {
	t.Helper()
	return newCloudWith(t, credentials.NewStaticCredentialsProvider("testing", "testing", ""))
}

func newCloudWith(t *testing.T, creds aws.CredentialsProvider) *cloud {
	t.Helper()
	c := &cloud{t: t, creds: creds, zone: testRegion + "a"}
	c.ec2 = awsec2.New(awsec2.Options{
		Region: testRegion, BaseEndpoint: aws.String(harness.URL), Credentials: creds, HTTPClient: harness.HTTP,
	})
	ctx := context.Background()
	vpc, err := c.ec2.CreateVpc(ctx, &awsec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatalf("CreateVpc: %v", err)
	}
	c.vpc = aws.ToString(vpc.Vpc.VpcId)
	sn, err := c.ec2.CreateSubnet(ctx, &awsec2.CreateSubnetInput{
		VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.0.1.0/24"), AvailabilityZone: aws.String(c.zone),
	})
	if err != nil {
		t.Fatalf("CreateSubnet: %v", err)
	}
	c.subnet = aws.ToString(sn.Subnet.SubnetId)
	imgs, err := c.ec2.DescribeImages(ctx, &awsec2.DescribeImagesInput{Owners: []string{"amazon"}})
	if err != nil || len(imgs.Images) == 0 {
		t.Fatalf("DescribeImages: %v (%d images)", err, len(imgs.Images))
	}
	c.ami = aws.ToString(imgs.Images[0].ImageId)
	return c
}

// launch runs count instances in one reservation with these tags.
func (c *cloud) launch(count int32, tags map[string]string, mod ...func(*awsec2.RunInstancesInput)) []string {
	c.t.Helper()
	in := &awsec2.RunInstancesInput{
		ImageId: aws.String(c.ami), InstanceType: types.InstanceTypeT3Micro,
		MinCount: aws.Int32(count), MaxCount: aws.Int32(count), SubnetId: aws.String(c.subnet),
	}
	if len(tags) > 0 {
		spec := types.TagSpecification{ResourceType: types.ResourceTypeInstance}
		for _, k := range sortedKeys(tags) {
			spec.Tags = append(spec.Tags, types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
		}
		in.TagSpecifications = []types.TagSpecification{spec}
	}
	for _, f := range mod {
		f(in)
	}
	out, err := c.ec2.RunInstances(context.Background(), in)
	if err != nil {
		c.t.Fatalf("RunInstances: %v", err)
	}
	var ids []string
	for _, i := range out.Instances {
		ids = append(ids, aws.ToString(i.InstanceId))
	}
	return ids
}

func (c *cloud) instance(id string) types.Instance {
	c.t.Helper()
	out, err := c.ec2.DescribeInstances(context.Background(), &awsec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil || len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
		c.t.Fatalf("DescribeInstances %s: %v", id, err)
	}
	return out.Reservations[0].Instances[0]
}

func (c *cloud) privateIP(id string) string { return aws.ToString(c.instance(id).PrivateIpAddress) }

func (c *cloud) stop(ids ...string) {
	c.t.Helper()
	if _, err := c.ec2.StopInstances(context.Background(), &awsec2.StopInstancesInput{InstanceIds: ids}); err != nil {
		c.t.Fatalf("StopInstances: %v", err)
	}
}

func (c *cloud) start(ids ...string) {
	c.t.Helper()
	if _, err := c.ec2.StartInstances(context.Background(), &awsec2.StartInstancesInput{InstanceIds: ids}); err != nil {
		c.t.Fatalf("StartInstances: %v", err)
	}
}

func (c *cloud) terminate(ids ...string) {
	c.t.Helper()
	if _, err := c.ec2.TerminateInstances(context.Background(), &awsec2.TerminateInstancesInput{InstanceIds: ids}); err != nil {
		c.t.Fatalf("TerminateInstances: %v", err)
	}
}

// tag sets tags on an instance in one call (so no poll sees half of it).
func (c *cloud) tag(id string, tags map[string]string) {
	c.t.Helper()
	in := &awsec2.CreateTagsInput{Resources: []string{id}}
	for _, k := range sortedKeys(tags) {
		in.Tags = append(in.Tags, types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	if _, err := c.ec2.CreateTags(context.Background(), in); err != nil {
		c.t.Fatalf("CreateTags: %v", err)
	}
}

// createInstanceProfile creates an IAM instance profile in moto with a
// signed Query API call (the test needs no IAM SDK) and returns its ARN.
func (c *cloud) createInstanceProfile(name string) string {
	c.t.Helper()
	form := url.Values{"Action": {"CreateInstanceProfile"}, "Version": {"2010-05-08"}, "InstanceProfileName": {name}}
	body := form.Encode()
	req, err := http.NewRequest(http.MethodPost, harness.URL+"/", strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	creds, err := c.creds.Retrieve(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(body))
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "iam", testRegion, time.Now()); err != nil {
		c.t.Fatal(err)
	}
	resp, err := harness.HTTP.Do(req)
	if err != nil {
		c.t.Fatalf("CreateInstanceProfile: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("CreateInstanceProfile: %s: %s", resp.Status, b)
	}
	s := string(b)
	i, j := strings.Index(s, "<Arn>"), strings.Index(s, "</Arn>")
	if i < 0 || j < i {
		c.t.Fatalf("CreateInstanceProfile: no Arn in %s", s)
	}
	return s[i+len("<Arn>") : j]
}

// assumeRole returns credentials for a role, from moto's STS.
func assumeRole(t *testing.T, arn string) aws.CredentialsProvider {
	t.Helper()
	client := sts.New(sts.Options{
		Region: testRegion, BaseEndpoint: aws.String(harness.URL), HTTPClient: harness.HTTP,
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", ""),
	})
	out, err := client.AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn: aws.String(arn), RoleSessionName: aws.String("test"),
	})
	if err != nil {
		t.Fatalf("AssumeRole: %v", err)
	}
	cr := out.Credentials
	return credentials.NewStaticCredentialsProvider(aws.ToString(cr.AccessKeyId), aws.ToString(cr.SecretAccessKey),
		aws.ToString(cr.SessionToken))
}

// testPoll is a fast schedule for tests: poll.Config.Validate insists on
// at least 1s between lists, which is right for AWS and slow for a test.
var testPoll = poll.Config{RefreshInterval: 100 * time.Millisecond, Timeout: 10 * time.Second, MaxBackoff: 200 * time.Millisecond}

// startSource runs an EC2 source on cfg until the test ends. The SDK makes
// one attempt per request, so that failures show at once.
func startSource(t *testing.T, cfg Config) *cloudsourcetest.Running {
	t.Helper()
	cfg.Config = poll.Config{RefreshInterval: time.Second}
	return cloudsourcetest.StartNew(t, "ec2-test", func(opts sources.Options) (*Source, error) { return New(cfg, opts) },
		func(src *Source, opts sources.Options) {
			src.Lister.maxAttempts = 1
			src.Poll = poll.New(testPoll, src.Lister, opts)
		})
}

func dump(groups []model.Group) string {
	var b strings.Builder
	for _, g := range groups {
		fmt.Fprintf(&b, "\n  scope %q:", g.Scope)
		for _, s := range g.Services {
			fmt.Fprintf(&b, " host=%s ports=%v", s.Host, s.Ports)
			for _, i := range s.Instances {
				fmt.Fprintf(&b, "\n    %s %s %s %s", i.ID, i.Address, i.Locality, i.Network)
			}
		}
	}
	return b.String()
}
