package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// What the image is; check holds an image to the same values.
const (
	binaryPath = "/registry-adapter"
	// The chart's Deployment sets the same command; docker-check holds the Dockerfile's ENTRYPOINT to it too.
	configPath = "/etc/registry-adapter/config.yaml"
	// distroless's nonroot user, numeric so that the kubelet can check runAsNonRoot against the image.
	user = "65532:65532"

	labelVersion  = "org.opencontainers.image.version"
	labelRevision = "org.opencontainers.image.revision"
	labelSource   = "org.opencontainers.image.source"
	labelTitle    = "org.opencontainers.image.title"
)

var entrypoint = []string{binaryPath, "run", "--config", configPath}

// files is every entry of the image's one layer, and what check allows: no shell, no package manager, no libc.
var files = []struct {
	name string
	mode int64
	body string // for the binary: replaced by its content
}{
	{"etc/", 0o755, ""},
	{"etc/passwd", 0o644, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"},
	{"etc/group", 0o644, "root:x:0:\nnonroot:x:65532:\n"},
	{"registry-adapter", 0o755, ""},
}

type buildOptions struct {
	binary, out, version, revision, source, created, arch string
}

func build(o buildOptions) (string, error) {
	for flag, v := range map[string]string{"binary": o.binary, "out": o.out, "version": o.version, "revision": o.revision,
		"source": o.source, "created": o.created} {
		if v == "" {
			return "", fmt.Errorf("-%s is required", flag)
		}
	}
	created, err := time.Parse(time.RFC3339, o.created)
	if err != nil {
		return "", fmt.Errorf("-created: %w", err)
	}
	created = created.UTC()
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return "", err
	}
	if err := staticELF(o.binary); err != nil {
		return "", err
	}
	layerTar, err := layerOf(bin, created)
	if err != nil {
		return "", err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return "", err
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "hack/image build: " + path.Base(o.binary) + " " + o.version, Comment: "the static binary and the nonroot user"},
	})
	if err != nil {
		return "", err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", o.arch, v1.Time{Time: created}
	cf.Config = v1.Config{
		User:         user,
		Entrypoint:   entrypoint,
		WorkingDir:   "/",
		ExposedPorts: map[string]struct{}{"15010/tcp": {}, "15014/tcp": {}},
		Labels: map[string]string{
			labelTitle:                             "registry-adapter",
			"org.opencontainers.image.description": "Consul and cloud registries to Istio ServiceEntry/WorkloadEntry over MCP-over-xDS",
			labelSource:                            o.source,
			labelVersion:                           o.version,
			labelRevision:                          o.revision,
			"org.opencontainers.image.licenses":    "Apache-2.0",
			"org.opencontainers.image.created":     created.Format(time.RFC3339),
		},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", err
	}
	if err := os.RemoveAll(o.out); err != nil {
		return "", err
	}
	p, err := layout.Write(o.out, empty.Index)
	if err != nil {
		return "", err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.version,
	})); err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

// layerOf is the layer's tar: files, in order, owned by root, every timestamp created.
func layerOf(bin []byte, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: created, Uname: "root", Gname: "root", Format: tar.FormatPAX}
		body := []byte(f.body)
		switch {
		case strings.HasSuffix(f.name, "/"):
			h.Typeflag = tar.TypeDir
		case "/"+f.name == binaryPath:
			body = bin
			fallthrough
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// staticELF fails unless file is an ELF executable without a program interpreter: it needs no libc, so it runs on
// an image that has none.
func staticELF(file string) error {
	f, err := elf.Open(file)
	if err != nil {
		return fmt.Errorf("%s: not an ELF executable: %w", file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (it names a program interpreter): build it with CGO_ENABLED=0", file)
		}
	}
	return nil
}

// image reads the one image of an OCI layout.
func image(layoutDir string) (v1.Image, v1.Hash, error) {
	idx, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, v1.Hash{}, err
	}
	if len(m.Manifests) != 1 {
		return nil, v1.Hash{}, fmt.Errorf("%s: want one image in the layout, found %d", layoutDir, len(m.Manifests))
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	return img, m.Manifests[0].Digest, err
}

type checkOptions struct {
	layout, version, revision, source, renderConfig string
}

// check reads the image back and returns what it found, or every way it differs from what build makes.
func check(o checkOptions) (string, error) {
	img, digest, err := image(o.layout)
	if err != nil {
		return "", err
	}
	if err := validate.Image(img); err != nil {
		return "", fmt.Errorf("%s: %w", digest, err)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	cf, err := img.ConfigFile()
	if err != nil {
		return "", err
	}
	c := cf.Config
	if c.User != user {
		bad("config user %q, want %q (numeric and not root: the chart runs as 65532 with runAsNonRoot)", c.User, user)
	}
	if !slices.Equal(c.Entrypoint, entrypoint) {
		bad("config entrypoint %q, want %q (where the chart mounts the configuration)", c.Entrypoint, entrypoint)
	}
	if len(c.Cmd) != 0 {
		bad("config cmd %q: the entrypoint is the whole command", c.Cmd)
	}
	for label, want := range map[string]string{labelVersion: o.version, labelRevision: o.revision, labelSource: o.source, labelTitle: "registry-adapter"} {
		switch got, ok := c.Labels[label]; {
		case !ok:
			bad("no label %s", label)
		case want != "" && got != want:
			bad("label %s=%q, want %q", label, got, want)
		}
	}
	if cf.OS != "linux" {
		bad("config os %q, want linux", cf.OS)
	}

	// The layers hold exactly what build puts there: a shell or any other tool is an error.
	allowed := map[string]bool{}
	for _, f := range files {
		allowed[strings.TrimSuffix(f.name, "/")] = true
	}
	seen := map[string]bool{}
	err = walk(img, func(h *tar.Header, _ io.Reader) error {
		n := strings.TrimSuffix(strings.TrimPrefix(path.Clean("/"+h.Name), "/"), "/")
		seen[n] = true
		base := path.Base(n)
		switch {
		case base == "sh" || base == "bash" || base == "ash" || base == "dash" || base == "busybox":
			bad("the image holds a shell: /%s", n)
		case !allowed[n]:
			bad("the image holds /%s, which build does not put there", n)
		case "/"+n == binaryPath && (h.Mode&0o111 == 0 || h.Uid != 0):
			bad("%s: mode %o owner %d, want an executable owned by root", binaryPath, h.Mode, h.Uid)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if !seen[strings.TrimPrefix(binaryPath, "/")] {
		bad("no %s in the image", binaryPath)
	}
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	size := int64(0)
	layers, _ := img.Layers()
	for _, l := range layers {
		s, _ := l.Size()
		size += s
	}
	report := fmt.Sprintf("ok %s: user %s, entrypoint %q, %s=%s %s=%s, %d layer(s), %.1f MB compressed\n", digest, c.User,
		c.Entrypoint, labelVersion, c.Labels[labelVersion], labelRevision, c.Labels[labelRevision], len(layers), float64(size)/1e6)
	if o.renderConfig == "" {
		return report, nil
	}

	// The binary as the image holds it: static, and it runs.
	dir, err := os.MkdirTemp("", "image-check-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if err := unpack(img, dir); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, binaryPath)
	if err := staticELF(bin); err != nil {
		return "", err
	}
	// An empty environment: nothing of the build host's (PATH, HOME, SSL_CERT_FILE) reaches it.
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s %s: %w\n%s", binaryPath, strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	out, err := run("version")
	if err != nil {
		return "", err
	}
	if !strings.Contains(out, " "+o.version+" ") || !strings.Contains(out, o.revision) {
		return "", fmt.Errorf("%s version printed %q, want version %s and revision %s", binaryPath, strings.TrimSpace(out), o.version, o.revision)
	}
	report += "ok " + binaryPath + " version: " + strings.TrimSpace(out) + "\n"
	out, err = run("render", "--config", o.renderConfig, "--log-level", "error")
	if err != nil {
		return "", err
	}
	if !strings.Contains(out, "kind: ServiceEntry") {
		return "", fmt.Errorf("%s render --config %s printed no ServiceEntry:\n%s", binaryPath, o.renderConfig, out)
	}
	report += fmt.Sprintf("ok %s render --config %s: %d ServiceEntries\n", binaryPath, o.renderConfig, strings.Count(out, "kind: ServiceEntry"))
	return report, nil
}

// walk calls f for every entry of every layer, in order.
func walk(img v1.Image, f func(*tar.Header, io.Reader) error) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return err
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rc.Close()
				return err
			}
			if err := f(h, tr); err != nil {
				rc.Close()
				return err
			}
		}
		rc.Close()
	}
	return nil
}

func unpackLayout(layoutDir, root string) error {
	if layoutDir == "" || root == "" {
		return fmt.Errorf("-layout and -root are required")
	}
	img, _, err := image(layoutDir)
	if err != nil {
		return err
	}
	return unpack(img, root)
}

// unpack writes the image's files under root, with their modes (owners stay the caller's). Only directories and
// regular files: all that build makes.
func unpack(img v1.Image, root string) error {
	return walk(img, func(h *tar.Header, r io.Reader) error {
		rel := path.Clean("/" + h.Name)
		if strings.Contains(rel, "..") {
			return fmt.Errorf("layer entry %q leaves the root", h.Name)
		}
		dst := filepath.Join(root, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			return os.MkdirAll(dst, os.FileMode(h.Mode).Perm())
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, os.FileMode(h.Mode).Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, r); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			return os.Chmod(dst, os.FileMode(h.Mode).Perm())
		default:
			return fmt.Errorf("layer entry %s: type %c is not unpacked", h.Name, h.Typeflag)
		}
	})
}

func push(layoutDir, ref string) (string, error) {
	img, digest, err := image(layoutDir)
	if err != nil {
		return "", err
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", err
	}
	return r.Context().Name() + "@" + digest.String(), nil
}
