#!/usr/bin/env python3
"""Garbage-collection cost on a store of N manifests with a fraction changed.

Against a running berth (any backends; the collector's grace period should
be 0 and its interval long, so runs happen only when asked):

  1. pushes N images (each: its own config and its own small layer, plus
     one base layer shared by all), in parallel;
  2. runs the collector once (it examines everything pushed: the first
     run's cost is the whole store);
  3. runs it again with nothing changed;
  4. changes a fraction: deletes that many manifests and pushes as many new
     ones;
  5. runs the collector: its cost is what changed.

Each run is `POST /api/v1/gc/run` (berth's `berth gc run`); the report has
the candidates examined, blobs deleted and requests made to the blob store
(the object store, with S3). Seconds are measured around the request.
Prints a table and, with --json, writes the figures.

  python3 bench/gc_cost.py http://127.0.0.1:5000 --user owner --password-file DATA/initial-owner-password
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import sys
import time

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Client:
    def __init__(self, url: str, auth):
        self.url = url.rstrip("/")
        self.auth = auth
        self.local = __import__("threading").local()

    def session(self) -> requests.Session:
        s = getattr(self.local, "s", None)
        if s is None:
            s = requests.Session()
            s.auth = self.auth
            self.local.s = s
        return s

    def push_blob(self, repo: str, data: bytes) -> str:
        d = digest(data)
        r = self.session().post(f"{self.url}/v2/{repo}/blobs/uploads/", params={"digest": d}, data=data)
        if r.status_code != 201:
            raise RuntimeError(f"push blob {d}: {r.status_code} {r.text[:200]}")
        return d

    def push_image(self, repo: str, tag: str, base: bytes, n: int) -> str:
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": n}).encode()
        layer = b"layer %d " % n + os.urandom(256)
        layers = [base, layer]
        for blob in [config, *layers]:
            self.push_blob(repo, blob)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(l), "size": len(l)} for l in layers
                ],
            }
        ).encode()
        r = self.session().put(
            f"{self.url}/v2/{repo}/manifests/{tag}", data=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        if r.status_code != 201:
            raise RuntimeError(f"push manifest {repo}:{tag}: {r.status_code} {r.text[:200]}")
        return digest(manifest)

    def delete_manifest(self, repo: str, d: str):
        r = self.session().delete(f"{self.url}/v2/{repo}/manifests/{d}")
        if r.status_code != 202:
            raise RuntimeError(f"delete {repo}@{d}: {r.status_code} {r.text[:200]}")

    def gc(self) -> dict:
        started = time.monotonic()
        r = self.session().post(f"{self.url}/api/v1/gc/run", json={})
        elapsed = time.monotonic() - started
        if r.status_code != 200:
            raise RuntimeError(f"gc run: {r.status_code} {r.text[:200]}")
        report = r.json()
        report["seconds"] = elapsed
        return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--user", default="owner")
    ap.add_argument("--password")
    ap.add_argument("--password-file")
    ap.add_argument("--manifests", type=int, default=10_000)
    ap.add_argument("--changed", type=float, default=0.01, help="fraction changed [0.01]")
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--repositories", type=int, default=100)
    ap.add_argument("--label", default="berth")
    ap.add_argument("--json")
    args = ap.parse_args()
    password = args.password
    if args.password_file:
        password = open(args.password_file).read().strip()
    client = Client(args.url, (args.user, password) if password else None)
    base = b"shared base layer " + os.urandom(4096)

    def push(n: int):
        repo = f"gc/r{n % args.repositories}"
        return repo, client.push_image(repo, f"t{n}", base, n)

    def push_all(numbers):
        with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
            return list(pool.map(push, numbers))

    started = time.monotonic()
    images = push_all(range(args.manifests))
    push_s = time.monotonic() - started
    print(f"pushed {len(images)} images in {push_s:.1f}s", file=sys.stderr)

    runs = []
    runs.append(("first run (everything new)", client.gc()))
    runs.append(("nothing changed", client.gc()))
    changed = max(1, int(args.manifests * args.changed))
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda img: client.delete_manifest(*img), images[:changed]))
    push_all(range(args.manifests, args.manifests + changed))
    runs.append((f"{changed} deleted + {changed} pushed ({args.changed:.0%})", client.gc()))

    print(f"\n{args.label}: garbage collection over {args.manifests} manifests")
    print(f"{'run':40} {'seconds':>8} {'examined':>9} {'deleted':>8} {'storage requests':>17}")
    for name, r in runs:
        print(f"{name:40} {r['seconds']:8.2f} {r['examined']:9} {r['blobsDeleted']:8} {r['storageRequests']:17}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"label": args.label, "manifests": args.manifests, "changed": changed,
                       "push_seconds": push_s, "runs": [{"run": n, **r} for n, r in runs]}, f, indent=2)
    last = runs[-1][1]
    # Deleting `changed` manifests frees their config and unique layer.
    if last["blobsDeleted"] != 2 * changed:
        print(f"expected {2 * changed} blobs deleted, got {last['blobsDeleted']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
