package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/registry-adapter/registry-adapter/config"
)

// Exit codes, the same for every command (README "Running it").
const (
	exitOK          = 0 // done; for check: istiod holds exactly what the registries hold
	exitError       = 1 // the command failed: bad configuration, a source or istiod unreachable, run stopped by an error
	exitUsage       = 2 // the command line is wrong: unknown command or flag, missing --config
	exitDifferences = 3 // check: istiod's view differs from the registries (the differences are on stdout)
)

// configEnv names the configuration file when --config is not given, as
// containers and CI jobs set it more easily than arguments.
const configEnv = "REGISTRY_ADAPTER_CONFIG"

// usageError is a command-line mistake: the command's usage is printed and
// the exit code is exitUsage.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// errDifferences is check's verdict when istiod differs from the registries.
var errDifferences = errors.New("istiod differs from the registries")

// command is one subcommand: its flags, what it does and how to call it.
type command struct {
	name, summary, args string
	// examples are shown by --help, one command line (with a comment) each.
	examples []string
}

var commands = []command{
	{name: "run", summary: "watch the sources and serve istiod", args: "[--config FILE] [--log-level LEVEL] [--log-format FORMAT]",
		examples: []string{
			"registry-adapter run --config /etc/registry-adapter/config.yaml",
			"REGISTRY_ADAPTER_CONFIG=config.yaml registry-adapter run --log-level debug --log-format console",
		}},
	{name: "render", summary: "sync every source once and print the resources as YAML", args: "[--config FILE] [--timeout DURATION]",
		examples: []string{
			"registry-adapter render --config examples/static.yaml",
			"registry-adapter render --config config.yaml | kubectl apply --server-side -f -",
		}},
	{name: "validate", summary: "check the configuration and exit", args: "[--config FILE]",
		examples: []string{
			"registry-adapter validate --config config.yaml",
		}},
	{name: "check", summary: "compare the registries with istiod's view (its debug API)", args: "[--config FILE] (--istiod URL | --istiod-xds ADDR --istiod-ca-file FILE) [--istiod-token-file FILE]",
		examples: []string{
			"# istiod's debug API through a port-forward (loopback callers need no token):",
			"kubectl -n istio-system port-forward deploy/istiod 15014 &",
			"registry-adapter check --config config.yaml --istiod http://127.0.0.1:15014",
			"# in the cluster, over xDS on istiod's TLS port, with a service-account token for the audience istio-ca",
			"# and istiod's root certificate (the chart's istiodToken mounts both):",
			"kubectl -n istio-system exec deploy/registry-adapter -- /registry-adapter check \\",
			"    --config /etc/registry-adapter/config.yaml --istiod-xds istiod.istio-system.svc:15012 \\",
			"    --istiod-ca-file /var/run/secrets/registry-adapter/istiod/root-cert.pem \\",
			"    --istiod-token-file /var/run/secrets/registry-adapter/istiod/token",
		}},
	{name: "version", summary: "print the version and the commit", args: "",
		examples: []string{"registry-adapter version"}},
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// mainUsage is the top-level help.
func mainUsage(w io.Writer) {
	fmt.Fprint(w, "registry-adapter serves registry services to istiod over MCP-over-xDS.\n\nUsage:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  registry-adapter %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Every command takes --help. The configuration file comes from --config, or from $%s when --config is not given.

Exit codes: %d ok; %d failed (bad configuration, unreachable source or istiod); %d wrong command line;
%d check found differences between the registries and istiod.
`, configEnv, exitOK, exitError, exitUsage, exitDifferences)
}

// newFlags is a subcommand's flag set. Its usage text lists the flags and
// the examples; --help prints it to stdout, a flag error to stderr.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	c, _ := lookup(name)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "registry-adapter %s: %s\n\nUsage:\n  registry-adapter %s %s\n", c.name, c.summary, c.name, c.args)
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
		if len(c.examples) > 0 {
			fmt.Fprint(w, "\nExamples:\n")
			for _, e := range c.examples {
				fmt.Fprintf(w, "  %s\n", e)
			}
		}
		fmt.Fprintf(w, "\nExit codes: %d ok, %d failed, %d wrong command line", exitOK, exitError, exitUsage)
		if c.name == "check" {
			fmt.Fprintf(w, ", %d differences found", exitDifferences)
		}
		fmt.Fprintln(w)
	}
	return fs
}

// parseFlags parses args; -h/--help prints the usage to stdout and returns
// flag.ErrHelp, a bad flag returns a usageError (the usage went to stderr).
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			errOut := fs.Output()
			fs.SetOutput(stdout)
			fs.Usage()
			fs.SetOutput(errOut)
			return flag.ErrHelp
		}
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

// configFlag adds --config, defaulting to $REGISTRY_ADAPTER_CONFIG.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", os.Getenv(configEnv), "configuration file (YAML); default $"+configEnv)
}

// logFlags adds --log-level and --log-format, which override the
// configuration file's log section when given.
type logFlags struct{ level, format *string }

func addLogFlags(fs *flag.FlagSet) logFlags {
	return logFlags{
		level:  fs.String("log-level", "", "debug, info, warn or error (overrides log.level)"),
		format: fs.String("log-format", "", "json or console (overrides log.format)"),
	}
}

func (l logFlags) apply(cfg *config.LogConfig) error {
	if *l.level != "" {
		cfg.Level = *l.level
	}
	switch *l.format {
	case "", "json", "console":
	default:
		return usageError{fmt.Errorf("--log-format %q: want json or console", *l.format)}
	}
	if *l.format != "" {
		cfg.Format = *l.format
	}
	return nil
}

// loadConfig parses the flags and reads the configuration file.
func loadConfig(fs *flag.FlagSet, path *string, args []string, stdout io.Writer) (*config.Config, error) {
	if err := parseFlags(fs, args, stdout); err != nil {
		return nil, err
	}
	if *path == "" {
		fs.Usage()
		return nil, usageError{fmt.Errorf("--config (or $%s) is required", configEnv)}
	}
	return config.Load(*path)
}
