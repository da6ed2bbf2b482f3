package convert

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/convert/validation"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the current output")

// testOpts are the default options in workloadentry mode, where every
// instance is a resource of its own (the golden files show each one); cases
// of the default mode, inline, set it with mut.
func testOpts(mut ...func(*Options)) Options {
	o := Options{Mode: ModeWorkloadEntry}
	o.SetDefaults()
	for _, m := range mut {
		m(&o)
	}
	return o
}

func web(instances ...model.Instance) model.Service {
	return model.Service{
		Name: "web", Host: "web.service.consul",
		Ports:     []model.Port{{Number: 9090, Protocol: model.ProtocolGRPC}, {Number: 8080, Protocol: model.ProtocolHTTP}},
		Labels:    model.LabelsFromMap(map[string]string{"team": "frontend"}),
		Instances: instances,
	}
}

func inst(id, addr string) model.Instance {
	return model.Instance{ID: id, Address: addr, Labels: model.LabelsFromMap(map[string]string{"version": "v1"}), Health: model.HealthPassing}
}

// GoldenCases are the conversion corpus; the integration module replays the
// resources they produce through Istio's own validation.
func GoldenCases() []struct {
	Name     string
	Host     string
	Contribs []Contribution
	Opts     Options
} {
	withPort := inst("node2/web", "10.0.0.2")
	withPort.Ports = model.TargetPortsFromMap(map[uint32]uint32{8080: 18080})
	located := inst("node3/web", "10.0.0.3")
	located.Locality, located.Network, located.Weight = "us-east-1/us-east-1a", "vpc-1", 7
	located.Identity, located.ServiceAccount = "arn:aws:iam::1:role/web", "web-sa"
	critical := inst("node4/web", "10.0.0.4")
	critical.Health = model.HealthCritical
	hostile := model.Service{
		Name: "Billing_API", Host: "billing.service.consul",
		Ports: []model.Port{
			{Number: 8080, Protocol: model.ProtocolHTTP}, {Number: 8080, Protocol: model.ProtocolTCP},
			{Number: 0, Protocol: model.ProtocolTCP}, {Number: 70000, Protocol: model.ProtocolHTTP},
		},
		Labels: model.LabelsFromMap(map[string]string{"": "x", "Env": "prod!", "app.example.com/tier": "gold", "a/b/c": "d"}),
		Instances: []model.Instance{
			{ID: "Node_1/Billing API", Address: "10.1.0.1", Labels: model.LabelsFromMap(map[string]string{"zone": strings.Repeat("z", 80)})},
			{ID: "Node_1/Billing API", Address: "10.1.0.2"},
			{ID: "node-2/billing", Address: "2001:db8::1"},
		},
	}
	return []struct {
		Name     string
		Host     string
		Contribs []Contribution
		Opts     Options
	}{
		{"workloadentry", "web.service.consul", []Contribution{{"dc1", web(inst("node1/web", "10.0.0.1"), withPort, located, critical)}}, testOpts()},
		{"inline", "web.service.consul", []Contribution{{"dc1", web(inst("node1/web", "10.0.0.1"), withPort, located, critical)}}, testOpts(func(o *Options) { o.Mode = ModeInline })},
		{"service-account-opt-in", "web.service.consul", []Contribution{{"dc1", web(located)}}, testOpts(func(o *Options) { o.SetServiceAccount = true })},
		{"dns-hostname-endpoint", "db.service.consul", []Contribution{{"dc1", model.Service{
			Name: "db", Host: "db.service.consul", Ports: []model.Port{{Number: 5432, Protocol: model.ProtocolTCP}},
			Instances: []model.Instance{{ID: "n/db", Address: "db-1.internal.example.com"}},
		}}}, testOpts()},
		{"no-instances", "web.service.consul", []Contribution{{"dc1", web(critical)}}, testOpts()},
		{"merged-sources", "web.service.consul", []Contribution{
			{"dc1", web(inst("node1/web", "10.0.0.1"))},
			{"dc2", web(inst("node1/web", "10.8.0.1"))},
		}, testOpts()},
		{"port-conflict-first-source-wins", "web.service.consul", []Contribution{
			{"dc1", web(inst("node1/web", "10.0.0.1"))},
			{"dc2", model.Service{Host: "web.service.consul", Ports: []model.Port{{Number: 8080, Protocol: model.ProtocolTCP}},
				Instances: []model.Instance{inst("node9/web", "10.9.0.1")}}},
		}, testOpts()},
		{"hostile", "billing.service.consul", []Contribution{{"dc1", hostile}}, testOpts(func(o *Options) { o.ExportTo = []string{"*"} })},
		{"invalid-host-rejected", "*", []Contribution{{"dc1", model.Service{Host: "*", Ports: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}},
			Instances: []model.Instance{inst("a", "10.0.0.1")}}}}, testOpts()},
		{"traffic", "web.service.consul", []Contribution{{"dc1", withTraffic(web(inst("node1/web", "10.0.0.1")), fullTraffic())}}, testOpts()},
		{"traffic-inline-exported", "web.service.consul", []Contribution{{"dc1", withTraffic(web(inst("node1/web", "10.0.0.1")), fullTraffic())}},
			testOpts(func(o *Options) {
				o.Mode = ModeInline
				o.ExportTo = []string{".", "mesh-clients"}
				o.Labels.Prefix = "consul.example.com/"
			})},
		{"traffic-hostile", "web.service.consul", []Contribution{{"dc1", withTraffic(web(inst("node1/web", "10.0.0.1")), hostileTraffic())}}, testOpts()},
	}
}

func TestGolden(t *testing.T) {
	for _, tc := range GoldenCases() {
		t.Run(tc.Name, func(t *testing.T) {
			res, rejected := Service(tc.Host, tc.Contribs, tc.Opts)
			got, err := YAML(res, RenderOptions{WithVersion: true})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			buf.Write(got)
			for _, r := range rejected {
				fmt.Fprintf(&buf, "# rejected [%s] %s\n", r.Code, r)
			}
			path := filepath.Join("testdata", tc.Name+".golden.yaml")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./convert -update to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("output differs from %s (rerun with -update if intended):\n%s", path, buf.String())
			}
			// Everything served must pass istiod's validation.
			for _, r := range res {
				var err error
				switch spec := r.Spec.(type) {
				case *networking.ServiceEntry:
					err = validation.ServiceEntry(metaOf(r), spec)
				case *networking.WorkloadEntry:
					err = validation.WorkloadEntry(metaOf(r), spec)
				case *networking.DestinationRule:
					err = validation.DestinationRule(metaOf(r), spec)
				case *networking.VirtualService:
					err = validation.VirtualService(metaOf(r), spec)
				}
				if err != nil {
					t.Errorf("%s %s fails validation: %v", r.Kind, r.Key(), err)
				}
			}
		})
	}
}

func TestRejectionsNameTheItem(t *testing.T) {
	var hostile []Contribution
	for _, tc := range GoldenCases() {
		if tc.Name == "hostile" {
			hostile = tc.Contribs
		}
	}
	res, rejected := Service("billing.service.consul", hostile, testOpts())
	codes := map[string]int{}
	for _, r := range rejected {
		codes[r.Code]++
		if r.Source != "dc1" || r.Name == "" || r.Reason == "" {
			t.Errorf("rejection without source, item or reason: %+v", r)
		}
	}
	want := map[string]int{CodePort: 3, CodeLabel: 1, CodeDuplicate: 1}
	for code, n := range want {
		if codes[code] != n {
			t.Errorf("rejections with code %s = %d, want %d (all: %v)", code, codes[code], n, rejected)
		}
	}
	// The bad items are dropped; the service and its two good instances stay.
	var kinds []served.Kind
	for _, r := range res {
		kinds = append(kinds, r.Kind)
	}
	if want := []served.Kind{served.KindServiceEntry, served.KindWorkloadEntry, served.KindWorkloadEntry}; !slices.Equal(kinds, want) {
		t.Errorf("served kinds %v, want %v", kinds, want)
	}
}

func TestDeterministic(t *testing.T) {
	for _, mode := range []Mode{ModeWorkloadEntry, ModeInline} {
		t.Run(string(mode), func(t *testing.T) {
			opts := testOpts(func(o *Options) { o.Mode = mode })
			var instances []model.Instance
			for i := range 20 {
				in := inst(fmt.Sprintf("n%d/web", i), fmt.Sprintf("10.0.%d.%d", i/10, i))
				in.Labels = model.LabelsFromMap(map[string]string{"a": "1", "b": "2", "c": fmt.Sprint(i), "d": "4"})
				instances = append(instances, in)
			}
			first, _ := Service("web.service.consul", []Contribution{{"dc1", web(instances...)}}, opts)
			want, _ := YAML(first, RenderOptions{WithVersion: true})
			for range 10 {
				shuffled := slices.Clone(instances)
				rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				res, _ := Service("web.service.consul", []Contribution{{"dc1", web(shuffled...)}}, opts)
				// WorkloadEntries come out in instance order; compare as sets.
				slices.SortFunc(res, func(a, b *served.Resource) int { return strings.Compare(a.Key(), b.Key()) })
				sorted := slices.Clone(first)
				slices.SortFunc(sorted, func(a, b *served.Resource) int { return strings.Compare(a.Key(), b.Key()) })
				got, _ := YAML(res, RenderOptions{WithVersion: true})
				w, _ := YAML(sorted, RenderOptions{WithVersion: true})
				if !bytes.Equal(got, w) {
					t.Fatalf("output depends on instance order:\n%s\nvs\n%s", got, want)
				}
			}
		})
	}
}

func TestVersionFollowsContent(t *testing.T) {
	base := func() []*served.Resource {
		res, _ := Service("web.service.consul", []Contribution{{"dc1", web(inst("n1/web", "10.0.0.1"))}}, testOpts())
		return res
	}
	a, b := base(), base()
	for i := range a {
		if a[i].Version != b[i].Version || a[i].Version == "" {
			t.Fatalf("same input, versions %q and %q", a[i].Version, b[i].Version)
		}
	}
	changed := []struct {
		name string
		mut  func(*model.Service)
		kind served.Kind
	}{
		{"instance label", func(s *model.Service) { s.Instances[0].Labels = s.Instances[0].Labels.With("version", "v2") }, served.KindWorkloadEntry},
		{"instance address", func(s *model.Service) { s.Instances[0].Address = "10.0.0.9" }, served.KindWorkloadEntry},
		{"service label", func(s *model.Service) { s.Labels = s.Labels.With("team", "other") }, served.KindServiceEntry},
		{"service port", func(s *model.Service) { s.Ports[0].Number = 9091 }, served.KindServiceEntry},
	}
	for _, c := range changed {
		t.Run(c.name, func(t *testing.T) {
			svc := web(inst("n1/web", "10.0.0.1"))
			c.mut(&svc)
			res, _ := Service("web.service.consul", []Contribution{{"dc1", svc}}, testOpts())
			for i, r := range res {
				moved := r.Version != a[i].Version
				if (r.Kind == c.kind) != moved {
					t.Errorf("%s %s: version moved=%v, want moved only for %s", r.Kind, r.Name, moved, c.kind)
				}
			}
		})
	}
	// An instance change must leave the ServiceEntry untouched: that is what
	// keeps it on istiod's cheap endpoint-only path.
}

// TestServedRoundTrip: what convert builds is served and read back as istiod
// reads it, unchanged.
func TestServedRoundTrip(t *testing.T) {
	res, _ := Service("web.service.consul", []Contribution{{"dc1", web(inst("n1/web", "10.0.0.1"))}}, testOpts())
	for _, r := range res {
		e, err := r.Entry()
		if err != nil {
			t.Fatal(err)
		}
		a := e.Resource
		if a.TypeUrl != served.MCPResourceTypeURL {
			t.Errorf("outer type URL %q, want %q", a.TypeUrl, served.MCPResourceTypeURL)
		}
		back, err := served.Decode(a)
		if err != nil {
			t.Fatal(err)
		}
		if back.Key() != r.Key() || back.Version != r.Version || back.Kind != r.Kind {
			t.Errorf("round trip: got %s %s@%s, want %s %s@%s", back.Kind, back.Key(), back.Version, r.Kind, r.Key(), r.Version)
		}
		if !proto.Equal(back.Spec, r.Spec) {
			t.Errorf("round trip changed the spec of %s", r.Key())
		}
		if !strings.Contains(r.Key(), "/") || strings.Count(r.Key(), "/") != 1 {
			t.Errorf("MCP name %q is not namespace/name", r.Key())
		}
		if got := back.CreateTime(); !got.Equal(DefaultCreateTime) {
			t.Errorf("create time %v, want the fixed %v", got, DefaultCreateTime)
		}
	}
}

func TestServiceAccountOnlyWhenConfigured(t *testing.T) {
	in := inst("n1/web", "10.0.0.1")
	in.ServiceAccount, in.Identity = "web-sa", "spiffe://example/web"
	for _, set := range []bool{false, true} {
		res, _ := Service("web.service.consul", []Contribution{{"dc1", web(in)}}, testOpts(func(o *Options) { o.SetServiceAccount = set }))
		we := res[1].Spec.(*networking.WorkloadEntry)
		if got := we.ServiceAccount != ""; got != set {
			t.Errorf("SetServiceAccount=%v: serviceAccount %q", set, we.ServiceAccount)
		}
		if res[1].Annotations[AnnotationIdent] != "spiffe://example/web" {
			t.Errorf("identity annotation missing: %v", res[1].Annotations)
		}
	}
}

// TestInlineEndpointRejectedAlone: an instance that breaks the ServiceEntry's
// rules for endpoints is left out on its own; before, it passed the
// standalone WorkloadEntry rules and then failed the whole ServiceEntry.
func TestInlineEndpointRejectedAlone(t *testing.T) {
	tests := []struct {
		name string
		bad  model.Instance
		want networking.ServiceEntry_Resolution
	}{
		// A Unix socket is no IP, so the service resolves by DNS, where
		// sockets are not accepted.
		{"unix socket under DNS", inst("sock", "unix:///var/run/web.sock"), networking.ServiceEntry_DNS},
		{"invalid FQDN under DNS", inst("bad", "-bad-.example.com"), networking.ServiceEntry_DNS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := web(inst("a", "10.0.0.1"), tc.bad, inst("c", "10.0.0.3"))
			res, rejected := Service(svc.Host, []Contribution{{Source: "dc1", Service: svc}}, testOpts(func(o *Options) { o.Mode = ModeInline }))
			if len(res) != 1 {
				t.Fatalf("served %d resources, want the ServiceEntry (rejections: %v)", len(res), rejected)
			}
			se := res[0].Spec.(*networking.ServiceEntry)
			var addrs []string
			for _, ep := range se.Endpoints {
				addrs = append(addrs, ep.Address)
			}
			if !slices.Equal(addrs, []string{"10.0.0.1", "10.0.0.3"}) || se.Resolution != tc.want {
				t.Errorf("endpoints %v resolution %v, want the two IPs and %v", addrs, se.Resolution, tc.want)
			}
			if len(rejected) != 1 || rejected[0].Name != tc.bad.ID || rejected[0].Code != CodeInvalid {
				t.Errorf("rejections %v, want one %s for %q", rejected, CodeInvalid, tc.bad.ID)
			}
			if err := validation.ServiceEntry(metaOf(res[0]), se); err != nil {
				t.Errorf("served ServiceEntry fails full validation: %v", err)
			}
		})
	}
}

// metaOf is the metadata istiod validates alongside r's spec.
func metaOf(r *served.Resource) validation.Meta {
	return validation.Meta{Name: r.Name, Namespace: r.Namespace, Labels: r.Labels, Annotations: r.Annotations}
}

// TestDuplicateInstancesAtEverySize: a repeated instance id is rejected
// once and the first instance served, whether the ids are compared pairwise
// (a few instances) or through a map (many).
func TestDuplicateInstancesAtEverySize(t *testing.T) {
	for _, n := range []int{2, 3, linearUpTo, linearUpTo + 1, 40} {
		var insts []model.Instance
		for i := range n {
			insts = append(insts, model.Instance{ID: fmt.Sprintf("i%d", i), Address: fmt.Sprintf("10.0.0.%d", i+1), Health: model.HealthPassing})
		}
		// The last instance repeats the first one's id, at another address.
		insts[n-1].ID = insts[0].ID
		svc := model.Service{Name: "web", Host: "web.service.consul", Ports: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}}, Instances: insts}
		res, rejected := Service(svc.Host, []Contribution{{Source: "dc1", Service: svc}}, testOpts())
		if len(rejected) != 1 || rejected[0].Code != CodeDuplicate || rejected[0].Name != "i0" {
			t.Errorf("%d instances: rejections %v, want one duplicate of i0", n, rejected)
		}
		if got := len(res) - 1; got != n-1 {
			t.Errorf("%d instances: %d WorkloadEntries served, want %d", n, got, n-1)
		}
	}
}
