"""The registry under test and dedicated berth servers, and HTTP to them.

* ``E2E_REGISTRY`` selects berth or the reference registry; the
  ``requires_*`` markers skip what the reference registry lacks.
* ``Registry``: the session's registry (``registry`` fixture); ``registry_argv``
  and ``berth_binary`` build its command line.
* ``BerthServer``: a berth with a config file of its own (``berth_servers``
  fixture), written with ``toml_dumps``.
* ``http_session``: requests from a chosen 127/8 source address
  (``SourceAddressAdapter``), optionally with Basic credentials.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import pytest
import requests
import requests.adapters

from support.images import ALL_MANIFEST_TYPES, sha256_digest
from support.processes import Daemon, require_tool, run, run_fail


REPO_ROOT = Path(__file__).resolve().parents[3]


E2E_REGISTRY = os.environ.get("E2E_REGISTRY", "berth").strip().lower() or "berth"
if E2E_REGISTRY not in ("berth", "reference"):
    raise RuntimeError(f"E2E_REGISTRY must be 'berth' or 'reference', not {E2E_REGISTRY!r}")


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
