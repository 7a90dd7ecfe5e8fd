"""Shared fixtures and helpers for berth's real-client end-to-end tests.

Everything here runs locally and offline: the registry under test, containerd
and dockerd are started by session fixtures on 127.0.0.1 / unix sockets under
pytest's temp directories, and test images are built with umoci.  Nothing is
ever pulled from, or pushed to, an address outside 127.0.0.0/8.

Select the registry with E2E_REGISTRY:
  * ``berth`` (default): ``$BERTH_BIN serve --listen 127.0.0.1:PORT --data DIR``
    (BERTH_BIN defaults to ``<repo>/target/debug/berth``);
  * ``reference``: Debian's ``docker-registry`` (distribution 2.8) with a
    generated config, used to prove the suite itself is correct.

berth requires authentication: it is started with a random
``BERTH_AUTH__INITIAL_OWNER_PASSWORD`` and every client the fixtures hand out
is bound to the owner's credentials (``registry.owner``); the reference
registry runs without auth and the clients pass no credentials to it.  Client
wrappers (``Skopeo``, ``Containerd``, ``StorageTool``) have ``as_user(creds)``
to act as another identity or anonymously (``None``); for Docker,
``dockerd.with_config(dir)`` + ``.login(host, creds)`` (the ``docker`` fixture
is logged in as the owner).  ``registry_from_new_ip`` reaches the registry from
another client address, for tests that provoke failed logins (see SourceProxy).

The helpers live in ``support/`` by job: ``support.processes`` (``run``,
``run_fail``, ``Daemon``, ``wait_for``, ``free_port``, timeouts),
``support.server`` (``E2E_REGISTRY``, ``Creds``, the ``requires_*`` markers,
``Registry``, ``registry_argv``, ``berth_binary``, ``BerthServer``,
``http_session``, ``toml_dumps``, ``host_port``), ``support.source_proxy``
(``SourceProxy``), ``support.images`` (media types, ``sha256_digest``,
``OciLayout``) and ``support.clients`` (``Skopeo``, ``make_oras_client``,
``Containerd``, ``Dockerd``, ``StorageTool``).  This file holds the fixtures
and re-exports those helpers, so test modules may import them with ``from
conftest import ...``.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# Everything public in support/ is imported here, also what only the test
# modules use: they import it from conftest.
from support.clients import Containerd, Dockerd, Skopeo, StorageTool, docker_cli, make_oras_client
from support.images import (
    ALL_MANIFEST_TYPES,
    BIG_PAYLOAD_SIZE,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    OciLayout,
    Seeded,
    TestImages,
    sha256_digest,
)
from support.processes import (
    COMMAND_TIMEOUT,
    DAEMON_READY_TIMEOUT,
    PROXY_VARS,
    READY_TIMEOUT,
    STOP_TIMEOUT,
    CommandError,
    Daemon,
    free_port,
    require_tool,
    run,
    run_fail,
    wait_for,
)
from support.server import (
    E2E_REGISTRY,
    REPO_ROOT,
    BerthServer,
    Creds,
    Registry,
    SourceAddressAdapter,
    auth_expected,
    berth_binary,
    host_port,
    http_session,
    referrers_api_expected,
    registry_argv,
    requires_auth,
    requires_referrers_api,
    toml_dumps,
)
from support.source_proxy import SourceProxy, next_source_ip


@pytest.fixture(scope="session")
def client_home(tmp_path_factory) -> dict:
    """Empty HOME, auth file, docker config dir, registries.conf and policy.json."""
    base = tmp_path_factory.mktemp("client-home")
    home = base / "home"
    home.mkdir()
    auth = base / "auth.json"
    auth.write_text("{}\n")
    docker_config = base / "docker-config"
    docker_config.mkdir()
    registries_conf = base / "registries.conf"
    # Only fully-qualified 127.0.0.1:PORT references are used; no search registries.
    registries_conf.write_text('unqualified-search-registries = []\nshort-name-mode = "enforcing"\n')
    policy = base / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return {
        "home": home,
        "auth": auth,
        "docker_config": docker_config,
        "registries_conf": registries_conf,
        "policy": policy,
    }


@pytest.fixture(scope="session")
def client_env(client_home) -> dict:
    """Environment for every client subprocess: no host credentials, no proxies."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("DOCKER_HOST", None)
    env.pop("CONTAINER_HOST", None)
    env.update(
        HOME=str(client_home["home"]),
        REGISTRY_AUTH_FILE=str(client_home["auth"]),
        DOCKER_CONFIG=str(client_home["docker_config"]),
        CONTAINERS_REGISTRIES_CONF=str(client_home["registries_conf"]),
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


@pytest.fixture(autouse=True)
def _shared_auth_files_stay_empty(client_home):
    """No test may leave credentials in the shared client auth files.

    Clients get credentials only on their command line (or log in with a
    DOCKER_CONFIG of their own), so the shared REGISTRY_AUTH_FILE stays ``{}``
    and the shared DOCKER_CONFIG/HOME hold no credentials; checked after every test.
    """
    yield
    auth = client_home["auth"]
    assert json.loads(auth.read_text()) == {}, f"credentials were written to the shared {auth}: {auth.read_text()}"
    leaked = [
        p
        for base in (client_home["docker_config"], client_home["home"])
        for p in base.rglob("*")
        if p.name in ("config.json", "auth.json") and p.is_file() and "auths" in p.read_text()
    ]
    assert not leaked, f"credentials were written to shared client files: {leaked}"


@pytest.fixture(scope="session", autouse=True)
def _no_proxy_in_process():
    """In-process HTTP (requests, oras-py) must never go through a proxy."""
    saved = {k: os.environ[k] for k in list(os.environ) if k.lower() in PROXY_VARS}
    for k in saved:
        del os.environ[k]
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    yield
    for k in ("NO_PROXY", "no_proxy"):
        os.environ.pop(k, None)
    os.environ.update(saved)


@pytest.fixture(scope="session")
def registry(tmp_path_factory, client_env) -> Registry:
    """The registry under test (berth or the reference registry), shared by all tests."""
    work = tmp_path_factory.mktemp(f"registry-{E2E_REGISTRY}")
    data_dir = work / "data"
    data_dir.mkdir()
    port = free_port()
    argv = registry_argv(E2E_REGISTRY, port, data_dir, work)
    # distribution reads REGISTRY_* variables as config overrides (e.g. the
    # clients' REGISTRY_AUTH_FILE would become `auth.file`): drop them all.
    env = {k: v for k, v in client_env.items() if not k.startswith("REGISTRY_")}
    env.setdefault("RUST_BACKTRACE", "1")
    owner = None
    if E2E_REGISTRY == "berth":
        # berth requires authentication: choose the owner's password for this run.
        env = {k: v for k, v in env.items() if not k.startswith("BERTH_AUTH__")}
        owner = Creds("owner", secrets.token_urlsafe(24))
        env["BERTH_AUTH__INITIAL_OWNER_PASSWORD"] = owner.password
    daemon = Daemon(f"registry-{E2E_REGISTRY}", argv, work, env=env, cwd=work)
    reg = Registry(kind=E2E_REGISTRY, host=f"127.0.0.1:{port}", data_dir=data_dir, daemon=daemon, owner=owner)
    try:
        wait_for(
            lambda: reg.session.get(f"{reg.url}/v2/", timeout=2).status_code == 200,
            READY_TIMEOUT,
            f"GET {reg.url}/v2/ to return 200" + (" with the owner's credentials" if owner else ""),
            proc=daemon,
        )
    except Exception:
        daemon.stop()
        raise
    yield reg
    daemon.stop()
    if daemon.popen.returncode not in (0, -signal.SIGTERM):
        print(f"registry exited with status {daemon.popen.returncode}\n{daemon.log_tail()}", file=sys.stderr)


@pytest.fixture
def registry_from_new_ip(registry) -> Callable[[], Registry]:
    """Factory: a view of ``registry`` reached through a SourceProxy with a fresh client IP.

    Use it for every client call that is expected to fail authentication, so
    failed logins never throttle 127.0.0.1.  Each call gives a new address.
    """
    proxies: list[SourceProxy] = []

    def make() -> Registry:
        host, port = registry.host.rsplit(":", 1)
        proxy = SourceProxy((host, int(port)), next_source_ip())
        proxies.append(proxy)
        return registry.via(proxy.host, proxy.source_ip)

    yield make
    for proxy in proxies:
        proxy.close()


@pytest.fixture(scope="module")
def berth_servers(tmp_path_factory, client_env) -> Callable[..., BerthServer]:
    """Factory: ``start(name, config)`` runs a berth with ``config`` (a dict written as TOML).

    ``data_dir`` and ``[auth] initial_owner_password`` are filled in (a random
    password per server); everything else — ``[server] listen`` (required),
    ``[[private_endpoint]]``, ``[[subnet]]``, ``[[data_endpoint]]``,
    ``[audit]`` — comes from ``config``.  No ``BERTH_*`` variable of the caller
    reaches the server.  Ready when ``GET /v2/`` answers 200 with the owner's
    credentials on the management host; every server is stopped at the end of
    the module (or earlier with ``.stop()``).
    """
    servers: list[BerthServer] = []
    env = {k: v for k, v in client_env.items() if not k.startswith(("REGISTRY_", "BERTH_"))}
    env.setdefault("RUST_BACKTRACE", "1")

    def start(name: str, config: dict) -> BerthServer:
        work = tmp_path_factory.mktemp(f"berth-{name}")
        owner = Creds("owner", secrets.token_urlsafe(24))
        cfg = copy.deepcopy(config)
        cfg["data_dir"] = str(work / "data")
        cfg.setdefault("auth", {})["initial_owner_password"] = owner.password
        listen = cfg["server"]["listen"]
        public = [listen] if isinstance(listen, str) else list(listen)
        private = {pe["name"]: pe["listen"] for pe in cfg.get("private_endpoint", [])}
        config_path = work / "berth.toml"
        config_path.write_text(toml_dumps(cfg))
        daemon = Daemon(name, [berth_binary(), "serve", "--config", config_path], work, env=env, cwd=work)
        server = BerthServer(name, daemon, work, config_path, cfg, owner, public, private, env)
        servers.append(server)
        probe = server.session()
        wait_for(
            lambda: probe.get(f"http://{server.admin_host}/v2/", timeout=2).status_code == 200,
            READY_TIMEOUT,
            f"{name}: GET http://{server.admin_host}/v2/ to return 200 with the owner's credentials",
            proc=daemon,
        )
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def oci_images(tmp_path_factory) -> TestImages:
    """An OCI layout with refs ``v1`` (small amd64), ``big`` (8 MiB random layer),
    ``amd64``/``arm64`` (per-platform images) and ``multi`` (hand-written index of
    amd64 + arm64/v8)."""
    umoci = require_tool("umoci")
    work = tmp_path_factory.mktemp("images")
    lay = work / "layout"

    def u(*args):
        run([umoci, *args], cwd=work)

    u("init", "--layout", lay)
    u("new", "--image", f"{lay}:base")

    files = work / "files"
    files.mkdir()
    (files / "hello").write_text("hello from berth e2e v1\n")
    big_payload = os.urandom(BIG_PAYLOAD_SIZE)
    (files / "big.bin").write_bytes(big_payload)
    (files / "platform-amd64").write_text("linux/amd64\n")
    (files / "platform-arm64").write_text("linux/arm64/v8\n")

    def image(ref, src, target, arch, cmd):
        # unpack + repack rather than `umoci insert`: umoci 0.4.7's insert writes
        # a truncated tar stream (no padding, no end-of-archive blocks).
        bundle = work / f"bundle-{ref}"
        u("unpack", "--rootless", "--image", f"{lay}:base", bundle)
        dest = bundle / "rootfs" / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files / src, dest)
        u("repack", "--image", f"{lay}:{ref}", bundle)
        u("config", "--image", f"{lay}:{ref}", "--architecture", arch, "--os", "linux", "--config.cmd", cmd)
        shutil.rmtree(bundle)

    image("v1", "hello", "/app/hello", "amd64", "/app/hello")
    image("big", "big.bin", "/big.bin", "amd64", "/bin/true")
    image("amd64", "platform-amd64", "/platform", "amd64", "/platform")
    image("arm64", "platform-arm64", "/platform", "arm64", "/platform")
    # The index carries the platform of each child (arm64 with variant v8, as
    # published multi-arch images do); clients select children by it.
    layout = OciLayout(lay)
    layout.add_index(
        "multi",
        [
            ("amd64", {"architecture": "amd64", "os": "linux"}),
            ("arm64", {"architecture": "arm64", "os": "linux", "variant": "v8"}),
        ],
    )
    u("gc", "--layout", lay)
    # Sanity: every ref resolves and the big layer really is several MiB.
    for ref in ("v1", "big", "amd64", "arm64"):
        assert layout.manifest(ref)["layers"], f"{ref} has no layers"
    big_layer = layout.manifest("big")["layers"][-1]
    assert big_layer["size"] > BIG_PAYLOAD_SIZE // 2
    assert len({layout.manifest_digest(r) for r in ("v1", "big", "amd64", "arm64", "multi")}) == 5
    return TestImages(layout=layout, big_payload=big_payload)


@pytest.fixture(scope="session")
def skopeo(client_env, client_home, registry) -> Skopeo:
    """skopeo acting as the registry owner (no credentials for the reference registry)."""
    return Skopeo(client_env, client_home["policy"], registry.owner)


@pytest.fixture(scope="session")
def seeded(registry, skopeo, oci_images) -> Seeded:
    s = Seeded()
    lay = oci_images.layout
    skopeo.copy(lay.transport("v1"), registry.docker_ref(s.app, s.tag))
    skopeo.copy(lay.transport("big"), registry.docker_ref(s.big, s.tag))
    skopeo.copy(lay.transport("multi"), registry.docker_ref(s.multi, s.tag), "--all")
    for repo, ref in ((s.app, "v1"), (s.big, "big"), (s.multi, "multi")):
        assert registry.manifest_bytes(repo, s.tag) == lay.manifest_bytes(ref), f"seeding {repo} changed the manifest"
    return s


@pytest.fixture(scope="session")
def oras_home(tmp_path_factory):
    """HOME/DOCKER_CONFIG at empty dirs while oras-py runs, so no host credentials load."""
    home = tmp_path_factory.mktemp("oras-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("DOCKER_CONFIG", str(home / ".docker"))
        yield home


@pytest.fixture(scope="session")
def containerd(tmp_path_factory, client_env, registry) -> Containerd:
    """A private containerd (CRI plugin disabled), everything under a temp dir.

    Its ``ctr`` acts as the registry owner (no credentials for the reference registry).
    """
    exe = require_tool("containerd")
    require_tool("ctr")
    # Short directory names: unix socket paths must stay under 108 bytes.
    work = Path(tmp_path_factory.mktemp("ctd"))
    sock = work / "c.sock"
    config = work / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{work / "root"}"\n'
        f'state = "{work / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        "[grpc]\n"
        f'  address = "{sock}"\n'
        "[ttrpc]\n"
        f'  address = "{sock}.ttrpc"\n'
        "[debug]\n"
        f'  address = "{work / "debug.sock"}"\n'
        '[plugins."io.containerd.internal.v1.opt"]\n'
        f'  path = "{work / "opt"}"\n'
    )
    daemon = Daemon("containerd", [exe, "--config", config], work, env=client_env)
    ctd = Containerd(daemon, str(sock), client_env)
    try:
        wait_for(
            lambda: (
                sock.exists()
                and run([ctd.ctr_exe, "--address", sock, "version"], client_env, check=False, timeout=10).returncode
                == 0
            ),
            DAEMON_READY_TIMEOUT,
            "containerd to answer `ctr version`",
            proc=daemon,
        )
    except Exception:
        daemon.stop()
        raise
    yield ctd.as_user(registry.owner)
    daemon.stop()


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory, client_env, containerd) -> Dockerd:
    """A private dockerd (vfs, no bridge/iptables) using the containerd fixture."""
    exe = require_tool("dockerd")
    docker = docker_cli()
    work = Path(tmp_path_factory.mktemp("dkd"))
    sock = work / "docker.sock"
    config = work / "daemon.json"
    config.write_text(
        json.dumps(
            {
                "data-root": str(work / "data"),
                "exec-root": str(work / "exec"),
                "pidfile": str(work / "docker.pid"),
                "hosts": [f"unix://{sock}"],
                "storage-driver": "vfs",
                "iptables": False,
                "ip6tables": False,
                "bridge": "none",
                "containerd": containerd.address,
                "containerd-namespace": "e2e-moby",
                "containerd-plugins-namespace": "e2e-moby-plugins",
                # Keeps dockerd from writing /etc/docker/key.json.
                "deprecated-key-path": str(work / "key.json"),
            },
            indent=2,
        )
    )
    daemon = Daemon("dockerd", [exe, "--config-file", config], work, env=client_env)
    dk = Dockerd(daemon, f"unix://{sock}", client_env, docker)
    try:
        wait_for(
            lambda: sock.exists() and run([docker, "version"], dk.env, check=False, timeout=15).returncode == 0,
            DAEMON_READY_TIMEOUT,
            "dockerd to answer `docker version`",
            proc=daemon,
        )
    except Exception:
        daemon.stop()
        raise
    yield dk
    daemon.stop(timeout=30)


@pytest.fixture
def docker(dockerd, registry, tmp_path) -> Dockerd:
    """The docker CLI with a per-test DOCKER_CONFIG, logged in as the owner (berth).

    Against the reference registry it is not logged in (no auth there).
    """
    client = dockerd.with_config(tmp_path / "docker-config")
    if registry.owner is not None:
        client.login(registry.host, registry.owner)
    return client


@pytest.fixture(scope="session")
def podman(tmp_path_factory, client_env, registry) -> StorageTool:
    """podman acting as the registry owner (no credentials for the reference registry)."""
    return StorageTool("podman", tmp_path_factory.mktemp("podman"), client_env, registry.owner)


@pytest.fixture(scope="session")
def buildah(tmp_path_factory, client_env, registry) -> StorageTool:
    """buildah acting as the registry owner (no credentials for the reference registry)."""
    return StorageTool("buildah", tmp_path_factory.mktemp("buildah"), client_env, registry.owner)
