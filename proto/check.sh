#!/usr/bin/env bash
# Fails when the checked-in generated code or OpenAPI document differs from
# what the .proto files (and the coordinator's HTTP rules) generate (the
# regenerate-and-diff check run by scripts/test.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$here/gen.sh" "$tmp"
status=0
while IFS= read -r f; do
  rel=${f#"$tmp"/}
  if ! diff -u "$here/../$rel" "$f"; then
    echo "proto: $rel is out of date: run proto/gen.sh" >&2
    status=1
  fi
done < <(find "$tmp" -name '*.go' -o -name '*.swagger.json')
n_gen=$(find "$tmp" -name '*.go' -o -name '*.swagger.json' | wc -l)
n_repo=$(find "$here" -name '*.pb.go' -o -name '*.swagger.json' | wc -l)
if [ "$n_gen" != "$n_repo" ]; then
  echo "proto: $n_repo generated files checked in, $n_gen generated: run proto/gen.sh" >&2
  status=1
fi
exit $status
