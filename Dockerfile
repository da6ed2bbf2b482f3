# syntax=docker/dockerfile:1
# registry-adapter: a static binary on distroless, running as nonroot (65532).
#
#   docker build -t registry-adapter:"$(make -s version)" --build-arg COMMIT="$(git rev-parse --short=12 HEAD)" .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REPO:"$(make -s version)" --build-arg COMMIT=... --push .
#
# The image tag is the version (cmd/registry-adapter/version.go, also the chart's appVersion); VERSION below only
# labels the image and must equal it (make release-check).
#
# The chart (manifests/chart/registry-adapter) mounts the configuration at the path the ENTRYPOINT reads.
#
# Base images are pinned by digest (a tag can be re-pushed; a digest cannot), with the tag kept for people to read
# (Docker pulls by the digest alone). GO_VERSION and GO_DIGEST change together. Where the digests came from: they
# were not resolved against the registries here (no registry access where this was written) but taken from public
# Dockerfiles that pin the same tags for multi-platform builds: golang:1.26.8@sha256:3c3e25a4... in
# kubernetes-sigs/headlamp and four other projects, static-debian12:nonroot@sha256:b7bb25d9... in at least ten
# (one records it as the multi-arch index, resolved 2026-07-13). A wrong one fails the pull, never substitutes
# another repository's image. To verify or refresh them (needs registry access; run before a release):
#   hack/pin-images.sh --check     # exit 1 when a pinned digest is not what its tag resolves to now
#   hack/pin-images.sh             # rewrite them to what the tags resolve to now
ARG GO_VERSION=1.26.8
ARG GO_DIGEST=sha256:3c3e25a4da13fd0478eed2df1eb35a0e667094a7124d3993a6a1d30f71c17e79

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}@${GO_DIGEST} AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG COMMIT=unknown
WORKDIR /src
# The toolchain of the image, never a downloaded one; no cgo, so the binary runs on a distroless/static base.
ENV GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.commit=${COMMIT}" -o /out/registry-adapter ./cmd/registry-adapter

FROM gcr.io/distroless/static-debian12:nonroot@sha256:b7bb25d9f7c31d2bdd1982feb4dafcaf137703c7075dbe2febb41c24212b946f
ARG VERSION=0.1.0
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="registry-adapter" \
      org.opencontainers.image.description="Consul and cloud registries to Istio ServiceEntry/WorkloadEntry over MCP-over-xDS" \
      org.opencontainers.image.source="https://github.com/registry-adapter/registry-adapter" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/registry-adapter /registry-adapter
USER 65532:65532
# 15010: MCP-over-xDS (istiod). 15014: /metrics, /healthz, /readyz (set server.debugListen to 0.0.0.0:15014 in the
# configuration to reach it from outside the container, as the chart does). The admin endpoints (/debug/*, pprof)
# stay on server.adminListen, loopback only: not exposed.
EXPOSE 15010 15014
ENTRYPOINT ["/registry-adapter", "run", "--config", "/etc/registry-adapter/config.yaml"]
