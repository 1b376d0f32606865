#!/usr/bin/env bash
# Runs fedstat's whole test suite, installing what it needs first.
# Usage: scripts/test.sh            (from the repository root)
#
# - installs protoc (Debian's protobuf-compiler) when missing, for the check
#   that the generated protobuf code matches the .proto files;
# - checks formatting (gofmt) and go vet;
# - runs every package's tests with the race detector, fuzz seeds included.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
if ((${#need_apt[@]})); then
  echo "== installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

echo "== go mod download"
go mod download

echo "== proto: generated code matches the .proto files"
proto/check.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go') | grep -v '\.pb\.go$' || true)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi

echo "== go vet"
go vet ./...

echo "== go build"
go build -o /dev/null ./cmd/fedstat

echo "== go test -race"
go test -race -timeout 25m ./... "$@"
