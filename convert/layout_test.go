package convert

import (
	"strings"
	"testing"

	"github.com/registry-adapter/registry-adapter/served"
)

// TestPerServiceLayout: with namespaceLayout perService each service's
// ServiceEntry and WorkloadEntries share a namespace of their own, stable
// for a host and distinct between hosts; the shared layout keeps one.
func TestPerServiceLayout(t *testing.T) {
	per := testOpts(func(o *Options) { o.NamespaceLayout = LayoutPerService })
	if err := per.Validate(); err != nil {
		t.Fatal(err)
	}
	namespaces := map[string]string{}
	for _, host := range []string{"web.service.consul", "api.service.consul"} {
		res, rejected := Service(host, []Contribution{{"dc1", web(inst("n1/web", "10.0.0.1"), inst("n2/web", "10.0.0.2"))}}, per)
		if len(rejected) > 0 || len(res) != 3 {
			t.Fatalf("%s: %d resources, rejected %v", host, len(res), rejected)
		}
		ns := per.NamespaceFor(host)
		if !strings.HasPrefix(ns, DefaultNamespace+"-") || len(ns) != len(DefaultNamespace)+perServiceSuffixLen || ns != per.NamespaceFor(host) {
			t.Errorf("%s: namespace %q", host, ns)
		}
		for _, r := range res {
			if r.Namespace != ns {
				t.Errorf("%s: %s %s in namespace %q, want %q", host, r.Kind, r.Name, r.Namespace, ns)
			}
		}
		if res[0].Kind != served.KindServiceEntry {
			t.Errorf("%s: first resource %s", host, res[0].Kind)
		}
		namespaces[host] = ns
	}
	if namespaces["web.service.consul"] == namespaces["api.service.consul"] {
		t.Errorf("two services share namespace %q", namespaces["web.service.consul"])
	}
	shared := testOpts()
	if got := shared.NamespaceFor("web.service.consul"); got != DefaultNamespace {
		t.Errorf("shared layout namespace %q", got)
	}
}

func TestLayoutValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*Options)
		want string
	}{
		{"unknown", func(o *Options) { o.NamespaceLayout = "perSource" }, `output.namespaceLayout "perSource": must be "shared" or "perService"`},
		{"inline", func(o *Options) { o.NamespaceLayout, o.Mode = LayoutPerService, ModeInline }, "only for mode \"workloadentry\""},
		{"long namespace", func(o *Options) {
			o.NamespaceLayout, o.Namespace = LayoutPerService, strings.Repeat("n", 53)
		}, "leaves no room"},
		{"exportTo dot", func(o *Options) { o.NamespaceLayout, o.ExportTo = LayoutPerService, []string{"."} }, `exportTo "."`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOpts(tc.mut)
			if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
}
