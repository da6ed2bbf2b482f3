package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"testing"
)

var updateSchema = flag.Bool("update-schema", false, "rewrite the config part of the chart's values.schema.json")

const chartSchemaPath = "../manifests/chart/registry-adapter/values.schema.json"

// chartConfigSchema is what the chart's values.schema.json holds under
// properties.config: the configuration's schema without the keys the chart
// sets itself from other values.
func chartConfigSchema() map[string]any {
	s := Schema("server.listen", "server.debugListen", "server.adminListen", "server.shards", "server.tls",
		"stateFile.path")
	s["description"] = "The adapter's config.yaml (README.md, docs/configuration.md), generated from the Go types by " +
		"`go test ./config -run TestChartSchema -update-schema`: an unknown key fails the install. Values are checked " +
		"when the adapter starts (`registry-adapter validate`). server.listen, debugListen, adminListen, shards and tls " +
		"are set by the chart from ports, shards and tls; stateFile.path from stateFile."
	s["required"] = []string{"sources"}
	s["properties"].(map[string]any)["sources"].(map[string]any)["minItems"] = 1
	return s
}

// configSpan finds the value of the top-level properties.config in the
// schema file's text, so that -update-schema rewrites only that and leaves
// the hand-written rest (and its key order) alone.
func configSpan(text []byte) (int, int, error) {
	key := []byte("\n    \"config\": ")
	i := bytes.Index(text, key)
	if i < 0 || bytes.Count(text, key) != 1 {
		return 0, 0, fmt.Errorf("no single top-level \"config\" property in %s", chartSchemaPath)
	}
	start := i + len(key)
	depth, inString, escaped := 0, false, false
	for j := start; j < len(text); j++ {
		c := text[j]
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '{':
			depth++
		case c == '}':
			depth--
			if depth == 0 {
				return start, j + 1, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("unbalanced braces after \"config\" in %s", chartSchemaPath)
}

// TestChartSchema: the chart validates the config values with the schema of
// the Go types, so that a misspelt key fails `helm install` (chart-check
// proves helm rejects one) instead of crash-looping the pod.
func TestChartSchema(t *testing.T) {
	text, err := os.ReadFile(chartSchemaPath)
	if err != nil {
		t.Fatal(err)
	}
	start, end, err := configSpan(text)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.MarshalIndent(chartConfigSchema(), "    ", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if *updateSchema {
		out := append(append(append([]byte{}, text[:start]...), want...), text[end:]...)
		if err := os.WriteFile(chartSchemaPath, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	var got, exp any
	if err := json.Unmarshal(text[start:end], &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &exp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("%s: properties.config differs from the Go types' schema: run go test ./config -run TestChartSchema -update-schema", chartSchemaPath)
	}
	var whole any
	if err := json.Unmarshal(text, &whole); err != nil {
		t.Errorf("%s is not JSON: %v", chartSchemaPath, err)
	}
}

// TestConfigSchemaShape: every key the decoder knows is in the schema, with
// the decoder's strictness, and the chart's keys are left out.
func TestConfigSchemaShape(t *testing.T) {
	s := chartConfigSchema()
	props := s["properties"].(map[string]any)
	if s["additionalProperties"] != false {
		t.Error("top level admits unknown keys")
	}
	server := props["server"].(map[string]any)["properties"].(map[string]any)
	for _, k := range []string{"listen", "debugListen", "shards", "tls"} {
		if _, ok := server[k]; ok {
			t.Errorf("server.%s is in the chart's schema; the chart sets it", k)
		}
	}
	if _, ok := server["keepaliveMinTime"]; !ok {
		t.Error("server.keepaliveMinTime (an inline field of server.Config) is missing")
	}
	src := props["sources"].(map[string]any)["items"].(map[string]any)
	consul := src["properties"].(map[string]any)["consul"].(map[string]any)
	if consul["additionalProperties"] != false || consul["properties"].(map[string]any)["tokenFile"] == nil {
		t.Errorf("sources[].consul: %v", consul)
	}
	wait := consul["properties"].(map[string]any)["wait"].(map[string]any)
	if wait["type"] != "string" || wait["pattern"] != durationPattern {
		t.Errorf("a duration is %v, want a string with the duration pattern", wait)
	}
	for field := range yamlFields(reflect.TypeOf(Config{})) {
		if _, ok := props[field]; !ok {
			t.Errorf("top-level key %s is missing from the schema", field)
		}
	}
}
