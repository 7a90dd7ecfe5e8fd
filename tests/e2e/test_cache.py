"""The artifact cache with real clients: berth pulls through from Debian's
``docker-registry`` (htpasswd logins, a credential set) and from a second
berth, behind a relay shim that is the upstream's access log as berth sees
it and injects the faults (429, slow bodies).  berth only.

skopeo, ctr and podman pull through the cache byte for byte; the second pull
asks the upstream nothing; an unreachable upstream leaves cached content
pullable (stale, recorded) and names the cause for the rest; a wrong
credential set, a 429 and a missing rule are named by ``check-pull``; the
first pull streams (the client has bytes before the upstream finished); a
``kill -9`` in the middle of a fill leaves nothing served afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import threading
import time

import pytest

from conftest import (
    BIG_PAYLOAD_SIZE,
    StorageTool,
    Creds,
    Daemon,
    E2E_REGISTRY,
    READY_TIMEOUT,
    berth_binary,
    free_port,
    http_session,
    run,
    run_fail,
    wait_for,
)
from diag_support import check_pull, clean_env, expect_cause
from support.upstream import ReferenceUpstream, UpstreamShim

pytestmark = pytest.mark.skipif(E2E_REGISTRY != "berth", reason="the artifact cache is berth's")

PULLER = Creds("puller", "upstream-" + secrets.token_urlsafe(12))


def cli(registry, *args, stdin: str | None = None, check: bool = True):
    env = dict(
        os.environ,
        BERTH_REGISTRY=registry.url,
        BERTH_USERNAME=registry.owner.user,
        BERTH_PASSWORD=registry.owner.password,
    )
    proc = subprocess.run(
        [berth_binary(), *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )
    if check:
        assert proc.returncode == 0, f"berth {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


class Upstream:
    """A docker-registry (htpasswd: PULLER) behind a shim, seeded with the layout's images."""

    def __init__(self, work, env, skopeo, oci_images):
        self.registry = ReferenceUpstream(work, env, {PULLER.user: PULLER.password})
        self.shim = UpstreamShim(self.registry.host)
        lay = oci_images.layout
        push = skopeo.as_user(PULLER)
        for repo, ref, extra in (("lib/app", "v1", ()), ("lib/big", "big", ()), ("lib/multi", "multi", ("--all",))):
            push.copy(lay.transport(ref), f"docker://{self.registry.host}/{repo}:v1", *extra)
        self.shim.requests.clear()

    @property
    def source(self) -> str:
        return f"http://{self.shim.host}/lib/*"

    def stop(self):
        self.shim.close()
        self.registry.stop()


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, client_env, skopeo, oci_images, registry):
    up = Upstream(tmp_path_factory.mktemp("upstream-a"), client_env, skopeo, oci_images)
    cli(registry, "credential-set", "create", "--name", "upa", "--upstream-username", PULLER.user, "--password-stdin",
        stdin=PULLER.password)  # fmt: skip
    cli(registry, "cache-rule", "create", "--name", "upa", "--target", "via-a/*", "--source", f"{up.source}@upa")
    yield up
    up.stop()


def image_digest(containerd, name: str, namespace: str) -> str:
    out = containerd.ctr("images", "ls", namespace=namespace).stdout
    for line in out.splitlines()[1:]:
        cols = line.split()
        if cols and cols[0] == name:
            return cols[2]
    raise AssertionError(f"{name} not in `ctr images ls`:\n{out}")


def test_skopeo_ctr_and_podman_pull_through_byte_for_byte_and_once(
    registry, upstream, skopeo, containerd, oci_images, tmp_path, tmp_path_factory, client_env
):
    lay = oci_images.layout
    # A podman storage of this test's own: the session's is inspected by others.
    podman = StorageTool("podman", tmp_path_factory.mktemp("pc"), client_env, registry.owner)
    # skopeo: the first pull fills the cache.
    out = tmp_path / "app"
    skopeo.copy(registry.docker_ref("via-a/app", "v1"), f"oci:{out}:v1")
    assert registry.manifest_bytes("via-a/app", "v1") == lay.manifest_bytes("v1")
    for layer in lay.layer_digests("v1"):
        assert (out / "blobs" / "sha256" / layer.split(":")[1]).read_bytes() == lay.blob(layer)
    filled = upstream.shim.registry_requests()
    assert filled > 0
    for digest in [lay.config_digest("v1"), *lay.layer_digests("v1")]:
        assert upstream.shim.served(f"GET /v2/lib/app/blobs/{digest}") == 1, upstream.shim.requests

    # ctr and podman: served from the cache, the upstream is not asked.
    ns = "cache-pull"
    pulled = containerd.ctr("images", "pull", "--plain-http", registry.ref("via-a/app", "v1"), namespace=ns).stdout
    assert "unpacking linux/amd64" in pulled
    for layer in lay.layer_digests("v1"):
        got = containerd.ctr("content", "get", layer, namespace=ns, text=False).stdout
        assert got == lay.blob(layer)
    podman("pull", "--tls-verify=false", registry.ref("via-a/app", "v1"))
    assert upstream.shim.registry_requests() == filled, upstream.shim.requests[filled:]

    # One platform of an index: the index and that platform's image only.
    # skopeo fills (it keeps no content between runs; containerd and podman may
    # hold these blobs from other tests and skip fetching them), then ctr and
    # podman pull that platform from the cache with no upstream request.
    before = upstream.shim.registry_requests()
    skopeo.copy(
        registry.docker_ref("via-a/multi", "v1"), f"oci:{tmp_path / 'arm'}:v1", "--override-arch", "arm64",
        "--override-variant", "v8",
    )  # fmt: skip
    assert registry.manifest_bytes("via-a/multi", "v1") == lay.manifest_bytes("multi")
    arm = lay.manifest_digest("arm64")
    amd = lay.manifest_digest("amd64")
    assert upstream.shim.served(f"GET /v2/lib/multi/manifests/{arm}") == 1, upstream.shim.requests
    assert upstream.shim.served(f"GET /v2/lib/multi/manifests/{amd}") == 0, "the other platform is not fetched"
    for layer in lay.layer_digests("arm64"):
        assert upstream.shim.served(f"GET /v2/lib/multi/blobs/{layer}") == 1
    after = upstream.shim.registry_requests()
    assert after > before
    containerd.ctr(
        "images", "pull", "--plain-http", "--platform", "linux/arm64/v8", registry.ref("via-a/multi", "v1"), namespace=ns
    )  # fmt: skip
    assert image_digest(containerd, registry.ref("via-a/multi", "v1"), ns) == lay.manifest_digest("multi")
    podman("pull", "--tls-verify=false", "--platform", "linux/arm64/v8", registry.ref("via-a/multi", "v1"))
    assert upstream.shim.registry_requests() == after, upstream.shim.requests[after:]

    # Metrics, with their help texts.
    metrics = http_session().get(f"{registry.url}/metrics", timeout=30).text
    assert "# HELP berth_cache_hits_total" in metrics
    hits = [line for line in metrics.splitlines() if line.startswith("berth_cache_hits_total") and 'rule="upa"' in line]
    assert hits and all(float(line.rsplit(" ", 1)[1]) > 0 for line in hits), hits
    misses = [line for line in metrics.splitlines() if line.startswith("berth_cache_upstream_bytes_total")]
    assert misses and float(misses[0].rsplit(" ", 1)[1]) > 0, misses

    # The fills are repository events.
    events = cli(registry, "logs", "repository", "--repository", "via-a/app", "--output", "json").stdout
    operations = [e["operationName"] for e in json.loads(events)]
    assert "CacheFill" in operations, operations


def test_a_second_berth_is_an_upstream_too(registry, berth_servers, skopeo, oci_images, tmp_path):
    """Upstream B: a berth with the Docker token flow (Bearer realm), through a shim."""
    b = berth_servers("upstream-b", {"server": {"listen": f"127.0.0.1:{free_port()}"}})
    lay = oci_images.layout
    skopeo.as_user(b.owner).copy(lay.transport("v1"), f"docker://{b.host}/team/app:v1", "--dest-tls-verify=false")
    shim = UpstreamShim(b.host)
    try:
        cli(registry, "credential-set", "create", "--name", "b-owner", "--upstream-username", b.owner.user, "--password-stdin",
            stdin=b.owner.password)  # fmt: skip
        cli(registry, "cache-rule", "create", "--name", "via-b", "--target", "via-b/app",
            "--source", f"http://{shim.host}/team/app@b-owner")  # fmt: skip
        skopeo.copy(registry.docker_ref("via-b/app", "v1"), f"oci:{tmp_path / 'b'}:v1")
        assert registry.manifest_bytes("via-b/app", "v1") == lay.manifest_bytes("v1")
        assert shim.served("GET /oauth2/token") == 1, shim.requests
        asked = shim.registry_requests()
        skopeo.copy(registry.docker_ref("via-b/app", "v1"), f"oci:{tmp_path / 'b2'}:v1")
        assert shim.registry_requests() == asked
        # B's own events say the same: one pull of the manifest by tag (after
        # the 401 that carried the challenge).
        events = b.api("GET", "/logs/repository", params={"repository": "team/app"})
        pulls = [e for e in events if e["operationName"] == "Pull" and e.get("tag") == "v1" and e["resultType"] == 200]
        assert len(pulls) == 1, pulls
    finally:
        shim.close()


def test_pushes_to_a_cached_repository_are_refused(registry, upstream, skopeo, oci_images):
    res = skopeo.fail(
        "copy", "--dest-tls-verify=false", oci_images.layout.transport("v1"), registry.docker_ref("via-a/pushed", "v1")
    )
    assert "read-only cache" in res.stderr and "upa" in res.stderr, res.stderr


def test_wrong_credential_set_and_missing_rule_are_named(registry, upstream, tmp_path):
    cli(registry, "credential-set", "create", "--name", "wrong", "--upstream-username", PULLER.user, "--password-stdin",
        stdin="not-the-password")  # fmt: skip
    cli(registry, "cache-rule", "create", "--name", "wrong", "--target", "via-wrong/*", "--source", f"{upstream.source}@wrong")
    env = clean_env(tmp_path / "home")
    creds = ("--username", registry.owner.user, "--password", registry.owner.password, "--plain-http")
    res = check_pull(f"{registry.host}/via-wrong/app:v1", *creds, env=env)
    v = expect_cause(res, "CACHE_CREDENTIALS_REJECTED", 28, evidence=("wrong",), fix=("credential-set update --name wrong",))
    assert upstream.shim.host in v["evidence"], v
    res = check_pull(f"{registry.host}/via-typo/app:v1", *creds, env=env)
    expect_cause(res, "CACHE_NO_RULE", 31, evidence=("via-a/*",), fix=("via-a/*",))
    # explain probes the rule's upstreams now, and names the rejected set.
    explain = ("explain", "--ip", "127.0.0.1", "--identity", "owner", "--action")
    answer = json.loads(cli(registry, *explain, "pull", "--repository", "via-wrong/app", "--output", "json").stdout)
    probe = answer["cache"]["upstreams"][0]
    assert (answer["cache"]["rule"], probe["cause"], probe["credentialSet"]) == ("wrong", "CREDENTIALS_REJECTED", "wrong")
    text = cli(registry, *explain, "push", "--repository", "via-a/app", check=False)
    assert text.returncode == 2 and "read-only cache" in text.stdout, text.stdout
    text = cli(registry, *explain, "pull", "--repository", "via-typo/app").stdout
    assert "no cache rule targets this repository" in text and "via-a/*" in text, text


def test_fallback_stale_serves_and_an_unreachable_upstream(
    registry, tmp_path_factory, client_env, skopeo, oci_images, tmp_path
):
    up = Upstream(tmp_path_factory.mktemp("upstream-c"), client_env, skopeo, oci_images)
    dead = f"127.0.0.1:{free_port()}"
    cli(registry, "credential-set", "create", "--name", "upc", "--upstream-username", PULLER.user, "--password-stdin",
        stdin=PULLER.password)  # fmt: skip
    # Upstream 1 refuses connections; upstream 2 serves. Tags are checked on every pull (TTL 0).
    cli(registry, "cache-rule", "create", "--name", "upc", "--target", "via-c/*", "--tag-ttl", "0s",
        "--source", f"http://{dead}/lib/*", "--source", f"{up.source}@upc")  # fmt: skip
    lay = oci_images.layout
    skopeo.copy(registry.docker_ref("via-c/app", "v1"), f"oci:{tmp_path / 'c'}:v1")
    assert registry.manifest_bytes("via-c/app", "v1") == lay.manifest_bytes("v1")
    up.stop()

    # By tag and by digest, still.
    skopeo.copy(registry.docker_ref("via-c/app", "v1"), f"oci:{tmp_path / 'c2'}:v1")
    skopeo.copy(registry.docker_ref("via-c/app", lay.manifest_digest("v1")), f"oci:{tmp_path / 'c3'}:v1")
    events = json.loads(cli(registry, "logs", "repository", "--repository", "via-c/app", "--output", "json").stdout)
    stale = [e for e in events if e["operationName"] == "CacheStale"]
    assert stale and "unreachable" in stale[0]["resultDescription"], events

    # Not cached: named, with both upstreams.
    env = clean_env(tmp_path / "home")
    creds = ("--username", registry.owner.user, "--password", registry.owner.password, "--plain-http")
    res = check_pull(f"{registry.host}/via-c/big:v1", *creds, env=env)
    v = expect_cause(res, "CACHE_UPSTREAM_UNREACHABLE", 30, evidence=(dead, up.shim.host), fix=("upc",))
    assert "unreachable" in v["evidence"], v


def test_a_rate_limited_upstream_serves_the_cache_and_names_its_retry_time(
    registry, tmp_path_factory, client_env, skopeo, oci_images, tmp_path
):
    up = Upstream(tmp_path_factory.mktemp("upstream-r"), client_env, skopeo, oci_images)
    try:
        cli(registry, "credential-set", "create", "--name", "upr", "--upstream-username", PULLER.user, "--password-stdin",
            stdin=PULLER.password)  # fmt: skip
        cli(registry, "cache-rule", "create", "--name", "upr", "--target", "via-r/*", "--tag-ttl", "0s",
            "--source", f"{up.source}@upr")  # fmt: skip
        skopeo.copy(registry.docker_ref("via-r/app", "v1"), f"oci:{tmp_path / 'r'}:v1")
        up.shim.rate_limit = True
        skopeo.copy(registry.docker_ref("via-r/app", "v1"), f"oci:{tmp_path / 'r2'}:v1")
        env = clean_env(tmp_path / "home")
        creds = ("--username", registry.owner.user, "--password", registry.owner.password, "--plain-http")
        res = check_pull(f"{registry.host}/via-r/big:v1", *creds, env=env)
        expect_cause(res, "CACHE_UPSTREAM_RATE_LIMITED", 29, fix=("retry after: 30 s",))
    finally:
        up.stop()


def start_berth(name: str, work, port: int, env: dict, owner: Creds) -> Daemon:
    config = work / "berth.toml"
    config.write_text(
        f'data_dir = "{work / "data"}"\n[server]\nlisten = "127.0.0.1:{port}"\n'
        f'[auth]\ninitial_owner_password = "{owner.password}"\n'
    )
    daemon = Daemon(name, [berth_binary(), "serve", "--config", config], work, env=env, cwd=work)
    session = http_session(creds=owner)
    wait_for(
        lambda: session.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200,
        READY_TIMEOUT,
        f"{name} to answer",
        proc=daemon,
    )
    return daemon


def test_first_pull_streams_and_a_kill_mid_fill_leaves_nothing(
    tmp_path_factory, client_env, skopeo, oci_images, tmp_path
):
    """The big layer (8 MiB) trickles from the upstream at about 1 MiB/s."""
    up = Upstream(tmp_path_factory.mktemp("upstream-k"), client_env, skopeo, oci_images)
    work = tmp_path_factory.mktemp("berth-killed")
    port = free_port()
    owner = Creds("owner", secrets.token_urlsafe(24))
    env = {k: v for k, v in client_env.items() if not k.startswith(("BERTH_", "REGISTRY_"))}
    daemon = start_berth("berth-killed", work, port, env, owner)
    session = http_session(creds=owner)
    base = f"http://127.0.0.1:{port}"
    try:
        api = f"{base}/api/v1"
        r = session.post(f"{api}/credential-sets", json={"name": "k", "username": PULLER.user, "password": PULLER.password})
        assert r.status_code == 201, r.text
        r = session.post(f"{api}/cache-rules", json={"name": "k", "target": "via-k/*",
                         "upstreams": [{"source": up.source, "credentialSet": "k"}]})  # fmt: skip
        assert r.status_code == 201, r.text
        lay = oci_images.layout
        big = max(lay.layer_digests("big"), key=lambda d: len(lay.blob(d)))
        assert session.get(f"{base}/v2/via-k/big/manifests/v1", timeout=30).status_code == 200

        # Streaming: the client's first bytes arrive long before the upstream is done.
        up.shim.trickle = 64 * 1024 / (1024 * 1024)  # ≈ 1 MiB/s
        started = time.monotonic()
        with session.get(f"{base}/v2/via-k/big/blobs/{big}", stream=True, timeout=60) as resp:
            assert resp.status_code == 200
            first = next(resp.iter_content(64 * 1024))
            first_byte = time.monotonic() - started
            assert first and up.shim.served(f"GET /v2/lib/big/blobs/{big}") == 1
            # Streamed, not stored first: the client has bytes, the blob is not stored yet.
            assert not list((work / "data" / "blobs").rglob(big.split(":")[1]))
            got = 0
            for chunk in resp.iter_content(256 * 1024):
                got += len(chunk)
                if got >= 2 * 1024 * 1024:
                    break
            # In the middle of the fill: kill -9.
            os.killpg(daemon.popen.pid, signal.SIGKILL)
            daemon.popen.wait(timeout=10)
        total = len(lay.blob(big))
        assert total > 4 * 1024 * 1024
        print(f"first byte after {first_byte:.2f}s of a {total / 1e6:.1f} MB layer trickled at ~1 MiB/s")
        assert not list((work / "data" / "blobs").rglob(big.split(":")[1])), "nothing partial stored as the blob"

        up.shim.trickle = 0.0
        daemon = start_berth("berth-killed-again", work, port, env, owner)
        digest = "sha256:" + hashlib.sha256(session.get(f"{base}/v2/via-k/big/blobs/{big}", timeout=60).content).hexdigest()
        assert digest == big, "the next pull fetched it again, whole"
        assert up.shim.served(f"GET /v2/lib/big/blobs/{big}") == 2
    finally:
        daemon.stop()
        up.stop()
