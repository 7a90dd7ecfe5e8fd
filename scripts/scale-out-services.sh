#!/usr/bin/env bash
# Starts (or stops) the real engines the scale-out tests need, on loopback
# only: a PostgreSQL server (Debian's packages, run as the `postgres` user
# when we are root) and a single-node Garage (S3-compatible object store,
# `cargo install garage`), with a bucket and a key made through its CLI.
#
#   scripts/scale-out-services.sh start DIR   # writes DIR/env (KEY=VALUE lines)
#   scripts/scale-out-services.sh stop DIR
#   scripts/scale-out-services.sh pg-stop|pg-start|garage-stop|garage-start DIR
#       (outage tests: stop one engine of DIR and start it again, same port
#       and data)
#
# DIR/env names: BERTH_TEST_POSTGRES_URL (database `berth`, user `berth`),
# BERTH_TEST_POSTGRES_ADMIN_URL (superuser, to create per-test databases),
# BERTH_TEST_S3_ENDPOINT, _BUCKET, _REGION, _ACCESS_KEY_ID, _SECRET_ACCESS_KEY.
set -euo pipefail

action=${1:?usage: scale-out-services.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: scale-out-services.sh start|stop DIR}")

garage_bin() {
    for candidate in "${GARAGE_BIN:-}" "$(command -v garage 2>/dev/null || true)" \
        /opt/garage/bin/garage "$HOME/.cargo/bin/garage"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return; fi
    done
    echo "garage is not installed: run scripts/install-test-deps.sh" >&2
    exit 1
}

pg_bin() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$found" ] || { echo "PostgreSQL is not installed: run scripts/install-test-deps.sh" >&2; exit 1; }
    echo "$found"
}

# Runs a command as the postgres user if we are root (initdb refuses root).
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
    mkdir -p "$dir"
    # PostgreSQL runs as the postgres user: it must reach its directory
    # (every parent of DIR must be traversable too).
    chmod 755 "$dir"
    local pgbin; pgbin=$(pg_bin)
    local garage; garage=$(garage_bin)

    # --- PostgreSQL
    local pgport; pgport=$(free_port)
    mkdir -p "$dir/pg"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/pg"
    chmod 700 "$dir/pg"
    as_pg "$pgbin/initdb" -D "$dir/pg/data" -U postgres -A trust -E UTF8 --locale=C >"$dir/pg/initdb.log"
    echo "$pgport" >"$dir/pg/port"
    pg_start
    psql -q -h 127.0.0.1 -p "$pgport" -U postgres -d postgres \
        -c "CREATE USER berth PASSWORD 'berth' CREATEDB" -c "CREATE DATABASE berth OWNER berth"

    # --- Garage
    local s3port rpcport adminport
    s3port=$(free_port); rpcport=$(free_port); adminport=$(free_port)
    mkdir -p "$dir/garage"
    cat >"$dir/garage/garage.toml" <<TOML
metadata_dir = "$dir/garage/meta"
data_dir = "$dir/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpcport"
rpc_public_addr = "127.0.0.1:$rpcport"
rpc_secret = "$(openssl rand -hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$adminport"
TOML
    local g=("$garage" -c "$dir/garage/garage.toml")
    garage_start
    local node=""
    for _ in $(seq 1 100); do
        node=$("${g[@]}" node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$node" ] && break
        sleep 0.2
    done
    [ -n "$node" ] || { echo "garage did not start; see $dir/garage/server.log" >&2; exit 1; }
    "${g[@]}" layout assign -z dc1 -c 10G "$node" >/dev/null
    "${g[@]}" layout apply --version 1 >/dev/null
    for _ in $(seq 1 50); do
        "${g[@]}" bucket create berth >/dev/null 2>&1 && break
        sleep 0.2
    done
    local key; key=$("${g[@]}" key create berth-key)
    local key_id secret
    key_id=$(echo "$key" | awk -F': *' '/Key ID/ {print $2; exit}')
    secret=$(echo "$key" | awk -F': *' '/Secret key/ {print $2; exit}')
    "${g[@]}" bucket allow --read --write --owner berth --key berth-key >/dev/null
    # The scale-out backup test restores into a bucket of its own.
    "${g[@]}" key allow --create-bucket berth-key >/dev/null

    cat >"$dir/env" <<ENV
BERTH_TEST_POSTGRES_URL=postgres://berth:berth@127.0.0.1:$pgport/berth
BERTH_TEST_POSTGRES_ADMIN_URL=postgres://postgres@127.0.0.1:$pgport/postgres
BERTH_TEST_S3_ENDPOINT=http://127.0.0.1:$s3port
BERTH_TEST_S3_BUCKET=berth
BERTH_TEST_S3_REGION=garage
BERTH_TEST_S3_ACCESS_KEY_ID=$key_id
BERTH_TEST_S3_SECRET_ACCESS_KEY=$secret
ENV
    echo "PostgreSQL on 127.0.0.1:$pgport, Garage S3 on 127.0.0.1:$s3port; settings in $dir/env"
}

pg_start() {
    local pgbin; pgbin=$(pg_bin)
    local pgport; pgport=$(cat "$dir/pg/port")
    as_pg "$pgbin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $pgport -k $dir/pg -c max_connections=400 -c fsync=on" start >/dev/null
}

pg_stop() {
    local pgbin; pgbin=$(pg_bin)
    as_pg "$pgbin/pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null
}

garage_start() {
    local garage; garage=$(garage_bin)
    RUST_LOG=warn setsid "$garage" -c "$dir/garage/garage.toml" server >>"$dir/garage/server.log" 2>&1 &
    echo $! >"$dir/garage/pid"
    # Up when its S3 port accepts connections.
    local s3port
    s3port=$(awk -F'"' '/^api_bind_addr/ {print $2; exit}' "$dir/garage/garage.toml" | cut -d: -f2)
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$s3port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "garage did not start; see $dir/garage/server.log" >&2
    exit 1
}

garage_stop() {
    if [ -f "$dir/garage/pid" ]; then
        local pid; pid=$(cat "$dir/garage/pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$dir/garage/pid"
    fi
}

stop() {
    local pgbin; pgbin=$(pg_bin)
    if [ -d "$dir/pg/data" ]; then
        as_pg "$pgbin/pg_ctl" -D "$dir/pg/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ -f "$dir/garage/pid" ]; then
        kill "$(cat "$dir/garage/pid")" 2>/dev/null || true
        rm -f "$dir/garage/pid"
    fi
}

case "$action" in
    start) start ;;
    stop) stop ;;
    pg-start) pg_start ;;
    pg-stop) pg_stop ;;
    garage-start) garage_start ;;
    garage-stop) garage_stop ;;
    *) echo "usage: scale-out-services.sh start|stop|pg-stop|pg-start|garage-stop|garage-start DIR" >&2; exit 2 ;;
esac
