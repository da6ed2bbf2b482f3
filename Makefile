# registry-adapter — see README.md.
SHELL := /bin/bash
GO ?= go
export GOTOOLCHAIN ?= local
ISTIOD ?= 0
CACHE_DIR ?= $(or $(REGISTRY_ADAPTER_CACHE),$(HOME)/.cache/registry-adapter)
# The one version of binary, image and chart lives in cmd/registry-adapter/version.go (make release-check).
VERSION := $(shell sed -n 's/^var version = "\(.*\)"$$/\1/p' cmd/registry-adapter/version.go)
COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo +dirty)
LDFLAGS := -s -w -X main.commit=$(COMMIT)

.PHONY: all build image image-push test unit vet fmt-check consul fuzz integration e2e e2e-matrix soak demo bench chart-check chart-update docker-check release-check version clean

all: build

# Static (no cgo), as the image and the Dockerfile build it.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/registry-adapter ./cmd/registry-adapter

# The OCI image, without a container engine (hack/image.sh: go-containerregistry): the same static binary for
# linux/$(GOARCH), nonroot, no shell, OCI labels; an OCI image layout in bin/image, its digest in bin/image.digest,
# then read back and checked. make image-push IMAGE=registry.example.com/mesh/registry-adapter:$(VERSION) pushes it
# (credentials of docker login or crane auth login); set the chart's image.repository (and image.tag or
# image.digest) to match.
image:
	bash hack/image.sh build
image-push:
	@[ -n "$(IMAGE)" ] || { echo "usage: make image-push IMAGE=REGISTRY/REPOSITORY:$(VERSION)" >&2; exit 2; }
	bash hack/image.sh build
	bash hack/image.sh push "$(IMAGE)"

# The test suite: static checks, unit tests (race detector on), tests against
# a real Consul agent, the conformance tests with istiod's own client, the
# chart and the image.
test: vet fmt-check release-check consul unit fuzz integration chart-check image

# With the image's build settings (static, -trimpath): vet compiles every package for its export data, and the
# same settings let hack/chart-check.sh and make image reuse that compile instead of repeating it (the project has
# no cgo code, so vet sees the same files).
vet:
	CGO_ENABLED=0 $(GO) vet -trimpath ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# The binary, image, chart and changelog carry one version (hack/release-check.sh).
release-check:
	bash hack/release-check.sh
version:
	@echo $(VERSION)

# Builds (once, then cached) the consul binary the Consul source tests run.
consul:
	@bash integration/consul/consul.sh install >/dev/null

unit:
	PATH="$$(dirname "$$(bash integration/consul/consul.sh install)"):$$PATH" \
	REGISTRY_ADAPTER_REQUIRE_CONSUL=1 REGISTRY_ADAPTER_REQUIRE_MOTO=1 \
	$(GO) test -race -count=1 ./...

# A short fuzz run of each target on top of the committed corpora
# (testdata/fuzz). The runs are bounded by a count of inputs, not by time:
# Go 1.26's coordinator can fail a time-bounded run with a bare "context
# deadline exceeded" and no crasher when the deadline lands mid-call
# (go.dev/issue/75804, fixed in Go 1.27). That failed CI once on
# FuzzParseConfig. The counts give roughly ten seconds each on two cores;
# FuzzParseConfig is slow per input because every package the configuration
# imports (client-go included) is instrumented. FUZZTIME=5m, or 1000000x,
# runs every target longer.
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzService -fuzztime=$(or $(FUZZTIME),100000x) ./convert
	$(GO) test -run='^$$' -fuzz=FuzzSyntaxMatchesUpstream -fuzztime=$(or $(FUZZTIME),100000x) ./convert/validation
	$(GO) test -run='^$$' -fuzz=FuzzParseConfig -fuzztime=$(or $(FUZZTIME),2000x) ./config
	# Against Istio's own validator; in the integration module.
	cd integration && $(GO) test -run='^$$' -fuzz=FuzzValidationAgrees -fuzztime=$(or $(FUZZTIME),10000x) ./validation
	cd integration && $(GO) test -run='^$$' -fuzz=FuzzServiceOutputsPassIstio -fuzztime=$(or $(FUZZTIME),5000x) ./validation

# The integration module (integration/go.mod) keeps Istio's ~400 modules out
# of the main go.mod.
integration:
	cd integration && $(GO) test -race -count=1 ./...

# End to end against a real istiod (pilot-discovery + kube-apiserver + etcd)
# and a real Consul, all built from pinned sources and started on 127.0.0.1.
# First run on a fresh machine: about 15-20 minutes of builds, cached after.
# REGISTRY_ADAPTER_REQUIRE_NETNS=1: the network partition test fails instead
# of skipping when it cannot make its namespace; iproute2 is installed for it.
e2e:
	@command -v ip >/dev/null || { s=; [ "$$(id -u)" = 0 ] || s=sudo; echo "installing iproute2 for the partition test"; \
		$$s apt-get install -y -q --no-install-recommends iproute2 || { $$s apt-get update -q && $$s apt-get install -y -q --no-install-recommends iproute2; }; }
	cd integration/e2e && $(GO) vet ./... && REGISTRY_ADAPTER_REQUIRE_NETNS=1 $(GO) test -count=1 -timeout 40m -v ./... 2>&1 | \
		grep --line-buffered -E '^(=== RUN|--- |PASS|FAIL|ok|e2e setup|panic)|_test\.go:[0-9]+:' ; exit $${PIPESTATUS[0]}

# The e2e's core scenarios (sync and readiness, change, deregistration, adapter restart, TLS) against every istiod
# the module proxy here serves: the pinned one and each of integration/istiod/versions/ (README, Compatibility).
# Not part of make e2e: each Istio line is a pilot-discovery build of its own (about 10 minutes cold, cached).
e2e-matrix:
	bash integration/istiod/e2e-matrix.sh

# The five-minute tour on an embedded default: Consul dev agent, sample VM
# services, the adapter, what istiod receives, a live change. ISTIOD=1 adds a
# real istiod.
demo:
	ISTIOD=$(ISTIOD) bash scripts/demo.sh

# Opt-in soak: 1k changes/s for 10 minutes at 50k resources, memory and
# goroutines flat, every change reaching a real SotW client (RELIABILITY.md).
SOAK_DURATION ?= 10m
soak:
	cd integration/soak && $(GO) test -count=1 -timeout 60m -run TestSoak -v . -args -soak.duration=$(SOAK_DURATION)

# Benchmarks against floors measured in the same run (see BENCHMARKS.md);
# BENCH_QUICK=1 for 1k/10k only.
bench:
	bash scripts/bench.sh

# Chart, rendered YAML, istiod values and dashboard, validated offline (helm
# and the checker are built from the module proxy and cached).
chart-check:
	bash hack/chart-check.sh
chart-update:
	bash hack/chart-check.sh --update
# The Dockerfile's go build in its build context (no container engine here).
# Not part of make test: a second, static build of everything.
docker-check:
	bash hack/docker-check.sh

clean:
	rm -rf bin .run
