#!/usr/bin/env bash
# gofmt, go vet and staticcheck over both modules' code we own.
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted="$(gofmt -l cmd internal pkg hack bench test 2>/dev/null || true)"
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi
go vet ./...
go vet -tags realnode ./cmd/gpuslice # demo --real-node, kept out of the release build
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
