"""berth as several stateless nodes over PostgreSQL (metadata) and an S3 bucket (blobs).

Every deployment here is two (or, for a restart, more) ``berth serve``
processes on their own loopback ports, sharing one fresh PostgreSQL database
(created per deployment with the admin URL) and one key prefix in the
Garage bucket. Both engines are started on loopback by ``scripts/test.sh``
(``scripts/scale-out-services.sh``), which exports ``BERTH_TEST_POSTGRES_*``
and ``BERTH_TEST_S3_*``; without them every test here fails (never skips).

- the real clients push through node A and pull through node B;
- a chunked upload whose PATCHes alternate between the nodes;
- ``kill -9`` of a node in the middle of a streamed PATCH, resumed on the other;
- online garbage collection (1 s passes, 3 s grace) under pushes, pulls and
  deletions through both nodes, then the bucket is checked key by key.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import ipaddress
import json
import os
import random
import re
import secrets
import signal
import sys
import tarfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from conftest import (
    DOCKER_MANIFEST,
    E2E_REGISTRY,
    OCI_MANIFEST,
    READY_TIMEOUT,
    BerthServer,
    Creds,
    Daemon,
    OciLayout,
    berth_binary,
    free_port,
    http_session,
    make_oras_client,
    require_tool,
    run,
    sha256_digest,
    toml_dumps,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    E2E_REGISTRY == "reference",
    reason="scale-out (PostgreSQL + S3, several nodes) is berth's own deployment mode",
)

HTTP_TIMEOUT = 60
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

SCALE_OUT_VARS = (
    "BERTH_TEST_POSTGRES_URL",
    "BERTH_TEST_POSTGRES_ADMIN_URL",
    "BERTH_TEST_S3_ENDPOINT",
    "BERTH_TEST_S3_BUCKET",
    "BERTH_TEST_S3_REGION",
    "BERTH_TEST_S3_ACCESS_KEY_ID",
    "BERTH_TEST_S3_SECRET_ACCESS_KEY",
)


# --------------------------------------------------------------------------
# The engines (PostgreSQL, Garage) and the deployments over them
# --------------------------------------------------------------------------


def _assert_loopback(url: str, var: str):
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        pytest.fail(f"{var}={url!r}: the end-to-end tests only talk to loopback addresses", pytrace=False)


@dataclass
class Engines:
    postgres_url: str  # postgres://berth:berth@127.0.0.1:PORT/berth
    postgres_admin_url: str  # superuser, for CREATE DATABASE
    s3_endpoint: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str
    s3: object  # boto3 S3 client

    def database_url(self, database: str) -> str:
        parts = urllib.parse.urlsplit(self.postgres_url)
        return urllib.parse.urlunsplit(parts._replace(path=f"/{database}"))

    def psql(self, sql: str, url: str | None = None) -> str:
        res = run(
            [require_tool("psql"), url or self.postgres_admin_url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
            dict(os.environ, PGCONNECT_TIMEOUT="10"),
            timeout=60,
        )
        return res.stdout

    def keys(self, prefix: str) -> dict[str, int]:
        """Every object key under ``prefix`` in the bucket, with its size."""
        out: dict[str, int] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = obj["Size"]
        return out


@pytest.fixture(scope="module")
def engines() -> Engines:
    missing = [v for v in SCALE_OUT_VARS if not os.environ.get(v)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not set: the scale-out tests need the PostgreSQL and Garage that "
            "scripts/test.sh starts (scripts/scale-out-services.sh start DIR) and exports; run the suite "
            "through scripts/test.sh, or start them yourself and `set -a; . DIR/env; set +a`",
            pytrace=False,
        )
    env = {v: os.environ[v] for v in SCALE_OUT_VARS}
    for var in ("BERTH_TEST_POSTGRES_URL", "BERTH_TEST_POSTGRES_ADMIN_URL", "BERTH_TEST_S3_ENDPOINT"):
        _assert_loopback(env[var], var)
    import boto3  # noqa: PLC0415 - only this module needs it
    from botocore.config import Config  # noqa: PLC0415

    s3 = boto3.client(
        "s3",
        endpoint_url=env["BERTH_TEST_S3_ENDPOINT"],
        region_name=env["BERTH_TEST_S3_REGION"],
        aws_access_key_id=env["BERTH_TEST_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["BERTH_TEST_S3_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, proxies={}, retries={"max_attempts": 3}),
    )
    return Engines(
        postgres_url=env["BERTH_TEST_POSTGRES_URL"],
        postgres_admin_url=env["BERTH_TEST_POSTGRES_ADMIN_URL"],
        s3_endpoint=env["BERTH_TEST_S3_ENDPOINT"],
        bucket=env["BERTH_TEST_S3_BUCKET"],
        region=env["BERTH_TEST_S3_REGION"],
        access_key_id=env["BERTH_TEST_S3_ACCESS_KEY_ID"],
        secret_access_key=env["BERTH_TEST_S3_SECRET_ACCESS_KEY"],
        s3=s3,
    )


@dataclass
class Deployment:
    """Nodes of one berth registry sharing a database and a bucket prefix."""

    name: str
    owner: Creds
    database: str
    database_url: str
    prefix: str
    engines: Engines
    base_config: dict
    node_env: dict
    start_node: Callable[..., BerthServer]
    nodes: list[BerthServer] = field(default_factory=list)

    @property
    def a(self) -> BerthServer:
        return self.nodes[0]

    @property
    def b(self) -> BerthServer:
        return self.nodes[1]

    def session(self) -> requests.Session:
        return http_session(None, self.owner)

    def blob_keys(self) -> dict[str, int]:
        return self.engines.keys(f"{self.prefix}blobs/")

    def blob_digests(self) -> set[str]:
        """Digests of the blobs in the bucket, from keys ``<prefix>blobs/sha256/<xx>/<hex>``."""
        out = set()
        for key in self.blob_keys():
            m = re.fullmatch(re.escape(self.prefix) + r"blobs/sha256/([0-9a-f]{2})/([0-9a-f]{64})", key)
            assert m and m.group(2).startswith(m.group(1)), f"unexpected key in the blob area: {key}"
            out.add("sha256:" + m.group(2))
        return out

    def upload_keys(self, upload_id: str = "") -> dict[str, int]:
        return self.engines.keys(f"{self.prefix}_uploads/{upload_id}")

    def logs(self) -> str:
        return "\n".join(n.daemon.log_tail(4000) for n in self.nodes)


@pytest.fixture(scope="module")
def scale_out(engines, tmp_path_factory, client_env):
    """Factory: ``deploy(name, gc=..., nodes=2)`` starts nodes over a fresh database and prefix.

    Node A is started (and creates the owner in the fresh database) before
    node B; every node has the same config but its own port, ``node_id`` and
    ``data_dir``. At module end the nodes are stopped, the database dropped
    and the prefix emptied.
    """
    deployments: list[Deployment] = []
    daemons: list[Daemon] = []
    env = {k: v for k, v in client_env.items() if not k.startswith(("REGISTRY_", "BERTH_", "AWS_"))}
    env.setdefault("RUST_BACKTRACE", "1")
    run_id = secrets.token_hex(4)

    def deploy(name: str, gc: dict | None = None, nodes: int = 2, storage: dict | None = None) -> Deployment:
        database = f"e2e_{name}_{run_id}"
        engines.psql(f'CREATE DATABASE "{database}" OWNER berth')
        prefix = f"e2e-{name}-{run_id}/"
        owner = Creds("owner", secrets.token_urlsafe(24))
        base = {
            "server": {},
            "storage": {
                "kind": "s3",
                "bucket": engines.bucket,
                "endpoint": engines.s3_endpoint,
                "region": engines.region,
                "access_key_id": engines.access_key_id,
                "secret_access_key": engines.secret_access_key,
                "prefix": prefix,
                **(storage or {}),
            },
            "metadata": {"url": engines.database_url(database)},
            "gc": {"interval_seconds": 3600, "grace_seconds": 3600, "upload_ttl_seconds": 86400, **(gc or {})},
            # The same password on every node: only the first one to reach the
            # fresh database creates the owner with it.
            "auth": {"initial_owner_password": owner.password},
        }

        def start_node(
            node_name: str, listen: str | None = None, work: Path | None = None, sections: dict | None = None
        ) -> BerthServer:
            """A node; ``sections`` replaces keys of the base config's sections (another bucket, say)."""
            work = work or tmp_path_factory.mktemp(f"berth-{name}-{node_name}")
            listen = listen or f"127.0.0.1:{free_port()}"
            cfg = copy.deepcopy(base)
            for section, keys in (sections or {}).items():
                cfg[section] = {**cfg.get(section, {}), **keys}
            cfg["data_dir"] = str(work / "data")
            cfg["server"] = {"listen": listen, "node_id": f"{name}-{node_name}"}
            config_path = work / "berth.toml"
            config_path.write_text(toml_dumps(cfg))
            log_name = node_name
            while (work / f"{log_name}.stderr").exists():  # a restart keeps the earlier logs
                log_name += "+"
            daemon = Daemon(log_name, [berth_binary(), "serve", "--config", config_path], work, env=env, cwd=work)
            daemons.append(daemon)
            server = BerthServer(node_name, daemon, work, config_path, cfg, owner, [listen], {}, env)
            probe = http_session(None, owner)
            wait_for(
                lambda: probe.get(f"http://{listen}/v2/", timeout=2).status_code == 200,
                READY_TIMEOUT,
                f"{name}/{node_name}: GET http://{listen}/v2/ to return 200 with the owner's credentials",
                proc=daemon,
            )
            return server

        dep = Deployment(name, owner, database, engines.database_url(database), prefix, engines, base, env, start_node)
        deployments.append(dep)
        for i in range(nodes):
            dep.nodes.append(start_node("node-" + "abcdefgh"[i]))
        return dep

    yield deploy
    for daemon in daemons:
        daemon.stop()
    for dep in deployments:
        try:
            engines.psql(f'DROP DATABASE IF EXISTS "{dep.database}" WITH (FORCE)')
            keys = list(engines.keys(dep.prefix))
            for i in range(0, len(keys), 1000):
                engines.s3.delete_objects(
                    Bucket=engines.bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True}
                )
        except Exception as exc:  # noqa: BLE001 - cleanup only
            print(f"cleaning up deployment {dep.name} failed: {exc}", file=sys.stderr)


@pytest.fixture(scope="module")
def deployment(scale_out) -> Deployment:
    """The module's two-node deployment (GC effectively off: 1 h passes and grace)."""
    return scale_out("main")


# --------------------------------------------------------------------------
# Images built by hand, HTTP push/pull
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    blob: bytes  # gzip-compressed tar
    diff_id: str

    @property
    def digest(self) -> str:
        return sha256_digest(self.blob)


def make_layer(files: dict[str, bytes]) -> Layer:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({p.rsplit("/", 1)[0] for p in files if "/" in p})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return Layer(gzip.compress(raw, compresslevel=1, mtime=0), sha256_digest(raw))


@dataclass
class Image:
    repo: str
    tag: str
    manifest: bytes
    config: bytes
    layers: list[Layer]

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)

    @property
    def blobs(self) -> dict[str, bytes]:
        out = {self.config_digest: self.config}
        out.update({layer.digest: layer.blob for layer in self.layers})
        return out


def make_image(repo: str, tag: str, layers: list[Layer], label: str = "") -> Image:
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/true"], "Labels": {"e2e.scale-out": label or f"{repo}:{tag}"}},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created_by": "berth e2e test_scale_out"} for _ in layers],
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": x.digest, "size": len(x.blob)} for x in layers],
        }
    ).encode()
    return Image(repo, tag, manifest, config, layers)


def random_image(repo: str, tag: str = "v1", size: int = 512 * 1024) -> Image:
    """A fresh image (one layer with ``/scale/payload.bin`` of random bytes) no client has cached."""
    return make_image(repo, tag, [make_layer({"scale/payload.bin": os.urandom(size)})])


def absolute(node: BerthServer, location: str) -> str:
    return urllib.parse.urljoin(f"http://{node.host}/", location)


def with_digest(url: str, digest: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}digest={digest}"


def upload_blob(s: requests.Session, node: BerthServer, repo: str, data: bytes) -> str:
    """POST + monolithic PUT through ``node``; asserts 202 then 201 with the digest."""
    digest = sha256_digest(data)
    r = s.post(f"http://{node.host}/v2/{repo}/blobs/uploads/", timeout=HTTP_TIMEOUT)
    assert r.status_code == 202, f"{node.name}: POST upload {repo} -> {r.status_code} {r.text}"
    r = s.put(
        with_digest(absolute(node, r.headers["Location"]), digest),
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=HTTP_TIMEOUT,
    )
    assert r.status_code == 201, f"{node.name}: PUT blob {repo}@{digest} -> {r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == digest, r.headers
    return digest


def put_manifest(s: requests.Session, node: BerthServer, image: Image):
    r = s.put(
        f"http://{node.host}/v2/{image.repo}/manifests/{image.tag}",
        data=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
        timeout=HTTP_TIMEOUT,
    )
    assert r.status_code == 201, f"{node.name}: PUT manifest {image.repo}:{image.tag} -> {r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == image.digest, r.headers


def push_image(s: requests.Session, blobs_via: BerthServer, image: Image, manifest_via: BerthServer | None = None):
    for data in image.blobs.values():
        upload_blob(s, blobs_via, image.repo, data)
    put_manifest(s, manifest_via or blobs_via, image)
    return image


def assert_pulls(s: requests.Session, node: BerthServer, image: Image, reference: str | None = None):
    """Manifest (by tag or digest) and every blob through ``node``, byte for byte."""
    ref = reference or image.tag
    r = s.get(
        f"http://{node.host}/v2/{image.repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST}, timeout=HTTP_TIMEOUT
    )
    assert r.status_code == 200, f"{node.name}: GET manifest {image.repo}:{ref} -> {r.status_code} {r.text[:300]}"
    assert r.content == image.manifest, f"{node.name}: manifest {image.repo}:{ref} differs"
    assert r.headers.get("Docker-Content-Digest") == image.digest
    for digest, data in image.blobs.items():
        r = s.get(f"http://{node.host}/v2/{image.repo}/blobs/{digest}", timeout=HTTP_TIMEOUT)
        assert r.status_code == 200, f"{node.name}: GET blob {image.repo}@{digest} -> {r.status_code} {r.text[:300]}"
        assert sha256_digest(r.content) == digest and r.content == data, f"{node.name}: blob {digest} differs"


def manifest_via(s: requests.Session, node: BerthServer, repo: str, ref: str) -> bytes:
    accept = ", ".join((OCI_MANIFEST, DOCKER_MANIFEST, "application/vnd.oci.image.index.v1+json"))
    r = s.get(f"http://{node.host}/v2/{repo}/manifests/{ref}", headers={"Accept": accept}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, f"{node.name}: GET manifest {repo}:{ref} -> {r.status_code} {r.text[:300]}"
    assert r.headers.get("Docker-Content-Digest") == sha256_digest(r.content)
    return r.content


def blob_via(s: requests.Session, node: BerthServer, repo: str, digest: str) -> bytes:
    r = s.get(f"http://{node.host}/v2/{repo}/blobs/{digest}", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, f"{node.name}: GET blob {repo}@{digest} -> {r.status_code} {r.text[:300]}"
    assert sha256_digest(r.content) == digest
    return r.content


# --------------------------------------------------------------------------
# 1. Real clients: push through node A, pull through node B
# --------------------------------------------------------------------------


def _assert_layout_image_equal(src: OciLayout, src_ref: str, dst: OciLayout, dst_ref: str):
    assert dst.manifest_bytes(dst_ref) == src.manifest_bytes(src_ref)
    manifest = src.manifest(src_ref)
    for desc in [manifest["config"], *manifest["layers"]]:
        assert dst.blob(desc["digest"]) == src.blob(desc["digest"]), f"blob {desc['digest']} differs"


def test_skopeo_push_via_a_pull_via_b(deployment, skopeo, oci_images, tmp_path):
    """skopeo copies the umoci-built image with an 8 MiB random layer (and the index) in through A, out through B."""
    sk = skopeo.as_user(deployment.owner)
    a, b = deployment.a, deployment.b
    lay = oci_images.layout
    sk.copy(lay.transport("big"), f"docker://{a.host}/scale/skopeo-big:v1")

    raw = sk.inspect_raw(f"docker://{b.host}/scale/skopeo-big:v1")
    assert raw == lay.manifest_bytes("big") and sha256_digest(raw) == lay.manifest_digest("big")
    big_layer = lay.manifest("big")["layers"][-1]
    assert big_layer["size"] > 4 * 1024 * 1024
    s = deployment.session()
    assert blob_via(s, b, "scale/skopeo-big", big_layer["digest"]) == lay.blob(big_layer["digest"])

    pulled = OciLayout(tmp_path / "pulled")
    sk.copy(f"docker://{b.host}/scale/skopeo-big:v1", f"oci:{pulled.path}:back")
    _assert_layout_image_equal(lay, "big", pulled, "back")

    # The multi-platform index with both children, pushed through A, is whole on B.
    sk.copy(lay.transport("multi"), f"docker://{a.host}/scale/skopeo-multi:v1", "--all")
    assert sk.inspect_raw(f"docker://{b.host}/scale/skopeo-multi:v1") == lay.manifest_bytes("multi")
    for child in ("amd64", "arm64"):
        assert manifest_via(s, b, "scale/skopeo-multi", lay.manifest_digest(child)) == lay.manifest_bytes(child)
    multi_out = OciLayout(tmp_path / "multi")
    sk.copy(f"docker://{b.host}/scale/skopeo-multi:v1", f"oci:{multi_out.path}:back", "--all")
    assert multi_out.manifest_bytes("back") == lay.manifest_bytes("multi")
    for child in ("amd64", "arm64"):
        _assert_layout_image_equal(lay, child, multi_out, lay.manifest_digest(child))


def test_skopeo_follows_presigned_storage_redirects(scale_out, skopeo, oci_images, tmp_path):
    """With ``redirect = "storage"`` blob GETs answer 307 to a presigned Garage URL; skopeo follows it."""
    dep = scale_out("redirect", storage={"redirect": "storage"}, nodes=1)
    node = dep.a
    sk = skopeo.as_user(dep.owner)
    lay = oci_images.layout
    sk.copy(lay.transport("big"), f"docker://{node.host}/scale/redirected:v1")
    big_layer = lay.manifest("big")["layers"][-1]["digest"]

    s = dep.session()
    r = s.get(f"http://{node.host}/v2/scale/redirected/blobs/{big_layer}", allow_redirects=False, timeout=30)
    assert r.status_code == 307, (r.status_code, r.text[:300])
    location = r.headers["Location"]
    assert location.startswith(dep.engines.s3_endpoint) and "X-Amz-Signature=" in location, location
    # The presigned URL alone serves the bytes (no registry credentials).
    fetched = requests.get(location, timeout=30)
    assert fetched.status_code == 200 and sha256_digest(fetched.content) == big_layer

    pulled = OciLayout(tmp_path / "pulled")
    sk.copy(f"docker://{node.host}/scale/redirected:v1", f"oci:{pulled.path}:back")
    _assert_layout_image_equal(lay, "big", pulled, "back")


_FETCHED = re.compile(r"\b(index|manifest|config|layer)-(sha256:[0-9a-f]{64})\b")


def test_containerd_pull_via_b_push_via_a(deployment, containerd):
    """ctr pulls through B what was pushed through A; ctr pushes through A what B then serves."""
    ctr = containerd.as_user(deployment.owner)
    a, b = deployment.a, deployment.b
    s = deployment.session()
    img = push_image(s, a, random_image("scale/ctr", size=1024 * 1024))
    ns = "scale-out"
    name = f"{b.host}/{img.repo}:{img.tag}"
    out = ctr.ctr("images", "pull", "--plain-http", name, namespace=ns).stdout
    fetched = {(kind, d) for kind, d in _FETCHED.findall(out)}
    assert ("manifest", img.digest) in fetched and ("layer", img.layers[0].digest) in fetched, out
    assert "unpacking linux/amd64" in out
    listing = ctr.ctr("images", "ls", namespace=ns).stdout
    assert any(line.split()[:1] == [name] and img.digest in line for line in listing.splitlines()), listing
    for digest, data in [(img.digest, img.manifest), *img.blobs.items()]:
        assert ctr.ctr("content", "get", digest, namespace=ns, text=False).stdout == data, digest
    ctr.ctr("images", "check", namespace=ns)

    # And the other way: ctr pushes the pulled image through A, B serves it.
    pushed = f"{a.host}/scale/ctr-pushed:v1"
    ctr.ctr("images", "tag", name, pushed, namespace=ns)
    ctr.ctr("images", "push", "--plain-http", pushed, namespace=ns)
    assert manifest_via(s, b, "scale/ctr-pushed", "v1") == img.manifest
    for digest, data in img.blobs.items():
        assert blob_via(s, b, "scale/ctr-pushed", digest) == data


def test_podman_pull_via_b_push_via_a(deployment, podman, tmp_path):
    """podman pulls through B an image pushed through A, and pushes it through A to a repository B serves."""
    pm = podman.as_user(deployment.owner)
    a, b = deployment.a, deployment.b
    s = deployment.session()
    img = push_image(s, a, random_image("scale/podman", size=768 * 1024))
    ref = f"{b.host}/{img.repo}:{img.tag}"
    pm("pull", "--tls-verify=false", ref)
    digest, image_id = pm("image", "inspect", "--format", "{{.Digest}} {{.Id}}", ref).stdout.split()
    assert digest == img.digest
    assert f"sha256:{image_id}" == img.config_digest

    digestfile = tmp_path / "digest"
    pm("push", "--tls-verify=false", "--digestfile", digestfile, ref, f"docker://{a.host}/scale/podman-pushed:v1")
    pushed_digest = digestfile.read_text().strip()
    raw = manifest_via(s, b, "scale/podman-pushed", "v1")
    assert sha256_digest(raw) == pushed_digest
    manifest = json.loads(raw)
    assert manifest["config"]["digest"] == img.config_digest
    assert blob_via(s, b, "scale/podman-pushed", img.config_digest) == img.config
    pm("rmi", ref)


_PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)")


def test_docker_push_via_a_pull_via_b(deployment, dockerd, tmp_path):
    """docker pushes an imported 4 MiB random rootfs through A; after rmi, pulls it through B."""
    docker = dockerd.with_config(tmp_path / "docker-config")
    a, b = deployment.a, deployment.b
    docker.login(a.host, deployment.owner)
    docker.login(b.host, deployment.owner)

    payload = os.urandom(4 * 1024 * 1024)
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        info = tarfile.TarInfo("data/random.bin")
        info.size, info.mode = len(payload), 0o644
        tar.addfile(info, io.BytesIO(payload))
    pushed_ref = f"{a.host}/scale/docker:v1"
    image_id = docker("import", "--change", 'CMD ["/data/random.bin"]', rootfs, pushed_ref).stdout.strip()
    out = docker("push", pushed_ref).stdout
    m = _PUSH_DIGEST.search(out)
    assert m, out
    digest = m.group(1)

    s = deployment.session()
    raw = manifest_via(s, b, "scale/docker", "v1")
    assert sha256_digest(raw) == digest and len(raw) == int(m.group(2))
    manifest = json.loads(raw)
    assert manifest["mediaType"] == DOCKER_MANIFEST and manifest["config"]["digest"] == image_id
    (layer,) = manifest["layers"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob_via(s, b, "scale/docker", layer["digest"])))) as tar:
        assert tar.extractfile("data/random.bin").read() == payload

    docker("rmi", pushed_ref)
    gone = docker.fail("image", "inspect", image_id)
    assert "no such image" in (gone.stdout + gone.stderr).lower()
    pulled_ref = f"{b.host}/scale/docker:v1"
    docker("pull", pulled_ref)
    info = docker.inspect(pulled_ref)
    assert info["Id"] == image_id
    assert info["RepoDigests"] == [f"{b.host}/scale/docker@{digest}"]
    assert info["Config"]["Cmd"] == ["/data/random.bin"]
    docker("rmi", pulled_ref)


def test_oras_push_via_a_pull_via_b(deployment, oras_home, tmp_path):
    """oras-py pushes an artifact (3 MiB file, custom config) through A and pulls it through B."""
    a, b = deployment.a, deployment.b
    payload = os.urandom(3 * 1024 * 1024 + 77)
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    config = tmp_path / "config.json"
    config.write_bytes(b'{"purpose": "berth scale-out e2e"}')
    resp = make_oras_client(a.host, deployment.owner).push(
        target=f"{a.host}/scale/oras:v1",
        files=[f"{src}:application/vnd.berth.e2e.payload.v1"],
        manifest_config=f"{config}:application/vnd.berth.e2e.config.v1+json",
        disable_path_validation=True,
    )
    assert resp.status_code == 201
    digest = resp.headers["Docker-Content-Digest"]

    oras_b = make_oras_client(b.host, deployment.owner)
    raw = manifest_via(deployment.session(), b, "scale/oras", "v1")
    assert sha256_digest(raw) == digest
    assert oras_b.get_manifest(f"{b.host}/scale/oras:v1") == json.loads(raw)
    out = tmp_path / "out"
    files = oras_b.pull(target=f"{b.host}/scale/oras:v1", outdir=str(out))
    assert [os.path.basename(f) for f in files] == ["payload.bin"]
    assert (out / "payload.bin").read_bytes() == payload
    out2 = tmp_path / "out2"
    oras_b.pull(target=f"{b.host}/scale/oras@{digest}", outdir=str(out2))
    assert (out2 / "payload.bin").read_bytes() == payload
    assert blob_via(deployment.session(), b, "scale/oras", sha256_digest(config.read_bytes())) == config.read_bytes()


# --------------------------------------------------------------------------
# 2. One chunked upload, PATCHes alternating between the nodes
# --------------------------------------------------------------------------


def _range_end(r: requests.Response) -> int:
    """N of a ``Range: 0-N`` header (only used where the upload holds at least one byte)."""
    m = re.fullmatch(r"0-(\d+)", r.headers.get("Range", ""))
    assert m, f"bad or missing Range header: {r.headers}"
    return int(m.group(1))


def test_chunked_upload_alternating_nodes(deployment):
    a, b = deployment.a, deployment.b
    s = deployment.session()
    repo = "scale/chunked"
    sizes = [1024 * 1024 + 17, 300 * 1024, 9 * 1024 * 1024 + 5, 5, 2 * 1024 * 1024, 123_457]
    data = os.urandom(sum(sizes))
    digest = sha256_digest(data)

    r = s.post(f"http://{a.host}/v2/{repo}/blobs/uploads/", timeout=HTTP_TIMEOUT)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    upload_id = r.headers.get("Docker-Upload-UUID")
    assert location.startswith(f"/v2/{repo}/blobs/uploads/") or location.startswith("http://")
    offset = 0
    for i, size in enumerate(sizes):
        node = (a, b)[i % 2]
        chunk = data[offset : offset + size]
        r = s.patch(
            absolute(node, location),
            data=chunk,
            headers={"Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{offset + size - 1}"},
            timeout=HTTP_TIMEOUT,
        )
        assert r.status_code == 202, f"PATCH {i + 1} on {node.name} -> {r.status_code} {r.text}"
        offset += size
        assert r.headers.get("Range") == f"0-{offset - 1}", f"PATCH {i + 1} on {node.name}: {r.headers}"
        location = r.headers["Location"]
        assert f"/v2/{repo}/blobs/uploads/" in location

        if i == 1:
            # The other node refuses a chunk that does not start where the upload ends.
            other = (a, b)[(i + 1) % 2]
            for start in (offset - 1, offset + 5, 0):
                bad = s.patch(
                    absolute(other, location),
                    data=b"xyz",
                    headers={"Content-Type": "application/octet-stream", "Content-Range": f"{start}-{start + 2}"},
                    timeout=HTTP_TIMEOUT,
                )
                assert bad.status_code == 416, f"PATCH at {start} on {other.name} -> {bad.status_code} {bad.text}"
                assert bad.headers.get("Range") == f"0-{offset - 1}", bad.headers
            # ... and the refused chunks changed nothing: both nodes report the same length.
            for node_ in (a, b):
                st = s.get(absolute(node_, location), timeout=HTTP_TIMEOUT)
                assert st.status_code == 204 and st.headers.get("Range") == f"0-{offset - 1}", (node_.name, st.headers)

    st = s.get(absolute(a, location), timeout=HTTP_TIMEOUT)
    assert st.status_code == 204 and _range_end(st) == len(data) - 1, st.headers
    r = s.put(with_digest(absolute(b, location), digest), timeout=HTTP_TIMEOUT)
    assert r.status_code == 201, f"PUT ?digest on node B -> {r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == digest
    assert r.headers.get("Location", "").endswith(f"/v2/{repo}/blobs/{digest}"), r.headers

    got = s.get(f"http://{a.host}/v2/{repo}/blobs/{digest}", timeout=HTTP_TIMEOUT)
    assert got.status_code == 200 and got.content == data, f"GET blob via A -> {got.status_code}"
    head = s.head(f"http://{b.host}/v2/{repo}/blobs/{digest}", timeout=HTTP_TIMEOUT)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data)
    # The finished upload is gone on both nodes, and so are its parts in the bucket.
    for node in (a, b):
        assert s.get(absolute(node, location), timeout=HTTP_TIMEOUT).status_code == 404
    if upload_id:
        assert deployment.upload_keys(upload_id) == {}
    key = f"{deployment.prefix}blobs/sha256/{digest[7:9]}/{digest[7:]}"
    assert deployment.blob_keys().get(key) == len(data)


# --------------------------------------------------------------------------
# 3. kill -9 of a node in the middle of a streamed PATCH
# --------------------------------------------------------------------------

MiB = 1024 * 1024


def test_kill_node_mid_upload_resume_on_other(deployment):
    """A streamed 64 MiB PATCH to A; A is SIGKILLed with 20 MiB of it sent; B resumes and completes the upload."""
    a, b = deployment.a, deployment.b
    s = deployment.session()
    repo = "scale/killed"
    first = 4 * MiB
    data = os.urandom(first + 64 * MiB)
    digest = sha256_digest(data)

    r = s.post(f"http://{a.host}/v2/{repo}/blobs/uploads/", timeout=HTTP_TIMEOUT)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    upload_id = r.headers.get("Docker-Upload-UUID", "")
    r = s.patch(
        absolute(a, location),
        data=data[:first],
        headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{first - 1}"},
        timeout=HTTP_TIMEOUT,
    )
    assert r.status_code == 202 and r.headers.get("Range") == f"0-{first - 1}", (r.status_code, r.headers, r.text)
    location = r.headers["Location"]

    reached, killed = threading.Event(), threading.Event()
    sent = [0]
    kill_at = 20 * MiB

    def body():
        pos = first
        while pos < len(data):
            if pos - first == kill_at:
                reached.set()
                killed.wait(60)  # hold the request open (in flight) until A is dead
            piece = data[pos : pos + MiB]
            yield piece
            pos += len(piece)
            sent[0] = pos - first

    outcome: dict = {}

    def stream():
        try:
            # No Content-Length: a chunked (streamed) PATCH, as docker sends.
            outcome["response"] = http_session(None, deployment.owner).patch(
                absolute(a, location),
                data=body(),
                headers={"Content-Type": "application/octet-stream"},
                timeout=HTTP_TIMEOUT,
            )
        except requests.RequestException as exc:
            outcome["error"] = exc

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    assert reached.wait(60), "the streamed PATCH did not get 20 MiB out"
    time.sleep(0.5)  # let node A take in what is in the socket buffers; it is now waiting for more
    assert not a.daemon.exited()
    os.kill(a.daemon.popen.pid, signal.SIGKILL)
    assert a.daemon.popen.wait(timeout=10) == -signal.SIGKILL
    killed.set()
    streamer.join(60)
    assert not streamer.is_alive(), "the streamed PATCH did not end after node A died"
    assert "response" not in outcome, f"the PATCH to the killed node got an answer: {outcome['response'].status_code}"

    # Node B knows the upload and how much of it is durable.
    st = s.get(absolute(b, location), timeout=HTTP_TIMEOUT)
    assert st.status_code == 204, f"GET upload status on B -> {st.status_code} {st.text}"
    end = _range_end(st)
    durable = end + 1
    print(f"after kill -9: {durable} bytes durable ({first} acknowledged, {sent[0]} more sent)", file=sys.stderr)
    # At least the acknowledged first chunk, at most what was sent before the kill.
    assert first <= durable <= first + sent[0], f"Range {st.headers['Range']} after {first} + {sent[0]} bytes sent"
    assert st.headers.get("Location")

    # Resume on B from the durable length with the rest of the bytes (two PATCHes), then PUT there.
    rest = data[durable:]
    half = len(rest) // 2
    offset = durable
    for piece in (rest[:half], rest[half:]):
        r = s.patch(
            absolute(b, st.headers["Location"]),
            data=piece,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(piece) - 1}",
            },
            timeout=HTTP_TIMEOUT,
        )
        offset += len(piece)
        assert r.status_code == 202, f"resumed PATCH on B -> {r.status_code} {r.text}"
        assert r.headers.get("Range") == f"0-{offset - 1}", r.headers
    r = s.put(with_digest(absolute(b, r.headers["Location"]), digest), timeout=HTTP_TIMEOUT)
    assert r.status_code == 201, f"PUT ?digest on B -> {r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == digest

    got = s.get(f"http://{b.host}/v2/{repo}/blobs/{digest}", timeout=HTTP_TIMEOUT * 2)
    assert got.status_code == 200, f"GET blob via B -> {got.status_code} {got.text[:300]}"
    assert len(got.content) == len(data) and hashlib.sha256(got.content).hexdigest() == digest[7:]
    if upload_id:
        assert deployment.upload_keys(upload_id) == {}, "parts of the finished upload are left in the bucket"

    # Node A comes back on its address (same config) and serves the blob and the cluster's content.
    restarted = deployment.start_node(a.name, a.host, a.work)
    deployment.nodes[0] = restarted
    head = s.head(f"http://{restarted.host}/v2/{repo}/blobs/{digest}", timeout=HTTP_TIMEOUT)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data)
    img = push_image(s, restarted, random_image("scale/after-restart", size=64 * 1024), manifest_via=b)
    assert_pulls(s, b, img)
    assert_pulls(s, restarted, img)


# --------------------------------------------------------------------------
# 4. Garbage collection under load
# --------------------------------------------------------------------------

GC_INTERVAL = 1
GC_GRACE = 3
LOAD_SECONDS = 20
# Doomed images share one of DOOMED_GROUPS layers, a different one every
# DOOMED_EPOCH seconds, so each goes unused for 2 epochs (6 s) between uses:
# longer than the grace period plus a pass.
DOOMED_EPOCH = 3
DOOMED_GROUPS = 3


@dataclass
class Pushed:
    image: Image
    via: int  # index of the node that took the blobs
    doomed: bool
    delete_started: float | None = None  # monotonic time just before its DELETE was sent
    deleted: bool = False


class LoadErrors:
    def __init__(self):
        self.lock = threading.Lock()
        self.items: list[str] = []

    def add(self, what: str):
        with self.lock:
            if len(self.items) < 200:
                self.items.append(what)


def test_a_portal_session_from_one_node_is_accepted_by_the_other(deployment):
    """The session cookie is signed with a key the nodes share: sign in on A, browse and change on B."""
    a, b = deployment.a, deployment.b
    browser = requests.Session()
    r = browser.post(
        f"http://{a.host}/login",
        data={"login": deployment.owner.user, "password": deployment.owner.password, "next": "/network"},
        headers={"Origin": f"http://{a.host}"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 303 and r.headers["Location"] == "/network", _describe(r)
    cookie = browser.cookies.get("berth_session")
    assert cookie, r.headers
    on_b = requests.get(f"http://{b.host}/network", cookies={"berth_session": cookie}, allow_redirects=False, timeout=10)
    assert on_b.status_code == 200, _describe(on_b)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', on_b.text).group(1)
    added = requests.post(
        f"http://{b.host}/network/rules/add",
        data={"ip": "10.77.0.0/16", "csrf": csrf},
        cookies={"berth_session": cookie},
        headers={"Origin": f"http://{b.host}"},
        allow_redirects=False,
        timeout=10,
    )
    assert added.status_code == 303, _describe(added)
    # ... and A sees the change (the rules are shared).
    rules = requests.get(
        f"http://{a.host}/api/v1/network", auth=(deployment.owner.user, deployment.owner.password), timeout=10
    ).json()["networkRuleSet"]["ipRules"]
    assert "10.77.0.0/16" in rules
    removed = requests.post(
        f"http://{a.host}/network/rules/remove",
        data={"ip": "10.77.0.0/16", "csrf": csrf},
        cookies={"berth_session": cookie},
        headers={"Origin": f"http://{a.host}"},
        allow_redirects=False,
        timeout=10,
    )
    assert removed.status_code == 303, _describe(removed)


def _describe(r: requests.Response) -> str:
    cid = r.headers.get("X-Correlation-Id")
    return f"{r.request.method} {r.url} -> {r.status_code} {r.text[:300]!r} (correlation id {cid})"


def test_gc_under_load(scale_out):
    """1 s GC passes with 3 s grace while two nodes take pushes, pulls and deletions; then the bucket is exact."""
    dep = scale_out("gc", gc={"interval_seconds": GC_INTERVAL, "grace_seconds": GC_GRACE})
    nodes = dep.nodes
    repos = ("gc/app0", "gc/app1")
    base = make_layer({"base/os.bin": os.urandom(256 * 1024)})
    groups = [make_layer({f"group/{k}.bin": os.urandom(64 * 1024)}) for k in range(4)]
    doomed_groups = [make_layer({f"doomed/{k}.bin": os.urandom(48 * 1024)}) for k in range(DOOMED_GROUPS)]

    # The anchor keeps the base layer referenced for the whole test (in both
    # repositories), so a push that reuses it never races the collector.
    anchors = []
    s = dep.session()
    for i, repo in enumerate(repos):
        anchor = make_image(repo, "anchor", [base], label=f"anchor {repo}")
        push_image(s, nodes[i], anchor, manifest_via=nodes[1 - i])
        anchors.append(Pushed(anchor, i, doomed=False))

    errors = LoadErrors()
    stop = threading.Event()  # pushers and pullers
    drain = threading.Event()  # the deleter: set once no pusher can queue more
    lock = threading.Lock()
    pushed: list[Pushed] = list(anchors)
    to_delete: list[Pushed] = []
    counter = iter(range(10**9))
    stats = {"pushes": 0, "pulls": 0, "deletes": 0, "accepted_404": 0}

    def pusher():
        sess = dep.session()
        while not stop.is_set():
            with lock:
                i = next(counter)
            repo = repos[i % 2]
            via = (i // 2) % 2
            # Blobs through one node, the manifest through the other (or the same, every third).
            manifest_node = nodes[via] if i % 3 == 0 else nodes[1 - via]
            doomed = i % 5 in (1, 3)
            # Kept images share the kept groups. Doomed ones share a layer only
            # among themselves, a different one every DOOMED_EPOCH seconds: once
            # an epoch's images are deleted that layer is collected, and later
            # pushes upload the same bytes again.
            epoch = int((time.monotonic() - load_started) / DOOMED_EPOCH)
            group = doomed_groups[epoch % len(doomed_groups)] if doomed else groups[i % len(groups)]
            layers = [base, group, make_layer({f"app/{i}.bin": os.urandom(16 * 1024)})]
            img = make_image(repo, f"t{i}", layers)
            try:
                push_image(sess, nodes[via], img, manifest_via=manifest_node)
            except (AssertionError, requests.RequestException) as exc:
                errors.add(f"push {repo}:t{i} (blobs via {nodes[via].name}, manifest via {manifest_node.name}): {exc}")
                continue
            item = Pushed(img, via, doomed=doomed)
            with lock:
                pushed.append(item)
                stats["pushes"] += 1
                if item.doomed:
                    to_delete.append(item)

    def deleter():
        sess = dep.session()
        rng = random.Random(1)
        while True:
            with lock:
                ready = [p for p in to_delete if p.delete_started is None]
                item = ready[0] if ready and (drain.is_set() or len(ready) > 3) else None
                if item is not None:
                    item.delete_started = time.monotonic()
            if item is None:
                if drain.is_set():
                    return
                time.sleep(0.05)
                continue
            node = nodes[rng.randrange(2)]
            url = f"http://{node.host}/v2/{item.image.repo}/manifests/{item.image.digest}"
            try:
                r = sess.delete(url, timeout=HTTP_TIMEOUT)
            except requests.RequestException as exc:
                errors.add(f"DELETE {url}: {exc!r}")
                continue
            if r.status_code != 202:
                errors.add(f"delete on {node.name}: {_describe(r)}")
                continue
            with lock:
                item.deleted = True
                stats["deletes"] += 1

    def puller(seed: int):
        sess = dep.session()
        rng = random.Random(seed)
        while not stop.is_set():
            with lock:
                item = rng.choice(pushed)
            node = nodes[1 - item.via]  # the node that did not take the blobs
            img = item.image
            urls = [(f"http://{node.host}/v2/{img.repo}/manifests/{img.tag}", img.manifest)]
            urls += [(f"http://{node.host}/v2/{img.repo}/blobs/{d}", data) for d, data in img.blobs.items()]
            for url, expected in urls:
                try:
                    r = sess.get(url, headers={"Accept": OCI_MANIFEST}, timeout=HTTP_TIMEOUT)
                except requests.RequestException as exc:
                    errors.add(f"GET {url}: {exc!r}")
                    break
                if r.status_code == 404 and item.delete_started is not None:
                    with lock:
                        stats["accepted_404"] += 1
                    break  # deleted (or being deleted): expected
                if r.status_code != 200:
                    errors.add(f"pull on {node.name} ({'doomed' if item.doomed else 'kept'}): {_describe(r)}")
                    break
                if r.content != expected:
                    errors.add(f"pull on {node.name}: {url} returned other bytes (sha256 {sha256_digest(r.content)})")
                    break
            with lock:
                stats["pulls"] += 1

    load_started = time.monotonic()
    threads = [threading.Thread(target=pusher, name=f"push{i}", daemon=True) for i in range(3)]
    threads += [threading.Thread(target=puller, args=(i,), name=f"pull{i}", daemon=True) for i in range(2)]
    delete_thread = threading.Thread(target=deleter, name="delete", daemon=True)
    for t in [*threads, delete_thread]:
        t.start()
    time.sleep(LOAD_SECONDS)
    stop.set()
    for t in threads:
        t.join(HTTP_TIMEOUT * 2)
        assert not t.is_alive(), f"load thread {t.name} did not finish"
    drain.set()
    delete_thread.join(HTTP_TIMEOUT * 2)
    assert not delete_thread.is_alive(), "the delete thread did not finish"
    print(f"load: {stats}", file=sys.stderr)
    assert not errors.items, f"{len(errors.items)} request(s) failed under load ({stats}):\n" + "\n".join(
        errors.items[:40]
    )
    assert stats["pushes"] >= 50 and stats["pulls"] >= 50 and stats["deletes"] >= 15, stats
    assert all(p.deleted for p in pushed if p.doomed), "not every doomed manifest was deleted"

    survivors = [p.image for p in pushed if not p.doomed]
    deleted = [p.image for p in pushed if p.doomed]
    referenced = {d for img in survivors for d in img.blobs}
    unreferenced = {d for img in deleted for d in img.blobs} - referenced
    assert unreferenced, "the load deleted no blob-owning manifest"

    def check_all(where: str):
        """Every surviving tag pulls byte for byte through both nodes; deleted manifests are gone."""
        sessions = [dep.session() for _ in range(4)]
        failures = LoadErrors()

        def verify(k: int):
            sess = sessions[k]
            for img in survivors[k::4]:
                for node in nodes:
                    try:
                        assert_pulls(sess, node, img)
                    except (AssertionError, requests.RequestException) as exc:
                        failures.add(f"{where}: {exc}")
            for img in deleted[k::4]:
                for node in nodes:
                    r = sess.get(f"http://{node.host}/v2/{img.repo}/manifests/{img.digest}", timeout=HTTP_TIMEOUT)
                    if r.status_code != 404:
                        failures.add(f"{where}: deleted manifest still served: {_describe(r)}")

        workers = [threading.Thread(target=verify, args=(k,), daemon=True) for k in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(300)
        assert not failures.items, "\n".join(failures.items[:40])

    t0 = time.monotonic()
    check_all("right after the load")
    print(f"verified {len(survivors)} surviving images in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    t0 = time.monotonic()

    # The collector gets grace + a few passes; meanwhile nothing referenced may go.
    deadline = time.monotonic() + GC_GRACE + 4 * GC_INTERVAL + 10
    while True:
        present = dep.blob_digests()
        missing = referenced - present
        assert not missing, f"referenced blobs missing from the bucket: {sorted(missing)}\n{dep.logs()}"
        extra = present - referenced
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not extra, (
        f"{len(extra)} unreferenced blob(s) still in the bucket {GC_GRACE + 4 * GC_INTERVAL + 10} s after the load "
        f"(of {len(unreferenced)} that lost their last manifest): {sorted(extra)[:10]}\n"
        + dep.engines.psql("SELECT id, holder, state, error FROM gc_runs ORDER BY id DESC LIMIT 5", dep.database_url)
    )
    assert present == referenced
    print(f"bucket exact {time.monotonic() - t0:.1f} s after the load", file=sys.stderr)
    leftovers = dep.upload_keys()
    assert not leftovers, f"parts of completed uploads left in the bucket: {sorted(leftovers)[:10]}"
    # No collector pass failed, and at least one removed blobs.
    runs = dep.engines.psql("SELECT state, count(*) FROM gc_runs GROUP BY state ORDER BY state", dep.database_url)
    states = dict(line.split("|") for line in runs.split())
    assert "failed" not in states, dep.engines.psql(
        "SELECT id, holder, state, error FROM gc_runs WHERE state = 'failed' LIMIT 10", dep.database_url
    )
    assert int(states.get("finished", 0)) > 0, runs
    # Every blob that lost its last manifest went through the collector, and
    # some doomed group layer went during the load, came back with a later push
    # (whose images pulled fine) and went again.
    deleted_total, holders = dep.engines.psql(
        "SELECT coalesce(sum(blobs_deleted), 0), string_agg(DISTINCT holder, ',') FROM gc_runs", dep.database_url
    ).strip().split("|")
    print(f"gc: {deleted_total} blob deletions by {holders}; {len(unreferenced)} blobs unreferenced", file=sys.stderr)
    assert int(deleted_total) > len(unreferenced), (
        f"{deleted_total} blob deletions for {len(unreferenced)} unreferenced blobs: no layer was collected "
        f"during the load and pushed again ({runs})"
    )

    check_all("after collection")


def test_federated_credential_made_on_a_works_on_b(deployment, containerd, tmp_path):
    """Federation state is shared: a credential created through node A signs in on node B."""
    from diag_support import CertAuthority
    from oidc_support import AUDIENCE, Issuer

    a, b = deployment.a, deployment.b
    s = deployment.session()
    img = push_image(s, a, random_image("scale/federated", size=64 * 1024))
    ca = CertAuthority(tmp_path / "ca", cn="berth scale-out cluster CA")
    issuer = Issuer(ca, "scale-cluster")
    try:
        subject = "system:serviceaccount:scale:puller"
        sp = a.api("POST", "/service-principals", {"name": "scale-fed", "role": "AcrPull"}, expect=(201,))
        a.cli(
            "sp", "federated-credential", "create", "--id", sp["identity"]["id"], "--name", "cluster",
            "--issuer", issuer.url, "--subject", subject, "--audience", AUDIENCE, "--issuer-ca-file", str(ca.cert),
        )  # fmt: skip
        r = http_session(None, None).post(
            f"http://{b.host}/oauth2/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": issuer.token(subject=subject),
                "service": b.host,
            },
            timeout=30,
        )
        assert r.status_code == 200, r.text
        refresh = r.json()["refresh_token"]
        ctr = containerd.as_user(Creds("00000000-0000-0000-0000-000000000000", refresh))
        ctr.ctr("images", "pull", "--plain-http", f"{b.host}/{img.repo}:{img.tag}", namespace="scale-fed")
    finally:
        issuer.stop()


def test_cache_fill_fetched_once_by_two_nodes(deployment, tmp_path, client_env):
    """16 concurrent pulls of one uncached layer, half through each node: one upstream fetch.

    The upstream is Debian's docker-registry behind the relay shim that
    counts what it serves; the rule is made through node A and read by B.
    """
    from support.upstream import ReferenceUpstream, UpstreamShim

    up = ReferenceUpstream(tmp_path / "upstream", client_env)
    shim = UpstreamShim(up.host)
    try:
        s = deployment.session()
        img = random_image("lib/big", size=4 * 1024 * 1024)
        plain = http_session(None, None)
        for digest, data in img.blobs.items():
            r = plain.post(f"http://{up.host}/v2/lib/big/blobs/uploads/", timeout=30)
            assert r.status_code == 202, r.text
            loc = absolute_url(up.host, r.headers["Location"])
            r = plain.put(with_digest(loc, digest), data=data, timeout=60)
            assert r.status_code == 201, r.text
        r = plain.put(
            f"http://{up.host}/v2/lib/big/manifests/v1",
            data=img.manifest,
            headers={"Content-Type": OCI_MANIFEST},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        a, b = deployment.a, deployment.b
        a.api("POST", "/cache-rules", {"name": "scale", "target": "cached/*",
              "upstreams": [{"source": f"http://{shim.host}/lib/*"}]}, expect=(201,))  # fmt: skip
        wait_for(
            lambda: s.get(f"http://{b.host}/v2/cached/big/manifests/v1", timeout=10).status_code == 200,
            READY_TIMEOUT,
            "node B to see the rule made on node A and serve the manifest",
        )
        layer = max(img.blobs, key=lambda d: len(img.blobs[d]))
        # Slow enough that every pull starts while the first fill still runs.
        shim.trickle = 0.02
        results: list[str] = []

        def pull(node):
            data = http_session(None, deployment.owner).get(f"http://{node.host}/v2/cached/big/blobs/{layer}", timeout=120)
            results.append("sha256:" + hashlib.sha256(data.content).hexdigest() if data.status_code == 200 else str(data.status_code))

        threads = [threading.Thread(target=pull, args=((a, b)[i % 2],)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        assert results == [layer] * 16, results
        assert shim.served(f"GET /v2/lib/big/blobs/{layer}") == 1, shim.requests
    finally:
        shim.close()
        up.stop()


def absolute_url(host: str, location: str) -> str:
    return location if location.startswith("http") else f"http://{host}{location}"


# --------------------------------------------------------------------------
# Backups: pg_dump + a bucket copy, restored into a fresh database and bucket
# --------------------------------------------------------------------------


def test_backup_with_pg_dump_and_a_bucket_copy_restores_into_fresh_engines(scale_out, engines, tmp_path):
    """The procedure of docs/operations.md ("Scale-out deployments"), step by step."""
    dep = scale_out("backup", nodes=2)
    s = dep.session()
    images = [random_image("backup/app", f"v{i}", size=300 * 1024) for i in range(3)]
    for i, image in enumerate(images):
        push_image(s, dep.a if i % 2 == 0 else dep.b, image)
    pg_dump, pg_restore, rclone = (require_tool(t) for t in ("pg_dump", "pg_restore", "rclone"))
    pg_env = dict(os.environ, PGCONNECT_TIMEOUT="10")

    # 1. The database first, then the bucket (blobs are stored before the
    # rows that name them, so the later copy holds all the dump names).
    dump = tmp_path / "berth.pgdump"
    run([pg_dump, "--format=custom", "--file", dump, dep.database_url], pg_env, timeout=120)
    restored_bucket = f"e2e-restored-{secrets.token_hex(4)}"
    engines.s3.create_bucket(Bucket=restored_bucket)
    # Plain HTTP to a loopback Garage: no AWS_* of the machine's (a CA
    # bundle rclone cannot load into its transport, a profile).
    rclone_env = dict(
        {k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        RCLONE_CONFIG_GARAGE_TYPE="s3",
        RCLONE_CONFIG_GARAGE_PROVIDER="Other",
        RCLONE_CONFIG_GARAGE_ENDPOINT=engines.s3_endpoint,
        RCLONE_CONFIG_GARAGE_REGION=engines.region,
        RCLONE_CONFIG_GARAGE_ACCESS_KEY_ID=engines.access_key_id,
        RCLONE_CONFIG_GARAGE_SECRET_ACCESS_KEY=engines.secret_access_key,
        RCLONE_CONFIG_GARAGE_FORCE_PATH_STYLE="true",
    )
    restored_database = f"{dep.database}_restored"
    try:
        run(
            [rclone, "sync", f"garage:{engines.bucket}/{dep.prefix}", f"garage:{restored_bucket}/{dep.prefix}"],
            rclone_env,
            timeout=300,
        )
        listed = engines.s3.list_objects_v2(Bucket=restored_bucket, Prefix=f"{dep.prefix}blobs/")
        assert listed.get("KeyCount", 0) >= 4, f"the bucket copy holds no blobs: {listed}"

        # 2. A fresh database from the dump.
        engines.psql(f'CREATE DATABASE "{restored_database}" OWNER berth')
        run(
            [pg_restore, "--no-owner", "--role=berth", "--dbname", engines.database_url(restored_database), dump],
            pg_env,
            timeout=120,
        )

        # 3. A node on the restored engines: same owner, every image whole.
        node = dep.start_node(
            "restored",
            sections={
                "storage": {"bucket": restored_bucket},
                "metadata": {"url": engines.database_url(restored_database)},
            },
        )
        for image in images:
            assert_pulls(s, node, image)
            assert_pulls(s, node, image, reference=image.digest)
        # And it takes new pushes.
        extra = random_image("backup/app", "after-restore", size=64 * 1024)
        push_image(s, node, extra)
        assert_pulls(s, node, extra)
        node.daemon.stop()
    finally:
        engines.psql(f'DROP DATABASE IF EXISTS "{restored_database}" WITH (FORCE)')
        keys = list(
            k
            for page in engines.s3.get_paginator("list_objects_v2").paginate(Bucket=restored_bucket)
            for k in (o["Key"] for o in page.get("Contents", []))
        )
        for i in range(0, len(keys), 1000):
            engines.s3.delete_objects(
                Bucket=restored_bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True}
            )
        engines.s3.delete_bucket(Bucket=restored_bucket)
