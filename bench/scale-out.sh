#!/usr/bin/env bash
# The embedded registry next to a two-node scale-out deployment (two
# `berth serve` processes over one PostgreSQL and one Garage bucket, all on
# loopback), on the same workloads, one after the other; then the garbage
# collector's cost on the deployment (bench/gc_cost.py).
#
# Right before node A's run, the blob workloads (push, pull, pull-range,
# concurrent-push) also run against the same Garage directly
# (`berth-bench run --mode s3`, objects under bench-direct/ in the
# deployment's bucket, deleted afterwards): the reference of the target
# "two-node push and pull ≥ 0.8 × Garage direct", printed in a second table.
#
# Usage: bench/scale-out.sh [--gc-manifests N] [berth-bench run flags...]
#   --gc-manifests N   size of the GC-cost store [10000]; 0 skips it
#   bench/scale-out.sh --smoke                      a few seconds per server
#   bench/scale-out.sh --blob-size 256MiB --duration 5s --tags 2000
#
# The workloads run against node A while node B serves the same deployment.
# The engines are started with scripts/scale-out-services.sh (PostgreSQL
# from Debian, Garage from `cargo install garage`, see
# scripts/install-test-deps.sh). Writes bench/results/scale-out-<stamp>.json.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

gc_manifests=10000
pass=()
while (($#)); do
    case "$1" in
        --gc-manifests) gc_manifests=$2; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) pass+=("$1") ;;
    esac
    shift
done

log() { printf '== %s\n' "$*" >&2; }

cargo build --release -p berth -p berth-bench
BERTH="$ROOT/target/release/berth"
BENCH="$ROOT/target/release/berth-bench"
WORK=$(mktemp -d "${BENCH_WORKDIR:-/tmp}/berth-scale-bench.XXXXXX")
chmod 755 "$WORK" # PostgreSQL (the postgres user) lives below it
RESULTS="${BENCH_RESULTS:-$ROOT/bench/results}"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
PIDS=()
cleanup() {
    local status=$? pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    scripts/scale-out-services.sh stop "$WORK/engines" || true
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

# start_berth NAME OUT ARGS...: starts `berth serve ARGS`, waits for its
# address line; sets URL and PID.
start_berth() {
    local name=$1 out=$2 i
    shift 2
    "$BERTH" serve "$@" >"$out" 2>"$WORK/$name.log" &
    PIDS+=("$!")
    for i in $(seq 1 300); do
        grep -q "listening on http://" "$out" 2>/dev/null && break
        sleep 0.1
    done
    PID=${PIDS[-1]}
    URL=$(grep -o 'http://[0-9.:]*' "$out" | head -1)
}

export BERTH_AUTH__INITIAL_OWNER_PASSWORD=bench-owner-password
echo "$BERTH_AUTH__INITIAL_OWNER_PASSWORD" >"$WORK/password"
auth=(--user owner --password-file "$WORK/password")

log "embedded: filesystem + SQLite"
start_berth embedded "$WORK/embedded.out" --listen 127.0.0.1:0 --data "$WORK/embedded-data"
"$BENCH" run "$URL" --label embedded --pid "$PID" --json "$WORK/embedded.json" "${auth[@]}" "${pass[@]}"
kill "$PID"; wait "$PID" 2>/dev/null || true; PIDS=()
rm -rf "$WORK/embedded-data"
sync; sleep 3

log "two nodes: Garage + PostgreSQL"
scripts/scale-out-services.sh start "$WORK/engines" >&2
set -a; . "$WORK/engines/env"; set +a
cat >"$WORK/node.toml" <<EOF
[storage]
kind = "s3"
bucket = "$BERTH_TEST_S3_BUCKET"
endpoint = "$BERTH_TEST_S3_ENDPOINT"
region = "$BERTH_TEST_S3_REGION"
access_key_id = "$BERTH_TEST_S3_ACCESS_KEY_ID"
secret_access_key = "$BERTH_TEST_S3_SECRET_ACCESS_KEY"
[metadata]
url = "$BERTH_TEST_POSTGRES_URL"
[gc]
interval_seconds = 0
grace_seconds = 0
EOF
start_berth node-a "$WORK/a.out" --config "$WORK/node.toml" --listen 127.0.0.1:0 --data "$WORK/a"
url_a=$URL pid_a=$PID
start_berth node-b "$WORK/b.out" --config "$WORK/node.toml" --listen 127.0.0.1:0 --data "$WORK/b"
url_b=$URL
log "node A $url_a, node B $url_b"
log "Garage direct: the blob workloads against the bucket itself"
garage_pid=$(cat "$WORK/engines/garage/pid" 2>/dev/null || true)
AWS_ACCESS_KEY_ID=$BERTH_TEST_S3_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$BERTH_TEST_S3_SECRET_ACCESS_KEY \
    "$BENCH" run --mode s3 --s3-endpoint "$BERTH_TEST_S3_ENDPOINT" --s3-bucket "$BERTH_TEST_S3_BUCKET" \
    --s3-region "$BERTH_TEST_S3_REGION" --s3-prefix bench-direct/ --label garage-direct \
    ${garage_pid:+--pid "$garage_pid"} --json "$WORK/garage-direct.json" "${pass[@]}"
"$BENCH" run "$url_a" --label two-node --pid "$pid_a" --json "$WORK/two-node.json" "${auth[@]}" "${pass[@]}"

if [ "$gc_manifests" -gt 0 ]; then
    log "garbage collection cost over $gc_manifests manifests (1% changed)"
    python3 bench/gc_cost.py "$url_a" "${auth[@]}" --manifests "$gc_manifests" --label two-node --json "$WORK/gc.json"
else
    echo '{}' >"$WORK/gc.json"
fi

mkdir -p "$RESULTS"
jq -n --slurpfile e "$WORK/embedded.json" --slurpfile t "$WORK/two-node.json" --slurpfile g "$WORK/gc.json" \
    --slurpfile s "$WORK/garage-direct.json" \
    '{embedded: $e[0], two_node: $t[0], garage_direct: $s[0], gc: $g[0]}' >"$RESULTS/scale-out-$STAMP.json"
echo
echo "embedded vs two-node scale-out ($STAMP, $(nproc) cores; args: ${pass[*]:-full preset})"
jq -r -n --slurpfile e "$WORK/embedded.json" --slurpfile t "$WORK/two-node.json" '
  def rate(w): if w.unit == "MiB/s" then w.mib_per_s else w.ops_per_s end;
  ["workload", "unit", "embedded", "two-node", "two-node/embedded", "p99 embedded ms", "p99 two-node ms"],
  ($e[0].workloads | map(select(.name != "disk-write"))[] as $w
   | ($t[0].workloads[] | select(.name == $w.name)) as $x
   | [$w.name, $w.unit, (rate($w) | floor), (rate($x) | floor),
      ((rate($x) / rate($w)) * 100 | floor / 100), $w.latency_ms.p99, $x.latency_ms.p99])
  | @tsv' | column -t -s $'\t'
echo
echo "two-node vs the same Garage driven directly (target: two-node / Garage direct >= 0.8)"
jq -r -n --slurpfile s "$WORK/garage-direct.json" --slurpfile t "$WORK/two-node.json" '
  def rate(w): (if w.unit == "MiB/s" then w.mib_per_s else w.ops_per_s end) // 0;
  ["workload", "unit", "Garage direct", "two-node", "two-node/direct", "target"],
  ($s[0].workloads[] as $g
   | ($t[0].workloads[] | select(.name == $g.name)) as $x
   | (if rate($g) > 0 then rate($x) / rate($g) else null end) as $r
   | [$g.name, $g.unit, (rate($g) | floor), (rate($x) | floor),
      (if $r == null then "-" else ($r * 100 | floor / 100) end),
      (if $r != null and $r >= 0.8 then "met" else "MISSED" end)])
  | @tsv' | column -t -s $'\t'
log "results: $RESULTS/scale-out-$STAMP.json"
