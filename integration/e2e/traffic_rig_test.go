package e2e

// The traffic rig: one Consul, one adapter per path (sink × output mode), one
// real istiod reading every path, proxyless gRPC clients of that istiod.
//
// One istiod serves the four paths: the two xDS-sink adapters are its
// xds:// config sources, and the two Kubernetes-sink adapters write to the
// API server it reads through k8s://. istiod merges its config stores into
// one before its ServiceEntry controller, so each path reaches the client
// exactly as it would alone; each path has hosts of its own
// (<service>.<path>.<tag>.consul), so a failure names its path. One registry
// change is then seen through the four paths at once, for the price of one
// istiod and one set of waits.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// trafficPath is one way from the registry to istiod: a sink and an output
// mode.
type trafficPath struct {
	name string // xds-inline, xds-we, kube-inline, kube-we
	sink string // xds or kubernetes
	mode string // inline or workloadentry
}

var allTrafficPaths = []trafficPath{
	{"xds-inline", "xds", "inline"},
	{"xds-we", "xds", "workloadentry"},
	{"kube-inline", "kubernetes", "inline"},
	{"kube-we", "kubernetes", "workloadentry"},
}

// trafficBound is how soon a registry change must show in traffic: the
// adapter's debounce max (the default, 1 s: the rig's adapters use the
// default debounce) plus 1 s.
const trafficBound = 2 * time.Second

// rigOptions say what the rig's adapters read and how.
type rigOptions struct {
	tag         string // in every host and Kubernetes name: tests running at once stay apart
	consulAddr  string
	staticIP    string // the echo-static instance's address; "" for no static source
	moto        string // moto's URL; "" for no EC2 source
	extra       string // more adapter configuration (guard...)
	stateFile   func(trafficPath) bool
	streamProxy bool // put a cuttable TCP proxy between istiod and each xDS-sink adapter
	// consulDefaults leaves the Consul source's timings at their defaults;
	// otherwise they are short, see config.
	consulDefaults bool
	// trafficPolicy has the Consul source serve Consul's service-resolver
	// and service-splitter as DestinationRules and VirtualServices.
	trafficPolicy bool
	paths         []trafficPath
}

type trafficRig struct {
	opts     rigOptions
	paths    []trafficPath
	adapters map[string]*adapterProc
	proxies  map[string]*tcpProxy // xDS-sink paths, with streamProxy
	istiod   *istiodProc
	stateDir string // the paths' state files
}

func (r *trafficRig) host(p trafficPath, service string) string {
	return fmt.Sprintf("%s.%s.%s.consul", service, p.name, r.opts.tag)
}

func (r *trafficRig) staticHost(p trafficPath) string {
	return fmt.Sprintf("echo-static.%s.%s.test", p.name, r.opts.tag)
}

func (r *trafficRig) ec2Host(p trafficPath) string {
	return fmt.Sprintf("echo-ec2.us-east-1.%s.%s.ec2", p.name, r.opts.tag)
}

// namespace is where a Kubernetes-sink path writes.
func (r *trafficRig) namespace(p trafficPath) string {
	return fmt.Sprintf("traffic-%s-%s", r.opts.tag, p.name)
}

// localAddresses serves the echo servers' loopback addresses: client and
// workloads share this host's loopback, the case the option exists for.
const localAddresses = "allowLocalInstanceAddresses: true"

func (r *trafficRig) config(p trafficPath) string {
	var b strings.Builder
	b.WriteString("server: {listen: \"{{XDS}}\", debugListen: \"{{DEBUG}}\"}\n")
	if p.sink == "kubernetes" {
		owner := fmt.Sprintf("traffic-%s-%s", r.opts.tag, p.name)
		fmt.Fprintf(&b, "output: {mode: %s, namespace: %s, %s}\nsink: kubernetes\n", p.mode, r.namespace(p), localAddresses)
		fmt.Fprintf(&b, "kubernetesSink:\n  kubeconfig: %q\n  owner: %s\n", kubeconfig, owner)
		fmt.Fprintf(&b, "  leaderElection: {leaseName: %s, leaseDuration: 4s, renewDeadline: 3s, retryPeriod: 500ms}\n", owner)
	} else {
		fmt.Fprintf(&b, "output: {mode: %s, %s}\n", p.mode, localAddresses)
	}
	if r.opts.stateFile != nil && r.opts.stateFile(p) {
		fmt.Fprintf(&b, "stateFile: {path: %q, serveAfter: 2s, minInterval: 100ms}\n",
			filepath.Join(r.stateDir, p.name+".state.json"))
	}
	b.WriteString(r.opts.extra)
	b.WriteString("\nsources:\n")
	// Short blocking waits and timeouts, so that a fault shows within
	// seconds; minQueryInterval 50ms instead of 1s, so that a change is not
	// held back behind the previous query of its watch.
	timings := ", wait: 2s, requestTimeout: 1s, backoffMin: 100ms, backoffMax: 1s, minQueryInterval: 50ms"
	if r.opts.consulDefaults {
		timings = ""
	}
	if r.opts.trafficPolicy {
		timings += ", configEntries: {trafficPolicy: true}"
	}
	fmt.Fprintf(&b, "- name: dc1\n  consul: {address: %q, hostTemplate: \"{{.Service}}.%s.%s.consul\", zoneMetaKey: zone%s}\n",
		r.opts.consulAddr, p.name, r.opts.tag, timings)
	if r.opts.staticIP != "" {
		fmt.Fprintf(&b, "- name: static\n  static:\n    services:\n    - {name: echo-static, host: %s, ports: [{number: %d, protocol: grpc}], "+
			"instances: [{address: %s}]}\n", r.staticHost(p), echoPort, r.opts.staticIP)
	}
	if r.opts.moto != "" {
		fmt.Fprintf(&b, "- name: aws\n  ec2: {region: us-east-1, endpoint: %q, refreshInterval: 1s, "+
			"hostTemplate: \"{{.Service}}.{{.Region}}.%s.%s.ec2\"}\n", r.opts.moto, p.name, r.opts.tag)
	}
	return b.String()
}

// startTrafficRig starts an adapter per path and one istiod reading them
// all, and waits until istiod is ready.
func startTrafficRig(t *testing.T, opts rigOptions) *trafficRig {
	t.Helper()
	if opts.paths == nil {
		opts.paths = allTrafficPaths
	}
	r := &trafficRig{opts: opts, paths: opts.paths, adapters: map[string]*adapterProc{}, proxies: map[string]*tcpProxy{},
		stateDir: t.TempDir()}
	if opts.moto != "" {
		useFakeAWSEnv()
	}
	sources := []string{}
	kube := false
	for _, p := range r.paths {
		if p.sink == "kubernetes" {
			if !kube {
				installIstioCRDs(t)
				kube = true
			}
			kubeNamespace(t, r.namespace(p))
		}
		a := startAdapter(t, r.config(p), 0)
		r.adapters[p.name] = a
		if p.sink == "xds" {
			addr := a.xdsAddr
			if opts.streamProxy {
				px := startProxy(t, a.xdsAddr)
				r.proxies[p.name] = px
				addr = px.addr()
			}
			sources = append(sources, "xds://"+addr)
		}
	}
	if kube {
		sources = append(sources, "k8s://")
	}
	var mesh strings.Builder
	mesh.WriteString("rootNamespace: istio-system\ntrustDomain: cluster.local\nconfigSources:\n")
	for _, s := range sources {
		fmt.Fprintf(&mesh, "- address: %s\n", s)
	}
	r.istiod = startIstiod(t, mesh.String())
	r.istiod.waitReady(t)
	return r
}

func (r *trafficRig) adapter(p trafficPath) *adapterProc { return r.adapters[p.name] }

// useFakeAWSEnv gives the adapters (children of this process) static fake
// AWS credentials, no metadata service and no shared files: the values the
// cloud fault test sets, under its once.
func useFakeAWSEnv() {
	awsEnvOnce.Do(func() {
		for k, v := range map[string]string{
			"AWS_ACCESS_KEY_ID": "fake", "AWS_SECRET_ACCESS_KEY": "fake", "AWS_EC2_METADATA_DISABLED": "true",
			"AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		} {
			os.Setenv(k, v)
		}
		os.Unsetenv("AWS_PROFILE")
		os.Unsetenv("AWS_SESSION_TOKEN")
	})
}

// ec2Echo runs an echo instance in (emulated) EC2: a VPC and subnet of
// this process's loopback /16 in moto, an instance tagged
// mesh-service=echo-ec2 at an address of that subnet, and an echo server on
// it.
func ec2Echo(t *testing.T, moto string) echoInstance {
	t.Helper()
	ctx := context.Background()
	client := awsec2.New(awsec2.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(moto),
		Credentials: credentials.NewStaticCredentialsProvider("fake", "fake", ""),
	})
	vpc, err := client.CreateVpc(ctx, &awsec2.CreateVpcInput{CidrBlock: aws.String(fmt.Sprintf("127.%d.0.0/16", echoOctet))})
	if err != nil {
		t.Fatalf("CreateVpc: %v", err)
	}
	subnet, err := client.CreateSubnet(ctx, &awsec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId,
		CidrBlock: aws.String(fmt.Sprintf("127.%d.250.0/24", echoOctet)), AvailabilityZone: aws.String("us-east-1a")})
	if err != nil {
		t.Fatalf("CreateSubnet: %v", err)
	}
	images, err := client.DescribeImages(ctx, &awsec2.DescribeImagesInput{})
	if err != nil || len(images.Images) == 0 {
		t.Fatalf("DescribeImages: %v", err)
	}
	ip := fmt.Sprintf("127.%d.250.10", echoOctet)
	if _, err := client.RunInstances(ctx, &awsec2.RunInstancesInput{
		ImageId: images.Images[0].ImageId, InstanceType: types.InstanceTypeT3Micro, MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		SubnetId: subnet.Subnet.SubnetId, PrivateIpAddress: aws.String(ip),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{
			{Key: aws.String("mesh-service"), Value: aws.String("echo-ec2")},
			{Key: aws.String("mesh-ports"), Value: aws.String(fmt.Sprintf("grpc:%d", echoPort))},
			{Key: aws.String("Name"), Value: aws.String("ec2-1")},
		}}},
	}); err != nil {
		t.Fatalf("RunInstances: %v", err)
	}
	return echoInstance{service: "echo-ec2", node: "ec2-1", servers: []*echoServer{startEcho(t, "ec2-1", ip, echoPort)}}
}

var drGVR = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"}

// localityRule creates, in namespace, a DestinationRule for host with
// outlier detection: istiod then gives endpoints EDS priorities by the
// client's locality (the mesh default localityLbSetting is on, and
// failover needs outlier detection), and deletes it when the test ends.
func localityRule(t *testing.T, namespace, name, host string) {
	t.Helper()
	dr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"spec": map[string]any{"host": host, "trafficPolicy": map[string]any{
			"outlierDetection": map[string]any{"consecutive5xxErrors": int64(5), "interval": "10s", "baseEjectionTime": "30s"},
		}},
	}}
	c := kubeDynamic(t).Resource(drGVR).Namespace(namespace)
	if _, err := c.Create(context.Background(), dr, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create DestinationRule %s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), name, metav1.DeleteOptions{}) })
}
