package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/registry-adapter/registry-adapter/sources/kinds"
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
	sources := s["properties"].(map[string]any)["sources"].(map[string]any)
	sources["minItems"] = 1
	// Each source: a name and exactly one registry key.
	item := sources["items"].(map[string]any)
	item["required"] = []string{"name"}
	var oneOf []any
	for _, k := range kinds.All {
		oneOf = append(oneOf, map[string]any{"required": []string{k.Key}})
	}
	item["oneOf"] = oneOf
	for path, text := range docDescriptions() {
		if p := schemaAt(s, path); p != nil {
			p["description"] = text
		}
	}
	return s
}

// schemaAt is the schema of the dotted path (a source's keys under "sources."), or nil.
func schemaAt(s map[string]any, path string) map[string]any {
	cur := s
	for _, k := range strings.Split(path, ".") {
		if items, ok := cur["items"].(map[string]any); ok {
			cur = items
		}
		props, _ := cur["properties"].(map[string]any)
		next, ok := props[k].(map[string]any)
		if !ok {
			return nil
		}
		cur = next
	}
	return cur
}

var (
	docRow  = regexp.MustCompile("^\\| (`[^|]+`) \\| ([^|]*) \\| (.*) \\|$")
	docKey  = regexp.MustCompile("`([^`]+)`")
	docLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// docDescriptions reads docs/configuration.md into descriptions by dotted path: each "## key" section's first
// paragraph for the key, and each table row "| `a`, `b` | default | meaning |" of the section for section.a and
// section.b (a key starting with "." continues the previous key's parent). In the sources section the table of
// registries has no default column: its second column describes the key.
func docDescriptions() map[string]string {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		panic(err)
	}
	clean := func(s string) string {
		s = docLink.ReplaceAllString(strings.TrimSpace(s), "$1")
		return strings.ReplaceAll(s, "`", "")
	}
	out := map[string]string{}
	section, para := "", ""
	described := false // the section's key got its description, or a table or subsection came first
	for _, line := range strings.Split(string(doc), "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			section, para, described = strings.TrimPrefix(line, "## "), "", false
			if strings.ContainsAny(section, " ()") {
				section = "" // not a key ("Memory (environment, not the file)")
			}
			continue
		case section == "":
			continue
		case strings.TrimSpace(line) == "":
			if para != "" && !described {
				out[section], described = clean(para), true
			}
			para = ""
			continue
		case strings.HasPrefix(line, "|") || strings.HasPrefix(line, "#"):
			described = described || para == ""
		}
		if m := docRow.FindStringSubmatch(line); m != nil {
			parent := ""
			for _, k := range docKey.FindAllStringSubmatch(m[1], -1) {
				key := k[1]
				if strings.HasPrefix(key, ".") {
					key = parent + key
				}
				if i := strings.LastIndex(key, "."); i >= 0 {
					parent = key[:i]
				}
				text := clean(m[3])
				if d := clean(m[2]); section == "sources" && !strings.Contains(key, ".") {
					text = d + ": " + text
				} else if d != "" && d != "none" && d != "unset" {
					text += " Default: " + d + "."
				}
				out[section+"."+key] = text
			}
			continue
		}
		if !strings.HasPrefix(line, "|") && !strings.HasPrefix(line, "#") {
			para = strings.TrimSpace(para + " " + line)
		}
	}
	return out
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

// TestSchemaFromDocs: every key the configuration reference describes in a table is a key of the schema, and gets
// that description; the sections describe the top-level keys.
func TestSchemaFromDocs(t *testing.T) {
	s := chartConfigSchema()
	descs := docDescriptions()
	for path := range descs {
		if path == "server.listen" || path == "server.debugListen" || path == "server.adminListen" ||
			path == "server.shards" || strings.HasPrefix(path, "server.tls") || path == "stateFile.path" {
			continue // set by the chart, not in its schema
		}
		if schemaAt(s, path) == nil {
			t.Errorf("docs/configuration.md describes %s, which is no key of the configuration", path)
		}
	}
	for _, path := range []string{"output", "output.mode", "kubernetesSink.leaderElection.renewDeadline", "sources.consul", "sources.limits.services", "sink"} {
		p := schemaAt(s, path)
		if d, _ := p["description"].(string); d == "" || strings.Contains(d, "`") {
			t.Errorf("%s: description %q", path, d)
		}
	}
	if d := schemaAt(s, "output.mode")["description"].(string); !strings.Contains(d, "Default: workloadentry") && !strings.Contains(d, "Default: inline") {
		t.Errorf("output.mode: %q lacks its default", d)
	}
}

// TestSchemaEnums: the values the schema lists are the values Validate accepts.
func TestSchemaEnums(t *testing.T) {
	base := "sources:\n- name: vms\n  static: {services: [{name: web, ports: [{number: 80, protocol: http}], instances: [{address: 10.0.0.1}]}]}\n"
	set := func(path, value string) string {
		parts := strings.Split(path, ".")
		y := base + parts[0] + ":"
		for i, p := range parts[1:] {
			y += "\n" + strings.Repeat("  ", i+1) + p + ":"
		}
		return y + " " + value + "\n"
	}
	for path, values := range SchemaEnums {
		if p := schemaAt(Schema(), path); p == nil || !slices.Equal(p["enum"].([]string), values) {
			t.Errorf("%s: schema %v, want enum %v", path, p, values)
		}
		for _, v := range append(slices.Clone(values), "bogus") {
			cfg, err := Parse(strings.NewReader(set(path, v)))
			if err == nil {
				err = cfg.Validate()
			}
			switch {
			case v == "bogus" && (err == nil || !strings.Contains(err.Error(), path)):
				t.Errorf("%s: %s: %v, want an error naming the key", path, v, err)
			case v != "bogus" && err != nil && strings.Contains(err.Error(), "must be"):
				// A value may still need another key (perService needs workloadentry); it must not be unknown.
				t.Errorf("%s: the schema allows %s, Validate refuses it: %v", path, v, err)
			}
		}
	}
}
