# syntax=docker/dockerfile:1
# The gpuslice image: one binary for the webhook and the agent.
#
#   docker build -t ghcr.io/gpuslice/gpuslice:0.1.0 .
#
# cgo is required: the agent dlopens libnvidia-ml.so.1 at run time
# (pkg/gpu/nvml_cgo.go; without cgo it builds but can never read a GPU), and
# no NVIDIA library is needed to build. So the final image needs glibc:
# distroless/base, not static. Builder and base are both Debian 12, so the
# binary never needs a newer glibc than the image has.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/gpuslice ./cmd/gpuslice

FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /out/gpuslice /gpuslice
# distroless' nonroot user, numeric so that runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/gpuslice"]
