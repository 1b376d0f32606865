#!/usr/bin/env bash
# Regenerates the Go code of the protos in this folder. Needs protoc (Debian:
# protobuf-compiler) and the two plugins at the versions below.
# Usage: proto/gen.sh [OUTDIR]   (default: the repository, in place)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/..}
# Pinned plugin versions, installed into a private folder so that the output
# never depends on what else is on the PATH.
bin="$here/../.cache/protoc-bin"
mkdir -p "$bin"
[ -x "$bin/protoc-gen-go" ] || GOBIN="$bin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
[ -x "$bin/protoc-gen-go-grpc" ] || GOBIN="$bin" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
export PATH="$bin:$PATH"
cd "$here"
protoc -I . \
  --go_out="$out" --go_opt=module=github.com/fedstat/fedstat \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/fedstat/fedstat \
  $(find fedstat -name '*.proto' | sort)
