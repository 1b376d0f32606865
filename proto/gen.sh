#!/usr/bin/env bash
# Regenerates the Go code of the protos in this folder and the OpenAPI
# document of the coordinator's HTTP/JSON API. Needs protoc (Debian:
# protobuf-compiler) and the plugins at the versions below.
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
# The folder name carries the version, so that a new pin installs afresh.
oapi="$bin/openapiv2-v2.34.0"
[ -x "$oapi/protoc-gen-openapiv2" ] || GOBIN="$oapi" go install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@v2.34.0
export PATH="$bin:$PATH"
cd "$here"
protoc -I . \
  --go_out="$out" --go_opt=module=github.com/fedstat/fedstat \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/fedstat/fedstat \
  $(find fedstat -name '*.proto' | sort)
# The OpenAPI (Swagger 2.0) document of the HTTP/JSON API: the coordinator
# proto, its HTTP rules (coordinator_http.yaml) and the document's extras
# (coordinator_openapi.yaml). Field names are the proto names, as the
# handlers write them (protojson UseProtoNames). Optional fields are marked
# x-nullable: the statistics write null for an estimate that is not a
# finite number (the other optional fields are only ever left out).
c=fedstat/coordinator/v1
protoc -I . --plugin=protoc-gen-openapiv2="$oapi/protoc-gen-openapiv2" \
  --openapiv2_out="$out/proto" \
  --openapiv2_opt=grpc_api_configuration=$c/coordinator_http.yaml \
  --openapiv2_opt=openapi_configuration=$c/coordinator_openapi.yaml \
  --openapiv2_opt=json_names_for_fields=false \
  --openapiv2_opt=disable_default_errors=true \
  --openapiv2_opt=preserve_rpc_order=true \
  --openapiv2_opt=proto3_optional_nullable=true \
  $c/coordinator.proto
