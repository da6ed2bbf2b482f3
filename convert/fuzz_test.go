package convert

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	mcp "istio.io/api/mcp/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/registry-adapter/registry-adapter/convert/validation"
	"github.com/registry-adapter/registry-adapter/model"
	"github.com/registry-adapter/registry-adapter/served"
)

// fuzzInput is what FuzzService decodes its data into. The embedded Service
// is the first source's view of the host; older corpus entries hold only
// that, and still decode.
type fuzzInput struct {
	model.Service
	// More are further sources' views of the same host, in configuration
	// order. A view without Ports takes the first one's, so that sources
	// agree often; one with its own Ports may conflict.
	More []model.Service
	// Options, when given and valid, replace the ones derived from a hash
	// of the input (fuzzOptions). Mode always follows the inline argument.
	Options *Options
	// Allocated are the addresses package vip would give the host.
	Allocated []string
}

// fuzzSource names the i-th contribution. No name is another followed by
// "-": WorkloadEntry names are host-source-id, so sources "consul" and
// "consul-dc2" (both valid source names) would give instance "dc2-x" of the
// first and "x" of the second one name. That collision is known and not
// fixed here; the target checks names are unique for the sources it uses.
func fuzzSource(i int) string { return fmt.Sprintf("dc%d", i+1) }

// fuzzOptions derives valid options from h, so that every input, the older
// corpus included, runs under some mix of namespace, exportTo, location,
// label policy, address policy and service-account setting.
func fuzzOptions(h uint64, inline bool) Options {
	pick := func(n int) int { v := int(h % uint64(n)); h /= uint64(n); return v }
	var o Options
	o.Namespace = []string{"", "istio-system", "a", strings.Repeat("n", 63)}[pick(4)]
	o.ExportTo = [][]string{nil, {"*"}, {"."}, {"~"}, {"ns-a", "ns-b"}, {".", "ns-a"}}[pick(6)]
	o.Location = []string{"", "MESH_INTERNAL", "MESH_EXTERNAL"}[pick(3)]
	o.Labels = []LabelOptions{
		{},
		{Allow: []string{"version", "app*"}},
		{Prefix: "consul.example.com/"},
		{Allow: []string{"*"}, Prefix: "x/"},
		{Allow: []string{"zone", "Env"}, Prefix: "reg.example.com/"},
	}[pick(5)]
	o.Addresses = []AddressOptions{
		{},
		{Allocate: []string{"none"}},
		{Key: "mesh-vip"},
		{Allocate: []string{"10.200.0.0/16", "fd00:200::/64"}, Key: "vip"},
	}[pick(4)]
	o.SetServiceAccount = pick(2) == 1
	// Both modes, named: the default (inline) would leave workloadentry
	// mode unfuzzed.
	o.Mode = ModeWorkloadEntry
	if inline {
		o.Mode = ModeInline
	}
	o.SetDefaults()
	return o
}

// fuzzSeeds are whole inputs with several sources and options: the
// mutator works on bytes, so field names it is meant to vary must be there.
var fuzzSeeds = []string{
	`{"Ports":[{"Number":80,"Protocol":"HTTP"}],"Instances":[{"ID":"a","Address":"10.0.0.1"},{"ID":"a","Address":"10.0.0.2"},{"ID":"b","Address":"10.0.0.3","Health":3}],
	  "More":[{"Instances":[{"ID":"a","Address":"10.0.1.1","Labels":{"version":"v2","istio.io/rev":"x"}}]},
	          {"Ports":[{"Number":81}],"Instances":[{"ID":"c","Address":"10.0.2.1"}]}]}`,
	`{"Ports":[{"Number":8080,"Protocol":"HTTP"},{"Number":8080,"Protocol":"TCP"},{"Number":0}],"Labels":{"mesh-vip":"10.9.9.9","app":"web"},
	  "Instances":[{"ID":"x","Address":"db.example.com","Ports":{"8080":18080},"ServiceAccount":"sa","Labels":{"Env":"prod!","appx":"1"}}],
	  "More":[{"Ports":[{"Number":8080,"Protocol":"HTTP"}],"Instances":[{"ID":"x","Address":"10.1.1.1","Weight":3,"Locality":"r/z"}]}],
	  "Options":{"Namespace":"ns1","Location":"MESH_EXTERNAL","ExportTo":["*"],"SetServiceAccount":true,
	             "Labels":{"Allow":["app*","Env"],"Prefix":"consul.example.com/"},"Addresses":{"Allocate":["none"],"Key":"mesh-vip"}}}`,
	`{"Ports":[{"Number":443,"Protocol":"TLS"}],"Addresses":["192.0.2.1","nonsense"],"Annotations":{"istio.io/dry-run":"true","a.b/c":"d"},
	  "Instances":[{"ID":"i1","Address":"10.0.0.1","Labels":{"vip":"10-1-2-3"},"Annotations":{"x":"y"}},{"ID":"i2","Address":"10.0.0.2","Labels":{"vip":"10.1.2.4"}},
	               {"ID":"i3","Address":"unix:///tmp/s","Health":2},{"ID":"","Address":""}],
	  "Allocated":["10.200.0.9"],"Options":{"Addresses":{"Key":"vip"},"ExportTo":["~"]}}`,
	`{"Ports":[{"Number":53,"Protocol":"UDP"},{"Number":65535}],"Instances":[{"ID":"n/1","Address":"fe80::1%eth0"},{"ID":"n/2","Address":"2001:db8::2","Network":"net 1"}],
	  "More":[{"Ports":[],"Instances":[{"ID":"n/3","Address":"10.0.0.3"}]},{"Instances":[{"ID":"n/4","Address":"10.0.0.4","Health":1}]}]}`,
}

// FuzzService feeds arbitrary registry data through the conversion: one to
// several sources for a host, under random options. Whatever comes in,
// nothing panics; everything served passes istiod's validation, has a valid
// name, labels and annotations, and follows the options; every instance is
// served, rejected with a reason that names it, or left out for being
// critical; and the output is deterministic.
func FuzzService(f *testing.F) {
	for _, tc := range GoldenCases() {
		in := fuzzInput{Service: tc.Contribs[0].Service, Options: &tc.Opts}
		for _, c := range tc.Contribs[1:] {
			in.More = append(in.More, c.Service)
		}
		b, err := json.Marshal(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tc.Host, b, tc.Opts.Mode == ModeInline)
	}
	for i, s := range fuzzSeeds {
		f.Add("web.service.consul", []byte(s), i%2 == 1)
		f.Add("web.service.consul", []byte(s), i%2 == 0)
	}
	f.Add("ünïcode.example.com", []byte(`{"Ports":[{"Number":80,"Protocol":"HTTP"}],"Instances":[{"ID":"x","Address":"fe80::1%eth0"}]}`), false)
	f.Add("a..b", []byte(`{"Ports":[{"Number":65536}],"Labels":{"/":"/"},"Instances":[{"ID":"","Address":""}]}`), true)
	f.Fuzz(func(t *testing.T, host string, data []byte, inline bool) {
		var in fuzzInput
		if err := json.Unmarshal(data, &in); err != nil {
			return
		}
		in.Host = host
		h := fnv.New64a()
		h.Write([]byte(host))
		h.Write(data)
		opts := fuzzOptions(h.Sum64(), inline)
		if in.Options != nil {
			o := *in.Options
			o.Mode = opts.Mode
			o.SetDefaults()
			if o.Validate() == nil {
				opts = o
			}
		}
		if err := opts.Validate(); err != nil {
			t.Fatalf("fuzzOptions made invalid options: %v", err)
		}
		contribs := []Contribution{{Source: fuzzSource(0), Service: in.Service}}
		for i, s := range in.More {
			if s.Ports == nil {
				s.Ports = in.Ports
			}
			s.Host = host
			contribs = append(contribs, Contribution{Source: fuzzSource(i + 1), Service: s})
		}
		// The host's claims are IP addresses, canonical, once each; package
		// vip decides what is served, which is always IP addresses.
		claims, _ := Claims(host, contribs, opts)
		for i, c := range claims {
			if !c.IsValid() || c.Zone() != "" || c.Is4In6() || slices.Contains(claims[:i], c) {
				t.Errorf("claims %v: %s is not one canonical IP address", claims, c)
			}
		}
		var addrs []string
		for _, a := range in.Allocated {
			if ip, err := netip.ParseAddr(a); err == nil && ip.Zone() == "" && !slices.Contains(addrs, ip.Unmap().String()) {
				addrs = append(addrs, ip.Unmap().String())
			}
		}
		res, rejected := ServiceAt(host, addrs, contribs, opts)
		checkServed(t, host, addrs, contribs, opts, res, rejected)
		checkServedBytes(t, res)

		// The same registry data under another host, in the same namespace:
		// istiod matches every WorkloadEntry of a namespace against every
		// ServiceEntry's selector, so each must select exactly its own.
		other := "fuzz-other.example.com"
		if host == other {
			other = "fuzz-other-2.example.com"
		}
		otherContribs := slices.Clone(contribs)
		for i := range otherContribs {
			otherContribs[i].Service.Host = other
		}
		otherRes, _ := ServiceAt(other, nil, otherContribs, opts)
		checkSelectors(t, res, otherRes)

		// The pipeline's conversion, with maps another host's conversion
		// used and left full: the same resources, byte for byte.
		var scratch Scratch
		ServiceAtReusing(other, nil, otherContribs, opts, &scratch)
		ServiceAtReusing(stale.Host, nil, []Contribution{{Source: fuzzSource(0), Service: stale}}, opts, &scratch)
		reused, reusedRejected := ServiceAtReusing(host, addrs, contribs, opts, &scratch)
		if len(reused) != len(res) || !slices.Equal(reusedRejected, rejected) {
			t.Fatalf("with a scratch: %d resources and rejections %v, want %d and %v", len(reused), reusedRejected, len(res), rejected)
		}
		for i, r := range reused {
			got, err1 := r.Entry()
			want, err2 := res[i].Entry()
			if err1 != nil || err2 != nil || got.Version != want.Version || !bytes.Equal(got.Record(), want.Record()) {
				t.Errorf("with a scratch: %s %s@%s differs from %s@%s (%v, %v)", r.Kind, got.Name, got.Version, want.Name, want.Version, err1, err2)
			}
		}

		again, _ := ServiceAt(host, addrs, contribs, opts)
		a, _ := YAML(res, RenderOptions{WithVersion: true})
		b, _ := YAML(again, RenderOptions{WithVersion: true})
		if !bytes.Equal(a, b) {
			t.Error("conversion is not deterministic")
		}
	})
}

// stale is a service whose labels and annotations no fuzz input has: a
// conversion after it with the same Scratch must show none of them.
var stale = func() model.Service {
	labels := model.MakeLabels("stale-a", "1", "stale-b", "2", "stale-c", "3", "stale-d", "4")
	svc := model.Service{Name: "stale", Host: "stale.example.com", Ports: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}},
		Labels: labels, Annotations: labels}
	for i := range 12 {
		svc.Instances = append(svc.Instances, model.Instance{ID: fmt.Sprint(i), Address: fmt.Sprintf("10.9.9.%d", i+1),
			Labels: labels, Annotations: labels, Health: model.HealthPassing, Ports: model.TargetPortsFromMap(map[uint32]uint32{80: 8080}),
			ServiceAccount: "stale-sa", Identity: "stale", Network: "stale-net", Locality: "stale/zone", Weight: 9})
	}
	return svc
}()

// checkServedBytes: what is served of each resource (its entry's record) is
// byte for byte protobuf's own deterministic marshal of its spec, in the
// MCP envelope protobuf marshals too, as before package served wrote both by
// hand.
func checkServedBytes(t *testing.T, res []*served.Resource) {
	t.Helper()
	det := proto.MarshalOptions{Deterministic: true}
	for _, r := range res {
		body, err := det.Marshal(r.Spec)
		if err != nil {
			t.Fatalf("%s %s: %v", r.Kind, r.Key(), err)
		}
		env, err := det.Marshal(&mcp.Resource{
			Metadata: &mcp.Metadata{Name: r.Key(), CreateTime: timestamppb.New(r.CreateTime()), Version: r.Version,
				Labels: r.Labels, Annotations: r.Annotations},
			Body: &anypb.Any{TypeUrl: "type.googleapis.com/istio.networking.v1alpha3." + string(r.Kind), Value: body},
		})
		if err != nil {
			t.Fatalf("%s %s: %v", r.Kind, r.Key(), err)
		}
		want := served.EntryOf(r.Key(), r.Version, &anypb.Any{TypeUrl: served.MCPResourceTypeURL, Value: env})
		got, err := r.Entry()
		if err != nil {
			t.Fatalf("%s %s: %v", r.Kind, r.Key(), err)
		}
		if !bytes.Equal(got.Record(), want.Record()) {
			t.Errorf("%s %s: served record (%d bytes) differs from protobuf's (%d bytes)", r.Kind, r.Key(), len(got.Record()), len(want.Record()))
		}
	}
}

// checkServed checks one conversion's output against its input. Its
// expectations are written from the documented rules (Service,
// collectInstances), not computed by the conversion's own steps.
func checkServed(t *testing.T, host string, allocated []string, contribs []Contribution, opts Options, res []*served.Resource, rejected []Rejection) {
	t.Helper()
	sources := map[string]bool{}
	emptyID := map[string]bool{} // sources with an instance whose id is ""
	for _, c := range contribs {
		sources[c.Source] = true
		for _, inst := range c.Service.Instances {
			emptyID[c.Source] = emptyID[c.Source] || inst.ID == ""
		}
	}
	seRejected := false
	conflict := map[string]bool{} // sources whose whole contribution was rejected
	for _, r := range rejected {
		if r.Reason == "" || r.Code == "" {
			t.Errorf("rejection without reason or code: %+v", r)
		}
		// An instance is named by its id, which the registry may leave empty.
		if r.Name == "" && (r.Kind != served.KindWorkloadEntry || !emptyID[r.Source]) {
			t.Errorf("rejection names nothing: %+v", r)
		}
		if !sources[r.Source] {
			t.Errorf("rejection names no input source: %+v", r)
		}
		if r.Kind == served.KindServiceEntry && r.Code == CodeInvalid {
			seRejected = true
		}
		if r.Code == CodeConflict {
			conflict[r.Source] = true
			if r.Source == contribs[0].Source {
				t.Errorf("the first source, which wins, is rejected for a port conflict: %+v", r)
			}
		}
	}
	if seRejected != (len(res) == 0) {
		t.Fatalf("ServiceEntry rejected = %v, but %d resources served (rejections: %v)", seRejected, len(res), rejected)
	}

	// Port agreement, by two rules that need no normalization: a source
	// that took the first one's ports agrees with it; one whose set of
	// valid port numbers differs conflicts.
	validNumbers := func(ports []model.Port) []uint32 {
		var out []uint32
		for _, p := range ports {
			if p.Number >= 1 && p.Number <= 65535 && !slices.Contains(out, p.Number) {
				out = append(out, p.Number)
			}
		}
		slices.Sort(out)
		return out
	}
	first := contribs[0].Service.Ports
	for _, c := range contribs[1:] {
		same := len(c.Service.Ports) == len(first) && (len(first) == 0 || &c.Service.Ports[0] == &first[0])
		differ := !slices.Equal(validNumbers(c.Service.Ports), validNumbers(first))
		if same && conflict[c.Source] {
			t.Errorf("source %s has the first source's very ports but was rejected for a conflict", c.Source)
		}
		if differ && !conflict[c.Source] {
			t.Errorf("source %s has port numbers %v, not %v, and was not rejected for a conflict", c.Source, validNumbers(c.Service.Ports), validNumbers(first))
		}
	}

	var se *networking.ServiceEntry
	names := map[served.Kind]map[string]bool{}
	type sourceID struct{ source, id string }
	servedWE := map[sourceID]*networking.WorkloadEntry{}
	for _, r := range res {
		checkResource(t, host, r, contribs, opts)
		if names[r.Kind][r.Name] {
			t.Errorf("two %ss named %s", r.Kind, r.Key())
		}
		if names[r.Kind] == nil {
			names[r.Kind] = map[string]bool{}
		}
		names[r.Kind][r.Name] = true
		switch spec := r.Spec.(type) {
		case *networking.ServiceEntry:
			if se != nil {
				t.Errorf("two ServiceEntries for %q", host)
			}
			se = spec
		case *networking.WorkloadEntry:
			k := sourceID{r.Annotations[AnnotationSource], r.Annotations[AnnotationID]}
			if servedWE[k] != nil {
				t.Errorf("instance %q of source %s served twice", k.id, k.source)
			}
			servedWE[k] = spec
		}
	}
	if len(res) > 0 {
		if se == nil || res[0].Spec != se {
			t.Fatalf("the ServiceEntry is not the first resource")
		}
		checkServiceEntry(t, host, allocated, contribs, opts, se)
		checkPorts(t, contribs[0].Service.Ports, se)
	}

	// Every instance: served, rejected by name, or left out as critical.
	// In inline mode endpoints carry no id, so they are counted by address.
	wantEndpoints := map[string]int{}
	rejectedAs := func(source, name string) bool {
		for _, r := range rejected {
			if r.Kind == served.KindWorkloadEntry && r.Source == source && r.Name == name && r.Code == CodeInvalid {
				return true
			}
		}
		return false
	}
	// An instance whose address is the client's own host is rejected by id,
	// before it is a WorkloadEntry.
	rejectedAddress := func(source, id string) bool {
		for _, r := range rejected {
			if r.Kind == served.KindWorkloadEntry && r.Source == source && r.Name == id && r.Code == CodeAddress {
				return true
			}
		}
		return false
	}
	for _, c := range contribs {
		if conflict[c.Source] {
			for _, inst := range c.Service.Instances {
				if servedWE[sourceID{c.Source, inst.ID}] != nil {
					t.Errorf("instance %q of source %s served although its source was rejected for a port conflict", inst.ID, c.Source)
				}
			}
			continue // named by the source's conflict rejection
		}
		byID := map[string][]model.Instance{}
		var ids []string
		for _, inst := range c.Service.Instances {
			if byID[inst.ID] == nil {
				ids = append(ids, inst.ID)
			}
			byID[inst.ID] = append(byID[inst.ID], inst)
		}
		for _, id := range ids {
			insts := byID[id]
			weName := ResourceName(ResourceName(host) + "-" + c.Source + "-" + id)
			// The first of a repeated id stands for it; the others are
			// duplicates, each rejected by name.
			if got := duplicates(rejected, c.Source, id); got != len(insts)-1 {
				t.Errorf("instance id %q appears %d times in source %s; %d duplicate rejections, want %d", id, len(insts), c.Source, got, len(insts)-1)
			}
			inst := insts[0]
			we := servedWE[sourceID{c.Source, id}]
			switch {
			case inst.Health == model.HealthCritical:
				if we != nil {
					t.Errorf("critical instance %q of source %s is served", id, c.Source)
				}
			case model.LocalAddress(inst.Address) != "" && !opts.allowsLocal(model.LocalAddress(inst.Address)):
				if !rejectedAddress(c.Source, id) || we != nil {
					t.Errorf("instance %q of source %s has the local address %q and is not rejected by id", id, c.Source, inst.Address)
				}
			case seRejected:
				// Named by the ServiceEntry's rejection.
			case opts.Mode == ModeInline:
				if !rejectedAs(c.Source, id) {
					wantEndpoints[inst.Address]++
				}
			case we != nil:
				if we.Address != inst.Address {
					t.Errorf("instance %q of source %s served with address %q, not %q", id, c.Source, we.Address, inst.Address)
				}
				if d := instanceDiff(inst, we, se); d != "" {
					t.Errorf("instance %q of source %s: %s", id, c.Source, d)
				}
				if opts.SetServiceAccount && we.ServiceAccount != inst.ServiceAccount {
					t.Errorf("instance %q: serviceAccount %q, want %q (setServiceAccount on)", id, we.ServiceAccount, inst.ServiceAccount)
				}
			case !rejectedAs(c.Source, weName):
				t.Errorf("instance %q (address %q) of source %s is neither served nor rejected by name (rejections: %v)", id, inst.Address, c.Source, rejected)
			}
		}
	}
	for k := range servedWE {
		if !sources[k.source] {
			t.Errorf("WorkloadEntry for instance %q of unknown source %q", k.id, k.source)
		}
	}
	if opts.Mode == ModeInline && se != nil {
		got := map[string]int{}
		for _, ep := range se.Endpoints {
			got[ep.Address]++
		}
		// Each endpoint carries the data of an instance at its address.
		var unmatched []model.Instance
		for _, c := range contribs {
			if conflict[c.Source] {
				continue
			}
			seen := map[string]bool{}
			for _, inst := range c.Service.Instances {
				if !seen[inst.ID] && inst.Health != model.HealthCritical && !rejectedAs(c.Source, inst.ID) {
					unmatched = append(unmatched, inst)
				}
				seen[inst.ID] = true
			}
		}
		for _, ep := range se.Endpoints {
			i := slices.IndexFunc(unmatched, func(inst model.Instance) bool {
				return inst.Address == ep.Address && instanceDiff(inst, ep, se) == ""
			})
			if i < 0 {
				t.Errorf("inline endpoint %q (weight %d, locality %q, network %q, ports %v) matches no served instance's data",
					ep.Address, ep.Weight, ep.Locality, ep.Network, ep.Ports)
				continue
			}
			unmatched = slices.Delete(unmatched, i, i+1)
		}
		for addr, n := range wantEndpoints {
			if got[addr] != n {
				t.Errorf("inline: %d endpoints at %q, want %d (every instance there served or rejected by name)", got[addr], addr, n)
			}
		}
		for addr, n := range got {
			if wantEndpoints[addr] == 0 {
				t.Errorf("inline: %d endpoints at %q, which no served instance has", n, addr)
			}
		}
	}
}

// instanceDiff says how a served instance (a WorkloadEntry, or an inline
// endpoint) differs from the registry's: its weight, locality and network
// are the instance's, and a service port it listens on elsewhere maps to
// that target port by the port's name; no other port is mapped.
func instanceDiff(inst model.Instance, we *networking.WorkloadEntry, se *networking.ServiceEntry) string {
	if we.Weight != inst.Weight || we.Locality != inst.Locality || we.Network != inst.Network {
		return fmt.Sprintf("weight %d, locality %q, network %q; the registry has %d, %q, %q",
			we.Weight, we.Locality, we.Network, inst.Weight, inst.Locality, inst.Network)
	}
	want := map[string]uint32{}
	for _, p := range se.Ports {
		if target, ok := inst.Ports.Get(p.Number); ok && target != p.Number {
			want[p.Name] = target
		}
	}
	if !maps.Equal(we.Ports, want) && (len(we.Ports) > 0 || len(want) > 0) {
		return fmt.Sprintf("target ports %v, want %v (the registry's %v over service ports %v)", we.Ports, want, inst.Ports, se.Ports)
	}
	return ""
}

// checkPorts: the ServiceEntry's ports are the first source's, by the
// documented rules: numbers 1-65535 only, each once, in order, TCP when no
// protocol is given, the lowest protocol name when a number is declared
// twice, and named "<protocol>-<number>" in lower case.
func checkPorts(t *testing.T, ports []model.Port, se *networking.ServiceEntry) {
	t.Helper()
	want := map[uint32]string{}
	for _, p := range ports {
		if p.Number < 1 || p.Number > 65535 {
			continue
		}
		proto := string(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		if cur, ok := want[p.Number]; !ok || proto < cur {
			want[p.Number] = proto
		}
	}
	numbers := slices.Sorted(maps.Keys(want))
	if len(se.Ports) != len(numbers) {
		t.Errorf("ports %v, want numbers %v from the registry's %v", se.Ports, numbers, ports)
		return
	}
	for i, n := range numbers {
		p := se.Ports[i]
		if name := fmt.Sprintf("%s-%d", strings.ToLower(want[n]), n); p.Number != n || p.Protocol != want[n] || p.Name != name {
			t.Errorf("port %d is %d/%s named %q, want %d/%s named %q (registry ports %v)", i, p.Number, p.Protocol, p.Name, n, want[n], name, ports)
		}
	}
}

// checkSelectors: in workloadentry mode, each ServiceEntry of the
// conversions selects exactly the WorkloadEntries of its own conversion, as
// istiod matches them: same namespace, and the WorkloadEntry's labels
// (metadata over spec) holding every label of the selector.
func checkSelectors(t *testing.T, conversions ...[]*served.Resource) {
	t.Helper()
	for i, res := range conversions {
		for _, r := range res {
			se, ok := r.Spec.(*networking.ServiceEntry)
			if !ok || se.WorkloadSelector == nil {
				continue
			}
			for j, other := range conversions {
				for _, w := range other {
					we, ok := w.Spec.(*networking.WorkloadEntry)
					if !ok {
						continue
					}
					labels := maps.Clone(we.Labels)
					if labels == nil {
						labels = map[string]string{}
					}
					maps.Copy(labels, w.Labels)
					selected := w.Namespace == r.Namespace
					for k, v := range se.WorkloadSelector.Labels {
						if got, ok := labels[k]; !ok || got != v {
							selected = false
						}
					}
					if selected != (i == j) {
						t.Errorf("the selector %v of %s selects %s: %v, want %v", se.WorkloadSelector.Labels, r.Key(), w.Key(), selected, i == j)
					}
				}
			}
		}
	}
}

// duplicates counts the rejections of instance id of source as a duplicate.
func duplicates(rejected []Rejection, source, id string) (n int) {
	for _, r := range rejected {
		if r.Kind == served.KindWorkloadEntry && r.Source == source && r.Name == id && r.Code == CodeDuplicate {
			n++
		}
	}
	return n
}

// checkResource checks what every served resource must be: istiod accepts
// it, its name, labels and annotations are valid Kubernetes metadata, no
// reserved key came from a registry, and registry labels follow
// output.labels (allow-list, prefix) and never include output.addresses.key.
func checkResource(t *testing.T, host string, r *served.Resource, contribs []Contribution, opts Options) {
	t.Helper()
	if r.Namespace != opts.Namespace {
		t.Errorf("%s in namespace %q, want %q", r.Key(), r.Namespace, opts.Namespace)
	}
	if !IsResourceName(r.Name) {
		t.Errorf("invalid name %q", r.Name)
	}
	var inputKeys []string
	for _, c := range contribs {
		inputKeys = append(inputKeys, sortedKeys(c.Service.Labels.Map())...)
		for _, inst := range c.Service.Instances {
			inputKeys = append(inputKeys, sortedKeys(inst.Labels.Map())...)
		}
	}
	labels := r.Labels
	if ep, ok := r.Spec.(*networking.ServiceEntry); ok && opts.Mode == ModeInline {
		for _, e := range ep.Endpoints {
			checkLabels(t, r.Key()+" endpoint "+e.Address, e.Labels, inputKeys, opts, false)
		}
	}
	checkLabels(t, r.Key(), labels, inputKeys, opts, true)
	for k := range r.Annotations {
		if !IsLabelKey(k) {
			t.Errorf("%s: invalid annotation key %q", r.Key(), k)
		}
		if reservedKey(k) && !strings.HasPrefix(k, "registry-adapter.io/") {
			t.Errorf("%s: reserved annotation %q from a registry", r.Key(), k)
		}
	}
	var err error
	switch spec := r.Spec.(type) {
	case *networking.ServiceEntry:
		// The full check, endpoints included, not the one the conversion uses.
		err = validation.ServiceEntry(metaOf(r), spec)
	case *networking.WorkloadEntry:
		err = validation.WorkloadEntry(metaOf(r), spec)
		if !opts.SetServiceAccount && spec.ServiceAccount != "" {
			t.Errorf("%s: serviceAccount %q set with setServiceAccount off", r.Key(), spec.ServiceAccount)
		}
	case *networking.DestinationRule:
		err = validation.DestinationRule(metaOf(r), spec)
		if spec.Host != host || !slices.Equal(spec.ExportTo, rulesExportTo(opts)) {
			t.Errorf("%s: DestinationRule for %q exported to %q, want %q, %q", r.Key(), spec.Host, spec.ExportTo, host, opts.ExportTo)
		}
		// Subsets select by registry labels as the instances carry them.
		for _, sub := range spec.Subsets {
			checkLabels(t, r.Key()+" subset "+sub.Name, sub.Labels, inputKeysOf(contribs, sub.Name), opts, false)
		}
	case *networking.VirtualService:
		err = validation.VirtualService(metaOf(r), spec)
		if !slices.Equal(spec.Hosts, []string{host}) || !slices.Equal(spec.ExportTo, rulesExportTo(opts)) {
			t.Errorf("%s: VirtualService for %q exported to %q, want [%q], %q", r.Key(), spec.Hosts, spec.ExportTo, host, opts.ExportTo)
		}
	default:
		t.Errorf("%s: unexpected spec %T", r.Key(), r.Spec)
	}
	if err != nil {
		t.Errorf("served %s %s fails validation: %v", r.Kind, r.Key(), err)
	}
	if _, err := r.Entry(); err != nil {
		t.Error(err)
	}
}

// rulesExportTo is the visibility of DestinationRules and VirtualServices:
// the ServiceEntry's, but "." for "~", which only a ServiceEntry may have.
func rulesExportTo(opts Options) []string {
	if slices.Equal(opts.ExportTo, []string{"~"}) {
		return []string{"."}
	}
	return opts.ExportTo
}

// inputKeysOf is the label keys of the first contribution's subset name.
func inputKeysOf(contribs []Contribution, subset string) []string {
	var keys []string
	if t := contribs[0].Service.Traffic; t != nil {
		for _, s := range t.Subsets {
			if s.Name == subset {
				keys = append(keys, sortedKeys(s.Labels.Map())...)
			}
		}
	}
	return keys
}

// checkLabels checks one label set: valid, and each registry label allowed
// by opts.Labels, prefixed, not reserved, not the address key.
func checkLabels(t *testing.T, what string, labels map[string]string, inputKeys []string, opts Options, own bool) {
	t.Helper()
	for k, v := range labels {
		if !IsLabelKey(k) || !IsLabelValue(v) {
			t.Errorf("%s: invalid label %q=%q", what, k, v)
		}
		if own && (k == served.LabelManagedBy || k == LabelService) {
			continue
		}
		if reservedKey(k) {
			t.Errorf("%s: reserved label %q from a registry", what, k)
		}
		from := false
		for _, in := range inputKeys {
			if in == opts.Addresses.Key && in != "" {
				continue
			}
			if !opts.Labels.allowed(in) {
				continue
			}
			if key, ok := LabelKey(opts.Labels.Prefix + in); ok && key == k {
				from = true
				break
			}
		}
		if !from {
			t.Errorf("%s: label %q comes from no allowed registry label (allow %q, prefix %q, address key %q)",
				what, k, opts.Labels.Allow, opts.Labels.Prefix, opts.Addresses.Key)
		}
	}
}

// checkServiceEntry checks the ServiceEntry against the options.
func checkServiceEntry(t *testing.T, host string, allocated []string, contribs []Contribution, opts Options, se *networking.ServiceEntry) {
	t.Helper()
	if !slices.Equal(se.Hosts, []string{host}) {
		t.Errorf("hosts %q, want [%q]", se.Hosts, host)
	}
	if !slices.Equal(se.ExportTo, opts.ExportTo) {
		t.Errorf("exportTo %q, want %q", se.ExportTo, opts.ExportTo)
	}
	if se.Location.String() != opts.Location {
		t.Errorf("location %s, want %s", se.Location, opts.Location)
	}
	switch opts.Mode {
	case ModeInline:
		if se.WorkloadSelector != nil {
			t.Errorf("inline mode with a workloadSelector")
		}
	default:
		if se.WorkloadSelector == nil || len(se.Endpoints) > 0 {
			t.Errorf("workloadentry mode: selector %v, %d inline endpoints", se.WorkloadSelector, len(se.Endpoints))
		}
	}
	for _, a := range se.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			t.Errorf("address %q is not an IP", a)
		}
	}
	if !slices.Equal(se.Addresses, allocated) {
		t.Errorf("addresses %q, want the ones given, %q", se.Addresses, allocated)
	}
}
