#!/usr/bin/env bash
# Runs every test: builds the local control plane the first time (about
# 5-10 minutes; cached in .cache/), then the unit and end-to-end tests.
#
# As root it also builds the real node (kubelet, kube-proxy, containerd,
# runc, CNI plugins; about 10 more minutes the first time) and installs the
# Debian packages it needs when they are missing: libseccomp-dev and
# pkg-config (runc's seccomp build), iptables (kube-proxy, CNI portmap) and
# gcc (the gpuslice image's cgo build, the stand-in NVML). The tests build
# images for this machine's architecture only, so the arm64 cross packages
# are not installed; go run ./hack/image names them when needed.
# The real-node tests in test/realnode skip without root, saying why, unless
# GPUSLICE_REQUIRE_REAL_NODE=1 (set by .ci/run) turns the skip into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
build_flags=()
if [ "$(id -u)" = 0 ]; then
	missing=()
	pkg-config --exists libseccomp 2>/dev/null || missing+=(libseccomp-dev pkg-config)
	command -v iptables >/dev/null || missing+=(iptables)
	command -v gcc >/dev/null || missing+=(gcc)
	if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
		echo "installing ${missing[*]} for the real node" >&2
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi
	build_flags+=(-node)
fi
KUBEBUILDER_ASSETS="$(go run ./hack/build-controlplane "${build_flags[@]}")"
export KUBEBUILDER_ASSETS
go test -count=1 -timeout 30m "$@" ./...
# pkg/pluginconfig against the NVIDIA device plugin's own config types, in
# a module of its own so the plugin's dependencies stay out of gpuslice's.
(cd hack/pluginconfig-conformance && go test -count=1 ./...)
