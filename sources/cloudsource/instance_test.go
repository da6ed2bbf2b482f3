package cloudsource

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/registry-adapter/registry-adapter/model"
)

// TestRulesMap: the shared decisions, in their order, on instances of one
// or two sets of keys.
func TestRulesMap(t *testing.T) {
	http80 := []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}}
	grpc := []model.Port{{Number: 9090, Protocol: model.ProtocolGRPC}}
	vm := Rules{OptOut: "skip", Service: "svc", Ports: "ports", ConfigPorts: http80, AddressType: AddressPrivate}
	tag := func(kv ...string) []Tags {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return []Tags{{Kind: "tag", Values: m, Separators: ", "}}
	}
	// GCE's shape: labels, then metadata items, which alone hold ports.
	gce := vm
	gce.PortsIn = "metadata item"
	labelsMeta := func(labels, meta map[string]string) []Tags {
		return []Tags{{Kind: "label", Values: labels, Separators: "_"}, {Kind: "metadata item", Values: meta, Separators: ","}}
	}
	strict := vm
	strict.AutoRegistration = IsAutoRegistrationTag
	withAddr := func(inst *model.Instance) string { inst.Address, inst.ID = "10.0.0.1", "i-1"; return "" }
	noAddr := func(*model.Instance) string { return "" }
	noAddrWhy := func(*model.Instance) string { return "no private address on eth0" }

	for _, tt := range []struct {
		name  string
		rules Rules
		tags  []Tags
		build func(*model.Instance) string
		want  Mapped
	}{
		{name: "served", rules: vm, tags: tag("svc", "Web, api web", "ports", "grpc:9090"), build: withAddr,
			want: Mapped{Names: []string{"web", "api"}, Ports: grpc,
				Instance: model.Instance{ID: "i-1", Address: "10.0.0.1", Health: model.HealthUnknown}}},
		{name: "configured ports", rules: vm, tags: tag("svc", "web"), build: withAddr,
			want: Mapped{Names: []string{"web"}, Ports: http80,
				Instance: model.Instance{ID: "i-1", Address: "10.0.0.1", Health: model.HealthUnknown}}},
		{name: "auto-registered before opted out", rules: vm, tags: tag("skip", "true", "istio-io-autoregistrationgroup", "g"),
			build: withAddr, want: Skipped(SkipAutoRegistered)},
		{name: "auto-registered, strict match", rules: Rules{AutoRegistration: IsAutoRegistrationTag, Service: "svc"},
			tags: tag("ISTIO.IO/AUTOREGISTRATIONGROUP", "g", "svc", "web"), build: withAddr, want: Skipped(SkipAutoRegistered)},
		{name: "loose key not matched strictly", rules: strict, tags: tag("istio-io-autoregistrationgroup", "g", "svc", "web"),
			build: noAddr, want: Mapped{Reason: SkipNoAddress, Detail: "no private address"}},
		{name: "opted out", rules: vm, tags: tag("skip", "yes", "svc", "web"), build: withAddr, want: Skipped(SkipOptOut)},
		{name: "opted out, empty value", rules: vm, tags: tag("skip", "", "svc", "web"), build: withAddr, want: Skipped(SkipOptOut)},
		{name: "opt-out false", rules: vm, tags: tag("skip", " FALSE ", "svc", "web"), build: withAddr,
			want: Mapped{Names: []string{"web"}, Ports: http80,
				Instance: model.Instance{ID: "i-1", Address: "10.0.0.1", Health: model.HealthUnknown}}},
		{name: "no service key", rules: vm, tags: tag("ports", "80"), build: withAddr, want: Skipped(SkipNoService)},
		{name: "empty service", rules: vm, tags: tag("svc", " , "), build: withAddr,
			want: Mapped{Reason: SkipNoService, Detail: "tag svc is empty"}},
		{name: "some names invalid", rules: vm, tags: tag("svc", "web bad_name"), build: withAddr,
			want: Mapped{Names: []string{"web"}, Ports: http80, Reason: SkipInvalidService,
				Detail:   `tag svc: invalid service names ["bad_name"]`,
				Instance: model.Instance{ID: "i-1", Address: "10.0.0.1", Health: model.HealthUnknown}}},
		{name: "every name invalid", rules: vm, tags: tag("svc", "bad_name"), build: withAddr,
			want: Mapped{Reason: SkipInvalidService, Detail: `tag svc: invalid service names ["bad_name"]`}},
		{name: "invalid ports", rules: vm, tags: tag("svc", "web", "ports", "http:0"), build: withAddr,
			want: Mapped{Reason: SkipInvalidPorts, Detail: `tag ports: "http:0": port "0" must be 1-65535`}},
		{name: "no ports", rules: Rules{Service: "svc", Ports: "ports"}, tags: tag("svc", "web"), build: withAddr,
			want: Mapped{Reason: SkipNoPorts, Detail: "no ports tag and no ports configured"}},
		{name: "no address", rules: vm, tags: tag("svc", "web"), build: noAddr,
			want: Mapped{Reason: SkipNoAddress, Detail: "no private address"}},
		{name: "no address, the source's detail", rules: vm, tags: tag("svc", "web"), build: noAddrWhy,
			want: Mapped{Reason: SkipNoAddress, Detail: "no private address on eth0"}},
		{name: "label before metadata", rules: gce,
			tags:  labelsMeta(map[string]string{"svc": "web_api"}, map[string]string{"svc": "billing", "ports": "grpc:9090"}),
			build: withAddr, want: Mapped{Names: []string{"web", "api"}, Ports: grpc,
				Instance: model.Instance{ID: "i-1", Address: "10.0.0.1", Health: model.HealthUnknown}}},
		{name: "metadata names when no label", rules: gce, tags: labelsMeta(nil, map[string]string{"svc": "web,api"}),
			build: withAddr, want: Mapped{Names: []string{"web", "api"}, Ports: http80,
				Instance: model.Instance{ID: "i-1", Address: "10.0.0.1", Health: model.HealthUnknown}}},
		{name: "ports only from metadata", rules: gce,
			tags:  labelsMeta(map[string]string{"svc": "web", "ports": "9090"}, nil),
			build: withAddr, want: Mapped{Names: []string{"web"}, Ports: http80,
				Instance: model.Instance{ID: "i-1", Address: "10.0.0.1", Health: model.HealthUnknown}}},
		{name: "invalid metadata ports", rules: gce, tags: labelsMeta(map[string]string{"svc": "web"}, map[string]string{"ports": "x"}),
			build: withAddr, want: Mapped{Reason: SkipInvalidPorts, Detail: `metadata item ports: "x": port "x" must be 1-65535`}},
		{name: "opted out in the second set", rules: gce,
			tags: labelsMeta(map[string]string{"svc": "web", "skip": "false"}, map[string]string{"skip": "true"}), build: withAddr,
			want: Skipped(SkipOptOut)},
		{name: "auto-registered in the second set", rules: gce,
			tags:  labelsMeta(map[string]string{"svc": "web"}, map[string]string{"istio.io/autoRegistrationGroup": "g"}),
			build: withAddr, want: Skipped(SkipAutoRegistered)},
		{name: "keys folded", rules: vm,
			tags:  []Tags{{Kind: "tag", FoldKeys: true, Separators: ",", Values: map[string]string{"SVC": "web", "Skip": "False", "PORTS": "grpc:9090"}}},
			build: withAddr, want: Mapped{Names: []string{"web"}, Ports: grpc,
				Instance: model.Instance{ID: "i-1", Address: "10.0.0.1", Health: model.HealthUnknown}}},
		{name: "keys not folded", rules: vm, tags: tag("SVC", "web"), build: withAddr, want: Skipped(SkipNoService)},
		{name: "no service key: the registry names it", rules: Rules{Ports: "ports", ConfigPorts: http80},
			tags: []Tags{{Kind: "attribute"}}, build: withAddr,
			want: Mapped{Ports: http80, Instance: model.Instance{ID: "i-1", Address: "10.0.0.1", Health: model.HealthUnknown}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rules.Map(tt.tags, tt.build); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestRulesWithoutPortsKey: the hook replaces the configured ports of an
// instance without the ports key, and may leave it out; the ports key
// still wins.
func TestRulesWithoutPortsKey(t *testing.T) {
	r := Rules{Ports: "ports", ConfigPorts: []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}},
		WithoutPortsKey: func(tags []Tags, m *Mapped) ([]model.Port, string, string) {
			switch tags[0].Values["port"] {
			case "":
				return nil, "", ""
			case "bad":
				return nil, SkipInvalidPorts, "port bad"
			}
			m.Instance.Ports = model.TargetPortsFromMap(map[uint32]uint32{80: 8080})
			return []model.Port{{Number: 80, Protocol: model.ProtocolHTTP}}, "", ""
		}}
	build := func(inst *model.Instance) string { inst.Address = "10.0.0.1"; return "" }
	attrs := func(kv ...string) []Tags {
		return []Tags{{Kind: "attribute", Values: map[string]string{kv[0]: kv[1]}}}
	}
	if m := r.Map(attrs("port", "8080"), build); m.Reason != "" || m.Instance.Ports.Len() != 1 || len(m.Ports) != 1 {
		t.Errorf("target port: %+v", m)
	}
	if m := r.Map(attrs("port", "bad"), build); m.Reason != SkipInvalidPorts || m.Detail != "port bad" {
		t.Errorf("hook's reason: %+v", m)
	}
	if m := r.Map(attrs("other", "x"), build); m.Reason != SkipNoPorts || m.Detail != "no ports attribute and no ports configured" {
		t.Errorf("hook gives no ports: %+v", m)
	}
	if m := r.Map(attrs("ports", "grpc:9090"), build); m.Reason != "" || m.Ports[0].Number != 9090 || m.Instance.Ports.Len() != 0 {
		t.Errorf("ports key: %+v", m)
	}
}

// TestResultTake: a verdict applies to a mapped instance only; reasons
// count, and details become problems under the instance's key.
func TestResultTake(t *testing.T) {
	r := NewResult(4)
	served := Mapped{Names: []string{"web"}, Instance: model.Instance{ID: "i-1", Health: model.HealthUnknown}}
	if names := r.Take("i-1", "one", &served, Verdict{Health: model.HealthPassing}); len(names) != 1 ||
		served.Instance.Health != model.HealthPassing {
		t.Fatalf("served: %v %+v", names, served)
	}
	critical := Mapped{Names: []string{"web"}, Instance: model.Instance{ID: "i-2"}}
	if names := r.Take("i-2", "two", &critical, Verdict{Health: model.HealthCritical, Detail: "impaired"}); len(names) != 0 {
		t.Fatalf("critical served: %v", names)
	}
	partly := Mapped{Names: []string{"web"}, Reason: SkipInvalidService, Detail: "bad names"}
	if names := r.Take("i-3", "three", &partly, Verdict{}); len(names) != 1 {
		t.Fatalf("partly: %v", names)
	}
	off := Skipped(SkipOptOut)
	if names := r.Take("i-4", "four", &off, Verdict{Health: model.HealthCritical}); len(names) != 0 {
		t.Fatalf("opted out: %v", names)
	}
	wantSkipped := map[string]int{SkipUnhealthy: 1, SkipInvalidService: 1, SkipOptOut: 1}
	wantProblems := map[string]Problem{
		"i-2": {Name: "two", Reason: SkipUnhealthy, Detail: "impaired"},
		"i-3": {Name: "three", Reason: SkipInvalidService, Detail: "bad names"},
	}
	wantHealth := map[model.Health]int{model.HealthPassing: 1, model.HealthCritical: 1, model.HealthUnknown: 1}
	if !reflect.DeepEqual(r.Skipped, wantSkipped) || !reflect.DeepEqual(r.Problems, wantProblems) || !reflect.DeepEqual(r.Health, wantHealth) {
		t.Fatalf("skipped %v problems %v health %v", r.Skipped, r.Problems, r.Health)
	}

	r.HostFailed("web", 3, errors.New("empty"))
	if r.Skipped[SkipInvalidService] != 4 || r.Problems["service/web"] != (Problem{Name: "web", Reason: SkipInvalidService, Detail: "hostTemplate: empty"}) {
		t.Fatalf("host failed: %v %v", r.Skipped, r.Problems)
	}
}

func TestNewMapping(t *testing.T) {
	type host struct{ Service, Zone string }
	c := MappingConfig{Ports: []Port{{Number: 80}}, HostTemplate: "{{.Service}}.{{.Zone}}", AddressType: AddressPublic}
	m, err := c.NewMapping(host{"web", "z"}, Rules{Service: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Service != "svc" || m.AddressType != AddressPublic || !reflect.DeepEqual(m.ConfigPorts, []model.Port{{Number: 80, Protocol: model.ProtocolTCP}}) {
		t.Fatalf("rules %+v", m.Rules)
	}
	if h, err := m.Host(host{"API", "eu"}); err != nil || h != "api.eu" {
		t.Fatalf("host %q %v", h, err)
	}
	c.HostTemplate = "{{.Missing}}"
	if _, err := c.NewMapping(host{"web", "z"}, Rules{}); err == nil {
		t.Fatal("a template over a missing field accepted")
	}
}

// TestClient: made once, on first use; a failure is retried at the next
// use; idle connections of its own transport are closed.
func TestClient(t *testing.T) {
	var made int
	fail := true
	tr := &http.Transport{}
	c := NewClient(func(context.Context) (string, *http.Transport, error) {
		made++
		if fail {
			return "partial", nil, errors.New("no credential")
		}
		return "api", tr, nil
	})
	c.CloseIdleConnections() // nothing made yet
	if api, err := c.API(context.Background()); err == nil || api != "" {
		t.Fatalf("failed make: %q %v", api, err)
	}
	fail = false
	for range 2 {
		if api, err := c.API(context.Background()); err != nil || api != "api" {
			t.Fatalf("API: %q %v", api, err)
		}
	}
	if made != 2 {
		t.Fatalf("made %d times, want 2 (one failure, then once)", made)
	}
	c.CloseIdleConnections()
	var none *Client[string]
	none.CloseIdleConnections()
	if api, err := ReadyClient("fake").API(context.Background()); err != nil || api != "fake" {
		t.Fatalf("ready: %q %v", api, err)
	}
}

func TestConfigHelpers(t *testing.T) {
	a, b := "", "set"
	FillIn(map[*string]string{&a: "da", &b: "db"})
	if a != "da" || b != "set" {
		t.Fatalf("FillIn: %q %q", a, b)
	}
	var v Checker
	if v.Err() != nil {
		t.Fatal("no error expected")
	}
	v.Add(nil, errors.New("one"))
	v.Bad("field", "%q is bad", "x")
	if got := v.Err().Error(); got != "one\nfield: \"x\" is bad" {
		t.Fatalf("Checker: %q", got)
	}
	v = Checker{}
	isName := func(s string) bool { return !strings.Contains(s, " ") }
	v.Required("project", "", isName, "a project ID")
	v.Required("namespace", "a b", isName, "a namespace name")
	v.Required("region", "ok", isName, "a region")
	v.List("groups", []string{"RG1", "a b", "rg1", "a b", "rg2"}, strings.ToLower, isName, "a resource group name")
	v.List("zones", []string{"z", "Z", "z"}, nil, isName, "a zone")
	want := []string{
		"project: required",
		`namespace: "a b" is not a namespace name`,
		`groups[1]: "a b" is not a resource group name`,
		`groups[2]: "rg1" listed twice`,
		`groups[3]: "a b" is not a resource group name`,
		`zones[2]: "z" listed twice`,
	}
	if got := strings.Split(v.Err().Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Fatalf("Required, List:\n%q\nwant\n%q", got, want)
	}
	if s := SetOf(nil, nil); s != nil {
		t.Fatalf("empty set: %v", s)
	}
	if s := SetOf([]string{"RG1", "rg2"}, strings.ToLower); !reflect.DeepEqual(s, map[string]bool{"rg1": true, "rg2": true}) {
		t.Fatalf("SetOf: %v", s)
	}
	if got := SkipReasons("extra"); got[len(got)-1] != "extra" || len(got) != 10 {
		t.Fatalf("SkipReasons: %v", got)
	}
}
