// Command registry-adapter serves services from Consul and cloud registries
// to istiod as ServiceEntries and WorkloadEntries over MCP-over-xDS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/registry-adapter/registry-adapter/adapter"
	"github.com/registry-adapter/registry-adapter/admin"
	"github.com/registry-adapter/registry-adapter/config"
	"github.com/registry-adapter/registry-adapter/convert"
	"github.com/registry-adapter/registry-adapter/fidelity"
	"github.com/registry-adapter/registry-adapter/server"
	"github.com/registry-adapter/registry-adapter/sinks/kube"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the command line and returns the exit code (exit* constants).
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		mainUsage(stderr)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = runCmd(rest, stdout, stderr)
	case "render":
		err = renderCmd(rest, stdout, stderr)
	case "validate":
		err = validateCmd(rest, stdout, stderr)
	case "check":
		err = checkCmd(rest, stdout, stderr)
	case "version":
		err = versionCmd(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(rest) == 1 {
			if _, ok := lookup(rest[0]); ok {
				return Main([]string{rest[0], "--help"}, stdout, stderr)
			}
		}
		mainUsage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n", cmd)
		mainUsage(stderr)
		return exitUsage
	}
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "registry-adapter %s: %v\n", cmd, err)
		return exitUsage
	case errors.Is(err, errDifferences):
		fmt.Fprintf(stderr, "registry-adapter %s: %v\n", cmd, err)
		return exitDifferences
	default:
		fmt.Fprintf(stderr, "registry-adapter %s: %v\n", cmd, err)
		return exitError
	}
}

func versionCmd(args []string, stdout, stderr io.Writer) error {
	if err := parseFlags(newFlags("version", stderr), args, stdout); err != nil {
		return err
	}
	v, rev := buildInfo()
	fmt.Fprintf(stdout, "registry-adapter %s (commit %s, %s)\n", v, rev, runtime.Version())
	return nil
}

func validateCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate", stderr)
	path := configFlag(fs)
	cfg, err := loadConfig(fs, path, args, stdout)
	if err != nil {
		return err
	}
	// A source logs what is valid but risky when it is built: validate shows
	// those warnings, level and message only, and still succeeds.
	warn := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zapcore.EncoderConfig{
		LevelKey: "level", MessageKey: "msg", EncodeLevel: zapcore.CapitalLevelEncoder,
	}), zapcore.AddSync(stderr), zapcore.WarnLevel))
	if _, err := config.BuildSources(cfg, nil, warn); err != nil {
		return err
	}
	shards := ""
	if cfg.Server.Shards > 1 {
		addrs, _ := cfg.Server.ListenAddrs()
		shards = fmt.Sprintf(", %d shards on %s", cfg.Server.Shards, strings.Join(addrs, " "))
	}
	fmt.Fprintf(stdout, "%s: valid (%d sources, output %s in namespace %s%s)\n", *path, len(cfg.Sources), cfg.Output.Mode, cfg.Output.Namespace, shards)
	return nil
}

func renderCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("render", stderr)
	path := configFlag(fs)
	logf := addLogFlags(fs)
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for every source's first sync")
	cfg, err := loadConfig(fs, path, args, stdout)
	if err != nil {
		return err
	}
	if err := logf.apply(&cfg.Log); err != nil {
		return err
	}
	// Logs go to stderr so that stdout is exactly what kubectl apply reads.
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	srcs, err := config.BuildSources(cfg, nil, log)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, *timeout)
	defer cancelTimeout()
	resources, rejected, err := adapter.Render(ctx, srcs, cfg.Output, log)
	if err != nil {
		return err
	}
	for _, r := range rejected {
		log.Warn("left out", zap.String("item", r.String()))
	}
	out, err := convert.YAML(resources, convert.RenderOptions{})
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// checkCmd prints every difference between what the registries hold now
// and what istiod holds, and fails when there is any.
func checkCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := configFlag(fs)
	logf := addLogFlags(fs)
	istiod := fs.String("istiod", "http://127.0.0.1:15014", "istiod's debug HTTP API: its monitoring port (15014), or --httpAddr (8080) on istiod's own host")
	tokenFile := fs.String("istiod-token-file", "", "bearer token for istiod, re-read at each request: a Kubernetes service-account token with\nthe audience istio-ca, of a service account in istiod's namespace (istiod admits\nnon-loopback callers to its debug API only with one). Sent only over TLS (--istiod-xds,\nor an https:// --istiod) or to a loopback --istiod, never on a redirect")
	xdsAddr := fs.String("istiod-xds", "", "read istiod's debug API over xDS on its secure port instead of --istiod (from inside the\ncluster: istiod.istio-system.svc:15012), TLS verified with --istiod-ca-file, with\n--istiod-token-file")
	caFile := fs.String("istiod-ca-file", "", "with --istiod-xds: istiod's root certificate (root-cert.pem of the istio-ca-root-cert ConfigMap)")
	serverName := fs.String("istiod-server-name", "istiod.istio-system.svc", "with --istiod-xds: the name istiod's certificate must carry")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for every source's first sync")
	var pc proxyCheck
	pc.flags(fs)
	cfg, err := loadConfig(fs, path, args, stdout)
	if err != nil {
		return err
	}
	if err := logf.apply(&cfg.Log); err != nil {
		return err
	}
	client := http.DefaultClient
	base := strings.TrimSuffix(*istiod, "/")
	switch {
	case *xdsAddr != "":
		if err := hostPort(*xdsAddr); err != nil {
			return err
		}
		var closeConn func() error
		if client, closeConn, err = xdsDebugClient(*xdsAddr, *caFile, *serverName, *tokenFile); err != nil {
			return err
		}
		defer closeConn()
		base = "http://istiod-over-xds"
	case *tokenFile != "":
		if client, err = bearerClient(*tokenFile, *istiod); err != nil {
			return err
		}
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	srcs, err := config.BuildSources(cfg, nil, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resources, _, err := adapter.Render(ctx, srcs, cfg.Output, log)
	if err != nil {
		return err
	}
	want := fidelity.Expected(resources)
	got, err := fidelity.Istiod(ctx, client, base)
	if err != nil {
		return err
	}
	// The expectation is the adapter's own conversion: this half proves
	// delivery to istiod's registry, not that the conversion is right.
	diff := fidelity.Diff(want, got)
	fmt.Fprintf(stdout, "istiod's registry (%s) against the adapter's conversion of the configured sources (%s): %d differences\n",
		got.Summary(), want.Summary(), len(diff))
	proxyDiff, err := pc.run(ctx, stdout, want)
	if err != nil {
		return err
	}
	diff = append(diff, proxyDiff...)
	for _, line := range diff {
		fmt.Fprintln(stdout, line)
	}
	if len(diff) > 0 {
		return fmt.Errorf("%w: %d differences (registries: %s; istiod: %s)", errDifferences, len(diff), want.Summary(), got.Summary())
	}
	fmt.Fprintf(stdout, "istiod is faithful: %s\n", got.Summary())
	return nil
}

func runCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	path := configFlag(fs)
	logf := addLogFlags(fs)
	cfg, err := loadConfig(fs, path, args, stdout)
	if err != nil {
		return err
	}
	if err := logf.apply(&cfg.Log); err != nil {
		return err
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	v, rev := buildInfo()
	log.Info("starting", zap.String("version", v), zap.String("commit", rev), zap.String("config", *path), zap.Int("sources", len(cfg.Sources)),
		zap.Int("shards", cfg.Server.Shards), zap.String("sink", string(cfg.Sink)))
	setMemoryLimit(log, memlimit.FromCgroup)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerBuildInfo(reg)
	srcs, err := config.BuildSources(cfg, reg, log)
	if err != nil {
		return err
	}
	serverMetrics := server.NewMetrics(reg)
	// One cache and one listener per shard; the adapter routes each host to
	// the shard adapter.ShardOf picks.
	caches := server.NewCaches(cfg.Server.Shards, serverMetrics)
	srv, err := server.NewSharded(cfg.Server.Config, caches, serverMetrics, log.Named("server"))
	if err != nil {
		return err
	}
	registerCertExpiry(reg, srv)
	// The caches are fed whatever the sink: they are also the debug dump.
	var sink *kube.Sink
	if cfg.Sink.Kubernetes() {
		rc, err := kube.RESTConfig(cfg.KubernetesSink)
		if err != nil {
			return err
		}
		if sink, err = kube.New(cfg.KubernetesSink, cfg.Output.Namespace, rc, reg, log.Named("kube")); err != nil {
			return err
		}
	}
	// Each shard's diff goes to its cache and, whatever the shard, to the
	// sink: sharding only splits what istiod's config sources carry.
	pubs := make([]adapter.Publisher, len(caches))
	for i, c := range caches {
		pubs[i] = c
		if sink != nil {
			pubs[i] = adapter.Fanout{c, sink}
		}
	}
	a := adapter.NewSharded(srcs, cfg.Settings(), pubs, adapter.NewMetrics(reg), log.Named("adapter"))
	dbg := &admin.Debug{Adapter: a, Caches: caches, Server: srv, Sources: srcs, Gatherer: reg, Log: log.Named("debug"),
		TokenFile: cfg.Server.AdminTokenFile}
	reg.MustRegister(dbg.ReadyGauge())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, ctx := errgroup.WithContext(ctx)
	// With sink: kubernetes the xDS listener still runs: readiness and the
	// debug dump are the caches' and the server's; istiod is simply not
	// pointed at it.
	g.Go(func() error { return srv.Run(ctx) })
	if sink != nil {
		g.Go(func() error { return sink.Run(ctx) })
	}
	g.Go(func() error { return a.Run(ctx) })
	g.Go(func() error { return dbg.Run(ctx, cfg.Server.DebugListen, cfg.Server.AdminListen) })
	err = g.Wait()
	log.Info("stopped", zap.Error(err))
	return err
}

// newLogger logs JSON unless told otherwise or writing to a terminal.
func newLogger(cfg config.LogConfig, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	format := cfg.Format
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "console"
			}
		}
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if format == "console" {
		encCfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(w), level)
	return zap.New(core), nil
}
