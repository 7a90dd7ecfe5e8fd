#!/usr/bin/env bash
# berth vs CNCF Distribution (Debian's docker-registry 2.8), optionally vs
# nginx serving the same bytes as static files (the HTTP ceiling), on the
# same workloads, one server at a time, each on a fresh data directory on
# the same filesystem.
#
# Usage: bench/compare.sh [--with-nginx] [--keep] [berth-bench run flags...]
#   bench/compare.sh --smoke                  tiny sizes, a few seconds per server
#   bench/compare.sh --with-nginx             the full comparison (docs/performance.md)
#   bench/compare.sh --blob-size 256MiB --duration 5s --tags 2000
#
#   --with-nginx  also measure nginx (installed with apt-get if missing) on
#                 the pull and small-GET workloads
#   --keep        keep the work directory (data, logs, per-server reports)
# Every other flag goes to `berth-bench run` (see `berth-bench run --help`).
#
# Environment: BENCH_WORKDIR  where the data directories go [/tmp]
#              BENCH_RESULTS  where the combined JSON goes [bench/results]
#              BERTH_BIN      a berth binary to measure instead of building
#                             target/release/berth
#
# Prints one table with the ratio berth / Distribution per workload and
# writes bench/results/<timestamp>.json (and .md). Missing Debian packages
# are installed with apt-get. Every server started here is stopped on exit.
# Exits non-zero if berth failed any operation.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

with_nginx=0
keep=0
pass=()
while (($#)); do
    case "$1" in
        --with-nginx) with_nginx=1 ;;
        --keep) keep=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) pass+=("$1") ;;
    esac
    shift
done

log() { printf '== %s\n' "$*" >&2; }

# ensure_pkg COMMAND PACKAGE: apt-get install PACKAGE unless COMMAND exists.
ensure_pkg() {
    if command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; then
        return
    fi
    log "installing $2 (apt-get)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

ensure_pkg docker-registry docker-registry
ensure_pkg curl curl
if [ "$with_nginx" = 1 ]; then
    ensure_pkg nginx nginx
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -n "${BERTH_BIN:-}" ]; then
    log "cargo build --release -p berth-bench (berth: $BERTH_BIN)"
    cargo build --release -p berth-bench
    BERTH=$BERTH_BIN
else
    log "cargo build --release -p berth -p berth-bench"
    cargo build --release -p berth -p berth-bench
    BERTH="$ROOT/target/release/berth"
fi
BENCH="$ROOT/target/release/berth-bench"

WORK=$(mktemp -d "${BENCH_WORKDIR:-/tmp}/berth-compare.XXXXXX")
chmod 755 "$WORK" # nginx workers (nobody) traverse it
RESULTS="${BENCH_RESULTS:-$ROOT/bench/results}"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)

PIDS=()
cleanup() {
    local status=$?
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "$keep" = 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

# settle: let writeback and discards of the previous server's data finish,
# so they do not slow the next server down.
settle() {
    sync
    sleep 3
}

# stop PID: stop one server started here and wait for it.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local kept=() pid
    for pid in "${PIDS[@]}"; do
        [ "$pid" = "$1" ] || kept+=("$pid")
    done
    PIDS=("${kept[@]}")
}

# wait_ready NAME PID URL PATH LOG [CODES]: poll until GET URL/PATH answers
# one of CODES (a regex; default 200).
wait_ready() {
    local name=$1 pid=$2 url=$3 path=$4 logfile=$5 codes=${6:-200} i
    for i in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited before it was ready; its log:"
            cat "$logfile" >&2
            return 1
        fi
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url$path")" =~ ^($codes)$ ]]; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not answer $codes on $url$path within 30 s"
    return 1
}

berth_failed=0

# bench NAME PID URL [extra berth-bench flags]: run the workloads, keep the
# report. PID may be empty (no memory figures).
bench() {
    local name=$1 pid=$2 url=$3
    shift 3
    local flags=(--label "$name" --json "$WORK/$name.json")
    [ -z "$pid" ] || flags+=(--pid "$pid")
    log "workloads against $name ($url${pid:+, pid $pid})"
    if ! "$BENCH" run "$url" "${flags[@]}" "$@" "${pass[@]}"; then
        log "$name: some operations failed (see the table above)"
        [ "$name" != berth ] || berth_failed=1
    fi
}

run_distribution() {
    local port data config pid
    port=$(free_port)
    data="$WORK/distribution-data"
    config="$WORK/distribution.yml"
    mkdir -p "$data"
    # Debian's default storage settings, no auth, per-request logging off
    # (berth logs no line per request either).
    cat >"$config" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
EOF
    # Distribution reads REGISTRY_* variables as configuration overrides.
    local unset=() var
    for var in $(compgen -e); do
        case "$var" in REGISTRY_*) unset+=(-u "$var") ;; esac
    done
    log "starting docker-registry on 127.0.0.1:$port"
    env "${unset[@]}" docker-registry serve "$config" >"$WORK/distribution.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_ready distribution "$pid" "http://127.0.0.1:$port" /v2/ "$WORK/distribution.log"
    bench distribution "$pid" "http://127.0.0.1:$port"
    stop "$pid"
    rm -rf "$data"
}

run_berth() {
    local port data pid i
    port=$(free_port)
    data="$WORK/berth-data"
    mkdir -p "$data"
    log "starting berth on 127.0.0.1:$port"
    "$BERTH" serve --listen "127.0.0.1:$port" --data "$data" >"$WORK/berth.out" 2>"$WORK/berth.log" &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 1 300); do
        grep -q "listening on http://" "$WORK/berth.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    # 401: berth with authentication, which created the owner (and wrote
    # its password) before serving.
    wait_ready berth "$pid" "http://127.0.0.1:$port" /v2/ "$WORK/berth.log" '200|401'
    local auth=()
    if [ -f "$data/initial-owner-password" ]; then
        auth=(--user owner --password-file "$data/initial-owner-password")
    fi
    # The disk reference row is measured on the same filesystem, first.
    bench berth "$pid" "http://127.0.0.1:$port" --disk-dir "$WORK/disk" "${auth[@]}"
    stop "$pid"
    rm -rf "$data" "$WORK/disk"
}

run_nginx() {
    local port root pid
    port=$(free_port)
    root="$WORK/static"
    mkdir -p "$root" "$WORK/nginx"
    cat >"$WORK/nginx.conf" <<EOF
worker_processes auto;
user nobody nogroup;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port;
        root $root;
    }
}
EOF
    echo ok >"$root/ready"
    log "starting nginx on 127.0.0.1:$port"
    "$NGINX" -c "$WORK/nginx.conf" -e "$WORK/nginx.log" >>"$WORK/nginx.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_ready nginx "$pid" "http://127.0.0.1:$port" /ready "$WORK/nginx.log"
    # berth-bench writes the files into the root before the GETs. No --pid:
    # the master's memory says nothing (its workers serve).
    bench nginx "" "http://127.0.0.1:$port" --mode static --static-dir "$root"
    stop "$pid"
    rm -rf "$root"
}

settle
run_distribution
settle
run_berth
if [ "$with_nginx" = 1 ]; then
    settle
    run_nginx
fi

mkdir -p "$RESULTS"
compare=(--berth "$WORK/berth.json")
[ -f "$WORK/distribution.json" ] && compare+=(--distribution "$WORK/distribution.json")
[ -f "$WORK/nginx.json" ] && compare+=(--nginx "$WORK/nginx.json")
echo
echo "berth vs Distribution ($STAMP, $(nproc) cores; args: ${pass[*]:-full preset})"
"$BENCH" compare "${compare[@]}" --json "$RESULTS/$STAMP.json" --markdown "$RESULTS/$STAMP.md"
log "results: $RESULTS/$STAMP.json"
exit "$berth_failed"
