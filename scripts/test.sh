#!/usr/bin/env bash
# Installs everything the tests need and runs them all:
#   1. Debian and PyPI packages (scripts/install-test-deps.sh; needs root),
#   2. the Rust unit and integration tests (they start the real berth binary),
#   3. the real-client end-to-end suite (skopeo, containerd/ctr, podman,
#      buildah, the Docker engine, oras) against the real berth binary,
#      embedded and as two scale-out nodes.
# The scale-out tests run against a private PostgreSQL and Garage that this
# script starts on loopback (scripts/scale-out-services.sh) and stops at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

engines=$(mktemp -d /tmp/berth-engines.XXXXXX)
trap 'scripts/scale-out-services.sh stop "$engines"; rm -rf "$engines"' EXIT
scripts/scale-out-services.sh start "$engines"
set -a
# shellcheck disable=SC1091
. "$engines/env"
set +a

echo "== cargo test"
cargo build --workspace --bins
export BERTH_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/berth"
cargo test --workspace --no-fail-fast

echo "== the API suites again, on the scale-out backends (PostgreSQL + S3)"
BERTH_TEST_SCALE_OUT=1 cargo test -p berth --test api_conformance --test bad_input --test auth

echo "== end-to-end suite with real clients"
python3 -m pytest tests/e2e -q
