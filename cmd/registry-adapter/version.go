package main

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version is the one version of the binary, the image and the Helm chart
// (Chart.yaml's version and appVersion, the Dockerfile's VERSION default,
// CHANGELOG.md's latest release). `make release-check` fails when they
// disagree; change them together when releasing.
var version = "0.1.0"

// commit is the source revision: set with -ldflags "-X main.commit=..."
// where the build has no .git (the Dockerfile), otherwise read from the
// VCS stamp go build embeds.
var commit = ""

// buildInfo returns the version and commit ("unknown" when neither the
// linker nor the Go toolchain recorded one; "+dirty" for modified trees).
func buildInfo() (string, string) {
	rev := commit
	if rev == "" {
		rev = "unknown"
		if info, ok := debug.ReadBuildInfo(); ok {
			var modified bool
			for _, s := range info.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					modified = s.Value == "true"
				}
			}
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if modified && rev != "unknown" {
				rev += "+dirty"
			}
		}
	}
	return version, rev
}

// registerBuildInfo exports registry_adapter_build_info{version,revision,goversion} 1,
// the usual way to join a build onto other series (group_left) and to see a
// rollout progress across replicas.
func registerBuildInfo(reg prometheus.Registerer) {
	v, rev := buildInfo()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "registry_adapter_build_info",
		Help:        "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": v, "revision": rev, "goversion": runtime.Version()},
	}, func() float64 { return 1 }))
}
