package config

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParseConfig: no configuration, however broken, panics the parser. An
// accepted one is defaulted and valid; written back out as YAML it parses
// again to the same configuration; and applying the defaults a second time
// changes nothing.
func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"../examples/static.yaml", "../examples/consul.yaml"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("sources: [{name: dc1, consul: {address: \"127.0.0.1:8500\", tokn: x}}]")
	f.Add("sources: [{name: dc1, consul: {address: \"127.0.0.1:8500\", wait: 2m}}, {name: vms, static: {}}]")
	f.Add("sources: [{name: aws, ec2: {region: us-east-1, tags: {team: [a]}}}, {name: cm, cloudmap: {region: eu-west-1, namespace: prod.local}}]")
	f.Add("sources: [{name: g, gce: {project: my-project, zones: [us-central1-a]}}, {name: az, azure: {subscriptionId: 00000000-0000-0000-0000-000000000000}}]")
	f.Add("server: {listen: ':1'}\noutput: {mode: inline}\ndebounce: {quiet: 1ms, max: 1s}\n")
	f.Add("a: &a [*a, *a]\nb: *a\n")
	f.Add("sources:\n- name: x\n  static:\n    services:\n    - {name: s, ports: [{number: 99999}]}\n")
	f.Add("sources:\n- name: x\n  static:\n    services:\n    - {name: s, ports: [{number: 80}], instances: [{address: 10.0.0.1, ports: {80: 8080}}]}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := Parse(strings.NewReader(doc))
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config fails validation: %v", err)
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("accepted config does not marshal: %v", err)
		}
		again, err := Parse(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("accepted config, written out, is refused: %v\n%s", err, out)
		}
		out2, err := yaml.Marshal(again)
		if err != nil {
			t.Fatalf("re-parsed config does not marshal: %v", err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("config differs after a round trip through YAML:\nfirst:\n%s\nthen:\n%s", out, out2)
		}
		again.SetDefaults()
		out3, err := yaml.Marshal(again)
		if err != nil {
			t.Fatalf("twice-defaulted config does not marshal: %v", err)
		}
		if !bytes.Equal(out2, out3) {
			t.Fatalf("applying the defaults twice changed the config:\nonce:\n%s\ntwice:\n%s", out2, out3)
		}
	})
}
