package fidelity

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/config"
)

// The testdata JSON was captured from a real istiod (pilot-discovery, Istio
// 1.31 line) serving examples/static.yaml through this adapter (address
// allocation on): curl of its /debug/registryz and /debug/endpointShardz.
func istiodServer(t *testing.T, mutate func(shards string) string) *httptest.Server {
	t.Helper()
	return istiodServerWith(t, nil, mutate)
}

// istiodServerWith serves the captured JSON, each changed by its mutate.
func istiodServerWith(t *testing.T, mutateRegistry, mutateShards func(string) string) *httptest.Server {
	t.Helper()
	regBytes, err := os.ReadFile("testdata/registryz.json")
	if err != nil {
		t.Fatal(err)
	}
	shards, err := os.ReadFile("testdata/endpointShardz.json")
	if err != nil {
		t.Fatal(err)
	}
	s, reg := string(shards), string(regBytes)
	if mutateShards != nil {
		s = mutateShards(s)
	}
	if mutateRegistry != nil {
		reg = mutateRegistry(reg)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/registryz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(reg)) })
	mux.HandleFunc("/debug/endpointShardz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(s)) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func expectedFromExample(t *testing.T) View {
	t.Helper()
	cfg, err := config.Load("../examples/static.yaml")
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	srcs, err := config.BuildSources(cfg, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := adapter.Render(context.Background(), srcs, cfg.Output, log)
	if err != nil {
		t.Fatal(err)
	}
	return Expected(res)
}

func TestFaithful(t *testing.T) {
	want := expectedFromExample(t)
	got, err := Istiod(context.Background(), http.DefaultClient, istiodServer(t, nil).URL)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(want, got); len(d) != 0 {
		t.Errorf("captured istiod state differs from the example:\n%s", strings.Join(d, "\n"))
	}
	if !slices.Equal(got.Hosts(), []string{"billing.vms.example.com", "ledger-db.vms.example.com"}) {
		t.Errorf("hosts %v (istiod's own services must be ignored)", got.Hosts())
	}
}

func TestDiffFindsDifferences(t *testing.T) {
	want := expectedFromExample(t)
	cases := []struct {
		name   string
		mutate func(string) string
		want   string
	}{
		{"wrong target port", func(s string) string { return strings.Replace(s, `"EndpointPort":18080`, `"EndpointPort":8080`, 1) },
			"host billing.vms.example.com: endpoint 10.0.1.11/http-8080 targets port 8080, want 18080"},
		{"label lost", func(s string) string { return strings.Replace(s, `"version":"v2"`, `"version":"v3"`, 1) },
			`label version="v3", want "v2"`},
		{"endpoint missing", func(s string) string { return strings.Replace(s, `"10.0.2.20"`, `"10.9.9.9"`, 1) },
			"host ledger-db.vms.example.com: endpoint 10.0.2.20/tcp-5432 missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Istiod(context.Background(), http.DefaultClient, istiodServer(t, c.mutate).URL)
			if err != nil {
				t.Fatal(err)
			}
			d := strings.Join(Diff(want, got), "\n")
			if !strings.Contains(d, c.want) {
				t.Errorf("diff does not report %q:\n%s", c.want, d)
			}
		})
	}
	// Where istiod places a service: namespace, location, exportTo,
	// addresses. Each edit is on billing's entry only.
	billing := func(f func(string) string) func(string) string {
		return func(reg string) string {
			var entries []json.RawMessage
			if err := json.Unmarshal([]byte(reg), &entries); err != nil {
				t.Fatal(err)
			}
			found := false
			for i, e := range entries {
				var s struct {
					Hostname string `json:"hostname"`
				}
				if err := json.Unmarshal(e, &s); err != nil {
					t.Fatal(err)
				}
				if s.Hostname == "billing.vms.example.com" {
					entries[i], found = json.RawMessage(f(string(e))), true
				}
			}
			if !found {
				t.Fatal("the captured registryz has no billing.vms.example.com: update the test")
			}
			b, err := json.Marshal(entries)
			if err != nil {
				t.Fatalf("the edit made invalid JSON: %v", err)
			}
			return string(b)
		}
	}
	replace := func(old, new string) func(string) string {
		return billing(func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("billing's captured entry has no %s", old)
			}
			return strings.Replace(s, old, new, 1)
		})
	}
	addr, ns := want["billing.vms.example.com"].Addresses[0], want["billing.vms.example.com"].Namespace
	for _, c := range []struct {
		name   string
		mutate func(string) string
		want   string
	}{
		{"namespace", replace(`"Namespace":"`+ns+`"`, `"Namespace":"default"`), `host billing.vms.example.com: in namespace "default", want "` + ns + `"`},
		{"location", replace(`"MeshExternal":false`, `"MeshExternal":true`), "host billing.vms.example.com: location MESH_EXTERNAL, want MESH_INTERNAL"},
		{"exportTo", replace(`"ExportTo":null`, `"ExportTo":{".":{}}`), "host billing.vms.example.com: exportTo [.], want []"},
		{"address", replace(`"defaultAddress":"`+addr+`"`, `"defaultAddress":"240.240.0.7"`), "host billing.vms.example.com: istiod holds addresses [240.240.0.7], want [" + addr + "]"},
		{"no address", replace(`"defaultAddress":"`+addr+`"`, `"defaultAddress":"0.0.0.0"`), "host billing.vms.example.com: istiod holds addresses [], want [" + addr + "]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Istiod(context.Background(), http.DefaultClient, istiodServerWith(t, c.mutate, nil).URL)
			if err != nil {
				t.Fatal(err)
			}
			if d := Diff(want, got); !slices.Contains(d, c.want) {
				t.Errorf("diff does not report %q:\n%s", c.want, strings.Join(d, "\n"))
			}
		})
	}
	// An allocated address, as a hand-written expectation states it: its
	// range, not its value.
	hand := func(r string) View {
		v := View{}
		for h, s := range want {
			c := *s
			c.Addresses, c.AllocatedFrom = nil, netip.MustParsePrefix(r)
			v[h] = &c
		}
		return v
	}
	got, err := Istiod(context.Background(), http.DefaultClient, istiodServer(t, nil).URL)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(hand("248.0.0.0/6"), got); len(d) != 0 {
		t.Errorf("allocated from the default range, yet:\n%s", strings.Join(d, "\n"))
	}
	if d := Diff(hand("10.0.0.0/8"), got); !slices.Contains(d, "host billing.vms.example.com: istiod holds address "+addr+", want one allocated from 10.0.0.0/8") {
		t.Errorf("an address outside the range not reported:\n%s", strings.Join(d, "\n"))
	}

	delete(want, "ledger-db.vms.example.com")
	if d := Diff(want, got); !slices.Contains(d, "host ledger-db.vms.example.com: extra in istiod") {
		t.Errorf("extra host not reported: %v", d)
	}
}
