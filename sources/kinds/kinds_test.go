package kinds

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// outline is the README outline every source follows, as CoreDNS's plugins
// do: a reader finds the same thing in the same place in every source.
var outline = []string{"What it watches", "Mapping", "Options", "Permissions", "Metrics", "Limits"}

// files is the file set of every source package. metrics.go is required of
// a source with metrics of its own; one without says so in its README.
var files = []string{"README.md", "config.go", "config_test.go", "source.go", "source_test.go", "mapping.go", "mapping_test.go"}

// TestSourcePackages checks what makes every source look alike: its key is
// its package's directory and is listed once, it has the common file set,
// and its README the common outline. It also checks that no source package
// is missing from All.
func TestSourcePackages(t *testing.T) {
	listed := map[string]bool{}
	for _, k := range All {
		if listed[k.Key] {
			t.Errorf("%s: listed twice", k.Key)
		}
		listed[k.Key] = true
		if k.New().Key() != k.Key {
			t.Errorf("%s: a new config's key is %q", k.Key, k.New().Key())
		}
		if pkg := reflect.TypeOf(k.New()).Elem().PkgPath(); !strings.HasSuffix(pkg, "/sources/"+k.Key) {
			t.Errorf("%s: the config is of package %s, not sources/%s", k.Key, pkg, k.Key)
		}
		dir := filepath.Join("..", k.Key)
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("%s: missing %s", k.Key, f)
			}
		}
		b, err := os.ReadFile(filepath.Join(dir, "README.md"))
		if err != nil {
			continue
		}
		title, headings, metrics := readme(string(b))
		if !strings.HasPrefix(title, "# "+k.Key+" source") && !strings.HasPrefix(strings.ToLower(title), "# "+k.Key+" source") {
			t.Errorf("%s: README title %q, want \"# %s source\"", k.Key, title, k.Key)
		}
		if !slices.Equal(headings, outline) {
			t.Errorf("%s: README sections\n  %q\nwant\n  %q", k.Key, headings, outline)
		}
		if _, err := os.Stat(filepath.Join(dir, "metrics.go")); err != nil && !strings.Contains(metrics, "no metrics of its own") {
			t.Errorf("%s: no metrics.go, and the README's Metrics section does not say \"no metrics of its own\"", k.Key)
		}
	}
	// Every directory with a README and a config.go is a source, and must
	// be listed.
	dirs, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		_, errR := os.Stat(filepath.Join("..", d.Name(), "README.md"))
		_, errC := os.Stat(filepath.Join("..", d.Name(), "config.go"))
		if d.IsDir() && errR == nil && errC == nil && !listed[d.Name()] {
			t.Errorf("sources/%s looks like a source but is not in kinds.All", d.Name())
		}
	}
}

// readme returns a README's title line, its level-2 headings (outside code
// blocks) and the text of its Metrics section.
func readme(s string) (title string, headings []string, metrics string) {
	fence := false
	section := ""
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		if i == 0 {
			title = l
		}
		if strings.HasPrefix(l, "```") {
			fence = !fence
		}
		if !fence && strings.HasPrefix(l, "## ") {
			section = strings.TrimSpace(l[3:])
			headings = append(headings, section)
			continue
		}
		if section == "Metrics" {
			b.WriteString(l + "\n")
		}
	}
	return title, headings, b.String()
}
