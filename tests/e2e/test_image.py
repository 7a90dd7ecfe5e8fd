"""berth's container image: scripts/build-image.sh, then the image run with podman.

The image is built from scratch by buildah (no base image is pulled) into an
OCI layout; its config and its one layer are checked file by file.  podman
(a private vfs storage) then runs it on the host network, listening on a
free loopback port, with a named volume for /var/lib/berth: the server runs
as 65532, writes the owner password into the volume, takes a skopeo push,
serves it back byte for byte, and after the container is replaced by a new
one on the same volume it still serves it with the same owner password.
The image itself is pushed to that berth with the script's ``--push``.

This sandbox has no CAP_SYS_RESOURCE: podman 4.3's default rlimits
(nofile/nproc 1048576) cannot be set, so every ``podman run`` passes
``--ulimit`` values within the current limits (``PODMAN_RUN_FLAGS``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import resource
import shutil
import platform
import stat
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import (
    OCI_MANIFEST,
    READY_TIMEOUT,
    REPO_ROOT,
    STOP_TIMEOUT,
    Creds,
    OciLayout,
    Registry,
    Skopeo,
    StorageTool,
    berth_binary,
    free_port,
    run,
    sha256_digest,
)


BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-image.sh"
BERTH_UID = 65532
DATA_DIR = "/var/lib/berth"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LABEL = "org.opencontainers.image."
BUILD_TIMEOUT = 600  # buildah commit gzips the (debug) binary
REQUIRED_LABELS = ("title", "version", "revision", "licenses", "created")
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def podman_run_flags() -> list[str]:
    """Flags every ``podman run`` needs here (see the module docstring).

    podman 4.3 asks the runtime for RLIMIT_NOFILE and RLIMIT_NPROC of
    1048576; without CAP_SYS_RESOURCE runc then fails with ``error setting
    rlimits for ready process: error setting rlimit type 7: operation not
    permitted``.  nofile: our own hard limit (podman falls back to it for
    itself); nproc: 4096, below the 32768 podman runs conmon/runc with here.
    """
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = 4096 if nproc == resource.RLIM_INFINITY else min(nproc, 4096)
    if nofile == resource.RLIM_INFINITY:
        nofile = 1048576
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


PODMAN_RUN_FLAGS = podman_run_flags()


# --- the built image ---------------------------------------------------------


@dataclass
class BuiltImage:
    layout: OciLayout
    ref: str  # the ref name in the layout, "berth:VERSION"
    binary: Path
    output: str  # the script's log
    git_head: str  # HEAD and whether the tree was dirty, just before the build
    git_dirty: bool

    @property
    def manifest(self) -> dict:
        return self.layout.manifest(self.ref)

    @property
    def config(self) -> dict:
        return json.loads(self.layout.blob(self.layout.config_digest(self.ref)))

    @property
    def labels(self) -> dict:
        return self.config["config"].get("Labels") or {}

    @property
    def version(self) -> str:
        return self.ref.split(":", 1)[1]


def build_image(env: dict, binary: Path, work: Path, output: Path, *extra: str) -> BuiltImage:
    """Runs scripts/build-image.sh --binary BINARY --output OUTPUT (plus ``extra``)."""
    # Read before the build: someone may commit in this tree meanwhile.
    head = run(["git", "-C", REPO_ROOT, "rev-parse", "HEAD"]).stdout.strip()
    dirty = bool(run(["git", "-C", REPO_ROOT, "status", "--porcelain"]).stdout.strip())
    tmp = work / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    res = run(
        ["bash", BUILD_SCRIPT, "--binary", binary, "--output", output, *extra],
        dict(env, TMPDIR=str(tmp)),
        timeout=BUILD_TIMEOUT,
        cwd=REPO_ROOT,
    )
    print(res.stderr, file=sys.stderr)
    assert not list(tmp.iterdir()), f"build-image.sh left files in its TMPDIR: {list(tmp.iterdir())}"
    layout = OciLayout(output)
    refs = [m["annotations"]["org.opencontainers.image.ref.name"] for m in layout.index()["manifests"]]
    assert len(refs) == 1 and refs[0].startswith("berth:"), f"unexpected refs in {output}: {refs}"
    return BuiltImage(layout, refs[0], binary, res.stderr, head, dirty)


@pytest.fixture(scope="module")
def image_work(tmp_path_factory):
    """A work directory for this module, removed at the end (the layouts hold the binary)."""
    work = tmp_path_factory.mktemp("image")
    yield work
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def berth_copy(image_work) -> Path:
    """A private copy of $BERTH_BIN: the file may be rebuilt while the module runs,
    and the layer is compared with the binary it was built from."""
    copy = image_work / "bin" / "berth"
    copy.parent.mkdir()
    shutil.copy2(berth_binary(), copy)
    return copy


@pytest.fixture(scope="module")
def built(client_env, berth_copy, image_work) -> BuiltImage:
    return build_image(client_env, berth_copy, image_work / "build", image_work / "oci")


def ldd_paths(binary: Path) -> list[str]:
    """The absolute library paths (and the loader) ``ldd`` lists for ``binary``."""
    res = run(["ldd", binary], check=False)
    if res.returncode != 0:
        assert "not a dynamic executable" in res.stdout + res.stderr, res.stderr
        return []
    assert "not found" not in res.stdout, res.stdout
    paths = []
    for line in res.stdout.splitlines():
        m = re.match(r"\s*\S+ => (/\S+) \(0x", line) or re.match(r"\s*(/\S+) \(0x", line)
        if m:
            paths.append(m.group(1))
    return sorted(set(paths))


def read_layer(layout: OciLayout, digest: str) -> tuple[bytes, dict[str, tarfile.TarInfo], dict[str, bytes]]:
    """The uncompressed tar, its members by normalized name, and the regular files' bytes."""
    tar_bytes = gzip.decompress(layout.blob(digest))
    members: dict[str, tarfile.TarInfo] = {}
    contents: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for info in tar.getmembers():
            name = info.name.removeprefix("./").rstrip("/")
            assert name not in members, f"{name} appears twice in layer {digest}"
            members[name] = info
            if info.isreg():
                contents[name] = tar.extractfile(info).read()
    return tar_bytes, members, contents


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def test_image_config(built):
    manifest = built.manifest
    assert manifest["mediaType"] == OCI_MANIFEST
    assert built.layout.descriptor(built.ref)["mediaType"] == OCI_MANIFEST
    cfg = built.config
    assert cfg["os"] == "linux" and cfg["architecture"] == HOST_ARCH
    c = cfg["config"]
    assert c["User"] == f"{BERTH_UID}:{BERTH_UID}"
    assert c["Entrypoint"] == ["/usr/bin/berth"]
    assert c["Cmd"] == ["serve", "--listen", "0.0.0.0:5000"]
    assert f"BERTH_DATA_DIR={DATA_DIR}" in c["Env"]
    assert f"SSL_CERT_FILE={CA_BUNDLE}" in c["Env"]
    assert set(c["ExposedPorts"]) == {"5000/tcp"}
    assert set(c["Volumes"]) == {DATA_DIR}
    assert c["WorkingDir"] == DATA_DIR

    labels = built.labels
    for key in REQUIRED_LABELS:
        assert labels.get(LABEL + key), f"label {LABEL}{key} is missing or empty: {labels}"
    assert labels[LABEL + "title"] == "berth"
    # The version is what the binary says ("berth 0.1.0 (commit …)"), and the ref's tag.
    version_out = run([built.binary, "--version"]).stdout.splitlines()[0].split()
    assert version_out[0] == "berth", version_out
    assert labels[LABEL + "version"] == version_out[1] == built.version
    assert labels[LABEL + "revision"] == built.git_head + ("-dirty" if built.git_dirty else ""), labels
    cargo = (REPO_ROOT / "Cargo.toml").read_text()
    license_ = re.search(r'^\[workspace\.package\][^\[]*?^license\s*=\s*"([^"]+)"', cargo, re.M | re.S).group(1)
    assert labels[LABEL + "licenses"] == license_
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels[LABEL + "created"]), labels
    # The same values as manifest annotations.
    annotations = manifest.get("annotations") or {}
    for key in REQUIRED_LABELS:
        assert annotations.get(LABEL + key) == labels[LABEL + key], annotations


def test_image_layer_holds_only_our_files(built):
    """One layer; exactly the binary, ldd's libraries, etc/..., var/lib/berth and tmp."""
    (layer,) = built.manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    tar_bytes, members, contents = read_layer(built.layout, layer["digest"])
    # The config's diff_id is the uncompressed layer.
    assert built.config["rootfs"]["diff_ids"] == [sha256_digest(tar_bytes)]

    libs = ldd_paths(built.binary)
    assert any("libc.so" in p for p in libs), f"the binary is expected to link glibc: {libs}"
    files = {
        "usr/bin/berth": built.binary,
        "etc/ssl/certs/ca-certificates.crt": Path(CA_BUNDLE),
        **{lib.lstrip("/"): Path(os.path.realpath(lib)) for lib in libs},
    }
    generated = {"etc/passwd", "etc/group"}
    dirs = {"tmp", "var/lib/berth"}
    for path in [*files, *generated, *dirs]:
        parent = Path(path).parent
        while str(parent) != ".":
            dirs.add(str(parent))
            parent = parent.parent
    expected = set(files) | generated | dirs
    assert set(members) == expected, (
        f"unexpected: {sorted(set(members) - expected)}; missing: {sorted(expected - set(members))}"
    )

    for name, info in members.items():
        if name in dirs:
            assert info.isdir(), f"{name} is not a directory"
        else:
            assert info.isreg(), f"{name} is not a regular file (type {info.type!r})"
        owner = (BERTH_UID, BERTH_UID) if name == "var/lib/berth" else (0, 0)
        assert (info.uid, info.gid) == owner, f"{name} is owned by {info.uid}:{info.gid}"
    assert stat.S_IMODE(members["var/lib/berth"].mode) == 0o700
    assert stat.S_IMODE(members["tmp"].mode) == 0o1777
    assert stat.S_IMODE(members["usr/bin/berth"].mode) == 0o755

    # Every copied file is byte for byte the host's.
    for name, source in files.items():
        got = hashlib.sha256(contents[name]).hexdigest()
        assert got == sha256_file(source), f"{name} differs from {source}"
    passwd = contents["etc/passwd"].decode()
    group = contents["etc/group"].decode()
    assert f"berth:x:{BERTH_UID}:{BERTH_UID}:" in passwd and f":{DATA_DIR}:" in passwd, passwd
    assert f"berth:x:{BERTH_UID}:" in group, group


def test_build_script_rejects_bad_options(client_env, tmp_path):
    res = run(["bash", BUILD_SCRIPT, "--help"], client_env)
    assert "--binary PATH" in res.stdout and "--push" in res.stdout
    bad = [
        ["--no-such-option"],
        ["--binary", tmp_path / "missing"],
        ["--binary", berth_binary(), "--push", "127.0.0.1:1/x:y"],
        ["--binary", berth_binary(), "--dest-tls-verify", "maybe"],
    ]
    for args in bad:
        res = run(["bash", BUILD_SCRIPT, *args], client_env, check=False)
        assert res.returncode != 0 and "[build-image] error:" in res.stderr, (args, res.stderr)


# --- running it with podman ----------------------------------------------------


@pytest.fixture(scope="module")
def podman_storage(tmp_path_factory, client_env) -> StorageTool:
    """podman with a private vfs storage; everything in it is removed at module end."""
    work = tmp_path_factory.mktemp("podman-img")
    tool = StorageTool("podman", work, client_env)
    yield tool
    tool("rm", "--all", "--force", "--time", "0", check=False)
    tool("volume", "rm", "--all", "--force", check=False)
    tool("rmi", "--all", "--force", check=False)
    left = tool("ps", "--all", "--quiet", check=False).stdout.strip()
    assert not left, f"containers left in {work}: {left}"
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def podman_image(podman_storage, built) -> str:
    """The built layout pulled into podman's storage; its image ID."""
    image_id = podman_storage("pull", "--quiet", built.layout.transport(built.ref)).stdout.strip()
    assert f"sha256:{image_id}" == built.layout.config_digest(built.ref)
    return image_id


class BerthContainer:
    """One ``podman run -d`` of the image on the host network, on 127.0.0.1:PORT."""

    def __init__(self, podman: StorageTool, image: str, name: str, volume: str, port: int):
        self.podman, self.name, self.volume, self.port = podman, name, volume, port
        podman(
            "run",
            "--detach",
            "--network",
            "host",
            *PODMAN_RUN_FLAGS,
            "--name",
            name,
            "--volume",
            f"{volume}:{DATA_DIR}",
            image,
            # The image's cmd listens on 0.0.0.0:5000; here only loopback.
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inspect(self, fmt: str) -> str:
        return self.podman("inspect", "--format", fmt, self.name).stdout.strip()

    def logs(self) -> str:
        res = self.podman("logs", self.name, check=False)
        return f"--- podman logs {self.name} ---\n{res.stdout}{res.stderr}"

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def wait_ready(self, session, password_file: Path):
        """Until GET /v2/ answers 401 and the volume holds the owner password."""
        deadline = time.monotonic() + READY_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            try:
                status = session.get(f"{self.url}/v2/", timeout=2).status_code
                if status == 401 and password_file.is_file() and password_file.read_text().strip():
                    return
                last = f"GET /v2/ -> {status}"
            except Exception as exc:  # noqa: BLE001 - not listening yet
                last = repr(exc)
            if not self.running():
                raise AssertionError(
                    f"container {self.name} exited ({self.inspect('{{.State.ExitCode}}')}) before it "
                    f"was ready\n{self.logs()}"
                )
            time.sleep(0.3)
        raise AssertionError(f"{self.name} not ready after {READY_TIMEOUT}s (last: {last})\n{self.logs()}")

    def main_pid(self) -> int:
        pid = int(self.inspect("{{.State.Pid}}"))
        assert pid > 0, f"{self.name} has no main process"
        return pid

    def stop_and_remove(self) -> int:
        """``podman stop`` (SIGTERM); returns the exit code; removes the container."""
        self.podman("stop", "--time", str(STOP_TIMEOUT), self.name, timeout=STOP_TIMEOUT + 60)
        code = int(self.inspect("{{.State.ExitCode}}"))
        self.podman("rm", self.name)
        return code


@pytest.fixture
def containers(podman_storage, podman_image, request):
    """Factory: ``start(name, volume)`` runs the image; all are removed at test end."""
    started: list[BerthContainer] = []
    volumes: list[str] = []
    prefix = f"berth-e2e-{os.getpid()}-{request.node.name[:20]}"

    def start(name: str, volume: str) -> BerthContainer:
        if volume not in volumes:
            podman_storage("volume", "create", f"{prefix}-{volume}")
            volumes.append(volume)
        c = BerthContainer(podman_storage, podman_image, f"{prefix}-{name}", f"{prefix}-{volume}", free_port())
        started.append(c)
        return c

    def volume_path(volume: str) -> Path:
        out = podman_storage("volume", "inspect", "--format", "{{.Mountpoint}}", f"{prefix}-{volume}").stdout
        return Path(out.strip())

    start.volume_path = volume_path
    yield start
    for c in started:
        if podman_storage("container", "exists", c.name, check=False).returncode == 0:
            print(c.logs(), file=sys.stderr)  # shown when the test failed
            podman_storage("rm", "--force", "--time", "0", c.name, check=False)
    for v in volumes:
        podman_storage("volume", "rm", "--force", f"{prefix}-{v}", check=False)


def read_status_ids(pid: int) -> tuple[list[int], list[int]]:
    status = Path(f"/proc/{pid}/status").read_text()
    uids = [int(x) for x in re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()]
    gids = [int(x) for x in re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()]
    return uids, gids


def berth_view(host: str, owner: Creds, data_dir: Path) -> Registry:
    """The container's berth as a ``Registry`` (for its HTTP helpers); no Daemon of ours."""
    return Registry(kind="berth", host=host, data_dir=data_dir, daemon=None, owner=owner)


def assert_pulls_back(skopeo: Skopeo, reg: Registry, repo: str, layout: OciLayout, ref: str, dest: Path):
    """skopeo copies ``repo:v1`` back to a layout: manifest, config and layers byte for byte."""
    skopeo.copy(reg.docker_ref(repo, "v1"), f"oci:{dest}:back")
    back = OciLayout(dest)
    assert back.manifest_bytes("back") == layout.manifest_bytes(ref)
    assert back.blob(back.config_digest("back")) == layout.blob(layout.config_digest(ref))
    assert back.layer_digests("back") == layout.layer_digests(ref)
    for d in layout.layer_digests(ref):
        assert back.blob(d) == layout.blob(d)
        assert reg.get_blob(repo, d) == layout.blob(d)
    assert reg.manifest_bytes(repo, "v1") == layout.manifest_bytes(ref)


def test_serves_as_non_root_and_keeps_data_across_restart(
    containers, podman_storage, client_env, client_home, oci_images, tmp_path
):
    first = containers("first", "data")
    volume = containers.volume_path("data")
    password_file = volume / "initial-owner-password"
    anonymous = berth_view(f"127.0.0.1:{first.port}", None, volume).session
    first.wait_ready(anonymous, password_file)
    owner = Creds("owner", password_file.read_text().strip())
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password_mtime = password_file.stat().st_mtime_ns
    reg = berth_view(f"127.0.0.1:{first.port}", owner, volume)
    assert reg.session.get(f"{reg.url}/v2/", timeout=10).status_code == 200
    r = anonymous.get(f"{reg.url}/v2/", timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer "), r.headers

    # The server is the container's main process, running as 65532:65532.
    pid = first.main_pid()
    uids, gids = read_status_ids(pid)
    assert uids == [BERTH_UID] * 4 and gids == [BERTH_UID] * 4, (uids, gids)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    assert cmdline == [b"/usr/bin/berth", b"serve", b"--listen", f"127.0.0.1:{first.port}".encode()], cmdline
    top = podman_storage("top", first.name, "user", "group").stdout.split()
    assert top[2:] == ["berth", "berth"], top

    # Push (skopeo) and pull back byte for byte.
    skopeo = Skopeo(client_env, client_home["policy"], owner)
    layout = oci_images.layout
    skopeo.copy(layout.transport("v1"), reg.docker_ref("img/app", "v1"))
    skopeo.copy(layout.transport("big"), reg.docker_ref("img/big", "v1"))
    assert_pulls_back(skopeo, reg, "img/app", layout, "v1", tmp_path / "back-app-1")
    assert_pulls_back(skopeo, reg, "img/big", layout, "big", tmp_path / "back-big-1")

    # Everything berth wrote into the volume is owned by 65532, the data dir is 0700.
    assert stat.S_IMODE(volume.stat().st_mode) == 0o700
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in [volume, *volume.rglob("*")]}
    assert owners == {(BERTH_UID, BERTH_UID)}, owners
    written = {p.name for p in volume.iterdir()}
    assert {"berth.db", "initial-owner-password"} <= written, written

    # A graceful stop, then a new container on the same volume.
    code = first.stop_and_remove()
    assert code == 0, f"berth exited with {code} on SIGTERM"
    second = containers("second", "data")
    second.wait_ready(anonymous, password_file)
    assert password_file.read_text().strip() == owner.password
    assert password_file.stat().st_mtime_ns == password_mtime, "the owner password file was rewritten"
    assert "created the owner identity" not in second.logs()
    reg2 = berth_view(f"127.0.0.1:{second.port}", owner, volume)
    assert reg2.session.get(f"{reg2.url}/v2/", timeout=10).status_code == 200
    assert_pulls_back(skopeo, reg2, "img/app", layout, "v1", tmp_path / "back-app-2")
    assert_pulls_back(skopeo, reg2, "img/big", layout, "big", tmp_path / "back-big-2")
    assert uids == read_status_ids(second.main_pid())[0]


def test_build_script_pushes_the_image_to_berth(
    containers, podman_storage, client_env, client_home, berth_copy, image_work
):
    c = containers("push", "push")
    volume = containers.volume_path("push")
    password_file = volume / "initial-owner-password"
    c.wait_ready(berth_view(f"127.0.0.1:{c.port}", None, volume).session, password_file)
    owner = Creds("owner", password_file.read_text().strip())
    reg = berth_view(f"127.0.0.1:{c.port}", owner, volume)

    dest = reg.docker_ref("berth/berth", "e2e")
    pushed = build_image(
        client_env,
        berth_copy,
        image_work / "build-push",
        image_work / "oci-push",
        "--tag",
        "e2e",
        "--push",
        dest,
        "--dest-creds",
        owner.arg,
        "--dest-tls-verify",
        "false",
    )
    assert pushed.ref == "berth:e2e"
    assert f"pushed {dest}" in pushed.output
    # The registry holds the layout's manifest, unchanged, and its blobs.
    assert reg.manifest_bytes("berth/berth", "e2e") == pushed.layout.manifest_bytes(pushed.ref)
    config_digest = pushed.layout.config_digest(pushed.ref)
    assert reg.get_blob("berth/berth", config_digest) == pushed.layout.blob(config_digest)

    skopeo = Skopeo(client_env, client_home["policy"], owner)
    info = skopeo.inspect(dest)
    for key in REQUIRED_LABELS:
        assert info["Labels"].get(LABEL + key) == pushed.labels[LABEL + key], info["Labels"]
    assert info["Labels"][LABEL + "title"] == "berth"
    assert info["Labels"][LABEL + "version"]
    assert info["Labels"][LABEL + "revision"]
    assert info["Os"] == "linux" and info["Architecture"] == HOST_ARCH

    # podman pulls it from the berth it runs in: the same image.
    ref = reg.ref("berth/berth", "e2e")
    podman_storage("pull", "--tls-verify=false", "--creds", owner.arg, ref)
    got = podman_storage("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    assert f"sha256:{got}" == config_digest
    podman_storage("rmi", ref)
