"""Helpers for test_diagnostics.py (``berth check-pull``), all local and offline.

* ``Dnsmasq`` — a private dnsmasq on 127.0.0.1:PORT that knows only the names
  it is given (``--address``) and answers NXDOMAIN for every other name under
  its local domain (``--local=/test/``).  It never forwards anything: no
  ``resolv.conf`` (``--no-resolv``), no ``--server``, no ``/etc/hosts``, no
  ``/etc/dnsmasq.conf``.  check-pull is pointed at it with ``--dns-server``,
  so made-up names never reach the machine's resolver.
* ``dns_query`` — a minimal DNS client (A records over UDP) to check dnsmasq.
* ``CertAuthority`` — a test CA made with ``openssl`` that issues server
  certificates with chosen names and validity (``openssl ca -startdate
  -enddate``, so an already expired certificate needs no faketime).
* ``start_berth`` — a berth with its own config file, for servers that the
  conftest ``berth_servers`` factory cannot start (its readiness probe speaks
  plain HTTP; with ``tls_cert`` every listener is HTTPS).
* ``start_tinyproxy`` — tinyproxy on loopback with a config of its own.
* ``HangUpProxy`` — reads the ``CONNECT`` and closes the connection
  (``proxyconnect tcp: EOF``).
* ``FullBacklogListener`` — a socket in LISTEN whose accept queue is full:
  the kernel drops further SYNs, so a connect times out (like a firewall
  that drops the traffic), all on 127.0.0.x.
* ``pull_secret`` — a ``kubernetes.io/dockerconfigjson`` Secret as ``kubectl
  get secret -o json`` prints it; ``check_pull`` runs ``berth check-pull``.
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import socket
import struct
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3

from conftest import (
    READY_TIMEOUT,
    Creds,
    Daemon,
    berth_binary,
    free_port,
    require_tool,
    run,
    toml_dumps,
    wait_for,
)

CHECK_TIMEOUT = 60  # bound on one check-pull run (each of its steps has --timeout)

# Variables that would send check-pull through a proxy, or change its identity.
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ftp_proxy")


def clean_env(home: Path) -> dict:
    """The caller's environment without proxies, BERTH_* and credentials files."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in _PROXY_VARS and not k.startswith(("BERTH_", "REGISTRY_", "DOCKER_"))
    }
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env["DOCKER_CONFIG"] = str(home / ".docker")  # empty: check-pull must not find credentials there
    return env


# --------------------------------------------------------------------------
# DNS
# --------------------------------------------------------------------------


def free_udp_tcp_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on ``host`` (dnsmasq binds both)."""
    for _ in range(50):
        port = free_port(host)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no port free for both TCP and UDP on {host}")


def _skip_name(data: bytes, pos: int) -> int:
    while True:
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:  # compression pointer
            return pos + 2
        pos += 1 + length


def dns_query(server: str, port: int, name: str, timeout: float = 2.0) -> tuple[int, list[str]]:
    """Ask ``server:port`` for the A records of ``name``: (rcode, addresses)."""
    tid = random.randint(0, 0xFFFF)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (server, port))
        while True:
            data, _ = s.recvfrom(4096)
            if struct.unpack(">H", data[:2])[0] == tid:
                break
    rcode = data[3] & 0x0F
    qdcount, ancount = struct.unpack(">HH", data[4:8])
    pos = 12
    for _ in range(qdcount):
        pos = _skip_name(data, pos) + 4
    addresses = []
    for _ in range(ancount):
        pos = _skip_name(data, pos)
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            addresses.append(socket.inet_ntoa(data[pos : pos + 4]))
        pos += rdlen
    return rcode, addresses


NXDOMAIN = 3


class Dnsmasq:
    """dnsmasq on 127.0.0.1:``port`` answering only for ``records`` (name -> IPv4, or a list of them).

    Every other name under ``local_domain`` gets NXDOMAIN; names outside it
    get REFUSED (there is no upstream server).  A single address is an
    ``--address`` (which also covers subdomains; the longest match wins); a
    list becomes one ``--host-record`` per address (that name only), and
    dnsmasq rotates their order from one answer to the next.
    """

    def __init__(self, work: Path, name: str, records: dict[str, str | list[str]], local_domain: str = "test"):
        exe = require_tool("dnsmasq")
        self.records = dict(records)
        self.local_domain = local_domain
        self.port = free_udp_tcp_port("127.0.0.1")
        argv = [
            exe,
            "--no-daemon",
            "--conf-file=/dev/null",  # not /etc/dnsmasq.conf
            f"--port={self.port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",  # never forward to the machine's resolvers
            "--no-hosts",
            "--no-poll",
            "--pid-file=",  # no /run/dnsmasq.pid
            "--cache-size=0",
            "--log-queries",
            "--log-facility=-",
            f"--local=/{local_domain}/",
        ]
        for n, ips in self.records.items():
            if isinstance(ips, str):
                argv.append(f"--address=/{n}/{ips}")
            else:
                argv += [f"--host-record={n},{ip}" for ip in ips]
        self.daemon = Daemon(name, argv, work)
        probe = f"probe-nxdomain.{local_domain}"
        try:
            wait_for(
                lambda: dns_query("127.0.0.1", self.port, probe, timeout=0.5)[0] == NXDOMAIN,
                READY_TIMEOUT,
                f"{name} to answer NXDOMAIN for {probe}",
                proc=self.daemon,
            )
        except Exception:
            self.daemon.stop()
            raise

    @property
    def server(self) -> str:
        """``127.0.0.1:PORT``, as check-pull's ``--dns-server`` takes it."""
        return f"127.0.0.1:{self.port}"

    def resolve(self, name: str) -> tuple[int, list[str]]:
        return dns_query("127.0.0.1", self.port, name)

    def stop(self):
        self.daemon.stop(timeout=5)


# --------------------------------------------------------------------------
# Certificates (openssl)
# --------------------------------------------------------------------------


def _asn1_time(t: float) -> str:
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(t))


class CertAuthority:
    """A private CA (EC P-256) made with openssl; ``issue`` makes server certificates."""

    def __init__(self, work: Path, cn: str = "berth e2e diagnostics CA"):
        self.openssl = require_tool("openssl")
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        (work / "newcerts").mkdir(exist_ok=True)
        (work / "index.txt").write_text("")
        (work / "serial").write_text("1000\n")
        self.key = work / "ca.key"
        self.cert = work / "ca.pem"
        self.config = work / "ca.cnf"
        self.config.write_text(
            "[ ca ]\n"
            "default_ca = CA_default\n"
            "[ CA_default ]\n"
            f"dir = {work}\n"
            "database = $dir/index.txt\n"
            "new_certs_dir = $dir/newcerts\n"
            "serial = $dir/serial\n"
            "certificate = $dir/ca.pem\n"
            "private_key = $dir/ca.key\n"
            "default_md = sha256\n"
            "default_days = 2\n"
            "policy = policy_any\n"
            "unique_subject = no\n"
            "copy_extensions = none\n"
            "[ policy_any ]\n"
            "commonName = supplied\n"
        )
        now = time.time()
        run(
            [
                self.openssl, "req", "-x509", "-new", "-nodes",
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-keyout", self.key, "-out", self.cert, "-days", "3", "-subj", f"/CN={cn}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ]
        )  # fmt: skip
        self._now = now

    def issue(
        self,
        name: str,
        dns_names: list[str],
        ips: list[str] = (),
        not_before: float | None = None,
        not_after: float | None = None,
    ) -> tuple[Path, Path]:
        """A server certificate (and its key) for ``dns_names``/``ips``; returns (cert, key).

        ``not_before``/``not_after`` are Unix times (default: from an hour ago
        for a day); both in the past make an expired certificate.
        """
        now = time.time()
        not_before = now - 3600 if not_before is None else not_before
        not_after = now + 86400 if not_after is None else not_after
        key, csr, cert = (self.work / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        ext = self.work / f"{name}.ext"
        san = ",".join([*(f"DNS:{d}" for d in dns_names), *(f"IP:{i}" for i in ips)])
        ext.write_text(
            "[ leaf ]\n"
            "basicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            f"subjectAltName = {san}\n"
        )
        run(
            [
                self.openssl, "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-keyout", key, "-out", csr, "-subj", f"/CN={dns_names[0] if dns_names else ips[0]}",
            ]
        )  # fmt: skip
        run(
            [
                self.openssl, "ca", "-batch", "-notext", "-config", self.config, "-in", csr, "-out", cert,
                "-extfile", ext, "-extensions", "leaf",
                "-startdate", _asn1_time(not_before), "-enddate", _asn1_time(not_after),
            ]
        )  # fmt: skip
        return cert, key


# --------------------------------------------------------------------------
# berth servers with a config of their own (TLS)
# --------------------------------------------------------------------------


@dataclass
class Berth:
    name: str
    daemon: Daemon
    work: Path
    host: str  # first listener, host:port
    owner: Creds
    scheme: str
    ca_file: Path | None
    config: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def session(self, creds: Creds | None | str = "owner") -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        if self.scheme == "https":
            # Trust the test CA; without one (an expired certificate) do not verify.
            s.verify = str(self.ca_file) if self.ca_file is not None else False
        c = self.owner if creds == "owner" else creds
        if c is not None:
            s.auth = requests.auth.HTTPBasicAuth(*c)
        return s

    def stop(self):
        self.daemon.stop()


def start_berth(work: Path, name: str, config: dict, env: dict, ca_file: Path | None = None) -> Berth:
    """``berth serve --config`` with ``config`` (data_dir and the owner's password filled in).

    Ready when ``GET /v2/`` with the owner's credentials answers 200 on the
    first listener (over HTTPS, trusting ``ca_file``, when ``tls_cert`` is set).
    """
    work.mkdir(parents=True, exist_ok=True)
    owner = Creds("owner", secrets.token_urlsafe(24))
    cfg = json.loads(json.dumps(config, default=str))
    cfg["data_dir"] = str(work / "data")
    cfg.setdefault("auth", {})["initial_owner_password"] = owner.password
    listen = cfg["server"]["listen"]
    host = listen if isinstance(listen, str) else listen[0]
    scheme = "https" if cfg["server"].get("tls_cert") else "http"
    config_path = work / "berth.toml"
    config_path.write_text(toml_dumps(cfg))
    env = {k: v for k, v in env.items() if not k.startswith(("BERTH_", "REGISTRY_"))}
    env.setdefault("RUST_BACKTRACE", "1")
    daemon = Daemon(name, [berth_binary(), "serve", "--config", config_path], work, env=env, cwd=work)
    server = Berth(name, daemon, work, host, owner, scheme, ca_file, cfg)
    probe = server.session()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            wait_for(
                lambda: probe.get(f"{server.url}/v2/", timeout=2).status_code == 200,
                READY_TIMEOUT,
                f"{name}: GET {server.url}/v2/ to return 200 with the owner's credentials",
                proc=daemon,
            )
    except Exception:
        daemon.stop()
        raise
    return server


# --------------------------------------------------------------------------
# Proxies and unreachable listeners
# --------------------------------------------------------------------------


def wait_listening(host: str, port: int, what: str, proc: Daemon | None = None):
    def up() -> bool:
        with socket.create_connection((host, port), timeout=0.5):
            return True

    wait_for(up, READY_TIMEOUT, f"{what} to listen on {host}:{port}", proc=proc)


def start_tinyproxy(work: Path, name: str, connect_ports: list[int]) -> tuple[Daemon, str]:
    """tinyproxy in the foreground on 127.0.0.1:PORT allowing CONNECT only to ``connect_ports``.

    tinyproxy allows CONNECT to every port when the config has no
    ``ConnectPort`` line; its sample config (and most deployments) list only
    443 and 563.  Returns the daemon and the proxy URL.
    """
    exe = require_tool("tinyproxy")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = work / "tinyproxy.conf"
    conf.write_text(
        f"Port {port}\n"
        "Listen 127.0.0.1\n"
        "Timeout 30\n"
        "MaxClients 20\n"
        "Allow 127.0.0.1\n"
        "LogLevel Info\n"
        f'LogFile "{work / "tinyproxy.log"}"\n'
        "DisableViaHeader Yes\n" + "".join(f"ConnectPort {p}\n" for p in connect_ports)
    )
    daemon = Daemon(name, [exe, "-d", "-c", conf], work)
    try:
        wait_listening("127.0.0.1", port, name, daemon)
    except Exception:
        daemon.stop(timeout=5)
        raise
    return daemon, f"http://127.0.0.1:{port}"


class HangUpProxy:
    """An "HTTPS proxy" on 127.0.0.1:PORT that reads the CONNECT request and closes the connection."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.5)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hang-up-proxy", daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                head = b""
                try:
                    while b"\r\n\r\n" not in head and len(head) < 16384:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                except OSError:
                    pass
                self.requests.append(head)
                # Everything read: close() sends FIN (not RST), the client reads EOF.

    def close(self):
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=5)


class FullBacklogListener:
    """A listening socket on ``host`` (listen(0)) whose accept queue is filled with connections never accepted.

    Linux drops a SYN to a listener whose accept queue is full, so a further
    connect gets no answer at all until it gives up: the same symptom as a
    firewall that drops the traffic (``dial tcp ...: i/o timeout``).
    """

    def __init__(self, host: str = "127.0.0.1"):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((host, 0))
        self._listener.listen(0)
        self.host, self.port = self._listener.getsockname()
        self._fillers: list[socket.socket] = []
        for _ in range(64):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(0.5)
            try:
                c.connect((self.host, self.port))
            except (TimeoutError, socket.timeout):
                c.close()
                return  # this SYN was dropped: the queue is full
            self._fillers.append(c)
        self.close()
        raise RuntimeError(f"could not fill the accept queue of {self.host}:{self.port}")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self):
        for c in self._fillers:
            c.close()
        self._listener.close()


# --------------------------------------------------------------------------
# Pull secrets and check-pull
# --------------------------------------------------------------------------


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def pull_secret(path: Path, auths: dict[str, Creds], name: str = "regcred") -> Path:
    """Write a ``kubernetes.io/dockerconfigjson`` Secret (as ``kubectl get secret -o json`` shows it)."""
    config = {
        "auths": {
            host: {"username": c.user, "password": c.password, "auth": _b64(f"{c.user}:{c.password}")}
            for host, c in auths.items()
        }
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": _b64(json.dumps(config))},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(secret, indent=2))
    return path


@dataclass
class CheckResult:
    """One ``berth check-pull`` run: its exit status, stdout, stderr and (with ``-o json``) the verdict."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    verdict: dict | None

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit status {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    @property
    def steps(self) -> dict[str, str]:
        return {s["name"]: s["detail"] for s in (self.verdict or {}).get("steps", [])}


def check_pull(
    image: str, *args: str, env: dict, json_output: bool = True, timeout: float = CHECK_TIMEOUT
) -> CheckResult:
    """``berth check-pull IMAGE ARGS`` (``--output json`` unless ``json_output=False``), never raising on its status."""
    argv = [berth_binary(), "check-pull", image, *[str(a) for a in args]]
    if json_output:
        argv += ["--output", "json"]
    proc = run(argv, env, check=False, timeout=timeout)
    res = CheckResult(argv, proc.returncode, proc.stdout, proc.stderr, None)
    if json_output:
        try:
            res.verdict = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"check-pull did not print JSON\n{res.describe()}") from None
    return res


def expect_cause(
    res: CheckResult, code: str, exit_status: int, evidence: tuple[str, ...] = (), fix: tuple[str, ...] = ()
) -> dict:
    """Assert the verdict names ``code`` with ``exit_status``, a fix, and the given words; returns it."""
    v = res.verdict
    assert v is not None, res.describe()
    assert (v.get("code"), v.get("exitCode"), res.returncode) == (code, exit_status, exit_status), (
        f"expected {code} (exit status {exit_status})\n{res.describe()}"
    )
    assert v["ok"] is False and v.get("cause"), res.describe()
    assert isinstance(v.get("fix"), str) and v["fix"].strip(), f"no fix text\n{res.describe()}"
    assert isinstance(v.get("evidence"), str) and v["evidence"], f"no evidence\n{res.describe()}"
    for word in evidence:
        assert word.lower() in v["evidence"].lower(), f"evidence lacks {word!r}\n{res.describe()}"
    for word in fix:
        assert word.lower() in v["fix"].lower(), f"fix lacks {word!r}\n{res.describe()}"
    return v


def expect_pass(res: CheckResult, *steps: str) -> dict:
    """Assert the check passed (exit 0, ok) with at least ``steps``; returns the steps."""
    v = res.verdict
    assert v is not None, res.describe()
    assert res.returncode == 0 and v["ok"] is True and v["exitCode"] == 0, f"expected a pass\n{res.describe()}"
    assert not v.get("code") and not v.get("evidence"), res.describe()
    names = [s["name"] for s in v["steps"]]
    for step in steps:
        assert step in names, f"step {step!r} missing from {names}\n{res.describe()}"
    return res.steps


def expect_text_failure(res: CheckResult, code: str, exit_status: int, *words: str) -> str:
    """Assert the human (table) output of a failing check: FAIL line, cause and fix lines."""
    assert res.returncode == exit_status, res.describe()
    out = res.stdout
    assert f"FAIL  {code} (exit status {exit_status})" in out, res.describe()
    assert "\n  cause: " in out and "\n  fix:   " in out, res.describe()
    for w in words:
        assert w in out, f"output lacks {w!r}\n{res.describe()}"
    return out

