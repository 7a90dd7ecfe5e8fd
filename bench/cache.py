#!/usr/bin/env python3
"""The artifact cache's first pull and cached pull, beside pulling from the
upstream directly, in one run on this machine.

Starts Debian's docker-registry (the upstream, on loopback) and a berth
(embedded backends, in a temporary directory) with a cache rule
``bench-N/*`` <- the upstream's ``lib/*``, pushes one random layer of
``--size`` MiB to the upstream, then for each round:

  * direct: GET the layer from the upstream;
  * first pull: GET it through berth from a repository it has never
    cached (``bench-N/layer``, a new N per round): berth fetches it from
    the upstream, streaming it to the client while it stores it;
  * cached pull: once the fill is stored (its ``CacheFill`` event), GET it
    again through berth (served from berth's storage).

For each, the time to the first byte and to the last, and the throughput.
Prints medians (and min/max) with the ratios to direct, and writes JSON to
``bench/results/cache-<time>.json``. Ratios matter, not seconds: the
machine is shared.

  python3 bench/cache.py --berth target/release/berth --size 256 --rounds 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, ok: tuple[int, ...], auth=None, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, auth=auth, timeout=2).status_code in ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def timed_get(url: str, auth=None) -> dict:
    """Seconds to the first body byte and to the last; checks the digest."""
    h = hashlib.sha256()
    size = 0
    start = time.perf_counter()
    first = None
    with requests.get(url, auth=auth, stream=True, timeout=600) as r:
        r.raise_for_status()
        for chunk in r.iter_content(1 << 20):
            if first is None:
                first = time.perf_counter() - start
            h.update(chunk)
            size += len(chunk)
    total = time.perf_counter() - start
    return {"ttfb": first or total, "total": total, "bytes": size, "digest": "sha256:" + h.hexdigest()}


def wait_for_fill(berth: str, auth, repository: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = requests.get(f"{berth}/api/v1/logs/repository", params={"repository": repository}, auth=auth, timeout=30)
        r.raise_for_status()
        if any(e["operationName"] == "CacheFill" for e in r.json()):
            return
        time.sleep(0.05)
    raise TimeoutError(f"no CacheFill event for {repository}")


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--berth", default="target/release/berth", help="the berth binary")
    p.add_argument("--registry", default=shutil.which("docker-registry") or "docker-registry")
    p.add_argument("--size", type=int, default=256, help="layer size in MiB")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="berth-cache-bench-"))
    procs = []
    try:
        up_port, berth_port = free_port(), free_port()
        (work / "up.yml").write_text(
            "version: 0.1\nlog:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {work / 'up'}\n"
            f"http:\n  addr: 127.0.0.1:{up_port}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_", "BERTH_"))}
        procs.append(subprocess.Popen([args.registry, "serve", str(work / "up.yml")], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        password = secrets.token_urlsafe(18)
        berth_env = dict(env, BERTH_AUTH__INITIAL_OWNER_PASSWORD=password, RUST_LOG="warn")
        procs.append(subprocess.Popen(
            [args.berth, "serve", "--listen", f"127.0.0.1:{berth_port}", "--data", str(work / "berth")],
            env=berth_env, stdout=subprocess.DEVNULL, stderr=open(work / "berth.log", "wb"),
        ))  # fmt: skip
        up = f"http://127.0.0.1:{up_port}"
        berth = f"http://127.0.0.1:{berth_port}"
        owner = ("owner", password)
        wait(f"{up}/v2/", (200,))
        wait(f"{berth}/v2/", (200,), auth=owner)

        layer = os.urandom(args.size << 20)
        digest = "sha256:" + hashlib.sha256(layer).hexdigest()
        r = requests.post(f"{up}/v2/lib/layer/blobs/uploads/", timeout=30)
        location = r.headers["Location"]
        location = location if location.startswith("http") else up + location
        sep = "&" if "?" in location else "?"
        r = requests.put(f"{location}{sep}digest={digest}", data=layer, timeout=600)
        assert r.status_code == 201, r.text
        del layer

        r = requests.post(f"{berth}/api/v1/cache-rules", auth=owner, timeout=30, json={
            "name": "bench", "target": "bench/*", "upstreams": [{"source": f"{up}/lib/*"}],
        })  # fmt: skip
        assert r.status_code == 201, r.text

        rows = {"direct": [], "first pull (cache miss)": [], "cached pull": []}
        for n in range(args.rounds):
            # A new cached repository per round: a real miss each time.
            rule = f"bench{n}"
            requests.delete(f"{berth}/api/v1/cache-rules/bench", auth=owner, timeout=30)
            r = requests.post(f"{berth}/api/v1/cache-rules", auth=owner, timeout=30, json={
                "name": rule, "target": f"{rule}/*", "upstreams": [{"source": f"{up}/lib/*"}],
            })  # fmt: skip
            assert r.status_code == 201, r.text
            rows["direct"].append(timed_get(f"{up}/v2/lib/layer/blobs/{digest}"))
            rows["first pull (cache miss)"].append(timed_get(f"{berth}/v2/{rule}/layer/blobs/{digest}", owner))
            # The client is done once the bytes are verified; the fill's
            # commit (an fsync of the whole layer) may still run. "Cached"
            # is measured once it is stored, as a later pull would see it.
            wait_for_fill(berth, owner, f"{rule}/layer")
            rows["cached pull"].append(timed_get(f"{berth}/v2/{rule}/layer/blobs/{digest}", owner))
            requests.delete(f"{berth}/api/v1/cache-rules/{rule}", auth=owner, timeout=30)
        for name, samples in rows.items():
            bad = [s for s in samples if s["digest"] != digest or s["bytes"] != args.size << 20]
            assert not bad, f"{name}: wrong bytes {bad}"

        mib = args.size
        report = {}
        for name, samples in rows.items():
            report[name] = {
                "ttfb_seconds": summary([s["ttfb"] for s in samples]),
                "total_seconds": summary([s["total"] for s in samples]),
                "mib_per_second": summary([mib / s["total"] for s in samples]),
            }
        direct = report["direct"]
        print(f"{mib} MiB layer, {args.rounds} rounds; medians (min-max)")
        print(f"{'':26} {'first byte':>22} {'whole layer':>22} {'MiB/s':>10} {'throughput vs direct':>22}")
        for name, r in report.items():
            t, w, m = r["ttfb_seconds"], r["total_seconds"], r["mib_per_second"]
            ratio = m["median"] / direct["mib_per_second"]["median"]
            r["throughput_ratio_to_direct"] = ratio
            print(
                f"{name:26} {t['median']*1000:8.1f} ms ({t['min']*1000:.0f}-{t['max']*1000:.0f})"
                f" {w['median']:8.2f} s ({w['min']:.2f}-{w['max']:.2f}) {m['median']:10.0f} {ratio:21.0%}"
            )
        out = Path(__file__).parent / "results" / f"cache-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        out.write_text(json.dumps({"size_mib": mib, "rounds": args.rounds, "berth": args.berth, "results": report}, indent=2))
        print(f"written {out}")
        return 0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
