#!/usr/bin/env bash
# Manifest GET throughput of one berth (release build) under the ways a
# client can authenticate, and with a 100-rule network rule set (events on,
# as always): the figures asked for by issues #4 (bearer / anonymous ≥ 0.8)
# and #5 (100 rules / no rules ≥ 0.9). Each mode runs twice, interleaved,
# to expose the machine's noise.
#   bench/auth-and-rules.sh [--duration 10s]
set -euo pipefail
cd "$(dirname "$0")/.."
duration=10s
[[ ${1:-} == --duration ]] && duration=$2
cargo build --release -p berth -p berth-bench >/dev/null
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BERTH_AUTH__INITIAL_OWNER_PASSWORD=bench-owner target/release/berth serve \
  --listen "127.0.0.1:$port" --data "$work/data" >"$work/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
export BERTH_REGISTRY="http://127.0.0.1:$port" BERTH_USERNAME=owner BERTH_PASSWORD=bench-owner
target/release/berth update --anonymous-pull-enabled true >/dev/null

run() { # label, manifest-auth
  target/release/berth-bench run "http://127.0.0.1:$port" --pid "$pid" --user owner --password bench-owner \
    --workloads manifest-get --duration "$duration" --manifest-auth "$2" --json "$work/$1.json" >/dev/null 2>&1
  python3 - "$work/$1.json" "$1" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
w = next(x for x in report["workloads"] if x["name"] == "manifest-get")
print("%-26s %9.0f req/s  p99 %.2f ms" % (sys.argv[2], w["ops_per_s"], w["latency_ms"]["p99"]))
PY
}
rules() { # 99 rules that do not match and one that does, default Deny
  for i in $(seq 1 99); do target/release/berth network-rule add --ip-address "10.$((i / 250)).$((i % 250)).0/24" >/dev/null; done
  target/release/berth network-rule add --ip-address 127.0.0.1 >/dev/null
  target/release/berth update --default-action Deny >/dev/null
}
norules() {
  target/release/berth update --default-action Allow >/dev/null
}

echo "manifest GET, 64 connections, $duration each (load: $(cut -d' ' -f1-3 /proc/loadavg))"
for round in 1 2; do
  run "anonymous-$round" anonymous
  run "bearer-$round" bearer
  run "basic-$round" basic
done
rules
echo "rule set: $(target/release/berth network-rule list -o json | python3 -c 'import json,sys; n=json.load(sys.stdin); print(len(n["networkRuleSet"]["ipRules"]), "IP rules, default", n["networkRuleSet"]["defaultAction"])')"
for round in 1 2; do
  run "rules100-anonymous-$round" anonymous
  run "rules100-bearer-$round" bearer
  norules
  run "norules-anonymous-$round" anonymous
  target/release/berth update --default-action Deny >/dev/null
done
echo "login events stored: $(target/release/berth logs login --limit 10000 -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
