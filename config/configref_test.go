package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/registry-adapter/registry-adapter/sources/kinds"
)

// TestConfigReferenceComplete keeps docs/configuration.md in step with the
// code: every key of the adapter-level configuration must be documented
// there (each source documents its own keys in its package README).
func TestConfigReferenceComplete(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, prefix string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ == reflect.TypeOf(time.Time{}) {
			return
		}
		for name, ft := range yamlFields(typ) {
			keys = append(keys, name)
			if prefix == "sources" {
				continue // registry options live in each source's README
			}
			walk(ft, name)
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	for _, k := range keys {
		documented := strings.Contains(string(doc), "`"+k+"`") || strings.Contains(string(doc), "`"+k+".") ||
			strings.Contains(string(doc), "."+k+"`") || strings.Contains(string(doc), "\n## "+k+"\n")
		if !documented {
			t.Errorf("config key %q is not documented in docs/configuration.md", k)
		}
	}
	for _, k := range kinds.All {
		readme := "../sources/" + k.Key + "/README.md"
		if _, err := os.Stat(readme); err != nil {
			t.Errorf("source %q has no README: %v", k.Key, err)
		}
		if !strings.Contains(string(doc), "`"+k.Key+"`") {
			t.Errorf("source %q is not listed in docs/configuration.md", k.Key)
		}
	}
}
