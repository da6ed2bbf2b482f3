package server

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestImports keeps the layering: the server serves served.Entries and knows
// nothing of how they were made, so it imports neither convert, sources nor
// adapter, nor Istio's networking types.
func TestImports(t *testing.T) {
	forbidden := []string{
		"github.com/registry-adapter/registry-adapter/convert",
		"github.com/registry-adapter/registry-adapter/sources",
		"github.com/registry-adapter/registry-adapter/adapter",
		"istio.io/api/networking/",
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			for _, bad := range forbidden {
				if strings.HasPrefix(path, bad) {
					t.Errorf("%s imports %s", name, path)
				}
			}
		}
	}
}
