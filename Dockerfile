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
ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
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

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="registry-adapter" \
      org.opencontainers.image.description="Consul and cloud registries to Istio ServiceEntry/WorkloadEntry over MCP-over-xDS" \
      org.opencontainers.image.source="https://github.com/registry-adapter/registry-adapter" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/registry-adapter /registry-adapter
USER 65532:65532
# 15010: MCP-over-xDS (istiod). 15014: /metrics, /healthz, /readyz, /debug/* (set server.debugListen to
# 0.0.0.0:15014 in the configuration to reach it from outside the container, as the chart does).
EXPOSE 15010 15014
ENTRYPOINT ["/registry-adapter", "run", "--config", "/etc/registry-adapter/config.yaml"]
