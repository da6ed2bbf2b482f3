// Package layout_test enforces the import rules of docs/ARCHITECTURE.md over
// the whole module, so that a later change cannot quietly undo the layering:
// data flows sources → model → convert → adapter → server, and each package
// touches only the rooms below it.
package layout_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/registry-adapter/registry-adapter"

// rules says, for each package, which packages of ours its non-test files may
// import, and which outside packages they must not. A pattern "x/..." is x and
// everything under it. Every package must match at least one rule, so a new
// package has to state its room here; a package matching several rules obeys
// all of them. withTests holds the package's _test.go files to the same rule;
// elsewhere tests may borrow fixtures (bench/gen, convert) from anywhere.
type rule struct {
	pkg       string
	may       []string // packages of ours; nothing else of ours
	mayNot    []string // outside import path prefixes
	withTests bool
	why       string
}

var rules = []rule{
	{pkg: "model", mayNot: []string{"istio.io/"}, withTests: true,
		why: "the registry-neutral model everything else shares; it imports nothing of ours and knows no Istio"},
	{pkg: "served", withTests: true,
		why: "the served resource (kind, type URL, MCP envelope) is the leaf convert, adapter and server meet in"},
	{pkg: "vip", withTests: true,
		why: "address allocation is a function of host names only"},
	{pkg: "sinks/kube", may: []string{"served"},
		why: "the Kubernetes sink is a publisher over served entries (decoded with served.Decode); it knows neither the adapter, convert nor the sources"},
	{pkg: "convert/validation", may: []string{"model"},
		why: "the mirror of istiod's validation depends on nothing but the model"},
	{pkg: "convert", may: []string{"model", "served", "vip", "convert/validation"},
		why: "conversion is pure: model in, Istio resources out; it imports neither adapter, server nor sources"},
	{pkg: "sources/...", may: []string{"model", "sources/..."}, mayNot: []string{"istio.io/"}, withTests: true,
		why: "a source speaks its registry and the model only; it imports neither adapter, convert, served nor server, and knows no Istio"},
	{pkg: "server", may: []string{"served"}, mayNot: []string{"istio.io/api/networking/"},
		why: "the xDS server serves served entries and knows nothing of how they were made: not convert, not sources, not adapter, not Istio's networking types"},
	{pkg: "adapter", may: []string{"model", "convert", "served", "sources", "vip"},
		why: "the adapter is the loop from sources to publishers: it publishes through its one Publisher interface, so it imports neither the xDS server nor a sink, nor the process configuration or the registry sources"},
	{pkg: "config", may: []string{"adapter", "convert", "server", "sinks/kube", "sources", "sources/kinds"},
		why: "the process configuration holds every room's options (the loop's settings, the server's, the sinks') and builds the sources through sources/kinds; only cmd (and tests) import it"},
	{pkg: "admin", may: []string{"adapter", "convert", "served", "server", "sources"},
		why: "debug handlers read the adapter and server, and are wired only by cmd"},
	{pkg: "fidelity", may: []string{"convert", "served"},
		why: "the fidelity check compares registry and istiod views through convert's output"},
	{pkg: "cmd/...", may: []string{"adapter", "admin", "config", "convert", "fidelity", "model", "served", "server", "sinks/kube", "sources/...", "vip"},
		why: "cmd wires everything; it may import every source, but never bench"},
	{pkg: "bench/...", may: []string{"adapter", "bench/...", "convert", "fidelity", "model", "served", "server", "sources", "sources/consul"},
		why: "the benchmarks measure the real pieces, the Consul watch included"},
}

// allows reports whether the rule lets the package rel import o, a package of
// ours.
func (r rule) allows(rel, o string) bool {
	return o == rel || slices.ContainsFunc(r.may, func(m string) bool { return matches(m, o) })
}

// pkgImports is what one package's files import, split by test and non-test.
type pkgImports struct {
	prod, test map[string][]string // import path -> files importing it
}

// scan parses the imports of every package of the module. Nested modules
// (integration/, hack/manifestcheck) and testdata are not part of it. Files
// are parsed whatever their build constraints, so a rule holds on every
// platform.
func scan(t *testing.T) map[string]*pkgImports {
	t.Helper()
	pkgs := map[string]*pkgImports{}
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != "." && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if p != "." {
				if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(filepath.Dir(p))
		pi := pkgs[dir]
		if pi == nil {
			pi = &pkgImports{prod: map[string][]string{}, test: map[string][]string{}}
			pkgs[dir] = pi
		}
		into := pi.prod
		if strings.HasSuffix(p, "_test.go") {
			into = pi.test
		}
		for _, imp := range f.Imports {
			ip := strings.Trim(imp.Path.Value, `"`)
			into[ip] = append(into[ip], filepath.Base(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The walk must have found the tree; an empty scan would pass every rule.
	for _, want := range []string{"model", "served", "convert", "adapter", "config", "server", "sources/consul", "sources/kinds", "cmd/registry-adapter"} {
		if pkgs[want] == nil {
			t.Fatalf("scan found no package %s (found %d packages)", want, len(pkgs))
		}
	}
	return pkgs
}

// ours returns p relative to the module, or false for an outside import.
func ours(p string) (string, bool) {
	if p == module {
		return ".", true
	}
	rel, ok := strings.CutPrefix(p, module+"/")
	return rel, ok
}

// matches reports whether the package rel is pattern, or under it for "x/...".
func matches(pattern, rel string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return rel == base || strings.HasPrefix(rel, base+"/")
	}
	return rel == pattern
}

func sorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestImportRules(t *testing.T) {
	pkgs := scan(t)
	for _, rel := range sorted(pkgs) {
		if rel == "." {
			continue // this test
		}
		covered := false
		for _, r := range rules {
			if !matches(r.pkg, rel) {
				continue
			}
			covered = true
			check := func(imports map[string][]string, kind string) {
				for _, ip := range sorted(imports) {
					files := strings.Join(imports[ip], ", ")
					if o, ok := ours(ip); ok {
						if r.allows(rel, o) {
							continue
						}
						t.Errorf("%s (%s %s) imports %s: rule %q allows only %v of ours: %s", rel, kind, files, o, r.pkg, r.may, r.why)
						continue
					}
					for _, bad := range r.mayNot {
						if strings.HasPrefix(ip, bad) {
							t.Errorf("%s (%s %s) imports %s: rule %q forbids %s*: %s", rel, kind, files, ip, r.pkg, bad, r.why)
						}
					}
				}
			}
			check(pkgs[rel].prod, "file")
			if r.withTests {
				check(pkgs[rel].test, "test")
			}
		}
		if !covered {
			t.Errorf("package %s matches no rule in layout_test.go: say what it may import", rel)
		}
	}
}

// TestSourcesStandAlone: sources/kinds alone lists every registry source.
// The registry sources are exactly what kinds imports under sources/, so a
// new source is covered without editing this test. No package under sources/
// other than kinds imports one of them: a registry source does not lean on
// another, and the shared helpers (sources, poll, cloudsource, awsapi and
// their test helpers) lean on none.
func TestSourcesStandAlone(t *testing.T) {
	pkgs := scan(t)
	registries := map[string]bool{}
	for ip := range pkgs["sources/kinds"].prod {
		if o, ok := ours(ip); ok && o != "sources" && matches("sources/...", o) {
			registries[o] = true
		}
	}
	if !registries["sources/consul"] || !registries["sources/static"] {
		t.Fatalf("registry sources taken from sources/kinds' imports are %v; want consul and static among them", sorted(registries))
	}
	for _, rel := range sorted(pkgs) {
		if rel == "sources/kinds" || !matches("sources/...", rel) {
			continue
		}
		for kind, imports := range map[string]map[string][]string{"file": pkgs[rel].prod, "test": pkgs[rel].test} {
			for _, ip := range sorted(imports) {
				o, ok := ours(ip)
				if !ok || !registries[o] || matches(o+"/...", rel) {
					continue
				}
				t.Errorf("%s (%s %s) imports the registry source %s: only sources/kinds lists the sources, and a source or shared helper stands on its own",
					rel, kind, strings.Join(imports[ip], ", "), o)
			}
		}
	}
}

// TestForbidden pins the edges the layering exists to keep out: whatever
// the rules' allow lists become, these stay refused. The adapter publishes
// through its one interface, so it imports neither the xDS server nor any
// sink; the process configuration sits above it, not in it.
func TestForbidden(t *testing.T) {
	for _, e := range []struct{ from, to string }{
		{"adapter", "server"},
		{"adapter", "sinks/kube"},
		{"adapter", "sinks/other"},
		{"adapter", "config"},
		{"adapter", "sources/kinds"},
		{"adapter", "sources/consul"},
		{"adapter", "admin"},
		{"served", "model"},
		{"server", "convert"},
		{"server", "adapter"},
		{"sinks/kube", "convert"},
		{"sinks/kube", "adapter"},
		{"sinks/kube", "server"},
		{"sinks/kube", "model"},
		{"config", "admin"},
		{"sources/consul", "served"},
	} {
		for _, r := range rules {
			if matches(r.pkg, e.from) && r.allows(e.from, e.to) {
				t.Errorf("rule %q lets %s import %s", r.pkg, e.from, e.to)
			}
		}
	}
}

// TestMatches pins the pattern semantics the rules rely on.
func TestMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, rel string
		want         bool
	}{
		{"sources/...", "sources", true},
		{"sources/...", "sources/consul", true},
		{"sources/...", "sources/awsapi/mototest", true},
		{"sources/...", "sourcesx", false},
		{"sources", "sources/consul", false},
		{"server", "served", false},
		{"convert", "convert/validation", false},
	} {
		if got := matches(tc.pattern, tc.rel); got != tc.want {
			t.Errorf("matches(%q, %q) = %v, want %v", tc.pattern, tc.rel, got, tc.want)
		}
	}
	if _, ok := ours("github.com/registry-adapter/registry-adapter-fork/x"); ok {
		t.Error("a module sharing our prefix counted as ours")
	}
}
