#!/usr/bin/env bash
# berth vs CNCF Distribution (Debian's docker-registry 2.8), optionally vs
# nginx serving the same bytes as static files (the HTTP ceiling), on the
# same workloads, one server at a time, each on a fresh data directory on
# the same filesystem.
#
# Usage: bench/compare.sh [--with-nginx] [--tls] [--keep] [berth-bench run flags...]
#   bench/compare.sh --smoke                  tiny sizes, a few seconds per server
#   bench/compare.sh --with-nginx             the full comparison (docs/performance.md)
#   bench/compare.sh --with-nginx --tls       the same, plus the reads over TLS
#   bench/compare.sh --blob-size 256MiB --duration 5s --tags 2000
#
#   --with-nginx  also measure nginx (installed with apt-get if missing) on
#                 the pull and small-GET workloads
#   --tls         also run the reads (pull, pull-range, manifest-get) over
#                 HTTPS against a second berth (and, with --with-nginx, a
#                 second nginx), with a self-signed certificate for
#                 127.0.0.1 made by openssl in the work directory;
#                 Distribution stays plain HTTP
#   --quiet LOAD  before each server's run, wait (at most 3 min) until the
#                 1-minute load average is under LOAD [1.0]; 0 does not wait
#   --keep        keep the work directory (data, logs, per-server reports)
# Every other flag goes to `berth-bench run` (see `berth-bench run --help`).
# A berth with authentication (the default) also gets one extra
# manifest-get run with a bearer token from its token service
# (--manifest-auth bearer).
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
tls=0
keep=0
quiet=1.0
pass=()
while (($#)); do
    case "$1" in
        --with-nginx) with_nginx=1 ;;
        --tls) tls=1 ;;
        --keep) keep=1 ;;
        --quiet) quiet=$2; shift ;;
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
if [ "$tls" = 1 ]; then
    ensure_pkg openssl openssl
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

# --tls: one self-signed certificate for 127.0.0.1 (CA:TRUE, as a plain
# `openssl req -x509` makes it), trusted by berth-bench with --ca-file and by
# curl with --cacert.
CERT="$WORK/tls/cert.pem"
KEY="$WORK/tls/key.pem"
curl_ca=()
if [ "$tls" = 1 ]; then
    mkdir -p "$WORK/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$KEY" -out "$CERT" 2>/dev/null
    chmod 644 "$KEY" "$CERT" # a throwaway key; nginx's workers may read it
    curl_ca=(--cacert "$CERT")
fi

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
# so they do not slow the next server down; then wait for a quiet machine
# (the previous run's own load, or a build, takes a minute to decay).
settle() {
    sync
    sleep 3
    wait_quiet
}

# wait_quiet: until the 1-minute load average is under $quiet (3 min at most).
wait_quiet() {
    local i load
    for i in $(seq 1 180); do
        read -r load _ </proc/loadavg
        awk -v l="$load" -v q="$quiet" 'BEGIN { exit !(q == 0 || l < q) }' && return 0
        [ "$i" -gt 1 ] || log "waiting for the load average ($load) to fall under $quiet"
        sleep 1
    done
    log "the load average is still $load after 3 min; going on"
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
        if [[ "$(curl -s "${curl_ca[@]}" -o /dev/null -w '%{http_code}' "$url$path")" =~ ^($codes)$ ]]; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not answer $codes on $url$path within 30 s"
    return 1
}

berth_failed=0

# The flags given to this script, less --workloads and --manifest-auth, for
# the runs that pick their own (the TLS reads, the bearer manifest GET).
pass_own=()
skip_next=0
for arg in "${pass[@]}"; do
    if [ "$skip_next" = 1 ]; then
        skip_next=0
        continue
    fi
    case "$arg" in
        --workloads | --manifest-auth) skip_next=1 ;;
        --workloads=* | --manifest-auth=*) ;;
        *) pass_own+=("$arg") ;;
    esac
done
run_pass=("${pass[@]}")

# bench NAME PID URL [extra berth-bench flags]: run the workloads, keep the
# report. PID may be empty (no memory figures).
bench() {
    local name=$1 pid=$2 url=$3
    shift 3
    local flags=(--label "$name" --json "$WORK/$name.json")
    [ -z "$pid" ] || flags+=(--pid "$pid")
    log "workloads against $name ($url${pid:+, pid $pid})"
    if ! "$BENCH" run "$url" "${flags[@]}" "$@" "${run_pass[@]}"; then
        log "$name: some operations failed (see the table above)"
        [[ "$name" != berth* ]] || berth_failed=1
    fi
}

# bench_only WORKLOADS NAME PID URL [flags]: bench with these workloads only.
bench_only() {
    local workloads=$1
    shift
    run_pass=("${pass_own[@]}")
    bench "$@" --workloads "$workloads"
    run_pass=("${pass[@]}")
}

# The read workloads, the only ones run over TLS.
READS=pull,pull-range,manifest-get

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

# run_berth [tls]: berth in plain HTTP (every workload, then the manifest
# GET with a bearer token), or with `tls` over HTTPS (the reads only).
run_berth() {
    local mode=${1:-plain} name=berth scheme=http port data pid i
    local serve=() tls_flags=()
    if [ "$mode" = tls ]; then
        name=berth-tls
        scheme=https
        cat >"$WORK/berth-tls.toml" <<EOF
[server]
tls_cert = "$CERT"
tls_key = "$KEY"
EOF
        serve=(--config "$WORK/berth-tls.toml")
        tls_flags=(--ca-file "$CERT")
    fi
    port=$(free_port)
    data="$WORK/$name-data"
    mkdir -p "$data"
    log "starting $name on 127.0.0.1:$port"
    "$BERTH" serve "${serve[@]}" --listen "127.0.0.1:$port" --data "$data" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" &
    pid=$!
    PIDS+=("$pid")
    for i in $(seq 1 300); do
        grep -q "listening on $scheme://" "$WORK/$name.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    local url="$scheme://127.0.0.1:$port"
    # 401: berth with authentication, which created the owner (and wrote
    # its password) before serving.
    wait_ready "$name" "$pid" "$url" /v2/ "$WORK/$name.log" '200|401'
    local auth=()
    if [ -f "$data/initial-owner-password" ]; then
        auth=(--user owner --password-file "$data/initial-owner-password")
    fi
    if [ "$mode" = tls ]; then
        bench_only "$READS" "$name" "$pid" "$url" "${tls_flags[@]}" "${auth[@]}"
    else
        # The disk reference row is measured on the same filesystem, first.
        bench "$name" "$pid" "$url" --disk-dir "$WORK/disk" "${auth[@]}"
        if [ ${#auth[@]} -gt 0 ]; then
            # The same manifest GET with a bearer token from berth's token
            # service (fetched once, then sent on every request).
            wait_quiet
            bench_only manifest-get berth-bearer "$pid" "$url" "${auth[@]}" --manifest-auth bearer
        else
            log "berth runs without authentication: no bearer manifest-get"
        fi
    fi
    stop "$pid"
    rm -rf "$data" "$WORK/disk"
}

# run_nginx [tls]: nginx serving the static files in plain HTTP, or with
# `tls` over HTTPS (OpenSSL) with the same certificate as berth.
run_nginx() {
    local mode=${1:-plain} name=nginx scheme=http port root pid
    local listen_ssl="" ssl_conf="" tls_flags=()
    if [ "$mode" = tls ]; then
        name=nginx-tls
        scheme=https
        listen_ssl=" ssl"
        ssl_conf="ssl_certificate $CERT; ssl_certificate_key $KEY;"
        tls_flags=(--ca-file "$CERT")
    fi
    port=$(free_port)
    root="$WORK/static"
    mkdir -p "$root" "$WORK/nginx"
    cat >"$WORK/$name.conf" <<EOF
worker_processes auto;
user nobody nogroup;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/$name.log warn;
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
        listen 127.0.0.1:$port$listen_ssl;
        $ssl_conf
        root $root;
    }
}
EOF
    echo ok >"$root/ready"
    log "starting $name on 127.0.0.1:$port"
    "$NGINX" -c "$WORK/$name.conf" -e "$WORK/$name.log" >>"$WORK/$name.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    local url="$scheme://127.0.0.1:$port"
    wait_ready "$name" "$pid" "$url" /ready "$WORK/$name.log"
    # berth-bench writes the files into the root before the GETs. No --pid:
    # the master's memory says nothing (its workers serve).
    if [ "$mode" = tls ]; then
        bench_only "$READS" "$name" "" "$url" --mode static --static-dir "$root" "${tls_flags[@]}"
    else
        bench "$name" "" "$url" --mode static --static-dir "$root"
    fi
    stop "$pid"
    rm -rf "$root"
}

settle
run_distribution
settle
run_berth
if [ "$tls" = 1 ]; then
    settle
    run_berth tls
fi
if [ "$with_nginx" = 1 ]; then
    settle
    run_nginx
    if [ "$tls" = 1 ]; then
        settle
        run_nginx tls
    fi
fi

mkdir -p "$RESULTS"
compare=(--berth "$WORK/berth.json")
[ -f "$WORK/distribution.json" ] && compare+=(--distribution "$WORK/distribution.json")
[ -f "$WORK/nginx.json" ] && compare+=(--nginx "$WORK/nginx.json")
[ -f "$WORK/berth-tls.json" ] && compare+=(--berth-tls "$WORK/berth-tls.json")
[ -f "$WORK/nginx-tls.json" ] && compare+=(--nginx-tls "$WORK/nginx-tls.json")
[ -f "$WORK/berth-bearer.json" ] && compare+=(--berth-bearer "$WORK/berth-bearer.json")
with_tls=""
[ "$tls" = 0 ] || with_tls=", with TLS"
echo
echo "berth vs Distribution ($STAMP, $(nproc) cores; args: ${pass[*]:-full preset}$with_tls)"
"$BENCH" compare "${compare[@]}" --json "$RESULTS/$STAMP.json" --markdown "$RESULTS/$STAMP.md"
log "results: $RESULTS/$STAMP.json"
exit "$berth_failed"
