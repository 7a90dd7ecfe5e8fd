"""Identities, tokens and access with real clients — berth only.

Every identity is created through the management API (``/api/v1``, Basic auth
as the owner) and then used by skopeo, podman, ``ctr --user``, the Docker
engine after ``docker login`` and oras-py.  Each client reads only the empty
auth files of the ``client_env`` fixture (REGISTRY_AUTH_FILE, DOCKER_CONFIG)
plus the credentials given on its command line, and every ``docker login``
writes to a DOCKER_CONFIG dir of its own, so no credential leaks from one
test to another.

berth throttles failed logins per client address (10 in 60 s -> 429 for
everything from that address).  Every client call that is expected to fail
authentication therefore goes through ``registry_from_new_ip()`` (a relay
that makes berth see a fresh 127.0.x.y address), so 127.0.0.1 — used by all
other tests — is never throttled.
"""

from __future__ import annotations

import base64
import io
import json
import re
import stat
import subprocess
import tarfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from conftest import (
    READY_TIMEOUT,
    Creds,
    Daemon,
    OciLayout,
    StorageTool,
    free_port,
    make_oras_client,
    requires_auth,
    sha256_digest,
    registry_argv,
    wait_for,
)

pytestmark = requires_auth

ADMIN_LOGIN = "berth"  # the admin user's login is the registry name
REFRESH_TOKEN_USER = "00000000-0000-0000-0000-000000000000"


# --------------------------------------------------------------------------
# Management API and helpers
# --------------------------------------------------------------------------


class Mgmt:
    """The management API, as the owner."""

    def __init__(self, registry):
        self.registry = registry

    def call(self, method: str, path: str, body=None, expect=(200, 201, 204)):
        r = self.registry.session.request(method, f"{self.registry.url}/api/v1{path}", json=body, timeout=30)
        assert r.status_code in expect, f"{method} /api/v1{path} {body} -> {r.status_code} {r.text}"
        return r.json() if r.content else None

    def settings(self) -> dict:
        return self.call("GET", "/registry")

    def update(self, **settings) -> dict:
        return self.call("PATCH", "/registry", settings)

    def create_sp(self, name: str, role: str | None = None, scope: str = "") -> ServicePrincipal:
        body = {"name": name, "years": 1}
        if role is not None:
            body |= {"role": role, "scope": scope}
        out = self.call("POST", "/service-principals", body, expect=(200, 201))
        ident = out["identity"]
        assert ident["kind"] == "sp" and ident["name"] == name, out
        assert uuid.UUID(ident["id"]) and ident["login"] == ident["id"], f"an SP logs in with its app id: {out}"
        (secret,) = [s for s in out["secrets"] if s["name"] == "secret"]
        return ServicePrincipal(ident["id"], name, Creds(ident["login"], secret["value"]))

    def delete_sp(self, sp_id: str):
        self.call("DELETE", f"/service-principals/{sp_id}", expect=(200, 204))

    def assignments(self) -> list[dict]:
        return self.call("GET", "/role-assignments")

    def assign(self, assignee: str, role: str, scope: str = "") -> dict:
        return self.call("POST", "/role-assignments", {"assignee": assignee, "role": role, "scope": scope})

    def create_scope_map(self, name: str, rules: list[dict]) -> dict:
        return self.call("POST", "/scope-maps", {"name": name, "rules": rules})

    def create_token(self, name: str, scope_map: str, **extra) -> dict[str, dict]:
        out = self.call("POST", "/tokens", {"name": name, "scopeMap": scope_map, **extra})
        assert out["identity"]["login"] == name, out
        return {s["name"]: s for s in out["secrets"]}


@dataclass
class ServicePrincipal:
    id: str  # the app id (UUID), also its login
    name: str
    creds: Creds


@pytest.fixture(scope="module")
def mgmt(registry) -> Mgmt:
    return Mgmt(registry)


def output(res: subprocess.CompletedProcess) -> str:
    return f"{res.stdout}\n{res.stderr}"


def assert_mentions(text: str, *needles: str):
    for needle in needles:
        assert needle.lower() in text.lower(), f"expected {needle!r} in:\n{text}"


def registry_error(r: requests.Response, status: int, code: str) -> str:
    """Asserts a distribution error response; returns its message."""
    assert r.status_code == status, f"{r.request.method} {r.url} -> {r.status_code} {r.text}"
    errors = r.json()["errors"]
    assert errors and errors[0]["code"] == code, r.text
    return errors[0]["message"]


def basic_get(registry, path: str, creds: Creds | None, **kw) -> requests.Response:
    s = requests.Session()
    s.trust_env = False
    return s.get(f"{registry.url}{path}", auth=tuple(creds) if creds else None, timeout=30, **kw)


def start_upload(registry, repo: str, creds: Creds | None) -> requests.Response:
    s = requests.Session()
    s.trust_env = False
    return s.post(f"{registry.url}/v2/{repo}/blobs/uploads/", auth=tuple(creds) if creds else None, timeout=30)


def assert_http_denied(registry, sp: ServicePrincipal, action: str, repo: str, reference: str = "v1"):
    """The same action over HTTP with Basic credentials: 403 DENIED naming identity, action, repository."""
    s = requests.Session()
    s.trust_env = False
    url = f"{registry.url}/v2/{repo}"
    if action == "push":
        r = s.post(f"{url}/blobs/uploads/", auth=tuple(sp.creds), timeout=30)
    elif action == "pull":
        r = s.get(f"{url}/manifests/{reference}", auth=tuple(sp.creds), timeout=30)
    elif action == "delete":
        r = s.delete(f"{url}/manifests/{reference}", auth=tuple(sp.creds), timeout=30)
    else:
        raise ValueError(action)
    message = registry_error(r, 403, "DENIED")
    assert_mentions(message, sp.id, sp.name, action, f"'{repo}'")


def exchange_refresh_token(registry, creds: Creds) -> str:
    """``POST /oauth2/exchange`` (password grant): a refresh token for ``creds``."""
    s = requests.Session()
    s.trust_env = False
    r = s.post(
        f"{registry.url}/oauth2/exchange",
        data={"grant_type": "password", "service": registry.host, "username": creds.user, "password": creds.password},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["refresh_token"]


def assert_refresh_token_refused(registry, refresh: str, scope: str, *reason: str):
    """A refresh token is refused both at ``POST /oauth2/token`` and as a Basic password: 401 with the reason."""
    s = requests.Session()
    s.trust_env = False
    r = s.post(
        f"{registry.url}/oauth2/token",
        data={"grant_type": "refresh_token", "service": registry.host, "refresh_token": refresh, "scope": scope},
        timeout=30,
    )
    if r.status_code == 200:
        claims = json.loads(b64url_decode(r.json()["access_token"].split(".")[1]))
        pytest.fail(
            f"POST /oauth2/token grant_type=refresh_token for {claims.get('kind')} '{claims.get('login')}' "
            f"(expected 401 mentioning {reason}) -> 200 with an access token granting {claims.get('access')}",
            pytrace=False,
        )
    assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), *reason)
    r = basic_get(registry, "/v2/", Creds(REFRESH_TOKEN_USER, refresh))
    assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), *reason)


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assert_not_stored(registry, repo: str, tag: str):
    r = registry.get_manifest(repo, tag)
    assert r.status_code == 404, f"{repo}:{tag} exists after a refused push: {r.status_code}"


# --------------------------------------------------------------------------
# Per-module client instances (own storage, own namespaces)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def podman_auth(tmp_path_factory, client_env) -> StorageTool:
    """A podman with its own storage (so every pull here really downloads), no credentials."""
    return StorageTool("podman", tmp_path_factory.mktemp("podman-auth"), client_env)


_ns = iter(range(10**6))


def new_namespace(prefix: str) -> str:
    return f"auth-{prefix}-{next(_ns)}"


def ctr_pulled_manifest(out: str) -> set[str]:
    return set(re.findall(r"\bmanifest-(sha256:[0-9a-f]{64})\b", out))


@pytest.fixture(scope="module")
def artifact(registry, oras_home, tmp_path_factory):
    """An oras artifact pushed by the owner: (repo, tag, payload bytes, manifest digest)."""
    tmp = tmp_path_factory.mktemp("auth-artifact")
    payload = uuid.uuid4().bytes * 1000
    (tmp / "payload.bin").write_bytes(payload)
    owner = make_oras_client(registry.host, registry.owner)
    resp = owner.push(
        target=f"{registry.host}/auth/artifact:v1",
        files=[f"{tmp / 'payload.bin'}:application/vnd.berth.e2e.payload.v1"],
        disable_path_validation=True,
    )
    assert resp.status_code == 201, resp.text
    return "auth/artifact", "v1", payload, resp.headers["Docker-Content-Digest"]


# --------------------------------------------------------------------------
# AcrPull service principal: pulls with every client, push refused
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def puller(mgmt) -> ServicePrincipal:
    return mgmt.create_sp("e2e-puller", role="AcrPull", scope="")


def assert_push_denied(text: str, sp: ServicePrincipal, repo: str):
    """The refusal is the 403 DENIED message: names the identity, the action and the repository."""
    assert_mentions(text, "denied", sp.id, sp.name, "push", repo)


def test_acrpull_sp_skopeo(registry, skopeo, puller, oci_images, seeded, tmp_path):
    lay = oci_images.layout
    sp = skopeo.as_user(puller.creds)
    src = registry.docker_ref(seeded.app, seeded.tag)
    assert sp.inspect_raw(src) == lay.manifest_bytes("v1")
    pulled = OciLayout(tmp_path / "pulled")
    sp.copy(src, f"oci:{pulled.path}:back")
    assert pulled.manifest_digest("back") == lay.manifest_digest("v1")
    for layer in lay.layer_digests("v1"):
        assert pulled.blob(layer) == lay.blob(layer)

    res = sp.fail("copy", "--dest-tls-verify=false", lay.transport("v1"), registry.docker_ref("auth/pull-only", "v1"))
    assert_push_denied(output(res), puller, "auth/pull-only")
    assert_not_stored(registry, "auth/pull-only", "v1")

    # The same answers over HTTP with Basic credentials.
    r = basic_get(
        registry,
        f"/v2/{seeded.app}/manifests/{seeded.tag}",
        puller.creds,
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.status_code == 200 and sha256_digest(r.content) == lay.manifest_digest("v1")
    assert_http_denied(registry, puller, "push", "auth/pull-only")


def test_acrpull_sp_podman(registry, podman_auth, puller, oci_images, seeded):
    lay = oci_images.layout
    podman = podman_auth.as_user(puller.creds)
    ref = registry.ref(seeded.app, seeded.tag)
    podman.fail("image", "exists", ref)
    podman("pull", "--tls-verify=false", ref)
    digest, image_id = podman("image", "inspect", "--format", "{{.Digest}} {{.Id}}", ref).stdout.split()
    assert digest == lay.manifest_digest("v1")
    assert f"sha256:{image_id}" == lay.config_digest("v1")

    res = podman.fail("push", "--tls-verify=false", ref, f"docker://{registry.ref('auth/pull-only-podman', 'v1')}")
    assert_push_denied(output(res), puller, "auth/pull-only-podman")
    assert_not_stored(registry, "auth/pull-only-podman", "v1")


def test_acrpull_sp_ctr(registry, containerd, puller, oci_images, seeded):
    lay = oci_images.layout
    ctr = containerd.as_user(puller.creds)
    ns = new_namespace("ctr-pull")
    src = registry.ref(seeded.app, seeded.tag)
    out = ctr.ctr("images", "pull", "--plain-http", src, namespace=ns).stdout
    assert ctr_pulled_manifest(out) == {lay.manifest_digest("v1")}
    assert ctr.ctr("content", "get", lay.manifest_digest("v1"), namespace=ns, text=False).stdout == lay.manifest_bytes(
        "v1"
    )

    dst = registry.ref("auth/pull-only-ctr", "v1")
    ctr.ctr("images", "tag", src, dst, namespace=ns)
    res = ctr.ctr_fail("images", "push", "--plain-http", dst, namespace=ns)
    # ctr 1.6 prints only the status line of a refused request, not its body:
    # "ctr: unexpected status: 403 Forbidden". The body it got is checked below.
    assert "unexpected status: 403 Forbidden" in output(res), output(res)
    assert_not_stored(registry, "auth/pull-only-ctr", "v1")
    assert_http_denied(registry, puller, "push", "auth/pull-only-ctr")


def test_acrpull_sp_docker(registry, dockerd, puller, oci_images, seeded, tmp_path):
    lay = oci_images.layout
    docker = dockerd.with_config(tmp_path / "docker-config")
    docker.login(registry.host, puller.creds)
    # dockerd logs in with offline_token=true: berth answers with a refresh
    # token, which the CLI keeps as "identitytoken" instead of the secret and
    # later trades for access tokens (grant_type=refresh_token).
    entry = json.loads((docker.config_dir / "config.json").read_text())["auths"][registry.host]
    assert base64.b64decode(entry["auth"]).decode() == f"{puller.id}:"
    refresh = json.loads(b64url_decode(entry["identitytoken"].split(".")[1]))
    assert refresh["typ"] == "refresh" and refresh["sub"] == puller.id, refresh

    src = registry.ref(seeded.app, seeded.tag)
    out = docker("pull", src).stdout
    assert f"Digest: {lay.manifest_digest('v1')}" in out
    info = docker.inspect(src)
    assert info["Id"] == lay.config_digest("v1")
    assert f"{registry.host}/{seeded.app}@{lay.manifest_digest('v1')}" in info["RepoDigests"]

    dst = registry.ref("auth/pull-only-docker", "v1")
    docker("tag", src, dst)
    try:
        res = docker.fail("push", dst)
    finally:
        docker("rmi", dst)
    assert_push_denied(output(res), puller, "auth/pull-only-docker")
    assert_not_stored(registry, "auth/pull-only-docker", "v1")


def test_acrpull_sp_oras(registry, puller, artifact, oras_home, tmp_path):
    repo, tag, payload, digest = artifact
    client = make_oras_client(registry.host, puller.creds)
    files = client.pull(target=f"{registry.host}/{repo}:{tag}", outdir=str(tmp_path / "out"))
    assert [Path(f).name for f in files] == ["payload.bin"]
    assert (tmp_path / "out" / "payload.bin").read_bytes() == payload
    client.pull(target=f"{registry.host}/{repo}@{digest}", outdir=str(tmp_path / "out2"))
    assert (tmp_path / "out2" / "payload.bin").read_bytes() == payload

    src = tmp_path / "new.bin"
    src.write_bytes(b"an AcrPull identity must not be able to push this\n")
    # oras-py raises ValueError("Issue retrieving session url: <the registry's error body>").
    with pytest.raises(ValueError) as excinfo:
        client.push(
            target=f"{registry.host}/auth/pull-only-oras:v1",
            files=[f"{src}:application/vnd.berth.e2e.payload.v1"],
            disable_path_validation=True,
        )
    text = str(excinfo.value)
    assert "DENIED" in text, text
    assert_push_denied(text, puller, "auth/pull-only-oras")
    assert_not_stored(registry, "auth/pull-only-oras", "v1")


# --------------------------------------------------------------------------
# AcrPush service principal: pushes and pulls
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pusher(mgmt) -> ServicePrincipal:
    return mgmt.create_sp("e2e-pusher", role="AcrPush", scope="")


def test_acrpush_sp_skopeo_push_pull(registry, skopeo, pusher, oci_images, tmp_path):
    lay = oci_images.layout
    sp = skopeo.as_user(pusher.creds)
    dest = registry.docker_ref("auth/pushed/skopeo", "v1")
    sp.copy(lay.transport("v1"), dest)
    sp.copy(lay.transport("multi"), registry.docker_ref("auth/pushed/skopeo", "multi"), "--all")
    assert sp.inspect_raw(dest) == lay.manifest_bytes("v1")
    assert sha256_digest(sp.inspect_raw(registry.docker_ref("auth/pushed/skopeo", "multi"))) == lay.manifest_digest(
        "multi"
    )
    assert sorted(sp.list_tags(f"docker://{registry.host}/auth/pushed/skopeo")["Tags"]) == ["multi", "v1"]
    # The owner sees exactly what the SP pushed.
    assert registry.manifest_bytes("auth/pushed/skopeo", "v1") == lay.manifest_bytes("v1")
    pulled = OciLayout(tmp_path / "pulled")
    sp.copy(dest, f"oci:{pulled.path}:back")
    for layer in lay.layer_digests("v1"):
        assert pulled.blob(layer) == lay.blob(layer)

    # AcrPush is pull + push: deleting needs AcrDelete.
    res = sp.fail("delete", "--tls-verify=false", dest)
    assert_mentions(output(res), "denied", pusher.id, pusher.name, "delete", "auth/pushed/skopeo")
    assert registry.manifest_bytes("auth/pushed/skopeo", "v1") == lay.manifest_bytes("v1")


def test_acrpush_sp_podman_push_pull(registry, podman_auth, pusher, oci_images, seeded, tmp_path):
    lay = oci_images.layout
    podman = podman_auth.as_user(pusher.creds)
    src = registry.ref(seeded.big, seeded.tag)
    podman("pull", "--tls-verify=false", src)
    dst = registry.ref("auth/pushed/podman", "v1")
    digestfile = tmp_path / "digest"
    podman("push", "--tls-verify=false", "--digestfile", digestfile, src, f"docker://{dst}")
    digest = digestfile.read_text().strip()
    raw = registry.manifest_bytes("auth/pushed/podman", "v1")
    assert sha256_digest(raw) == digest
    assert json.loads(raw)["config"]["digest"] == lay.config_digest("big")
    podman("rmi", src)
    podman.fail("image", "exists", dst)
    podman("pull", "--tls-verify=false", dst)
    got_digest, image_id = podman("image", "inspect", "--format", "{{.Digest}} {{.Id}}", dst).stdout.split()
    assert got_digest == digest and f"sha256:{image_id}" == lay.config_digest("big")


def test_acrpush_sp_ctr_push(registry, containerd, pusher, oci_images, seeded):
    lay = oci_images.layout
    ctr = containerd.as_user(pusher.creds)
    ns = new_namespace("ctr-push")
    src = registry.ref(seeded.multi, seeded.tag)
    dst = registry.ref("auth/pushed/ctr", "v1")
    ctr.ctr("images", "pull", "--plain-http", "--all-platforms", src, namespace=ns)
    ctr.ctr("images", "tag", src, dst, namespace=ns)
    ctr.ctr("images", "push", "--plain-http", dst, namespace=ns)
    assert registry.manifest_bytes("auth/pushed/ctr", "v1") == lay.manifest_bytes("multi")
    for ref in ("amd64", "arm64"):
        assert registry.manifest_bytes("auth/pushed/ctr", lay.manifest_digest(ref)) == lay.manifest_bytes(ref)


def _rootfs_tar(path: Path, payload: bytes):
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("payload.bin")
        info.size = len(payload)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(payload))


def test_acrpush_sp_docker_push_pull(registry, dockerd, pusher, tmp_path):
    docker = dockerd.with_config(tmp_path / "docker-config")
    docker.login(registry.host, pusher.creds)
    rootfs = tmp_path / "rootfs.tar"
    _rootfs_tar(rootfs, uuid.uuid4().bytes * 4096)
    target = registry.ref("auth/pushed/docker", "v1")
    image_id = docker("import", rootfs, target).stdout.strip()
    out = docker("push", target).stdout
    m = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
    assert m, out
    digest = m.group(1)
    assert sha256_digest(registry.manifest_bytes("auth/pushed/docker", "v1")) == digest
    docker("rmi", target)
    assert "no such image" in output(docker.fail("image", "inspect", image_id)).lower()
    out = docker("pull", target).stdout
    assert f"Digest: {digest}" in out
    info = docker.inspect(target)
    assert info["Id"] == image_id
    assert info["RepoDigests"] == [f"{registry.host}/auth/pushed/docker@{digest}"]
    docker("rmi", target)


def test_acrpush_sp_oras_push_pull(registry, pusher, oras_home, tmp_path):
    client = make_oras_client(registry.host, pusher.creds)
    payload = uuid.uuid4().bytes * 3000
    src = tmp_path / "artifact.bin"
    src.write_bytes(payload)
    resp = client.push(
        target=f"{registry.host}/auth/pushed/oras:v1",
        files=[f"{src}:application/vnd.berth.e2e.payload.v1"],
        disable_path_validation=True,
    )
    assert resp.status_code == 201, resp.text
    raw = registry.manifest_bytes("auth/pushed/oras", "v1")
    assert resp.headers["Docker-Content-Digest"] == sha256_digest(raw)
    (layer,) = json.loads(raw)["layers"]
    assert layer["digest"] == sha256_digest(payload)
    client.pull(target=f"{registry.host}/auth/pushed/oras:v1", outdir=str(tmp_path / "out"))
    assert (tmp_path / "out" / "artifact.bin").read_bytes() == payload


def test_repository_and_prefix_scoped_assignments(registry, mgmt, skopeo, oci_images, seeded):
    """AcrPush on ``auth/team/*`` and AcrPull on one repository reach only those."""
    lay = oci_images.layout
    team = mgmt.create_sp("e2e-team-pusher", role="AcrPush", scope="auth/team/*")
    sp = skopeo.as_user(team.creds)
    sp.copy(lay.transport("v1"), registry.docker_ref("auth/team/app", "v1"))
    sp.copy(lay.transport("v1"), registry.docker_ref("auth/team/nested/app", "v1"))
    assert sp.inspect_raw(registry.docker_ref("auth/team/app", "v1")) == lay.manifest_bytes("v1")
    assert registry.manifest_bytes("auth/team/nested/app", "v1") == lay.manifest_bytes("v1")
    res = sp.fail(
        "copy", "--dest-tls-verify=false", lay.transport("v1"), registry.docker_ref("auth/teammate/app", "v1")
    )
    # skopeo's first request there is a HEAD for a blob it may reuse: a 403
    # without a body (HEAD), so skopeo can only print the status.
    assert_mentions(output(res), "auth/teammate/app", "403 (Forbidden)")
    assert_not_stored(registry, "auth/teammate/app", "v1")
    assert_http_denied(registry, team, "push", "auth/teammate/app")
    res = sp.fail("inspect", "--raw", "--tls-verify=false", registry.docker_ref(seeded.app, seeded.tag))
    assert_mentions(output(res), "denied", team.id, "pull", seeded.app)

    one = mgmt.create_sp("e2e-one-repo-puller", role="AcrPull", scope=seeded.app)
    sp = skopeo.as_user(one.creds)
    assert sp.inspect_raw(registry.docker_ref(seeded.app, seeded.tag)) == lay.manifest_bytes("v1")
    res = sp.fail("inspect", "--raw", "--tls-verify=false", registry.docker_ref(seeded.big, seeded.tag))
    assert_mentions(output(res), "denied", one.id, "pull", seeded.big)
    # A name that merely starts with the repository's name is another repository.
    res = sp.fail("inspect", "--raw", "--tls-verify=false", registry.docker_ref(seeded.app + "x", seeded.tag))
    assert_mentions(output(res), "denied", one.id, "pull", seeded.app + "x")


# --------------------------------------------------------------------------
# Repository-scoped tokens (scope maps)
# --------------------------------------------------------------------------


def test_scope_mapped_token_reaches_only_its_repositories(
    registry, registry_from_new_ip, mgmt, skopeo, dockerd, oci_images, seeded, tmp_path
):
    lay = oci_images.layout
    repo = "auth/tok/app"
    mgmt.create_scope_map(
        "e2e-tok-app",
        [
            {"repository": repo, "actions": ["content/read", "content/write"]},
            {"repository": "auth/tokwild/*", "actions": ["content/read"]},
        ],
    )
    secrets_ = mgmt.create_token("e2e-tok", "e2e-tok-app")
    assert set(secrets_) == {"password1", "password2"}
    tok1 = Creds("e2e-tok", secrets_["password1"]["value"])
    tok2 = Creds("e2e-tok", secrets_["password2"]["value"])

    # skopeo with password1: push and pull its repository.
    sk = skopeo.as_user(tok1)
    sk.copy(lay.transport("v1"), registry.docker_ref(repo, "v1"))
    assert sk.inspect_raw(registry.docker_ref(repo, "v1")) == lay.manifest_bytes("v1")
    assert registry.manifest_bytes(repo, "v1") == lay.manifest_bytes("v1")
    assert sk.list_tags(f"docker://{registry.host}/{repo}")["Tags"] == ["v1"]
    # The wildcard rule (read only): pull yes, push no.
    skopeo.copy(lay.transport("amd64"), registry.docker_ref("auth/tokwild/a", "v1"))  # as the owner
    assert sk.inspect_raw(registry.docker_ref("auth/tokwild/a", "v1")) == lay.manifest_bytes("amd64")
    res = sk.fail("copy", "--dest-tls-verify=false", lay.transport("v1"), registry.docker_ref("auth/tokwild/a", "v2"))
    assert_mentions(output(res), "denied", "e2e-tok", "push", "auth/tokwild/a")
    assert_not_stored(registry, "auth/tokwild/a", "v2")
    # ...and nothing else: pulling another repository is refused, naming the token.
    res = sk.fail("inspect", "--raw", "--tls-verify=false", registry.docker_ref(seeded.app, seeded.tag))
    assert_mentions(output(res), "denied", "e2e-tok", "pull", seeded.app)
    # Pushing elsewhere is refused too (skopeo first HEADs a reusable blob there:
    # a 403 has no body on HEAD, so it can print only the status).
    res = sk.fail("copy", "--dest-tls-verify=false", lay.transport("v1"), registry.docker_ref("auth/tok/other", "v1"))
    assert_mentions(output(res), "auth/tok/other", "403 (Forbidden)")
    assert_not_stored(registry, "auth/tok/other", "v1")
    r = start_upload(registry, "auth/tok/other", tok1)
    assert_mentions(registry_error(r, 403, "DENIED"), "token 'e2e-tok'", "push", "'auth/tok/other'")
    r = basic_get(registry, f"/v2/{seeded.app}/manifests/{seeded.tag}", tok2)
    assert_mentions(registry_error(r, 403, "DENIED"), "token 'e2e-tok'", "pull", f"'{seeded.app}'")

    # docker with password2 (logged in through its own client address, used again
    # below once the token is disabled): pull and push its repository, nothing else.
    view = registry_from_new_ip()
    docker = dockerd.with_config(tmp_path / "docker-config")
    docker.login(view.host, tok2)
    ref = view.ref(repo, "v1")
    assert f"Digest: {lay.manifest_digest('v1')}" in docker("pull", ref).stdout
    pushed = view.ref(repo, "docker")
    docker("tag", ref, pushed)
    out = docker("push", pushed).stdout
    docker("rmi", pushed)
    assert "digest: sha256:" in out
    assert json.loads(registry.manifest_bytes(repo, "docker"))["config"]["digest"] == lay.config_digest("v1")
    res = docker.fail("pull", view.ref(seeded.big, seeded.tag))
    assert_mentions(output(res), "denied", "e2e-tok", "pull", seeded.big)

    refresh = exchange_refresh_token(view, tok1)

    # Disabled: every password of the token is refused with 401 saying so, and
    # so are refresh tokens issued before (a logged-in docker keeps one).
    out = mgmt.call("PATCH", "/tokens/e2e-tok", {"enabled": False})
    assert out["enabled"] is False
    for creds in (tok1, tok2):
        r = basic_get(view, "/v2/", creds)
        message = registry_error(r, 401, "UNAUTHORIZED")
        assert_mentions(message, "e2e-tok", "disabled")
        assert r.headers["WWW-Authenticate"].startswith(f'Bearer realm="http://{view.host}/oauth2/token"')
    view2 = registry_from_new_ip()
    res = sk.fail("inspect", "--raw", "--tls-verify=false", view2.docker_ref(repo, "v1"))
    assert_mentions(output(res), "unauthorized", "e2e-tok", "disabled")
    res = dockerd.with_config(tmp_path / "docker-config-2").login_fail(view2.host, tok1)
    assert_mentions(output(res), "unauthorized", "e2e-tok", "disabled")
    # Refresh tokens issued while it was enabled die with it: at the token
    # endpoint, as a Basic password, and in the docker that logged in before.
    assert_refresh_token_refused(view, refresh, f"repository:{repo}:pull", "e2e-tok", "disabled")
    res = docker.fail("pull", ref)
    assert_mentions(output(res), "unauthorized", "e2e-tok", "disabled")


def test_expired_token_password_is_refused_with_its_end_date(registry, registry_from_new_ip, mgmt, skopeo):
    """A token password created with expiryDays=0 has already expired: 401 naming the date."""
    mgmt.create_scope_map("e2e-expired-map", [{"repository": "auth/expired", "actions": ["content/read"]}])
    secrets_ = mgmt.create_token("e2e-expired", "e2e-expired-map", expiryDays=0)
    expires_at = secrets_["password1"]["expiresAt"]
    creds = Creds("e2e-expired", secrets_["password1"]["value"])
    time.sleep(1.1)  # strictly after the end date
    view = registry_from_new_ip()
    message = registry_error(basic_get(view, "/v2/", creds), 401, "UNAUTHORIZED")
    assert_mentions(message, "e2e-expired", "password1", f"expired at {expires_at}")
    res = skopeo.as_user(creds).fail("inspect", "--raw", "--tls-verify=false", view.docker_ref("auth/expired", "v1"))
    assert_mentions(output(res), "unauthorized", f"expired at {expires_at}")


# --------------------------------------------------------------------------
# Anonymous pull
# --------------------------------------------------------------------------


def test_anonymous_pull_only_when_enabled(registry, registry_from_new_ip, mgmt, skopeo, containerd, oci_images, seeded):
    lay = oci_images.layout
    anon = skopeo.as_user(None)
    ctr = containerd.as_user(None)
    view = registry_from_new_ip()  # not needed for throttling (no credentials), but keeps 127.0.0.1 clean
    src = view.docker_ref(seeded.app, seeded.tag)
    assert mgmt.settings()["anonymousPullEnabled"] is False

    res = anon.fail("inspect", "--raw", "--tls-verify=false", src)
    assert_mentions(output(res), "unauthorized", "anonymous", "disabled")
    res = ctr.ctr_fail(
        "images", "pull", "--plain-http", view.ref(seeded.app, seeded.tag), namespace=new_namespace("anon")
    )
    assert_mentions(output(res), "401 Unauthorized")
    r = basic_get(view, f"/v2/{seeded.app}/manifests/{seeded.tag}", None)
    assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), "anonymous pull is disabled")
    r = start_upload(view, "auth/anon-push", None)
    assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), "anonymous clients may only pull")

    assert mgmt.update(anonymousPullEnabled=True)["anonymousPullEnabled"] is True
    try:
        assert anon.inspect_raw(src) == lay.manifest_bytes("v1")
        ns = new_namespace("anon")
        out = ctr.ctr("images", "pull", "--plain-http", view.ref(seeded.app, seeded.tag), namespace=ns).stdout
        assert ctr_pulled_manifest(out) == {lay.manifest_digest("v1")}
        for layer in lay.layer_digests("v1"):
            assert ctr.ctr("content", "get", layer, namespace=ns, text=False).stdout == lay.blob(layer)
        r = basic_get(view, f"/v2/{seeded.app}/manifests/{seeded.tag}", None)
        assert r.status_code == 200 and sha256_digest(r.content) == lay.manifest_digest("v1")

        # Never push, never list the catalog.
        res = anon.fail("copy", "--dest-tls-verify=false", lay.transport("v1"), view.docker_ref("auth/anon-push", "v1"))
        assert_mentions(output(res), "unauthorized", "auth/anon-push", "anonymous clients may only pull")
        dst = view.ref("auth/anon-push", "ctr")
        ctr.ctr("images", "tag", view.ref(seeded.app, seeded.tag), dst, namespace=ns)
        res = ctr.ctr_fail("images", "push", "--plain-http", dst, namespace=ns)
        assert_mentions(output(res), "401 Unauthorized")
        r = start_upload(view, "auth/anon-push", None)
        assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), "anonymous clients may only pull")
        r = basic_get(view, "/v2/_catalog", None)
        assert r.status_code == 401, r.text
        assert_not_stored(registry, "auth/anon-push", "v1")
        assert_not_stored(registry, "auth/anon-push", "ctr")
    finally:
        assert mgmt.update(anonymousPullEnabled=False)["anonymousPullEnabled"] is False

    res = anon.fail("inspect", "--raw", "--tls-verify=false", src)
    assert_mentions(output(res), "unauthorized", "anonymous")


# --------------------------------------------------------------------------
# Admin user: two passwords, each regenerable on its own
# --------------------------------------------------------------------------


def test_admin_password_regeneration(
    registry, registry_from_new_ip, mgmt, skopeo, dockerd, oci_images, seeded, tmp_path
):
    lay = oci_images.layout
    src = seeded.app, seeded.tag
    out = mgmt.update(adminUserEnabled=True)
    try:
        assert out["adminUserEnabled"] is True
        passwords = {p["name"]: p["value"] for p in out.get("adminPasswords", [])}
        if not passwords:  # already enabled earlier in this berth's life: get fresh ones
            for name in ("password", "password2"):
                passwords[name] = mgmt.call("POST", "/admin/credentials/renew", {"passwordName": name})["value"]
        assert set(passwords) == {"password", "password2"} and passwords["password"] != passwords["password2"]
        pw1, pw2 = Creds(ADMIN_LOGIN, passwords["password"]), Creds(ADMIN_LOGIN, passwords["password2"])

        # Both work, with docker and skopeo; the admin user may push too.
        dk = dockerd.with_config(tmp_path / "dk1")
        dk.login(registry.host, pw1)
        assert f"Digest: {lay.manifest_digest('v1')}" in dk("pull", registry.ref(*src)).stdout
        skopeo.as_user(pw2).copy(lay.transport("v1"), registry.docker_ref("auth/admin/app", "v1"))
        assert registry.manifest_bytes("auth/admin/app", "v1") == lay.manifest_bytes("v1")

        renewed = mgmt.call("POST", "/admin/credentials/renew", {"passwordName": "password"})
        assert renewed["name"] == "password" and renewed["value"] not in (pw1.password, pw2.password)
        new1 = Creds(ADMIN_LOGIN, renewed["value"])

        # The old password is refused (401, why), the other one and the new one work.
        view = registry_from_new_ip()
        res = dockerd.with_config(tmp_path / "dk-old").login_fail(view.host, pw1)
        assert_mentions(output(res), "unauthorized", "wrong password", ADMIN_LOGIN)
        res = skopeo.as_user(pw1).fail("inspect", "--raw", "--tls-verify=false", view.docker_ref(*src))
        assert_mentions(output(res), "unauthorized", "wrong password", ADMIN_LOGIN)
        assert_mentions(registry_error(basic_get(view, "/v2/", pw1), 401, "UNAUTHORIZED"), "wrong password")
        dockerd.with_config(tmp_path / "dk2").login(registry.host, pw2)
        assert skopeo.as_user(pw2).inspect_raw(registry.docker_ref(*src)) == lay.manifest_bytes("v1")
        view_new = registry_from_new_ip()
        dk_new = dockerd.with_config(tmp_path / "dk-new")
        dk_new.login(view_new.host, new1)
        assert f"Digest: {lay.manifest_digest('v1')}" in dk_new("pull", view_new.ref(*src)).stdout
        assert skopeo.as_user(new1).inspect_raw(registry.docker_ref(*src)) == lay.manifest_bytes("v1")
        refresh = exchange_refresh_token(view_new, new1)

        # And the other way round: renewing password2 leaves the (new) password working.
        renewed2 = mgmt.call("POST", "/admin/credentials/renew", {"passwordName": "password2"})
        assert renewed2["name"] == "password2" and renewed2["value"] != pw2.password
        res = skopeo.as_user(pw2).fail("inspect", "--raw", "--tls-verify=false", view.docker_ref(*src))
        assert_mentions(output(res), "unauthorized", "wrong password")
        assert skopeo.as_user(new1).inspect_raw(registry.docker_ref(*src)) == lay.manifest_bytes("v1")
        assert skopeo.as_user(Creds(ADMIN_LOGIN, renewed2["value"])).inspect_raw(
            registry.docker_ref(*src)
        ) == lay.manifest_bytes("v1")
    finally:
        assert mgmt.update(adminUserEnabled=False)["adminUserEnabled"] is False

    # Disabled: even the current password gets 401 saying the admin user is
    # disabled, and so do refresh tokens issued before (docker's identitytoken).
    view = registry_from_new_ip()
    message = registry_error(basic_get(view, "/v2/", new1), 401, "UNAUTHORIZED")
    assert_mentions(message, "admin", "disabled")
    res = skopeo.as_user(new1).fail("inspect", "--raw", "--tls-verify=false", view.docker_ref(*src))
    assert_mentions(output(res), "unauthorized", "disabled")
    assert_refresh_token_refused(view_new, refresh, f"repository:{seeded.app}:pull", "admin", "disabled")
    res = dk_new.fail("pull", view_new.ref(*src))
    assert_mentions(output(res), "unauthorized", "disabled")


# --------------------------------------------------------------------------
# Wrong and unknown credentials; tokens
# --------------------------------------------------------------------------


def test_wrong_password_and_unknown_user_get_401_with_the_reason(
    registry, registry_from_new_ip, skopeo, containerd, dockerd, seeded, tmp_path
):
    wrong = Creds("owner", "not-the-owner-password")
    unknown = Creds("nobody-e2e", "whatever")
    view = registry_from_new_ip()
    challenge = f'Bearer realm="http://{view.host}/oauth2/token",service="{view.host}"'

    r = basic_get(view, "/v2/", None)
    assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), "authentication required")
    assert r.headers["WWW-Authenticate"] == challenge
    r = basic_get(view, "/v2/", wrong)
    assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), "wrong password", "'owner'")
    assert r.headers["WWW-Authenticate"].startswith(challenge)
    r = basic_get(view, "/v2/", unknown)
    assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), "unknown identity", "'nobody-e2e'")
    r = basic_get(view, f"/oauth2/token?service={view.host}&scope=repository:{seeded.app}:pull", wrong)
    assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), "wrong password", "'owner'")
    r = basic_get(view, f"/oauth2/token?service={view.host}&scope=repository:{seeded.app}:pull", unknown)
    assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), "unknown identity", "'nobody-e2e'")

    view = registry_from_new_ip()
    res = skopeo.as_user(wrong).fail("inspect", "--raw", "--tls-verify=false", view.docker_ref(seeded.app, seeded.tag))
    assert_mentions(output(res), "unauthorized", "wrong password", "'owner'")
    res = skopeo.as_user(unknown).fail(
        "inspect", "--raw", "--tls-verify=false", view.docker_ref(seeded.app, seeded.tag)
    )
    assert_mentions(output(res), "unauthorized", "unknown identity", "'nobody-e2e'")

    view = registry_from_new_ip()
    res = dockerd.with_config(tmp_path / "dk-wrong").login_fail(view.host, wrong)
    assert_mentions(output(res), "unauthorized", "wrong password", "'owner'")
    res = dockerd.with_config(tmp_path / "dk-unknown").login_fail(view.host, unknown)
    assert_mentions(output(res), "unauthorized", "unknown identity", "'nobody-e2e'")

    view = registry_from_new_ip()
    ctr = containerd.as_user(wrong)
    res = ctr.ctr_fail(
        "images", "pull", "--plain-http", view.ref(seeded.app, seeded.tag), namespace=new_namespace("wrong")
    )
    # ctr prints only the status line of the failed request.
    assert_mentions(output(res), "401 Unauthorized")

    # The owner's own credentials still work from 127.0.0.1.
    assert basic_get(registry, "/v2/", registry.owner).status_code == 200


def get_token(registry, scope: str, creds: Creds | None) -> requests.Response:
    return basic_get(registry, f"/oauth2/token?service={registry.host}&scope={scope}", creds)


def test_access_token_lifetime_scope_and_tampering(registry, registry_from_new_ip, oci_images, seeded):
    lay = oci_images.layout
    r = get_token(registry, f"repository:{seeded.app}:pull", registry.owner)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300 and body["issued_at"], body
    token = body["token"]
    header_b64, payload_b64, sig_b64 = token.split(".")
    header = json.loads(b64url_decode(header_b64))
    claims = json.loads(b64url_decode(payload_b64))
    assert header["alg"] == "ES256" and header.get("kid"), header
    assert claims["exp"] - claims["iat"] == 300, claims
    assert claims["aud"] == registry.host and claims["typ"] == "access", claims
    assert claims["access"] == [{"type": "repository", "name": seeded.app, "actions": ["pull"]}], claims
    assert abs(claims["iat"] - time.time()) < 120

    def bearer(view, tok: str, repo: str = seeded.app, ref: str = seeded.tag) -> requests.Response:
        s = requests.Session()
        s.trust_env = False
        return s.get(
            f"{view.url}/v2/{repo}/manifests/{ref}",
            headers={"Authorization": f"Bearer {tok}", "Accept": "application/vnd.oci.image.manifest.v1+json"},
            timeout=30,
        )

    r = bearer(registry, token)
    assert r.status_code == 200 and r.content == lay.manifest_bytes("v1")
    # The token covers only what was asked: another repository gets a challenge for a wider token.
    r = bearer(registry, token, seeded.big)
    assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), "does not cover")
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    assert f'scope="repository:{seeded.big}:pull"' in r.headers["WWW-Authenticate"]

    # Tampered tokens are refused with 401: a widened payload under the old signature, a broken signature.
    view = registry_from_new_ip()
    widened = dict(claims, access=[{"type": "repository", "name": seeded.big, "actions": ["pull", "push"]}])
    forged = ".".join([header_b64, b64url_encode(json.dumps(widened).encode()), sig_b64])
    flipped = sig_b64[:10] + ("A" if sig_b64[10] != "A" else "B") + sig_b64[11:]
    for bad in (forged, f"{header_b64}.{payload_b64}.{flipped}", f"{header_b64}.{payload_b64}."):
        for repo in (seeded.app, seeded.big):
            r = bearer(view, bad, repo)
            message = registry_error(r, 401, "UNAUTHORIZED")
            assert_mentions(message, "invalid token", "signature does not verify")
            assert r.headers["WWW-Authenticate"].startswith("Bearer realm=")
    r = bearer(view, "not-a-jwt")
    assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), "invalid token")
    # An access token is not a credential for getting another token.
    r = basic_get(
        view,
        f"/oauth2/token?service={view.host}&scope=repository:{seeded.big}:pull",
        None,
        headers={"Authorization": f"Bearer {token}"},
    )
    registry_error(r, 401, "UNAUTHORIZED")


def test_oauth2_password_and_refresh_grants(registry, oci_images, seeded):
    lay = oci_images.layout
    s = requests.Session()
    s.trust_env = False
    form = {
        "grant_type": "password",
        "service": registry.host,
        "scope": f"repository:{seeded.app}:pull",
        "username": registry.owner.user,
        "password": registry.owner.password,
    }
    r = s.post(f"{registry.url}/oauth2/token", data=form, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    access, refresh = body["access_token"], body["refresh_token"]
    assert json.loads(b64url_decode(refresh.split(".")[1]))["typ"] == "refresh"
    r = s.get(
        f"{registry.url}/v2/{seeded.app}/manifests/{seeded.tag}",
        headers={"Authorization": f"Bearer {access}", "Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=30,
    )
    assert r.status_code == 200 and r.content == lay.manifest_bytes("v1")

    r = s.post(
        f"{registry.url}/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "service": registry.host,
            "scope": f"repository:{seeded.big}:pull",
            "refresh_token": refresh,
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    claims = json.loads(b64url_decode(r.json()["access_token"].split(".")[1]))
    assert claims["access"] == [{"type": "repository", "name": seeded.big, "actions": ["pull"]}]
    assert claims["login"] == "owner"

    r = s.post(
        f"{registry.url}/oauth2/exchange",
        data={
            "grant_type": "password",
            "service": registry.host,
            "username": registry.owner.user,
            "password": registry.owner.password,
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    exchanged = r.json()["refresh_token"]
    # A refresh token is a password for the all-zero user (what `docker login` stores as identitytoken).
    r = basic_get(registry, "/v2/", Creds(REFRESH_TOKEN_USER, exchanged))
    assert r.status_code == 200, r.text


# --------------------------------------------------------------------------
# Service principal lifecycle
# --------------------------------------------------------------------------


def test_sp_recreated_with_same_name_gets_new_id_and_no_access(
    registry, registry_from_new_ip, mgmt, skopeo, dockerd, oci_images, seeded, tmp_path
):
    lay = oci_images.layout
    src = registry.docker_ref(seeded.app, seeded.tag)
    old = mgmt.create_sp("e2e-recreated", role="AcrPull", scope="")
    assert skopeo.as_user(old.creds).inspect_raw(src) == lay.manifest_bytes("v1")
    (old_assignment,) = [a for a in mgmt.assignments() if a["principalId"] == old.id]
    assert old_assignment["role"] == "AcrPull" and old_assignment["orphaned"] is False
    view = registry_from_new_ip()
    docker = dockerd.with_config(tmp_path / "docker-config")
    docker.login(view.host, old.creds)  # keeps a refresh token for the old SP
    assert f"Digest: {lay.manifest_digest('v1')}" in docker("pull", view.ref(seeded.app, seeded.tag)).stdout
    refresh = exchange_refresh_token(view, old.creds)

    mgmt.delete_sp(old.id)
    message = registry_error(basic_get(view, "/v2/", old.creds), 401, "UNAUTHORIZED")
    assert_mentions(message, "unknown identity", old.id)
    res = skopeo.as_user(old.creds).fail(
        "inspect", "--raw", "--tls-verify=false", view.docker_ref(seeded.app, seeded.tag)
    )
    assert_mentions(output(res), "unauthorized", "unknown identity", old.id)
    # Its refresh tokens died with it, also the one the logged-in docker keeps.
    assert_refresh_token_refused(view, refresh, f"repository:{seeded.app}:pull", "unknown identity")
    res = docker.fail("pull", view.ref(seeded.app, seeded.tag))
    assert_mentions(output(res), "unauthorized", "unknown identity")

    # The old assignment is still listed, marked as pointing at nothing.
    (orphan,) = [a for a in mgmt.assignments() if a["id"] == old_assignment["id"]]
    assert orphan["orphaned"] is True and orphan["principalId"] == old.id, orphan

    new = mgmt.create_sp("e2e-recreated")  # same name, no role
    assert new.id != old.id and new.creds.user == new.id
    assert [a for a in mgmt.assignments() if a["principalId"] == new.id] == []
    res = skopeo.as_user(new.creds).fail("inspect", "--raw", "--tls-verify=false", src)
    assert_mentions(output(res), "denied", new.id, "e2e-recreated", "pull", seeded.app)
    assert_http_denied(registry, new, "pull", seeded.app)

    assignment = mgmt.assign(new.id, "AcrPull", "")
    assert assignment["principalId"] == new.id and assignment["orphaned"] is False, assignment
    assert skopeo.as_user(new.creds).inspect_raw(src) == lay.manifest_bytes("v1")
    listed = {a["id"]: a for a in mgmt.assignments()}
    assert listed[old_assignment["id"]]["orphaned"] is True
    assert listed[assignment["id"]]["orphaned"] is False


def test_sp_secret_reset(registry, registry_from_new_ip, mgmt, skopeo, oci_images, seeded):
    lay = oci_images.layout
    src = registry.docker_ref(seeded.app, seeded.tag)
    sp = mgmt.create_sp("e2e-reset", role="AcrPull", scope="")
    assert skopeo.as_user(sp.creds).inspect_raw(src) == lay.manifest_bytes("v1")
    out = mgmt.call("POST", f"/service-principals/{sp.id}/credentials/reset", {})
    assert out["name"] == "secret" and out["expiresAt"], out
    new_secret = out["value"]
    assert new_secret != sp.creds.password
    view = registry_from_new_ip()
    res = skopeo.as_user(sp.creds).fail(
        "inspect", "--raw", "--tls-verify=false", view.docker_ref(seeded.app, seeded.tag)
    )
    assert_mentions(output(res), "unauthorized", "wrong password")
    assert skopeo.as_user(Creds(sp.id, new_secret)).inspect_raw(src) == lay.manifest_bytes("v1")


# --------------------------------------------------------------------------
# Throttling and the owner's first password
# --------------------------------------------------------------------------


def test_failed_logins_throttle_only_that_address(registry, registry_from_new_ip, containerd, seeded):
    view = registry_from_new_ip()
    for i in range(10):
        r = basic_get(view, "/v2/", Creds("owner", f"wrong-{i}"))
        assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), "wrong password")
    # The 11th attempt from that address is refused whatever it carries, even the right password.
    for creds in (Creds("owner", "wrong-10"), registry.owner):
        r = basic_get(view, "/v2/", creds)
        message = registry_error(r, 429, "TOOMANYREQUESTS")
        assert 1 <= int(r.headers["Retry-After"]) <= 60, r.headers
        assert view.source_ip in message, message
    # A real client from there, with the right password, is refused too. (Not
    # skopeo: it honours Retry-After, waits out the lockout and then succeeds.)
    started = time.monotonic()
    res = containerd.ctr_fail(
        "images", "pull", "--plain-http", view.ref(seeded.app, seeded.tag), namespace=new_namespace("throttled")
    )
    assert_mentions(output(res), "429 Too Many Requests")
    assert time.monotonic() - started < 30
    # Other addresses are unaffected.
    assert basic_get(registry, "/v2/", registry.owner).status_code == 200
    assert basic_get(registry_from_new_ip(), "/v2/", registry.owner).status_code == 200


def test_first_start_writes_owner_password_file(registry, client_env, tmp_path):
    """Without BERTH_AUTH__INITIAL_OWNER_PASSWORD, berth makes one up and writes it 0600."""
    # The session's berth (password chosen by the fixture): any password file is owner-only.
    pw_file = registry.data_dir / "initial-owner-password"
    if pw_file.exists():
        assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600

    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    env = {k: v for k, v in client_env.items() if not k.startswith(("BERTH_", "REGISTRY_"))}
    daemon = Daemon("berth-fresh", registry_argv("berth", port, data, tmp_path), tmp_path, env=env, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        s = requests.Session()
        s.trust_env = False
        wait_for(
            lambda: s.get(f"{url}/v2/", timeout=2).status_code == 401, READY_TIMEOUT, "berth to answer", proc=daemon
        )
        pw_file = data / "initial-owner-password"
        assert pw_file.is_file()
        assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
        password = pw_file.read_text().strip()
        assert len(password) >= 16
        assert s.get(f"{url}/v2/", auth=("owner", password), timeout=10).status_code == 200
        r = s.get(f"{url}/v2/", auth=("owner", password + "x"), timeout=10)
        assert_mentions(registry_error(r, 401, "UNAUTHORIZED"), "wrong password")
        # Shown once on stdout at creation ("shown only this once"), never in the log (stderr).
        assert daemon.stdout_path.read_text().count(password) <= 1
        assert password not in daemon.stderr_path.read_text(), "the owner password was logged"
    finally:
        daemon.stop()
