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

Helpers meant for the test modules (import them with ``from conftest import
...``): ``run``, ``run_fail``, ``sha256_digest``, ``requires_referrers_api``,
``referrers_api_expected``, ``requires_auth``, ``auth_expected``, ``Creds``,
``make_oras_client``, ``registry_argv``, ``E2E_REGISTRY`` and the media-type
constants; for dedicated servers and chosen client addresses (test_network.py):
``berth_binary``, ``free_port(host)``, ``http_session``, ``SourceAddressAdapter``,
``SourceProxy``, ``host_port``, ``toml_dumps``, ``BerthServer`` and the
``berth_servers`` factory fixture.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import pytest
import requests
import requests.adapters

REPO_ROOT = Path(__file__).resolve().parents[2]

E2E_REGISTRY = os.environ.get("E2E_REGISTRY", "berth").strip().lower() or "berth"
if E2E_REGISTRY not in ("berth", "reference"):
    raise RuntimeError(f"E2E_REGISTRY must be 'berth' or 'reference', not {E2E_REGISTRY!r}")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ALL_MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

# Bounded waits (seconds).
READY_TIMEOUT = 30
DAEMON_READY_TIMEOUT = 60
STOP_TIMEOUT = 20
COMMAND_TIMEOUT = 180  # per client command; everything is local

# Proxy variables are dropped for every client: all traffic is loopback-only.
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy")


def referrers_api_expected() -> bool:
    """True when the registry under test must implement the OCI 1.1 referrers API.

    Debian's reference registry (distribution 2.8) predates the referrers API,
    so assertions about ``GET /v2/<name>/referrers/<digest>`` only run against
    berth.
    """
    return E2E_REGISTRY != "reference"


requires_referrers_api = pytest.mark.skipif(
    not referrers_api_expected(),
    reason="the reference registry (distribution 2.8) does not implement the OCI referrers API",
)


def auth_expected() -> bool:
    """True when the registry under test enforces authentication (berth).

    The reference registry is started without auth, so the identity, token
    and permission tests (test_auth.py) only run against berth.
    """
    return E2E_REGISTRY != "reference"


requires_auth = pytest.mark.skipif(
    not auth_expected(),
    reason="the reference registry is run without authentication",
)


class Creds(NamedTuple):
    """A login and secret for the registry under test."""

    user: str
    password: str

    @property
    def arg(self) -> str:
        """``user:password`` as skopeo/podman/buildah ``--creds`` and ``ctr --user`` take it."""
        return f"{self.user}:{self.password}"


# --------------------------------------------------------------------------
# Commands and processes
# --------------------------------------------------------------------------


class CommandError(AssertionError):
    """A command exited with an unexpected status; carries its full output."""


def _fmt_output(data) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    if len(data) > 8000:
        data = data[:2000] + "\n[... cut ...]\n" + data[-6000:]
    return data


def run(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
    input: bytes | str | None = None,
    cwd: str | os.PathLike | None = None,
    text: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``cmd`` (no shell), capture stdout/stderr, raise CommandError on failure.

    ``env`` replaces the environment entirely (use the ``client_env`` fixture
    as a base).  With ``text=False`` stdout/stderr are bytes.
    """
    cmd = [str(c) for c in cmd]
    if isinstance(input, str) and not text:
        input = input.encode()
    print(f"+ {' '.join(cmd)}", file=sys.stderr)
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            input=input,
            capture_output=True,
            timeout=timeout,
            text=text,
            errors="replace" if text else None,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(
            f"command timed out after {timeout}s: {' '.join(cmd)}\n"
            f"--- stdout ---\n{_fmt_output(exc.stdout)}\n--- stderr ---\n{_fmt_output(exc.stderr)}"
        ) from None
    except FileNotFoundError as exc:
        raise CommandError(f"command not found: {cmd[0]} ({exc}); run scripts/install-test-deps.sh") from None
    if check and proc.returncode != 0:
        raise CommandError(
            f"command failed with exit status {proc.returncode}: {' '.join(cmd)}\n"
            f"--- stdout ---\n{_fmt_output(proc.stdout)}\n--- stderr ---\n{_fmt_output(proc.stderr)}"
        )
    return proc


def run_fail(cmd: Sequence[str], env: Mapping[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` and assert that it FAILS; returns the result for output checks."""
    proc = run(cmd, env, check=False, **kw)
    if proc.returncode == 0:
        raise CommandError(
            f"command unexpectedly succeeded: {' '.join(str(c) for c in cmd)}\n"
            f"--- stdout ---\n{_fmt_output(proc.stdout)}\n--- stderr ---\n{_fmt_output(proc.stderr)}"
        )
    return proc


def require_tool(name: str) -> str:
    """Absolute path of ``name``; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"required tool {name!r} is not installed; run scripts/install-test-deps.sh", pytrace=False)
    return path


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` (any 127/8 address or ``::1``) that is free right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, proc: Daemon | None = None, interval: float = 0.2
):
    """Poll ``predicate`` until true; fail after ``timeout`` or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.exited():
            raise RuntimeError(
                f"{proc.name} exited with status {proc.popen.returncode} while waiting for {what}\n{proc.log_tail()}"
            )
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - readiness probes fail in many ways
            last_exc = exc
        time.sleep(interval)
    detail = proc.log_tail() if proc is not None else ""
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})\n{detail}")


class Daemon:
    """A background process started by a fixture, in its own process group.

    Output goes to ``<log_dir>/<name>.stdout|stderr``.  ``stop`` sends SIGTERM
    to the group, waits ``STOP_TIMEOUT`` seconds, then SIGKILLs it.
    """

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: Mapping[str, str] | None = None, cwd=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        print(f"+ [{name}] {' '.join(self.argv)}", file=sys.stderr)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def log_tail(self, limit: int = 6000) -> str:
        parts = []
        for p in (self.stdout_path, self.stderr_path):
            try:
                data = p.read_bytes().decode("utf-8", errors="replace")
            except OSError:
                data = ""
            parts.append(f"--- {p.name} (tail) ---\n{data[-limit:]}")
        return "\n".join(parts)

    def _signal_group(self, sig: int):
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = STOP_TIMEOUT):
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"{self.name} ignored SIGTERM for {timeout}s; killing", file=sys.stderr)
        # Also reap anything left in the group (the leader may be gone already).
        self._signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            print(f"{self.name} (pid {self.popen.pid}) did not die after SIGKILL", file=sys.stderr)


# --------------------------------------------------------------------------
# Client environment (credential isolation)
# --------------------------------------------------------------------------


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
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
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
    saved = {k: os.environ[k] for k in list(os.environ) if k.lower() in _PROXY_VARS}
    for k in saved:
        del os.environ[k]
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    yield
    for k in ("NO_PROXY", "no_proxy"):
        os.environ.pop(k, None)
    os.environ.update(saved)


# --------------------------------------------------------------------------
# The registry under test
# --------------------------------------------------------------------------


@dataclass
class Registry:
    kind: str
    host: str  # "127.0.0.1:PORT"
    data_dir: Path
    daemon: Daemon
    # berth: the owner's credentials; the reference registry: None (no auth).
    owner: Creds | None = None
    # The address berth sees this view's connections come from (see SourceProxy).
    source_ip: str = "127.0.0.1"
    # The session sends the owner's Basic credentials (when there are any).
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self):
        self.session.trust_env = False  # never use proxies or netrc
        if self.owner is not None:
            self.session.auth = requests.auth.HTTPBasicAuth(*self.owner)

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, repo: str, tag_or_digest: str) -> str:
        """``HOST/repo:tag`` or ``HOST/repo@sha256:...``."""
        sep = "@" if tag_or_digest.startswith("sha256:") else ":"
        return f"{self.host}/{repo}{sep}{tag_or_digest}"

    def docker_ref(self, repo: str, tag_or_digest: str) -> str:
        return "docker://" + self.ref(repo, tag_or_digest)

    def via(self, host: str, source_ip: str) -> "Registry":
        """The same registry reached at another ``host`` (a SourceProxy), with a new session."""
        return replace(self, host=host, source_ip=source_ip, session=requests.Session())

    def get_manifest(self, repo: str, reference: str, accept: Iterable[str] = ALL_MANIFEST_TYPES) -> requests.Response:
        return self.session.get(
            f"{self.url}/v2/{repo}/manifests/{reference}",
            headers={"Accept": ", ".join(accept)},
            timeout=30,
        )

    def manifest_bytes(self, repo: str, reference: str) -> bytes:
        """Raw manifest bytes; asserts 200 and that Docker-Content-Digest matches the body."""
        r = self.get_manifest(repo, reference)
        assert r.status_code == 200, f"GET manifest {repo}:{reference} -> {r.status_code} {r.text[:500]}"
        digest = sha256_digest(r.content)
        header = r.headers.get("Docker-Content-Digest")
        assert header in (None, digest), f"Docker-Content-Digest {header} != sha256 of body {digest}"
        if reference.startswith("sha256:"):
            assert digest == reference, f"manifest fetched by digest {reference} hashes to {digest}"
        return r.content

    def get_blob(self, repo: str, digest: str) -> bytes:
        r = self.session.get(f"{self.url}/v2/{repo}/blobs/{digest}", timeout=120)
        assert r.status_code == 200, f"GET blob {repo}@{digest} -> {r.status_code} {r.text[:500]}"
        assert sha256_digest(r.content) == digest, f"blob {digest} content hashes to {sha256_digest(r.content)}"
        return r.content


def registry_argv(kind: str, port: int, data_dir: Path, work: Path) -> list[str]:
    if kind == "reference":
        exe = require_tool("docker-registry")
        config = work / "registry-config.yml"
        # The packaged /etc/docker/registry/config.yml enables htpasswd auth: never use it.
        config.write_text(
            "version: 0.1\n"
            "log:\n"
            "  level: info\n"
            "storage:\n"
            "  filesystem:\n"
            f"    rootdirectory: {data_dir}\n"
            "  delete:\n"
            "    enabled: true\n"
            "http:\n"
            f"  addr: 127.0.0.1:{port}\n"
        )
        return [exe, "serve", str(config)]
    return [berth_binary(), "serve", "--listen", f"127.0.0.1:{port}", "--data", str(data_dir)]


def berth_binary() -> str:
    """The berth binary under test ($BERTH_BIN or target/debug/berth); fails when missing."""
    berth = Path(os.environ.get("BERTH_BIN") or REPO_ROOT / "target" / "debug" / "berth")
    if not (berth.is_file() and os.access(berth, os.X_OK)):
        pytest.fail(
            f"berth binary not found at {berth}: build it (cargo build -p berth), set BERTH_BIN, "
            "or run the suite against the reference registry with E2E_REGISTRY=reference",
            pytrace=False,
        )
    return str(berth)


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


# --------------------------------------------------------------------------
# Other client addresses (failed-login throttling is per client IP)
# --------------------------------------------------------------------------


class SourceProxy:
    """A TCP relay on 127.0.0.1:PORT whose connections to the registry come from ``source_ip``.

    berth throttles failed logins per client address (10 in 60 s -> 429 for
    every request from that address).  Every loopback connection comes from
    127.0.0.1, whatever 127/8 address it goes to, and real clients cannot
    choose their source address; so tests that provoke authentication failures
    send their clients through one of these relays, which makes berth see
    another address and keeps 127.0.0.1 (all the other tests) unthrottled.
    The relay is byte-transparent: the Host header is the relay's address,
    so berth's Bearer realm points back at the relay as well.
    """

    def __init__(self, target: tuple[str, int], source_ip: str):
        self.target = target
        self.source_ip = source_ip
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.5)
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, name=f"proxy-{source_ip}", daemon=True)
        self._thread.start()

    def _track(self, sock: socket.socket):
        with self._lock:
            self._sockets.add(sock)

    def _accept_loop(self):
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket):
        client.settimeout(None)
        self._track(client)
        try:
            upstream = socket.create_connection(self.target, timeout=10, source_address=(self.source_ip, 0))
        except OSError as exc:
            print(f"proxy {self.source_ip}: cannot connect to {self.target}: {exc}", file=sys.stderr)
            client.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        back.start()
        self._pump(client, upstream)
        back.join(timeout=COMMAND_TIMEOUT)
        for sock in (client, upstream):
            sock.close()
            with self._lock:
                self._sockets.discard(sock)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() on Linux
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            socks = list(self._sockets)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)


# 127.0.0.1 is the default address of every other test; hand out others.
_source_ips = (f"127.0.{b}.{c}" for b in itertools.count(10) for c in range(2, 255))


def next_source_ip() -> str:
    return next(_source_ips)


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


# --------------------------------------------------------------------------
# Requests from a chosen source address; dedicated berth servers
# --------------------------------------------------------------------------


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter whose connections come from ``source_ip`` (a 127/8 address or ``::1``).

    On Linux any 127.0.0.0/8 address can be the source of a loopback
    connection, so in-process HTTP can appear to berth as any client address
    without a relay.  (Real clients cannot choose: use a SourceProxy.)
    """

    def __init__(self, source_ip: str, **kw):
        self.source_ip = source_ip
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kw):
        kw["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(*args, **kw)


def http_session(source_ip: str | None = None, creds: Creds | None = None) -> requests.Session:
    """A requests session (no proxies, no netrc) from ``source_ip``, sending ``creds`` as Basic auth."""
    s = requests.Session()
    s.trust_env = False
    if source_ip is not None:
        adapter = SourceAddressAdapter(source_ip)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
    if creds is not None:
        s.auth = requests.auth.HTTPBasicAuth(*creds)
    return s


def host_port(address: str, port: int) -> str:
    """``127.0.0.1:5000`` or ``[::1]:5000``."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (str, Path)):
        return json.dumps(str(v))  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def toml_dumps(config: Mapping) -> str:
    """Enough TOML for berth's config: scalars, lists, ``[tables]`` and ``[[arrays of tables]]``."""

    def is_table_array(v) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)

    lines = [f"{k} = {_toml_value(v)}" for k, v in config.items() if not isinstance(v, dict) and not is_table_array(v)]
    for k, v in config.items():
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
        elif is_table_array(v):
            for item in v:
                lines.append(f"\n[[{k}]]")
                lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


@dataclass
class BerthServer:
    """A berth started by ``berth_servers`` with a config file of its own.

    ``public`` are the ``[server] listen`` addresses (``host:port``), ``private``
    the private endpoints by name.  Management calls (``api``) and the CLI
    (``cli``) go to the first private endpoint when there is one — it stays
    reachable whatever the network rules say — else to the first public one.
    """

    name: str
    daemon: Daemon
    work: Path
    config_path: Path
    config: dict
    owner: Creds
    public: list[str]
    private: dict[str, str]
    cli_base_env: dict

    @property
    def host(self) -> str:
        return self.public[0]

    @property
    def admin_host(self) -> str:
        return next(iter(self.private.values()), self.host)

    def session(self, source_ip: str | None = None, creds: Creds | None | str = "owner") -> requests.Session:
        """requests from ``source_ip``, as the owner by default (``creds=None``: anonymous)."""
        return http_session(source_ip, self.owner if creds == "owner" else creds)

    def api(self, method: str, path: str, body=None, *, expect=(200, 201, 204), params=None, host=None):
        """``/api/v1`` as the owner; asserts the status; returns the JSON body (or None)."""
        r = self.session().request(
            method, f"http://{host or self.admin_host}/api/v1{path}", json=body, params=params, timeout=30
        )
        assert r.status_code in expect, f"{method} /api/v1{path} {params or ''} {body} -> {r.status_code} {r.text}"
        return r.json() if r.content else None

    def cli_env(self, host: str | None = None) -> dict:
        return dict(
            self.cli_base_env,
            BERTH_REGISTRY=f"http://{host or self.admin_host}",
            BERTH_USERNAME=self.owner.user,
            BERTH_PASSWORD=self.owner.password,
        )

    def cli(self, *args, host: str | None = None, **kw) -> subprocess.CompletedProcess:
        """The berth CLI (``berth <args>``) against this server as the owner."""
        return run([berth_binary(), *args], self.cli_env(host), **kw)

    def cli_fail(self, *args, host: str | None = None, **kw) -> subprocess.CompletedProcess:
        return run_fail([berth_binary(), *args], self.cli_env(host), **kw)

    def stop(self):
        self.daemon.stop()


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


# --------------------------------------------------------------------------
# Test images (umoci, offline)
# --------------------------------------------------------------------------


class OciLayout:
    """An OCI image layout on disk with helpers to read refs and blobs."""

    def __init__(self, path: Path):
        self.path = path

    def index(self) -> dict:
        return json.loads((self.path / "index.json").read_text())

    def descriptor(self, ref: str) -> dict:
        found = [
            m
            for m in self.index()["manifests"]
            if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == ref
        ]
        assert len(found) == 1, f"ref {ref!r} appears {len(found)} times in {self.path}/index.json"
        return found[0]

    def blob(self, digest: str) -> bytes:
        algo, hexd = digest.split(":", 1)
        data = (self.path / "blobs" / algo / hexd).read_bytes()
        assert sha256_digest(data) == digest, f"corrupt blob {digest} in {self.path}"
        return data

    def manifest_digest(self, ref: str) -> str:
        return self.descriptor(ref)["digest"]

    def manifest_bytes(self, ref_or_digest: str) -> bytes:
        d = ref_or_digest if ref_or_digest.startswith("sha256:") else self.manifest_digest(ref_or_digest)
        return self.blob(d)

    def manifest(self, ref_or_digest: str) -> dict:
        return json.loads(self.manifest_bytes(ref_or_digest))

    def config_digest(self, ref_or_digest: str) -> str:
        return self.manifest(ref_or_digest)["config"]["digest"]

    def layer_digests(self, ref_or_digest: str) -> list[str]:
        return [layer["digest"] for layer in self.manifest(ref_or_digest)["layers"]]

    def transport(self, ref: str) -> str:
        """skopeo source/destination name, ``oci:PATH:REF``."""
        return f"oci:{self.path}:{ref}"

    def add_index(self, ref: str, entries: list[tuple[str, dict]]) -> str:
        """Write an OCI image index over ``(manifest ref, platform)`` pairs; tag it ``ref``."""
        manifests = []
        for child_ref, platform in entries:
            desc = self.descriptor(child_ref)
            manifests.append(
                {"mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"], "platform": platform}
            )
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, indent=2).encode()
        digest = sha256_digest(body)
        (self.path / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(body)
        idx = self.index()
        idx["manifests"].append(
            {
                "mediaType": OCI_INDEX,
                "digest": digest,
                "size": len(body),
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        )
        (self.path / "index.json").write_text(json.dumps(idx))
        return digest


@dataclass
class TestImages:
    layout: OciLayout
    big_payload: bytes  # content of /big.bin in the "big" image

    __test__ = False  # not a test class


BIG_PAYLOAD_SIZE = 8 * 1024 * 1024


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


# --------------------------------------------------------------------------
# skopeo (also used by other modules to seed and verify)
# --------------------------------------------------------------------------


class Skopeo:
    """skopeo with a private policy; bound to ``creds`` (``None``: anonymous).

    The credentials are added per subcommand: ``--src-creds``/``--dest-creds``
    for ``copy`` (ignored by skopeo for non-registry transports), ``--creds``
    for ``inspect``, ``list-tags`` and ``delete``.
    """

    CREDS_SUBCOMMANDS = ("inspect", "list-tags", "delete")

    def __init__(self, env: Mapping[str, str], policy: Path, creds: Creds | None = None):
        self.exe = require_tool("skopeo")
        self.env = dict(env)
        self.policy = policy
        self.creds = creds

    def as_user(self, creds: Creds | None) -> "Skopeo":
        other = copy.copy(self)
        other.creds = creds
        return other

    def argv(self, *args) -> list[str]:
        args = [str(a) for a in args]
        if self.creds is not None and args:
            if args[0] == "copy":
                args[1:1] = ["--src-creds", self.creds.arg, "--dest-creds", self.creds.arg]
            elif args[0] in self.CREDS_SUBCOMMANDS:
                args[1:1] = ["--creds", self.creds.arg]
        return [self.exe, "--policy", str(self.policy), *args]

    def __call__(self, *args, **kw) -> subprocess.CompletedProcess:
        return run(self.argv(*args), self.env, **kw)

    def fail(self, *args, **kw) -> subprocess.CompletedProcess:
        return run_fail(self.argv(*args), self.env, **kw)

    def copy(self, src: str, dst: str, *extra: str) -> subprocess.CompletedProcess:
        return self("copy", "--src-tls-verify=false", "--dest-tls-verify=false", *extra, src, dst)

    def inspect_raw(self, ref: str, *extra: str) -> bytes:
        return self("inspect", "--raw", "--tls-verify=false", *extra, ref, text=False).stdout

    def inspect(self, ref: str, *extra: str) -> dict:
        return json.loads(self("inspect", "--tls-verify=false", *extra, ref).stdout)

    def list_tags(self, ref: str) -> dict:
        return json.loads(self("list-tags", "--tls-verify=false", ref).stdout)


@pytest.fixture(scope="session")
def skopeo(client_env, client_home, registry) -> Skopeo:
    """skopeo acting as the registry owner (no credentials for the reference registry)."""
    return Skopeo(client_env, client_home["policy"], registry.owner)


@dataclass
class Seeded:
    """Images pushed once per session with skopeo for other clients to pull."""

    app: str = "seed/app"  # :v1 -> layout "v1"
    big: str = "seed/big"  # :v1 -> layout "big"
    multi: str = "seed/multi"  # :v1 -> layout "multi" (index, both platforms)
    tag: str = "v1"


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


# --------------------------------------------------------------------------
# oras-py (a library: used in-process)
# --------------------------------------------------------------------------


def make_oras_client(host: str, creds: Creds | None = None):
    """An oras-py client for ``host`` sending Basic credentials ``creds`` when challenged.

    ``auth_backend="basic"``: oras-py 0.2's default token backend caches one
    bearer token and, when berth answers a request for another repository
    with 401 ``error="insufficient_scope"``, retries with the same token
    instead of asking for a new one.  The basic backend answers every
    challenge with the Basic credentials, which berth accepts on /v2/.
    Without ``creds`` it must never meet a challenge (oras-py would retry
    for minutes).  Use it with the ``oras_home`` fixture so no host
    credentials are loaded.
    """
    import oras.client  # noqa: PLC0415 - only the oras tests need it

    client = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
    if creds is not None:
        client.auth.set_basic_auth(creds.user, creds.password)
    client.session.trust_env = False
    # oras-py sends requests without a timeout: bound every one of them.
    send = client.session.request

    def request_with_timeout(method, url, **kw):
        kw.setdefault("timeout", 60)
        return send(method, url, **kw)

    client.session.request = request_with_timeout
    return client


@pytest.fixture(scope="session")
def oras_home(tmp_path_factory):
    """HOME/DOCKER_CONFIG at empty dirs while oras-py runs, so no host credentials load."""
    home = tmp_path_factory.mktemp("oras-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.setenv("DOCKER_CONFIG", str(home / ".docker"))
        yield home


# --------------------------------------------------------------------------
# containerd
# --------------------------------------------------------------------------


class Containerd:
    """containerd plus ``ctr`` bound to its socket; registry commands use ``creds``.

    ``--user user:password`` is added to ``images pull|push`` and ``content
    fetch`` when ``creds`` is set (``None``: anonymous).
    """

    CREDS_SUBCOMMANDS = {("images", "pull"), ("images", "push"), ("content", "fetch")}

    def __init__(self, daemon: Daemon, address: str, env: Mapping[str, str], creds: Creds | None = None):
        self.daemon = daemon
        self.address = address
        self.env = dict(env)
        self.ctr_exe = require_tool("ctr")
        self.creds = creds

    def as_user(self, creds: Creds | None) -> "Containerd":
        other = copy.copy(self)
        other.creds = creds
        return other

    def ctr_argv(self, *args, namespace: str = "e2e") -> list[str]:
        args = [str(a) for a in args]
        if self.creds is not None and tuple(args[:2]) in self.CREDS_SUBCOMMANDS:
            args[2:2] = ["--user", self.creds.arg]
        return [self.ctr_exe, "--address", self.address, "--namespace", namespace, *args]

    def ctr(self, *args, namespace: str = "e2e", **kw) -> subprocess.CompletedProcess:
        return run(self.ctr_argv(*args, namespace=namespace), self.env, **kw)

    def ctr_fail(self, *args, namespace: str = "e2e", **kw) -> subprocess.CompletedProcess:
        return run_fail(self.ctr_argv(*args, namespace=namespace), self.env, **kw)


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


# --------------------------------------------------------------------------
# Docker engine
# --------------------------------------------------------------------------


class Dockerd:
    """dockerd plus the docker CLI bound to it.

    The CLI keeps registry logins in ``$DOCKER_CONFIG/config.json`` and hands
    them to the daemon per request: ``with_config(dir)`` gives a CLI with its
    own (initially empty) config dir, ``login(host, creds)`` logs it in.
    """

    def __init__(self, daemon: Daemon, host: str, env: Mapping[str, str], docker_exe: str):
        self.daemon = daemon
        self.host = host
        self.env = dict(env, DOCKER_HOST=host)
        self.exe = docker_exe

    def with_config(self, config_dir: Path) -> "Dockerd":
        """A CLI using ``config_dir`` (created, with an empty ``auths``) as DOCKER_CONFIG."""
        config_dir.mkdir(parents=True, exist_ok=True)
        config = config_dir / "config.json"
        if not config.exists():
            config.write_text('{"auths": {}}\n')
        other = copy.copy(self)
        other.env = dict(self.env, DOCKER_CONFIG=str(config_dir))
        return other

    @property
    def config_dir(self) -> Path:
        return Path(self.env["DOCKER_CONFIG"])

    def login_argv(self, registry_host: str, user: str) -> list[str]:
        return [self.exe, "login", "--username", user, "--password-stdin", registry_host]

    def login(self, registry_host: str, creds: Creds) -> subprocess.CompletedProcess:
        """``docker login --password-stdin``; asserts "Login Succeeded"."""
        res = run(self.login_argv(registry_host, creds.user), self.env, input=creds.password + "\n")
        assert "Login Succeeded" in res.stdout, f"docker login said:\n{res.stdout}\n{res.stderr}"
        return res

    def login_fail(self, registry_host: str, creds: Creds) -> subprocess.CompletedProcess:
        """``docker login`` expected to fail; returns the result for output checks."""
        return run_fail(self.login_argv(registry_host, creds.user), self.env, input=creds.password + "\n")

    def __call__(self, *args, **kw) -> subprocess.CompletedProcess:
        return run([self.exe, *args], self.env, **kw)

    def fail(self, *args, **kw) -> subprocess.CompletedProcess:
        return run_fail([self.exe, *args], self.env, **kw)

    def inspect(self, ref: str) -> dict:
        return json.loads(self("image", "inspect", ref).stdout)[0]


def _docker_cli() -> str:
    # Prefer the Debian docker.io CLI that matches the daemon; some images put
    # another docker CLI earlier on PATH.
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    return require_tool("docker")


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory, client_env, containerd) -> Dockerd:
    """A private dockerd (vfs, no bridge/iptables) using the containerd fixture."""
    exe = require_tool("dockerd")
    docker = _docker_cli()
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


# --------------------------------------------------------------------------
# podman / buildah (daemonless; private storage per tool)
# --------------------------------------------------------------------------


class StorageTool:
    """podman or buildah bound to a private containers-storage under tmp.

    ``--creds user:password`` is added to ``pull``, ``push`` and ``manifest
    push`` when ``creds`` is set (``None``: anonymous).
    """

    def __init__(self, name: str, work: Path, env: Mapping[str, str], creds: Creds | None = None):
        self.creds = creds
        self.exe = require_tool(name)
        # podman refuses a runroot longer than 50 characters; "rr" keeps
        # /tmp/pytest-of-root/pytest-NNN/podman-auth0/rr under it.
        root, runroot, tmp = work / "root", work / "rr", work / "tmp"
        assert len(str(runroot)) <= 50, f"podman runroot {runroot} is longer than 50 characters"
        for d in (root, runroot, tmp):
            d.mkdir(parents=True, exist_ok=True)
        storage_conf = work / "storage.conf"
        storage_conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{root}"\nrunroot = "{runroot}"\n')
        self.env = dict(env, CONTAINERS_STORAGE_CONF=str(storage_conf), TMPDIR=str(tmp))
        self.global_args = ["--root", str(root), "--runroot", str(runroot), "--storage-driver", "vfs"]
        if name == "podman":
            self.global_args += [
                "--tmpdir",
                str(tmp),
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
            ]

    def as_user(self, creds: Creds | None) -> "StorageTool":
        other = copy.copy(self)
        other.creds = creds
        return other

    def argv(self, *args) -> list[str]:
        args = [str(a) for a in args]
        if self.creds is not None:
            if args[:1] in (["pull"], ["push"]):
                args[1:1] = ["--creds", self.creds.arg]
            elif args[:2] == ["manifest", "push"]:
                args[2:2] = ["--creds", self.creds.arg]
        return [self.exe, *self.global_args, *args]

    def __call__(self, *args, **kw) -> subprocess.CompletedProcess:
        return run(self.argv(*args), self.env, **kw)

    def fail(self, *args, **kw) -> subprocess.CompletedProcess:
        return run_fail(self.argv(*args), self.env, **kw)


@pytest.fixture(scope="session")
def podman(tmp_path_factory, client_env, registry) -> StorageTool:
    """podman acting as the registry owner (no credentials for the reference registry)."""
    return StorageTool("podman", tmp_path_factory.mktemp("podman"), client_env, registry.owner)


@pytest.fixture(scope="session")
def buildah(tmp_path_factory, client_env, registry) -> StorageTool:
    """buildah acting as the registry owner (no credentials for the reference registry)."""
    return StorageTool("buildah", tmp_path_factory.mktemp("buildah"), client_env, registry.owner)
