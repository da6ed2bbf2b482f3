// Command image builds the adapter's OCI image from a static binary without a container engine, checks an image by
// reading it back, unpacks its file system, and pushes it to a registry. It uses go-containerregistry, the library
// under crane and ko:
//
//	image build  -binary FILE -out DIR -version V -revision R -source URL -created RFC3339 [-arch amd64]
//	image check  -layout DIR -version V -revision R -source URL [-render-config FILE]
//	image unpack -layout DIR -root DIR
//	image push   -layout DIR IMAGE
//
// build writes an OCI image layout (DIR/index.json, DIR/blobs/sha256/...) of one image: a single layer with the
// binary at /registry-adapter and /etc/passwd and /etc/group naming the nonroot user, nothing else (no shell, no
// package manager, no libc: the binary is static and carries its own CA roots). Its config runs as 65532:65532 with
// the chart's entrypoint and the OCI labels version, revision and source. Every timestamp is -created (the commit's
// time), so the same binary gives the same digest. It prints the image's digest.
//
// check reads the layout back and fails unless: the layout and image validate (digests of every blob); the config
// runs as a numeric non-root user with the expected entrypoint, the labels and linux as its OS; the layers hold
// only the files build puts there (so no shell); and, with -render-config, the binary unpacked from the layer is a
// static ELF that prints the version and revision (`version`) and converts the given configuration (`render`).
//
// unpack writes the image's file system into a directory, as a container runtime would (the chart's e2e runs the
// adapter from it). push writes the image to a registry, with the credentials of `docker login` or `crane auth
// login` (~/.docker/config.json), and prints IMAGE@sha256:....
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	var err error
	switch os.Args[1] {
	case "build":
		var o buildOptions
		fs.StringVar(&o.binary, "binary", "", "the static linux binary")
		fs.StringVar(&o.out, "out", "", "OCI image layout directory to write (replaced)")
		fs.StringVar(&o.version, "version", "", "org.opencontainers.image.version")
		fs.StringVar(&o.revision, "revision", "", "org.opencontainers.image.revision")
		fs.StringVar(&o.source, "source", "", "org.opencontainers.image.source")
		fs.StringVar(&o.created, "created", "", "RFC 3339 time of every timestamp (the commit's)")
		fs.StringVar(&o.arch, "arch", "amd64", "the binary's GOARCH")
		_ = fs.Parse(os.Args[2:])
		var digest string
		digest, err = build(o)
		if err == nil {
			fmt.Println(digest)
		}
	case "check":
		var o checkOptions
		fs.StringVar(&o.layout, "layout", "", "OCI image layout directory")
		fs.StringVar(&o.version, "version", "", "expected org.opencontainers.image.version")
		fs.StringVar(&o.revision, "revision", "", "expected org.opencontainers.image.revision")
		fs.StringVar(&o.source, "source", "", "expected org.opencontainers.image.source")
		fs.StringVar(&o.renderConfig, "render-config", "", "run the unpacked binary's version and render on this configuration")
		_ = fs.Parse(os.Args[2:])
		var report string
		report, err = check(o)
		if err == nil {
			fmt.Print(report)
		}
	case "unpack":
		var layoutDir, root string
		fs.StringVar(&layoutDir, "layout", "", "OCI image layout directory")
		fs.StringVar(&root, "root", "", "directory to write the image's file system into")
		_ = fs.Parse(os.Args[2:])
		err = unpackLayout(layoutDir, root)
	case "push":
		var layoutDir string
		fs.StringVar(&layoutDir, "layout", "", "OCI image layout directory")
		_ = fs.Parse(os.Args[2:])
		if fs.NArg() != 1 {
			usage()
		}
		var ref string
		ref, err = push(layoutDir, fs.Arg(0))
		if err == nil {
			fmt.Println(ref)
		}
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "image %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: image build|check|unpack|push [flags] (see the package comment)")
	os.Exit(2)
}
