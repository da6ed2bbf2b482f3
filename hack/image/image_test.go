package main

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	testVersion  = "9.8.7"
	testRevision = "0123456789ab"
	testSource   = "https://example.com/registry-adapter"
)

// fakeAdapter builds a tiny static program that answers `version` like the adapter.
func fakeAdapter(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := `package main
import ("fmt"; "os")
func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" { fmt.Println("registry-adapter ` + testVersion + ` (commit ` + testRevision + `)"); return }
	fmt.Println("kind: ServiceEntry")
}`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module fake\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "registry-adapter")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func buildGood(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image")
	_, err := build(buildOptions{binary: fakeAdapter(t), out: out, version: testVersion, revision: testRevision,
		source: testSource, created: "2026-01-02T03:04:05Z", arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkOf(dir string, run bool) (string, error) {
	o := checkOptions{layout: dir, version: testVersion, revision: testRevision, source: testSource}
	if run {
		o.renderConfig = "unused.yaml"
	}
	return check(o)
}

// TestBuildCheck: what build makes, check accepts (and runs); the same inputs give the same digest.
func TestBuildCheck(t *testing.T) {
	bin := fakeAdapter(t)
	var digests []string
	for range 2 {
		out := filepath.Join(t.TempDir(), "image")
		d, err := build(buildOptions{binary: bin, out: out, version: testVersion, revision: testRevision,
			source: testSource, created: "2026-01-02T03:04:05Z", arch: "amd64"})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
		report, err := checkOf(out, true)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"user 65532:65532", "version: registry-adapter " + testVersion, "1 ServiceEntries"} {
			if !strings.Contains(report, want) {
				t.Errorf("report lacks %q:\n%s", want, report)
			}
		}
		root := t.TempDir()
		if err := unpackLayout(out, root); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(root, "registry-adapter")); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("unpacked binary: %v %v", fi, err)
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of the same binary: %s and %s", digests[0], digests[1])
	}
}

// rewrite writes img, changed by f, as a new layout and returns its directory.
func rewrite(t *testing.T, dir string, f func(v1.Image) v1.Image) string {
	t.Helper()
	img, _, err := image(dir)
	if err != nil {
		t.Fatal(err)
	}
	img = f(img)
	out := filepath.Join(t.TempDir(), "image")
	p, err := layout.Write(out, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return out
}

func withConfig(t *testing.T, f func(*v1.Config)) func(v1.Image) v1.Image {
	return func(img v1.Image) v1.Image {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		f(&cf.Config)
		img, err = mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
}

// TestCheckRefuses: each way an image can go wrong fails check, naming what is wrong.
func TestCheckRefuses(t *testing.T) {
	good := buildGood(t)
	shell := func(img v1.Image) v1.Image {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		_ = tw.WriteHeader(&tar.Header{Name: "bin/sh", Mode: 0o755, Size: 2, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte("#!"))
		_ = tw.Close()
		l, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()), tarball.WithMediaType(types.OCILayer))
		if err != nil {
			t.Fatal(err)
		}
		img, err = mutate.AppendLayers(img, l)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	for _, c := range []struct {
		name string
		f    func(v1.Image) v1.Image
		want string
	}{
		{"root user", withConfig(t, func(c *v1.Config) { c.User = "" }), "config user"},
		{"user by name", withConfig(t, func(c *v1.Config) { c.User = "nonroot" }), "config user"},
		{"uid 0", withConfig(t, func(c *v1.Config) { c.User = "0:0" }), "config user"},
		{"entrypoint", withConfig(t, func(c *v1.Config) { c.Entrypoint = []string{"/registry-adapter", "run"} }), "config entrypoint"},
		{"cmd", withConfig(t, func(c *v1.Config) { c.Cmd = []string{"--log-level", "debug"} }), "config cmd"},
		{"no version label", withConfig(t, func(c *v1.Config) { delete(c.Labels, labelVersion) }), "no label " + labelVersion},
		{"no revision label", withConfig(t, func(c *v1.Config) { delete(c.Labels, labelRevision) }), "no label " + labelRevision},
		{"no source label", withConfig(t, func(c *v1.Config) { delete(c.Labels, labelSource) }), "no label " + labelSource},
		{"wrong version", withConfig(t, func(c *v1.Config) { c.Labels[labelVersion] = "0.0.1" }), "label " + labelVersion},
		{"a shell", shell, "holds a shell: /bin/sh"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := checkOf(rewrite(t, good, c.f), false)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("check: %v; want an error containing %q", err, c.want)
			}
		})
	}
	// A layout whose blob was changed after the fact: validation catches it.
	img, digest, err := image(good)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	blob := filepath.Join(good, "blobs", m.Config.Digest.Algorithm, m.Config.Digest.Hex)
	cfg, _ := os.ReadFile(blob)
	if err := os.WriteFile(blob, bytes.Replace(cfg, []byte("65532:65532"), []byte("00000:00000"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := checkOf(good, false); err == nil {
		t.Errorf("check accepted %s with its config changed under its digest", digest)
	}
}

// TestBuildRefusesDynamic: a binary that needs libc is not packed.
func TestBuildRefusesDynamic(t *testing.T) {
	f := filepath.Join(t.TempDir(), "notelf")
	if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := build(buildOptions{binary: f, out: t.TempDir(), version: "1", revision: "r", source: "s", created: "2026-01-02T03:04:05Z"})
	if err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("build of a script: %v", err)
	}
}

// TestPush: make image-push writes the image to a registry by the name given, and what the registry then serves is
// the image that was checked (same digest, same config). The registry is go-containerregistry's own, on loopback.
func TestPush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	dir := buildGood(t)
	want, err := layoutDigest(dir)
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(srv.URL, "http://") + "/mesh/registry-adapter:" + testVersion
	got, err := push(dir, ref)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got, "@"+want.String()) {
		t.Fatalf("push reported %s, want the layout's digest %s", got, want)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d != want {
		t.Fatalf("the registry serves %s under %s, want %s", d, ref, want)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != user || cf.Config.Labels["org.opencontainers.image.version"] != testVersion {
		t.Fatalf("pulled config: user %q, labels %v", cf.Config.User, cf.Config.Labels)
	}
}

// layoutDigest is the digest of the one image in an OCI layout.
func layoutDigest(dir string) (v1.Hash, error) {
	_, d, err := image(dir)
	return d, err
}
