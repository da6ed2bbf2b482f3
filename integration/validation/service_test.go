package validation_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"

	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/model"
)

// registryService builds one host's registry data from the generator's
// pools, as one to three sources give it (a later source may take the
// first one's ports or bring its own), and options a configuration could
// hold. It feeds convert.ServiceAt, not the validators: what is checked is
// what the conversion makes of any registry data.
func (g gen) registryService() (host string, allocated []string, contribs []convert.Contribution, opts convert.Options) {
	// Steered like FuzzValidationAgrees' generator: mostly well-formed,
	// with one of the pools' oddities now and then, so that most walks
	// serve something whose validity is in question.
	host = g.str(hostPool...)
	if g.n(4) != 0 {
		host = []string{"web.service.consul", "db.example.com", "*.example.com"}[g.n(3)]
	}
	port := func() model.Port {
		p := model.Port{Number: portNumbers[g.n(len(portNumbers))], Protocol: model.Protocol(g.str(protocolPool...))}
		if g.n(4) != 0 {
			p.Number, p.Protocol = []uint32{80, 443, 8080, 9090}[g.n(4)], []model.Protocol{"HTTP", "GRPC", "TCP", "TLS", ""}[g.n(5)]
		}
		return p
	}
	var ports []model.Port
	for range 1 + g.n(3) {
		ports = append(ports, port())
	}
	for i := range 1 + g.n(3) {
		s := model.Service{Name: g.str(namePool...), Host: host, Ports: ports,
			Labels: model.LabelsFromMap(g.strMap(labelKeys, labelValues, 3)), Annotations: model.LabelsFromMap(g.strMap(annKeys, annVals, 2))}
		if i > 0 && g.oneIn(3) {
			s.Ports = []model.Port{port()}
		}
		if g.oneIn(4) {
			s.Addresses = []string{g.str(addressPool...)}
		}
		for range g.n(4) {
			inst := model.Instance{
				ID: g.str("i1", "i2", "node/web", ""), Address: g.str(endpointAddrs...),
				Labels: model.LabelsFromMap(g.strMap(labelKeys, labelValues, 3)), Annotations: model.LabelsFromMap(g.strMap(annKeys, annVals, 2)),
				Locality: g.str(localPool...), Network: g.str(netPool...), Weight: uint32(g.n(3)),
				Health: model.Health(g.n(4)), Identity: g.str("", "arn:aws:iam::1:role/x"), ServiceAccount: g.str(saPool...),
			}
			if g.bool() {
				inst.Ports = model.TargetPortsFromMap(map[uint32]uint32{ports[0].Number: portNumbers[g.n(len(portNumbers))]})
			}
			s.Instances = append(s.Instances, inst)
		}
		contribs = append(contribs, convert.Contribution{Source: fmt.Sprintf("dc%d", i+1), Service: s})
	}
	if g.oneIn(3) {
		allocated = []string{[]string{"10.200.0.9", "248.0.0.7", "fd00:200::9"}[g.n(3)]}
	}
	pick := func(pool ...string) string { return pool[g.n(len(pool))] } // options are valid: no random strings
	opts = convert.Options{
		Namespace: pick("", "istio-system", "registry"),
		Location:  pick("", "MESH_INTERNAL", "MESH_EXTERNAL"),
		ExportTo:  [][]string{nil, {"*"}, {"."}, {"~"}, {".", "ns1"}}[g.n(5)],
		Labels: []convert.LabelOptions{{}, {Allow: []string{"app*", "version"}}, {Prefix: "consul.example.com/"},
			{Allow: []string{"*"}, Prefix: "x/"}}[g.n(4)],
		Addresses: []convert.AddressOptions{{}, {Allocate: []string{"none"}}, {Key: "app"},
			{Allocate: []string{"10.200.0.0/16", "fd00:200::/64"}, Key: "version"}}[g.n(4)],
		SetServiceAccount: g.bool(),
	}
	// Both modes, named: the default would leave the other one untested.
	opts.Mode = convert.ModeWorkloadEntry
	if g.bool() {
		opts.Mode = convert.ModeInline
	}
	opts.SetDefaults()
	if err := opts.Validate(); err != nil {
		panic(fmt.Sprintf("the generator made invalid options: %v", err))
	}
	return host, allocated, contribs, opts
}

// checkServiceOutputs converts one generated host and requires Istio's own
// validation (the function istiod's config store runs on every resource a
// config source sends) to accept everything convert serves: a resource it
// would reject is one istiod drops, with nothing said.
func checkServiceOutputs(t *testing.T, c chooser, describe func() string) int {
	t.Helper()
	host, allocated, contribs, opts := gen{c}.registryService()
	res, _ := convert.ServiceAt(host, allocated, contribs, opts)
	what := describe()
	for _, r := range res {
		meta := metaOf(r)
		if err := istioValidate(meta, r.Spec); err != nil {
			if k := knownDisagreement(meta, r.Spec); k != "" {
				t.Logf("%s: served %s %s that Istio rejects: known disagreement %s", what, r.Kind, r.Key(), k)
				continue
			}
			t.Errorf("%s: convert served %s %s that Istio rejects: %v\n%s", what, r.Kind, r.Key(), err, prototext.Format(r.Spec))
		}
	}
	return len(res)
}

// FuzzServiceOutputsPassIstio: whatever registry data and options come in
// (from the generator's pools of hosts, ports, protocols, addresses,
// labels, localities, networks and weights), every resource
// convert.ServiceAt serves passes Istio's own validation.
func FuzzServiceOutputsPassIstio(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 1, 0, 2, 1, 1, 3, 0, 1, 2, 2, 1, 0, 1, 1, 1, 2, 0, 3})
	r := rand.New(rand.NewPCG(29, 6))
	for range 32 {
		c := &recordingChooser{r: r}
		gen{c}.registryService()
		f.Add(c.out)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkServiceOutputs(t, &bytesChooser{b: data}, func() string { return "fuzz" })
	})
}

// TestRandomServicesPassIstio runs generator walks in a normal test run (no
// -fuzz), so that common shapes are checked in CI; it also makes sure the
// walks serve something, or the check would pass on nothing.
func TestRandomServicesPassIstio(t *testing.T) {
	n := 5000
	if testing.Short() {
		n = 500
	}
	r := rand.New(rand.NewPCG(7, 29))
	served := 0
	for range n {
		c := &recordingChooser{r: r}
		served += checkServiceOutputs(t, c, func() string { return fmt.Sprintf("fuzz input %q", c.out) })
	}
	t.Logf("%d walks served %d resources", n, served)
	if served < n/2 {
		t.Errorf("%d walks served only %d resources: the generator makes too little that convert serves", n, served)
	}
}
