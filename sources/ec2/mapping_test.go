package ec2

import (
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/sources"
	"github.com/registry-adapter/registry-adapter/sources/cloudsource"
)

func sourcesOptions() sources.Options { return sources.Options{Name: "test"} }

func inst(id string, tags map[string]string, mod ...func(*types.Instance)) types.Instance {
	in := types.Instance{
		InstanceId:       aws.String(id),
		State:            &types.InstanceState{Name: types.InstanceStateNameRunning},
		PrivateIpAddress: aws.String("10.0.0.1"),
		VpcId:            aws.String("vpc-1"),
		Placement:        &types.Placement{AvailabilityZone: aws.String("us-east-1b")},
	}
	for k, v := range tags {
		in.Tags = append(in.Tags, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	for _, f := range mod {
		f(&in)
	}
	return in
}

func newTestMapper(t *testing.T, mod func(*Config)) *mapper {
	t.Helper()
	c := Config{Region: "us-east-1"}
	if mod != nil {
		mod(&c)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	m, err := newMapper(&c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMapInstances(t *testing.T) {
	m := newTestMapper(t, nil)
	res := m.mapInstances([]types.Instance{
		inst("i-2", map[string]string{"mesh-service": "web", "mesh-ports": "grpc:8080", "aws:autoscaling:groupName": "asg"}),
		inst("i-1", map[string]string{"mesh-service": "web,Bad_Name", "mesh-ports": "http:8080,tcp:22", "Name": "one"},
			func(in *types.Instance) {
				in.IamInstanceProfile = &types.IamInstanceProfile{Arn: aws.String("arn:aws:iam::1:instance-profile/web")}
			}),
		inst("i-3", map[string]string{"mesh-service": "web", "mesh-exclude": "false", "mesh-ports": "9000"},
			func(in *types.Instance) { in.State.Name = types.InstanceStateNameStopping }),
		inst("i-4", map[string]string{"mesh-service": "web", "mesh-ports": "http:8080"},
			func(in *types.Instance) { in.PrivateIpAddress = nil }),
		inst("i-5", map[string]string{"mesh-service": " , "}),
		inst("i-6", map[string]string{"mesh-service": "web"}),
		inst("i-7", map[string]string{"mesh-service": "web", "istio.io/autoregistrationgroup": "g"}),
	}, nil)
	want := []model.Group{{Scope: "web", Services: []model.Service{{
		Name: "web", Host: "web.us-east-1.ec2",
		Ports: []model.Port{{Number: 22, Protocol: model.ProtocolTCP}, {Number: 8080, Protocol: model.ProtocolHTTP}},
		Instances: []model.Instance{
			{ID: "i-1", Address: "10.0.0.1", Labels: model.LabelsFromMap(map[string]string{"mesh-service": "web,Bad_Name", "mesh-ports": "http:8080,tcp:22", "Name": "one"}),
				Locality: "us-east-1/us-east-1b", Network: "vpc-1", Identity: "arn:aws:iam::1:instance-profile/web"},
			// i-2 declares 8080 as grpc: i-1, the lower ID, wins; i-2 stays.
			{ID: "i-2", Address: "10.0.0.1", Labels: model.LabelsFromMap(map[string]string{"mesh-service": "web", "mesh-ports": "grpc:8080"}),
				Locality: "us-east-1/us-east-1b", Network: "vpc-1"},
		},
	}}}}
	if !reflect.DeepEqual(res.Groups, want) {
		t.Fatalf("groups:%s\nwant:%s", dump(res.Groups), dump(want))
	}
	wantSkipped := map[string]int{cloudsource.SkipInvalidService: 1, cloudsource.SkipPortConflict: 1, cloudsource.SkipNotRunning: 1, cloudsource.SkipNoAddress: 1,
		cloudsource.SkipNoService: 1, cloudsource.SkipNoPorts: 1, cloudsource.SkipAutoRegistered: 1}
	if !reflect.DeepEqual(res.Skipped, wantSkipped) || res.Seen != 7 {
		t.Fatalf("skipped %v seen %d", res.Skipped, res.Seen)
	}
	for _, key := range []string{"i-1", "i-2/web", "i-4", "i-5", "i-6"} {
		if _, ok := res.Problems[key]; !ok {
			t.Errorf("no problem logged for %s: %v", key, res.Problems)
		}
	}
	if p := res.Problems["i-2/web"]; !strings.Contains(p.Detail, "port 8080 is HTTP") {
		t.Errorf("port conflict detail: %q", p.Detail)
	}
}

func TestMapAddressTypes(t *testing.T) {
	in := inst("i-1", map[string]string{"mesh-service": "web", "mesh-ports": "80"}, func(in *types.Instance) {
		in.PublicIpAddress = aws.String("203.0.113.7")
		in.NetworkInterfaces = []types.InstanceNetworkInterface{
			{Attachment: &types.InstanceNetworkInterfaceAttachment{DeviceIndex: aws.Int32(1)},
				Ipv6Addresses: []types.InstanceIpv6Address{{Ipv6Address: aws.String("2001:db8::99")}}},
			{Attachment: &types.InstanceNetworkInterfaceAttachment{DeviceIndex: aws.Int32(0)},
				Ipv6Addresses: []types.InstanceIpv6Address{
					{Ipv6Address: aws.String("2001:db8::1")},
					{Ipv6Address: aws.String("2001:DB8::2"), IsPrimaryIpv6: aws.Bool(true)},
				}},
		}
	})
	for typ, want := range map[string]string{cloudsource.AddressPrivate: "10.0.0.1", cloudsource.AddressPublic: "203.0.113.7", cloudsource.AddressIPv6: "2001:db8::2"} {
		m := newTestMapper(t, func(c *Config) { c.AddressType = typ })
		if got := m.address(&in); got != want {
			t.Errorf("%s: %q, want %q", typ, got, want)
		}
	}
	in.Ipv6Address = aws.String("2001:db8::3")
	if got := newTestMapper(t, func(c *Config) { c.AddressType = cloudsource.AddressIPv6 }).address(&in); got != "2001:db8::3" {
		t.Errorf("instance Ipv6Address: %q", got)
	}
	in.PublicIpAddress = nil
	res := newTestMapper(t, func(c *Config) { c.AddressType = cloudsource.AddressPublic }).mapInstances([]types.Instance{in}, nil)
	if len(res.Groups) != 0 || res.Skipped[cloudsource.SkipNoAddress] != 1 {
		t.Errorf("no public address: %v %v", dump(res.Groups), res.Skipped)
	}
}

func TestMapNetworkOverrideAndNoPlacement(t *testing.T) {
	m := newTestMapper(t, func(c *Config) { c.Network = "mesh-net"; c.Ports = []Port{{Number: 80}} })
	res := m.mapInstances([]types.Instance{inst("i-1", map[string]string{"mesh-service": "web"},
		func(in *types.Instance) { in.Placement = nil })}, nil)
	got := res.Groups[0].Services[0]
	if got.Instances[0].Network != "mesh-net" || got.Instances[0].Locality != "us-east-1" ||
		!reflect.DeepEqual(got.Ports, []model.Port{{Number: 80, Protocol: model.ProtocolTCP}}) {
		t.Fatalf("%+v", got)
	}
}
