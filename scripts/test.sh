#!/usr/bin/env bash
# Runs fedstat's whole test suite, installing what it needs first.
# Usage: scripts/test.sh            (from the repository root)
#
# - installs from Debian what is missing: protoc (protobuf-compiler) for the
#   check that the generated protobuf code matches the .proto files, systemd
#   (systemd-analyze) for the unit files, chromium for the dashboard's browser
#   test, curl for the reference example scripts, gcc for cgo (the race
#   detector, DuckDB), postgresql, started as a throw-away cluster, for
#   the OMOP warehouse tests, clickhouse-server for the warehouse's
#   ClickHouse dialect (its tests start the server), and R and Python packages for the analysts'
#   clients (clients/r, clients/python; see their section below);
# - validates the OpenAPI document, checks formatting (gofmt) and go vet,
#   runs R CMD check on the R client and pip-installs the Python client;
# - runs every package's tests with the race detector, fuzz seeds included
#   (test/stattest's statistics without it).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# systemd-analyze, for deploy/'s check of the systemd units (verify).
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium) # the dashboard's browser test (coordinator/web)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)         # examples/reference/network.sh waits on /readyz with it
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)           # cgo: the race detector and the DuckDB driver (-tags duckdb)
if ((${#need_apt[@]})); then
  echo "== installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

# PostgreSQL for node/internal/warehouse (OMOP back end): in CI or as root,
# install Debian's postgresql when missing and start a throw-away cluster on a
# free port with a unix socket in a temp dir; stopped and removed on exit.
# The tests read FEDSTAT_TEST_POSTGRES_DSN (set it yourself to use another
# server); without it they fail when CI=true and skip otherwise.
if [ -z "${FEDSTAT_TEST_POSTGRES_DSN:-}" ] && { [ "${CI:-}" = true ] || [ "$(id -u)" = 0 ]; }; then
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$pgbin" ]; then
    echo "== installing postgresql"
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  fi
  pgdir=$(mktemp -d /tmp/fedstat-pg.XXXXXX)
  pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)
  as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
  [ "$(id -u)" = 0 ] && chown postgres "$pgdir"
  echo "== starting PostgreSQL ($pgbin) on port $pgport, socket $pgdir"
  as_pg "'$pgbin/initdb' -D '$pgdir/data' -A trust -U postgres >'$pgdir/initdb.log' 2>&1"
  as_pg "'$pgbin/pg_ctl' -D '$pgdir/data' -w -l '$pgdir/server.log' -o \"-k $pgdir -p $pgport -c listen_addresses=''\" start >/dev/null"
  as_pg "'$pgbin/createdb' -h '$pgdir' -p $pgport -U postgres fedstat_test"
  stop_pg() { as_pg "'$pgbin/pg_ctl' -D '$pgdir/data' -m fast stop >/dev/null 2>&1" || true; rm -rf "$pgdir"; }
  trap stop_pg EXIT
  export FEDSTAT_TEST_POSTGRES_DSN="host=$pgdir port=$pgport user=postgres dbname=fedstat_test"
fi

# ClickHouse for node/internal/warehouse's ClickHouse dialect: in CI or as
# root, install Debian's clickhouse-server (18.16) when missing, without
# recommends (about 10 s). The tests start and stop their own server
# (test/testkit.ClickHouseServer: a temp dir, free loopback ports, two
# shards); without the binary they fail when CI=true and skip otherwise.
if [ "${CI:-}" = true ] || [ "$(id -u)" = 0 ]; then
  if ! command -v clickhouse-server >/dev/null 2>&1 && [ ! -x /usr/sbin/clickhouse-server ]; then
    echo "== installing clickhouse-server"
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clickhouse-server >/dev/null
    else
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clickhouse-server >/dev/null
    fi
  fi
fi

echo "== go mod download"
go mod download

echo "== proto: generated code matches the .proto files"
proto/check.sh

# The document is validated by go-openapi/validate in go test
# (TestOpenAPIDocumentValid, coordinator); where Python has
# openapi-spec-validator (PyPI may be out of reach, so it is not installed
# here), it validates the document too.
echo "== OpenAPI: the HTTP/JSON API's document is valid"
go test -count=1 -run '^TestOpenAPIDocumentValid$' ./coordinator/
if python3 -c 'import openapi_spec_validator' 2>/dev/null; then
  python3 -m openapi_spec_validator proto/fedstat/coordinator/v1/coordinator.swagger.json
else
  echo "(openapi-spec-validator not installed: validated by go-openapi/validate only)"
fi

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

echo "== exact privacy accountant over every network size (pure arithmetic: no race detector)"
go test -count=1 -run '^TestReleasedNoiseMatchesCharge$' ./queries/dp/

echo "== empirical privacy audit, fast mode, with its positive controls (statistics: no race detector)"
go test -count=1 -run '^TestPrivacyAudit' ./node/
go test -count=1 -run '^TestTreeAudit' ./queries/continual/

echo "== a study import's peak memory, and the whole Synthea import (memory, one-threaded parsing: no race detector)"
go test -count=1 -run '^(TestStudyImportMemory|TestImportSyntheaBundles)$' ./node/admin/

# The analysts' clients (clients/python, clients/r). Their dependencies come
# from Debian (CI reaches no Python package index): R with httr2, jsonlite,
# tibble and testthat, and Debian's python3 with pandas, httpx, tqdm and
# pytest; without recommends, to keep the install short. Then the R package's
# R CMD check (failing on a WARNING or an ERROR) and a pip install of the
# Python package. TestClientsMatchCLI (test/e2e, in the go test run below)
# runs both clients against a network of processes; with CI=true it fails
# when either cannot run.
echo "== clients: R and Python dependencies, R CMD check clients/r, pip install clients/python"
clients_start=$SECONDS
clients_apt=()
command -v Rscript >/dev/null 2>&1 || clients_apt+=(r-base-core)
for p in httr2 jsonlite openssl tibble testthat; do
  Rscript -e "library($p)" >/dev/null 2>&1 || clients_apt+=("r-cran-$p")
done
clients_py=/usr/bin/python3
for m in pandas httpx tqdm pytest pip cryptography; do
  "$clients_py" -c "import $m" >/dev/null 2>&1 || clients_apt+=("python3-$m")
done
if ((${#clients_apt[@]})); then
  echo "   installing ${clients_apt[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${clients_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${clients_apt[@]}" >/dev/null
  fi
fi
clients_tmp=$(mktemp -d /tmp/fedstat-clients.XXXXXX)
(
  cd "$clients_tmp"
  R CMD build "$OLDPWD/clients/r" >build.log 2>&1 || { cat build.log >&2; exit 1; }
  R CMD check --no-manual fedstat_*.tar.gz >check.out 2>&1 || { cat check.out >&2; exit 1; }
  if grep -Eq '^Status:.*(WARNING|ERROR)' fedstat.Rcheck/00check.log; then
    cat fedstat.Rcheck/00check.log >&2
    exit 1
  fi
  grep '^Status:' fedstat.Rcheck/00check.log
)
"$clients_py" -m pip install -q --root-user-action=ignore --no-deps --no-build-isolation --no-index --target "$clients_tmp/site" ./clients/python
PYTHONPATH="$clients_tmp/site" "$clients_py" -c 'import fedstat; print("   pip installed fedstat", fedstat.__version__)'
rm -rf "$clients_tmp" clients/python/build clients/python/src/fedstat.egg-info
echo "== clients: done in $((SECONDS - clients_start)) s"

# test/stattest checks released statistics against reference data sets with
# published answers: many full analyses, ten times slower under the race
# detector. It runs without it, as the audits above do; the network code its
# analyses drive runs under the race detector in test/e2e and node/.
echo "== statistics against published answers (test/stattest; no race detector)"
go test -count=1 -timeout 15m ./test/stattest/ "$@"

# The system tests that are mostly group or ring arithmetic (the linkage's
# proofs, the ceremonies of large committees): eight times slower under the
# race detector, which they skip (test/e2e noRace; TestNoRaceListInStep
# keeps this list and theirs the same), while other tests drive the same
# code under it.
echo "== system tests that are mostly arithmetic (test/e2e; no race detector)"
go test -count=1 -run '^(TestWrongLinkShareNamed|TestLinkSumsCheckedByDecryptors|TestLinkedReleaseRecord|TestLargeCommitteeFallbacks|TestDealingNeighbourNamed|TestFalseDealingComplaintNamed)$' ./test/e2e/

# test/e2e first: it is the longest package by far (under the race
# detector on 2 cores about 20 minutes alone, more than 25 beside the other
# packages since the ceremonies carry two sets of Shamir images), and go
# test starts the packages' tests in the order given, so the others run
# beside it instead of before it.
echo "== go test -race"
go test -race -timeout 40m ./test/e2e/ $(go list ./... | grep -v -e '/test/stattest$' -e '/test/e2e$') "$@"

# The DuckDB dialect is behind the duckdb build tag (cgo, a 90 MB library):
# the warehouse tests again, on PostgreSQL and on DuckDB files, the binary
# that includes it, and a network in which one node answers from a DuckDB file.
echo "== OMOP warehouse on DuckDB (-tags duckdb)"
go vet -tags duckdb ./node/internal/warehouse/ ./test/e2e/
go build -tags duckdb -o /dev/null ./cmd/fedstat
go test -race -count=1 -tags duckdb ./node/internal/warehouse/
go test -count=1 -tags duckdb -run '^TestWarehouseDuckDBNodeProcess$' ./test/e2e/
