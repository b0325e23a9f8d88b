#!/usr/bin/env bash
# Runs every test: builds the local control plane the first time (about
# 5-10 minutes; cached in .cache/), then the unit and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
KUBEBUILDER_ASSETS="$(go run ./hack/build-controlplane)"
export KUBEBUILDER_ASSETS
go test -count=1 -timeout 30m "$@" ./...
