package convert

import (
	"maps"
	"slices"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

// hostileLabels are what anyone who can register a Consul service or tag a
// cloud instance could try to set: keys that make a Kubernetes Service in
// the output namespace select the workload (app, istio), that change how
// sidecars talk to it, or that Kubernetes and Istio interpret otherwise.
var hostileLabels = map[string]string{
	"app":                             "victim",
	"version":                         "v1",
	"istio":                           "ingressgateway",
	"security.istio.io/tlsMode":       "disabled",
	"istio.io/rev":                    "canary",
	"service.istio.io/canonical-name": "istiod",
	"networking.istio.io/gatewayPort": "1",
	"topology.istio.io/network":       "other",
	"kubernetes.io/hostname":          "node1",
	"topology.kubernetes.io/zone":     "z",
	"app.kubernetes.io/name":          "victim",
	"k8s.io/x":                        "y",
	"node.k8s.io/x":                   "y",
	"registry-adapter.io/service":     "other.service.consul",
	"Istio.IO/rev":                    "canary", // sanitized to a reserved key
	"team":                            "payments",
}

func labelsOf(t *testing.T, res []*served.Resource, kind served.Kind) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, r := range res {
		if r.Kind != kind {
			continue
		}
		if we, ok := r.Spec.(*networking.ServiceEntry); ok && len(we.Endpoints) > 0 {
			for _, ep := range we.Endpoints {
				out = append(out, ep.Labels)
			}
			continue
		}
		out = append(out, r.Labels)
	}
	return out
}

func TestRegistryLabelsCannotSteerIstio(t *testing.T) {
	own := []string{served.LabelManagedBy, LabelService}
	cases := []struct {
		name   string
		labels LabelOptions
		mode   Mode
		want   []string // label keys on each WorkloadEntry (inline: endpoint), besides the adapter's own
	}{
		{name: "defaults", want: []string{"app", "team", "version"}},
		{name: "defaults inline", mode: ModeInline, want: []string{"app", "team", "version"}},
		{name: "allow-list", labels: LabelOptions{Allow: []string{"version", "te*"}}, want: []string{"team", "version"}},
		{name: "prefix", labels: LabelOptions{Prefix: "consul.example.com/"},
			want: []string{"consul.example.com/app", "consul.example.com/team", "consul.example.com/version"}},
		{name: "allow-list and prefix", labels: LabelOptions{Allow: []string{"version"}, Prefix: "consul.example.com/"},
			want: []string{"consul.example.com/version"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOpts(func(o *Options) {
				o.Labels = tc.labels
				if tc.mode != "" {
					o.Mode = tc.mode
				}
			})
			if err := opts.Validate(); err != nil {
				t.Fatal(err)
			}
			svc := model.Service{
				Name: "evil", Host: "evil.service.consul",
				Ports:     []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}},
				Labels:    model.LabelsFromMap(maps.Clone(hostileLabels)),
				Instances: []model.Instance{{ID: "i1", Address: "10.0.0.1", Labels: model.LabelsFromMap(maps.Clone(hostileLabels))}},
			}
			res, rejected := Service(svc.Host, []Contribution{{Source: "dc1", Service: svc}}, opts)
			kind := served.KindWorkloadEntry
			if opts.Mode == ModeInline {
				kind = served.KindServiceEntry
			}
			got := labelsOf(t, res, kind)
			if len(got) != 1 {
				t.Fatalf("want one workload, got %d", len(got))
			}
			keys := slices.Sorted(maps.Keys(got[0]))
			if opts.Mode != ModeInline {
				keys = slices.DeleteFunc(keys, func(k string) bool { return slices.Contains(own, k) })
			}
			if !slices.Equal(keys, tc.want) {
				t.Errorf("workload labels %q, want %q", keys, tc.want)
			}
			// The ServiceEntry's own labels follow the same policy.
			seKeys := slices.DeleteFunc(slices.Sorted(maps.Keys(res[0].Labels)), func(k string) bool { return slices.Contains(own, k) })
			if !slices.Equal(seKeys, tc.want) {
				t.Errorf("ServiceEntry labels %q, want %q", seKeys, tc.want)
			}
			if opts.Mode != ModeInline && got[0][LabelService] != LabelValue(ResourceName(svc.Host)) {
				t.Errorf("the registry overrode the selector label: %q", got[0][LabelService])
			}
			// Every reserved key is reported, with a reason that names it.
			var reported []string
			for _, r := range rejected {
				if r.Code != CodeReserved || !strings.Contains(r.Reason, "reserved") {
					t.Errorf("unexpected rejection %v", r)
				}
				reported = append(reported, r.Name+" "+strings.SplitN(r.Reason, `"`, 3)[1])
			}
			for k := range hostileLabels {
				if k == "app" || k == "version" || k == "team" {
					continue
				}
				for _, name := range []string{"evil.service.consul", "i1"} {
					if !slices.Contains(reported, name+" "+k) {
						t.Errorf("reserved key %q on %s dropped without a reason", k, name)
					}
				}
			}
		})
	}
}

func TestReservedAnnotationsDropped(t *testing.T) {
	svc := web(inst("n1", "10.0.0.1"))
	svc.Annotations = model.LabelsFromMap(map[string]string{"sidecar.istio.io/inject": "true", "kubernetes.io/description": "x", "keep": "me"})
	res, rejected := Service(svc.Host, []Contribution{{"dc1", svc}}, testOpts())
	if _, ok := res[0].Annotations["sidecar.istio.io/inject"]; ok || res[0].Annotations["keep"] != "me" {
		t.Errorf("annotations %v", res[0].Annotations)
	}
	if _, ok := res[0].Annotations["kubernetes.io/description"]; ok {
		t.Errorf("annotations %v", res[0].Annotations)
	}
	if len(rejected) != 2 {
		t.Errorf("rejections %v, want 2", rejected)
	}
}

func TestLabelOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		labels LabelOptions
		ok     bool
	}{
		{LabelOptions{}, true},
		{LabelOptions{Allow: []string{"app", "version", "team*", "*"}}, true},
		{LabelOptions{Prefix: "consul.example.com/"}, true},
		{LabelOptions{Prefix: "consul_"}, true},
		{LabelOptions{Allow: []string{"istio"}}, false},
		{LabelOptions{Allow: []string{"security.istio.io/tlsMode"}}, false},
		{LabelOptions{Allow: []string{"istio.io/*"}}, false},
		{LabelOptions{Allow: []string{"a*b"}}, false},
		{LabelOptions{Allow: []string{""}}, false},
		{LabelOptions{Prefix: "istio.io/"}, false},
		{LabelOptions{Prefix: "x.kubernetes.io/"}, false},
		{LabelOptions{Prefix: "Bad Prefix/"}, false},
	} {
		o := testOpts(func(o *Options) { o.Labels = c.labels })
		if err := o.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: err %v, want ok=%v", c.labels, err, c.ok)
		}
	}
}

// The default output namespace holds no Kubernetes Services, so no Service
// can select a registry's WorkloadEntries by whatever labels pass.
func TestDefaultNamespaceIsNotIstioSystem(t *testing.T) {
	o := testOpts()
	if o.Namespace != DefaultNamespace || o.Namespace == "istio-system" || o.Namespace == "default" {
		t.Errorf("default namespace %q", o.Namespace)
	}
	if err := o.Validate(); err != nil {
		t.Error(err)
	}
}

// Every source hands its labels over as the registry holds them (Consul's
// tags and meta included) and this is the one policy that makes them
// Kubernetes labels: a valid key or value is kept, a changed one carries a
// hash of the original, so two that clean up alike stay distinct.
func TestRegistryLabelForms(t *testing.T) {
	svc := model.Service{
		Name: "web", Host: "web.service.consul", Ports: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}},
		Instances: []model.Instance{{ID: "i1", Address: "10.0.0.1", Labels: model.LabelsFromMap(map[string]string{
			"version": "v1", "env": "prod!", "Team Name": "pay", "owner": "a b", "owner2": "a_b",
		})}},
	}
	res, _ := Service(svc.Host, []Contribution{{Source: "dc1", Service: svc}}, testOpts())
	got := labelsOf(t, res, served.KindWorkloadEntry)[0]
	for k, v := range map[string]string{
		"version": "v1", "env": "prod_5f4f341fd8", "Team_Name_6ed5a592c4": "pay", "owner": "a_b_c8687a08aa", "owner2": "a_b",
	} {
		if got[k] != v {
			t.Errorf("label %q = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
}
