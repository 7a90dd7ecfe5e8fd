"""``berth check-pull``: every failure of the seed documents, provoked for real — berth only.

Each scenario builds the broken situation on loopback and asserts the cause
code, the exit status (docs/diagnostics.md), that a fix is given, and the key
words of the evidence.  Nothing leaves 127.0.0.0/8:

* Names: a private dnsmasq (diag_support.Dnsmasq) knows ``registry.test``
  (127.0.0.1, the registry), ``stale.registry.test`` (127.0.0.9, where nothing
  listens), ``spread.test`` (both), ``mirror.test`` (127.0.0.1, a name the
  certificate does not carry) and ``data.registry.test`` (127.0.0.4, the data
  endpoint), answers NXDOMAIN for every other ``*.test`` name and forwards
  nothing.  Every check-pull that uses a name gets ``--dns-server`` pointing at
  it; made-up names never reach the system resolver.  The data-endpoint
  scenario starts two more: one that maps the data name to 127.0.0.7 (nothing
  listens) and one that does not know it.
* Servers: ``diag`` (plain HTTP, public listeners on 127.0.0.1 and 127.0.0.4,
  data endpoint ``data.registry.test``, failed-login limit raised so the
  authentication scenarios do not throttle each other); ``netdiag`` (public
  127.0.0.1 + private endpoint on 127.0.0.2, for the network-rule scenarios);
  ``tlsdiag`` / ``expired`` (HTTPS with certificates from a test CA made with
  openssl); ``throttle`` (``failed_login_limit = 3``).
* Proxies (``HTTPS_PROXY``/``NO_PROXY`` in check-pull's environment): tinyproxy
  on loopback with its own config, and a Python "proxy" that hangs up after
  reading the CONNECT.
* A timeout: a listener whose accept queue is full, so the kernel drops SYNs.

check-pull runs with an environment of its own: no proxy variables (except in
the proxy scenarios, which set them), an empty HOME and DOCKER_CONFIG.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import (
    BerthServer,
    Creds,
    Skopeo,
    free_port,
    requires_auth,
)
from diag_support import (
    NXDOMAIN,
    Berth,
    CertAuthority,
    CheckResult,
    Dnsmasq,
    FullBacklogListener,
    HangUpProxy,
    check_pull,
    clean_env,
    expect_cause,
    expect_pass,
    expect_text_failure,
    pull_secret,
    start_berth,
    start_tinyproxy,
)

pytestmark = requires_auth

REGISTRY_NAME = "registry.test"  # -> 127.0.0.1 (the registry)
STALE_NAME = "stale.registry.test"  # -> 127.0.0.9 (nothing listens there)
STALE_IP = "127.0.0.9"
SPREAD_NAME = "spread.test"  # -> 127.0.0.9 and 127.0.0.1, in rotating order
MIRROR_NAME = "mirror.test"  # -> 127.0.0.1, not in the certificate
DATA_NAME = "data.registry.test"  # -> 127.0.0.4 (the data endpoint listener)
DATA_IP = "127.0.0.4"
UNUSED_DATA_IP = "127.0.0.7"  # nothing listens there
PRIVATE_IP = "127.0.0.2"
TIMEOUT_IP = "127.0.0.8"

APP, MULTI, TAG = "diag/app", "diag/multi", "v1"

# Transcripts of the human output, printed at the end of the module (-s / -rA).
TRANSCRIPTS: dict[str, str] = {}


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("diag")


@pytest.fixture(scope="module")
def env(work) -> dict:
    """check-pull's environment: no proxies, no BERTH_*, an empty HOME/DOCKER_CONFIG."""
    return clean_env(work / "home")


@pytest.fixture(scope="module")
def dns(work):
    server = Dnsmasq(
        work / "dnsmasq",
        "dnsmasq-diag",
        {
            REGISTRY_NAME: "127.0.0.1",
            STALE_NAME: STALE_IP,
            SPREAD_NAME: [STALE_IP, "127.0.0.1"],
            MIRROR_NAME: "127.0.0.1",
            DATA_NAME: DATA_IP,
        },
    )
    # The premises: the names resolve as intended, unknown ones are NXDOMAIN.
    assert server.resolve(REGISTRY_NAME) == (0, ["127.0.0.1"])
    assert server.resolve(STALE_NAME) == (0, [STALE_IP])
    assert server.resolve(DATA_NAME) == (0, [DATA_IP])
    assert sorted(server.resolve(SPREAD_NAME)[1]) == ["127.0.0.1", STALE_IP]
    assert server.resolve("nosuch.test")[0] == NXDOMAIN
    yield server
    server.stop()


def seed(skopeo: Skopeo, host: str, layout):
    skopeo.copy(layout.transport("v1"), f"docker://{host}/{APP}:{TAG}")
    skopeo.copy(layout.transport("multi"), f"docker://{host}/{MULTI}:{TAG}", "--all")


@pytest.fixture(scope="module")
def diag(berth_servers, client_env, client_home, oci_images) -> BerthServer:
    """The plain-HTTP registry of most scenarios, with ``diag/app:v1`` and ``diag/multi:v1``."""
    port = free_port("127.0.0.1")
    data_port = free_port(DATA_IP)
    server = berth_servers(
        "berth-diag",
        {
            "server": {"listen": [f"127.0.0.1:{port}", f"{DATA_IP}:{data_port}"]},
            "data_endpoint": [{"region": "local", "host": f"{DATA_NAME}:{data_port}"}],
            # Many scenarios fail logins on purpose, all from 127.0.0.1.
            "auth": {"failed_login_limit": 1000},
        },
    )
    seed(Skopeo(client_env, client_home["policy"], server.owner), server.host, oci_images.layout)
    return server


@pytest.fixture(scope="module")
def port(diag) -> int:
    return int(diag.host.rsplit(":", 1)[1])


@dataclass
class SP:
    id: str
    name: str
    creds: Creds


def create_sp(server, name: str, role: str | None = None, scope: str = "", **extra) -> SP:
    body = {"name": name, **extra}
    if "endDate" not in extra:
        body["years"] = 1
    if role is not None:
        body |= {"role": role, "scope": scope}
    out = server.api("POST", "/service-principals", body, expect=(200, 201))
    (secret,) = [s for s in out["secrets"] if s["name"] == "secret"]
    return SP(out["identity"]["id"], name, Creds(out["identity"]["login"], secret["value"]))


def creds_args(creds: Creds) -> tuple[str, ...]:
    """``--username=U --password=P`` (the ``=`` form: generated secrets may start with '-')."""
    return (f"--username={creds.user}", f"--password={creds.password}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def puller(diag) -> SP:
    return create_sp(diag, "diag-puller", role="AcrPull")


def record(name: str, res: CheckResult):
    """Keep the human output of ``res`` for the end-of-module printout (passwords redacted)."""
    args = " ".join(re.sub(r"^--password=.*", "--password=***", a) for a in res.argv[2:])
    TRANSCRIPTS[name] = f"$ berth check-pull {args}\n{res.stdout}(exit status {res.returncode})\n"


@pytest.fixture(scope="module", autouse=True)
def _print_transcripts():
    yield
    for name, text in TRANSCRIPTS.items():
        print(f"\n===== transcript: {name} =====\n{text}")


# --------------------------------------------------------------------------
# The passing path
# --------------------------------------------------------------------------


def test_pull_secret_passes_and_shows_every_step(diag, port, dns, env, puller, oci_images, tmp_path):
    """A real pull secret (Secret JSON, base64 .dockerconfigjson) for registry.test:PORT, an index."""
    host = f"{REGISTRY_NAME}:{port}"
    secret = pull_secret(tmp_path / "secret.json", {host: puller.creds})
    args = ("--pull-secret", secret, "--dns-server", dns.server, "--plain-http", "--platform", "linux/arm64")
    res = check_pull(f"{host}/{MULTI}:{TAG}", *args, env=env)
    steps = expect_pass(res, "credentials", "dns", "connect", "challenge", "token", "manifest", "platform", "layer")
    assert [s["name"] for s in res.verdict["steps"]] == [
        "credentials", "dns", "connect", "challenge", "token", "manifest", "platform", "layer",
    ]  # fmt: skip
    assert puller.id in steps["credentials"] and str(secret) in steps["credentials"]
    assert steps["dns"] == f"{REGISTRY_NAME} → 127.0.0.1"
    assert steps["connect"] == f"http://{host} answered GET /v2/ with 401"
    assert f"http://{host}/oauth2/token" in steps["challenge"]
    assert f"repository:{MULTI}:pull" in steps["token"]
    assert oci_images.layout.manifest_digest("arm64") in steps["platform"]
    layer = min(oci_images.layout.manifest("arm64")["layers"], key=lambda d: d["size"])["digest"]
    assert layer in steps["layer"]

    text = check_pull(f"{host}/{MULTI}:{TAG}", *args, env=env, json_output=False)
    assert text.returncode == 0, text.describe()
    for name in ("credentials", "dns", "connect", "challenge", "token", "manifest", "platform", "layer"):
        assert re.search(rf"^  ok  {name}\s", text.stdout, re.M), text.describe()
    assert f"PASS  {host}/{MULTI}:{TAG} can be pulled" in text.stdout
    record("pass with a pull secret", text)


def test_docker_config_and_its_dockerconfigjson(diag, env, puller, tmp_path):
    """The same credentials from a Docker config.json (a directory or the file), and from bare .dockerconfigjson."""
    secret = json.loads(pull_secret(tmp_path / "secret.json", {diag.host: puller.creds}).read_text())
    config = base64.b64decode(secret["data"][".dockerconfigjson"])
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_bytes(config)
    (tmp_path / "dockerconfig.json").write_bytes(config)
    image = f"{diag.host}/{APP}:{TAG}"
    for args in (
        ("--docker-config", tmp_path / "docker"),
        ("--docker-config", tmp_path / "docker" / "config.json"),
        ("--pull-secret", tmp_path / "dockerconfig.json"),
    ):
        steps = expect_pass(check_pull(image, *args, "--plain-http", env=env), "credentials", "token", "layer")
        assert f"user '{puller.id}' from " in steps["credentials"], steps


# --------------------------------------------------------------------------
# 1-3: DNS, wrong address, timeout
# --------------------------------------------------------------------------


def test_name_that_does_not_resolve(diag, port, dns, env, puller):
    res = check_pull(
        f"nosuch.test:{port}/{APP}:{TAG}", "--dns-server", dns.server, "--plain-http",
        *creds_args(puller.creds), env=env,
    )  # fmt: skip
    v = expect_cause(res, "CONNECTIVITY_DNS_ERROR", 11, evidence=("nosuch.test",), fix=("nosuch.test", "private"))
    assert [s["name"] for s in v["steps"]] == ["credentials"], res.describe()
    # The same registry under a name that resolves passes the dns step (and the rest).
    res = check_pull(
        f"{REGISTRY_NAME}:{port}/{APP}:{TAG}", "--dns-server", dns.server, "--plain-http",
        *creds_args(puller.creds), env=env,
    )  # fmt: skip
    assert expect_pass(res, "dns")["dns"] == f"{REGISTRY_NAME} → 127.0.0.1"


def test_name_resolves_to_an_address_where_the_registry_does_not_listen(diag, port, dns, env, puller):
    """The name resolves, but to the wrong address.

    This is the "public instead of private endpoint" case of the seed guides:
    a client whose DNS is not linked to the private DNS zone gets the other
    (public, or stale) address of the registry name, where — from its network
    — nothing serves the registry.  Here ``stale.registry.test`` resolves to
    127.0.0.9, on which nothing listens: connection refused, naming that
    address, so the operator sees the name went to the wrong place.
    """
    res = check_pull(
        f"{STALE_NAME}:{port}/{APP}:{TAG}", "--dns-server", dns.server, "--plain-http",
        *creds_args(puller.creds), env=env,
    )  # fmt: skip
    v = expect_cause(res, "CONNECTIVITY_REFUSED_ERROR", 13, evidence=(f"{STALE_IP}:{port}",), fix=("port",))
    assert res.steps["dns"] == f"{STALE_NAME} → {STALE_IP}", res.describe()
    assert "connect" not in res.steps, v


def test_name_with_several_addresses_one_of_them_dead(diag, port, dns, env, puller):
    """spread.test has two A records, 127.0.0.9 (nothing listens) and 127.0.0.1 (the registry).

    A container runtime pulls fine: Go's dialer tries each address of the
    name in turn until one connects.  check-pull does what the runtime does,
    so it must pass too — every time, whichever order dnsmasq answers in.
    """
    for _ in range(3):
        res = check_pull(
            f"{SPREAD_NAME}:{port}/{APP}:{TAG}", "--dns-server", dns.server, "--plain-http",
            *creds_args(puller.creds), env=env,
        )  # fmt: skip
        expect_pass(res, "dns", "connect", "token", "manifest", "layer")


def test_connect_timeout_when_nothing_answers(env, puller):
    listener = FullBacklogListener(TIMEOUT_IP)
    try:
        started = time.monotonic()
        res = check_pull(
            f"{listener.address}/{APP}:{TAG}", "--plain-http", "--timeout", "2",
            *creds_args(puller.creds), env=env, timeout=30,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    finally:
        listener.close()
    expect_cause(
        res, "CONNECTIVITY_TIMEOUT_ERROR", 12, evidence=(listener.address, "timed out"), fix=("firewall", "allow")
    )
    assert 1.5 <= elapsed < 15, f"took {elapsed:.1f}s with --timeout 2"


# --------------------------------------------------------------------------
# 4: TLS
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(work) -> CertAuthority:
    return CertAuthority(work / "ca")


@pytest.fixture(scope="module")
def tlsdiag(work, ca, client_env, client_home, oci_images) -> Berth:
    """HTTPS on 127.0.0.1 with a certificate for registry.test and 127.0.0.1 from the test CA."""
    cert, key = ca.issue("registry", [REGISTRY_NAME], ["127.0.0.1"])
    listen = f"127.0.0.1:{free_port()}"
    server = start_berth(
        work / "berth-tls",
        "berth-tls",
        {"server": {"listen": [listen], "tls_cert": cert, "tls_key": key}, "auth": {"failed_login_limit": 1000}},
        client_env,
        ca_file=ca.cert,
    )
    seed(Skopeo(client_env, client_home["policy"], server.owner), server.host, oci_images.layout)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def expired_tls(work, ca, client_env) -> Berth:
    """HTTPS with a certificate (from the test CA, right names) that expired yesterday."""
    day = 86400
    cert, key = ca.issue(
        "expired", [REGISTRY_NAME], ["127.0.0.1"], not_before=time.time() - 10 * day, not_after=time.time() - day
    )
    listen = f"127.0.0.1:{free_port()}"
    config = {"server": {"listen": [listen], "tls_cert": cert, "tls_key": key}}
    server = start_berth(work / "berth-expired", "berth-expired", config, client_env)
    yield server
    server.stop()


def owner_args(server) -> tuple[str, ...]:
    return creds_args(server.owner)


def test_tls_with_the_ca_trusted_passes(tlsdiag, ca, dns, env):
    port = tlsdiag.host.rsplit(":", 1)[1]
    host = f"{REGISTRY_NAME}:{port}"
    res = check_pull(
        f"{host}/{APP}:{TAG}", "--ca-file", ca.cert, "--dns-server", dns.server, *owner_args(tlsdiag), env=env
    )
    steps = expect_pass(res, "dns", "connect", "challenge", "token", "manifest", "layer")
    assert steps["connect"] == f"https://{host} answered GET /v2/ with 401"
    assert f"https://{host}/oauth2/token" in steps["challenge"]


@pytest.mark.parametrize(
    "case", ["expired", "name_mismatch", "unknown_issuer", "plain_http_server", "plain_http_client"]
)
def test_tls_failures(case, tlsdiag, expired_tls, diag, ca, dns, env):
    tls_port = tlsdiag.host.rsplit(":", 1)[1]
    if case == "expired":
        # The right names, a trusted CA, but not valid any more.
        res = check_pull(f"{expired_tls.host}/{APP}:{TAG}", "--ca-file", ca.cert, *owner_args(expired_tls), env=env)
        words = ("expired", "127.0.0.1")
    elif case == "name_mismatch":
        # mirror.test resolves to the registry, whose certificate names only registry.test and 127.0.0.1.
        res = check_pull(
            f"{MIRROR_NAME}:{tls_port}/{APP}:{TAG}", "--ca-file", ca.cert, "--dns-server", dns.server,
            *owner_args(tlsdiag), env=env,
        )  # fmt: skip
        words = ("name", MIRROR_NAME)
    elif case == "unknown_issuer":
        # The test CA is not among the trusted roots without --ca-file.
        res = check_pull(
            f"{REGISTRY_NAME}:{tls_port}/{APP}:{TAG}", "--dns-server", dns.server, *owner_args(tlsdiag), env=env
        )
        words = ("unknown issuer", REGISTRY_NAME)
    elif case == "plain_http_server":
        # An HTTPS client (no --plain-http) against a registry that speaks
        # plain HTTP, named by a name that is not loopback (no fallback).
        plain_port = diag.host.rsplit(":", 1)[1]
        res = check_pull(
            f"{REGISTRY_NAME}:{plain_port}/{APP}:{TAG}", "--dns-server", dns.server, *owner_args(diag), env=env
        )
        words = ("TLS", "plain HTTP")
    else:
        # The other way round: --plain-http against an HTTPS registry.
        res = check_pull(f"{tlsdiag.host}/{APP}:{TAG}", "--plain-http", *owner_args(tlsdiag), env=env)
        words = (tlsdiag.host, "TLS")
    fix = ("scheme",) if case.startswith("plain") else ("certificate",)
    expect_cause(res, "CONNECTIVITY_SSL_ERROR", 14, evidence=words, fix=fix)
    assert "connect" not in res.steps, res.describe()


# --------------------------------------------------------------------------
# 5: an HTTPS proxy
# --------------------------------------------------------------------------


# The registry is addressed as 127.0.0.1:PORT whenever a real proxy (tinyproxy)
# is involved, so the proxy never has a name to resolve with the system resolver.


def proxy_env(env: dict, proxy_url: str, no_proxy: str = "") -> dict:
    out = dict(env, HTTPS_PROXY=proxy_url, https_proxy=proxy_url)
    if no_proxy:
        out.update(NO_PROXY=no_proxy, no_proxy=no_proxy)
    return out


def test_proxy_refuses_connect_to_the_registry_port(tlsdiag, ca, env, work):
    """tinyproxy allowing CONNECT only to 443 and 563 answers 403 for the registry's port."""
    daemon, url = start_tinyproxy(work / "tinyproxy-443", "tinyproxy-443", [443, 563])
    try:
        res = check_pull(
            f"{tlsdiag.host}/{APP}:{TAG}", "--ca-file", ca.cert, *owner_args(tlsdiag), env=proxy_env(env, url)
        )
    finally:
        daemon.stop(timeout=5)
    evidence = ("403", f"CONNECT {tlsdiag.host}", url.split("//")[1])
    v = expect_cause(res, "CONNECTIVITY_PROXY_ERROR", 15, evidence=evidence, fix=("NO_PROXY", "proxy"))
    assert res.steps.get("proxy", "").startswith("through "), v


def test_proxy_that_closes_the_connection(tlsdiag, ca, env):
    proxy = HangUpProxy()
    try:
        res = check_pull(
            f"{tlsdiag.host}/{APP}:{TAG}", "--ca-file", ca.cert, *owner_args(tlsdiag), env=proxy_env(env, proxy.url)
        )
    finally:
        proxy.close()
    expect_cause(res, "CONNECTIVITY_PROXY_ERROR", 15, evidence=("EOF",), fix=("NO_PROXY",))
    assert proxy.requests and proxy.requests[0].startswith(f"CONNECT {tlsdiag.host} ".encode()), proxy.requests


@pytest.mark.parametrize(
    "no_proxy, by_name",
    [
        ("localhost,127.0.0.1", False),  # the address itself
        (".test", True),  # a domain suffix, for registry.test
        ("*", False),  # everything
        ("127.0.0.0/8", False),  # a CIDR (Go's http.ProxyFromEnvironment, hence containerd, honours it)
        ("127.0.0.1:{port}", False),  # host:port (also honoured by Go)
    ],
    ids=["address", "domain-suffix", "star", "cidr", "host-port"],
)
def test_no_proxy_bypasses_the_proxy(no_proxy, by_name, tlsdiag, ca, dns, env):
    """HTTPS_PROXY points at a proxy that hangs up; the registry matches NO_PROXY, so it is never used."""
    tls_port = tlsdiag.host.rsplit(":", 1)[1]
    host = f"{REGISTRY_NAME}:{tls_port}" if by_name else tlsdiag.host
    proxy = HangUpProxy()
    try:
        res = check_pull(
            f"{host}/{APP}:{TAG}", "--ca-file", ca.cert, "--dns-server", dns.server, *owner_args(tlsdiag),
            env=proxy_env(env, proxy.url, no_proxy=no_proxy.format(port=tls_port)),
        )  # fmt: skip
    finally:
        proxy.close()
    steps = expect_pass(res, "dns", "connect", "layer")
    assert "proxy" not in steps, res.describe()
    assert proxy.requests == [], f"the proxy was used although NO_PROXY={no_proxy} matches {host}"


def test_proxy_that_allows_the_registry_port_passes(tlsdiag, ca, env, work):
    """The positive control: the same tinyproxy, with ConnectPort for the registry's port."""
    tls_port = int(tlsdiag.host.rsplit(":", 1)[1])
    daemon, url = start_tinyproxy(work / "tinyproxy-ok", "tinyproxy-ok", [443, tls_port])
    try:
        res = check_pull(
            f"{tlsdiag.host}/{APP}:{TAG}", "--ca-file", ca.cert, *owner_args(tlsdiag), env=proxy_env(env, url)
        )
    finally:
        daemon.stop(timeout=5)
    steps = expect_pass(res, "proxy", "connect", "token", "manifest", "layer")
    assert steps["proxy"] == f"through {url}/" or steps["proxy"] == f"through {url}", res.describe()
    assert "dns" not in steps, res.describe()


# --------------------------------------------------------------------------
# 6: network rules
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def netdiag(berth_servers, client_env, client_home, oci_images) -> BerthServer:
    """Public 127.0.0.1 and a private endpoint on 127.0.0.2 (management goes there)."""
    server = berth_servers(
        "berth-netdiag",
        {
            "server": {"listen": [f"127.0.0.1:{free_port()}"]},
            "private_endpoint": [{"name": "pe1", "listen": f"{PRIVATE_IP}:{free_port(PRIVATE_IP)}"}],
        },
    )
    seed(Skopeo(client_env, client_home["policy"], server.owner), server.admin_host, oci_images.layout)
    return server


def test_network_rule_denials(netdiag, env):
    public, private = netdiag.host, netdiag.admin_host
    args = ("--plain-http", *owner_args(netdiag))
    expect_pass(check_pull(f"{public}/{APP}:{TAG}", *args, env=env), "layer")
    try:
        netdiag.api("PATCH", "/network", {"defaultAction": "Deny"})
        res = check_pull(f"{public}/{APP}:{TAG}", *args, env=env)
        expect_cause(
            res,
            "CONNECTIVITY_FORBIDDEN_ERROR",
            16,
            evidence=("403", "client with IP '127.0.0.1' is not allowed access", "no network rule matches"),
            fix=("network-rule", "private endpoint"),
        )
        record("network rule (default Deny)", check_pull(f"{public}/{APP}:{TAG}", *args, env=env, json_output=False))
        expect_text_failure(
            check_pull(f"{public}/{APP}:{TAG}", *args, env=env, json_output=False),
            "CONNECTIVITY_FORBIDDEN_ERROR", 16, "127.0.0.1",
        )  # fmt: skip
        # The private endpoint is not subject to IP rules: the fix works.
        expect_pass(check_pull(f"{private}/{APP}:{TAG}", *args, env=env), "layer")
        # And the server side agrees.
        out = netdiag.cli_fail(
            "explain", "--ip", "127.0.0.1", "--identity", "owner", "--action", "pull", "--repository", APP
        )
        assert out.returncode == 2, out.stdout + out.stderr
        denied = r"^network: +DENIED on public endpoint: .*no network rule matches"
        assert re.search(denied, out.stdout, re.M), out.stdout

        netdiag.api("PATCH", "/network", {"defaultAction": "Allow", "publicNetworkAccess": "Disabled"})
        res = check_pull(f"{public}/{APP}:{TAG}", *args, env=env)
        expect_cause(
            res,
            "CONNECTIVITY_FORBIDDEN_ERROR",
            16,
            evidence=("client with IP '127.0.0.1' is not allowed access", "public network access is disabled"),
            fix=("private endpoint",),
        )
        expect_pass(check_pull(f"{private}/{APP}:{TAG}", *args, env=env), "layer")
    finally:
        netdiag.api("PATCH", "/network", {"defaultAction": "Allow", "publicNetworkAccess": "Enabled"})
    expect_pass(check_pull(f"{public}/{APP}:{TAG}", *args, env=env), "layer")


# --------------------------------------------------------------------------
# 7: 401
# --------------------------------------------------------------------------


def test_pull_secret_without_credentials_for_this_host(diag, port, dns, env, puller, tmp_path):
    """The secret was made for the registry's address, the pod names it registry.test: anonymous, refused."""
    other = f"127.0.0.1:{port}"
    secret = pull_secret(tmp_path / "secret.json", {other: puller.creds, "quay.example": Creds("x", "y")})
    host = f"{REGISTRY_NAME}:{port}"
    res = check_pull(
        f"{host}/{APP}:{TAG}", "--pull-secret", secret, "--dns-server", dns.server, "--plain-http", env=env
    )
    expect_cause(
        res,
        "NO_CREDENTIALS_FOR_HOST",
        10,
        evidence=(other, "quay.example", "anonymous", "UNAUTHORIZED"),
        fix=(f"exactly '{host}'",),
    )
    assert "no entry" in res.steps["credentials"], res.describe()


def test_unknown_identity_after_the_sp_was_deleted(diag, port, env, tmp_path):
    sp = create_sp(diag, unique("diag-deleted"), role="AcrPull")
    secret = pull_secret(tmp_path / "secret.json", {diag.host: sp.creds})
    expect_pass(check_pull(f"{diag.host}/{APP}:{TAG}", "--pull-secret", secret, "--plain-http", env=env), "layer")
    diag.api("DELETE", f"/service-principals/{sp.id}", expect=(200, 204))
    res = check_pull(f"{diag.host}/{APP}:{TAG}", "--pull-secret", secret, "--plain-http", env=env)
    expect_cause(res, "UNAUTHORIZED", 17, evidence=("401", "unknown identity", sp.id), fix=("new app id",))


def test_wrong_secret(diag, env, puller, tmp_path):
    secret = pull_secret(tmp_path / "secret.json", {diag.host: Creds(puller.id, "not-the-secret")})
    res = check_pull(f"{diag.host}/{APP}:{TAG}", "--pull-secret", secret, "--plain-http", env=env)
    v = expect_cause(
        res, "UNAUTHORIZED", 17, evidence=("401", "wrong password", puller.id), fix=("update the pull secret",)
    )
    # The client output points at the server's record of the refusal.
    m = re.search(r"correlation id ([0-9a-f-]{36})", v["evidence"])
    assert m, v["evidence"]
    deadline = time.time() + 10
    while True:
        events = diag.api("GET", "/logs/login", params={"failed": "true", "limit": "1000"})
        if any(e["correlationId"] == m.group(1) and e["resultType"] == 401 for e in events):
            break
        assert time.time() < deadline, f"no failed login event with correlation id {m.group(1)}"
        time.sleep(0.2)


def test_expired_sp_secret(diag, env, tmp_path):
    end = time.time() + 3
    end_date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))
    sp = create_sp(diag, unique("diag-expiring"), role="AcrPull", endDate=end_date)
    secret = pull_secret(tmp_path / "secret.json", {diag.host: sp.creds})
    image = f"{diag.host}/{APP}:{TAG}"
    expect_pass(check_pull(image, "--pull-secret", secret, "--plain-http", env=env), "layer")
    time.sleep(max(0.0, int(end) + 1.2 - time.time()))  # strictly after the (whole-second) end date
    res = check_pull(image, "--pull-secret", secret, "--plain-http", env=env)
    expect_cause(res, "UNAUTHORIZED", 17, evidence=("401", f"expired at {end_date}", sp.name, sp.id), fix=("reset",))
    text = check_pull(image, "--pull-secret", secret, "--plain-http", env=env, json_output=False)
    expect_text_failure(text, "UNAUTHORIZED", 17, "expired")
    record("expired service principal secret", text)


def test_disabled_token(diag, env, tmp_path):
    name = unique("diag-tok")
    rules = [{"repository": APP, "actions": ["content/read"]}]
    diag.api("POST", "/scope-maps", {"name": f"{name}-map", "rules": rules})
    out = diag.api("POST", "/tokens", {"name": name, "scopeMap": f"{name}-map"})
    password = {s["name"]: s["value"] for s in out["secrets"]}["password1"]
    secret = pull_secret(tmp_path / "secret.json", {diag.host: Creds(name, password)})
    image = f"{diag.host}/{APP}:{TAG}"
    expect_pass(check_pull(image, "--pull-secret", secret, "--plain-http", env=env), "layer")
    diag.api("PATCH", f"/tokens/{name}", {"enabled": False})
    res = check_pull(image, "--pull-secret", secret, "--plain-http", env=env)
    expect_cause(res, "UNAUTHORIZED", 17, evidence=("401", "disabled", name), fix=("enable",))


def test_admin_password_regenerated_since_the_secret_was_made(diag, env, tmp_path):
    out = diag.api("PATCH", "/registry", {"adminUserEnabled": True})
    try:
        passwords = {p["name"]: p["value"] for p in out.get("adminPasswords", [])}
        if "password" not in passwords:
            renewed = diag.api("POST", "/admin/credentials/renew", {"passwordName": "password"})
            passwords["password"] = renewed["value"]
        admin = Creds("berth", passwords["password"])  # the admin user's login is the registry name
        secret = pull_secret(tmp_path / "secret.json", {diag.host: admin})
        image = f"{diag.host}/{APP}:{TAG}"
        expect_pass(check_pull(image, "--pull-secret", secret, "--plain-http", env=env), "layer")
        diag.api("POST", "/admin/credentials/renew", {"passwordName": "password"})
        res = check_pull(image, "--pull-secret", secret, "--plain-http", env=env)
        v = expect_cause(
            res,
            "ADMIN_PASSWORD_REGENERATED",
            26,
            evidence=("401", "wrong password", "berth", "'password' was regenerated at 20", "by owner 'owner'"),
            fix=("regenerated", "berth credential show"),
        )
        assert re.search(r"regenerated at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", v["evidence"]), v["evidence"]
        text = check_pull(image, "--pull-secret", secret, "--plain-http", env=env, json_output=False)
        expect_text_failure(text, "ADMIN_PASSWORD_REGENERATED", 26, "regenerated at")
        record("stale admin password", text)
    finally:
        diag.api("PATCH", "/registry", {"adminUserEnabled": False})


# --------------------------------------------------------------------------
# 8: 403 permission
# --------------------------------------------------------------------------


def test_no_role_assignment(diag, env, tmp_path):
    sp = create_sp(diag, unique("diag-norole"))
    secret = pull_secret(tmp_path / "secret.json", {diag.host: sp.creds})
    res = check_pull(f"{diag.host}/{APP}:{TAG}", "--pull-secret", secret, "--plain-http", env=env)
    expect_cause(res, "PERMISSION_DENIED", 18, evidence=("403", sp.id, "pull", APP), fix=("AcrPull", APP))


def test_assignment_orphaned_by_recreating_the_sp(diag, env, tmp_path):
    name = unique("diag-recreated")
    old = create_sp(diag, name, role="AcrPull")
    expect_pass(check_pull(f"{diag.host}/{APP}:{TAG}", "--plain-http", *creds_args(old.creds), env=env), "layer")
    diag.api("DELETE", f"/service-principals/{old.id}", expect=(200, 204))
    new = create_sp(diag, name)  # same name, new app id, no assignment
    assert new.id != old.id
    secret = pull_secret(tmp_path / "secret.json", {diag.host: new.creds})
    image = f"{diag.host}/{APP}:{TAG}"
    res = check_pull(image, "--pull-secret", secret, "--plain-http", env=env)
    command = f"berth role assignment create --assignee {new.id} --role AcrPull --scope '/'"
    expect_cause(
        res,
        "ORPHANED_ROLE_ASSIGNMENT",
        25,
        evidence=("403", new.id, old.id, "orphaned", "AcrPull", "deleted at 20"),
        fix=(command,),
    )
    text = check_pull(image, "--pull-secret", secret, "--plain-http", env=env, json_output=False)
    expect_text_failure(text, "ORPHANED_ROLE_ASSIGNMENT", 25, old.id)
    record("assignment orphaned by re-creating the service principal", text)
    # berth explain names the orphaned assignment of the deleted principal.
    out = diag.cli_fail("explain", "--ip", "127.0.0.1", "--identity", new.id, "--action", "pull", "--repository", APP)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "denied by permissions" in out.stdout and f"({new.id})" in out.stdout, out.stdout
    assert re.search(r"^missing: .*registries/pull/read.*diag/app", out.stdout, re.M), out.stdout
    assert "orphaned assignments" in out.stdout, out.stdout
    assert re.search(rf"^  \S+ role AcrPull at / for deleted principal {old.id}$", out.stdout, re.M), out.stdout
    # The command it gives works.
    out = diag.cli("role", "assignment", "create", "--assignee", new.id, "--role", "AcrPull", "--scope", "/")
    assert out.returncode == 0, out.stdout + out.stderr
    expect_pass(check_pull(image, "--pull-secret", secret, "--plain-http", env=env), "layer")


def test_token_scope_map_without_the_repository(diag, env, tmp_path):
    name = unique("diag-narrow")
    rules = [{"repository": "diag/other", "actions": ["content/read"]}]
    diag.api("POST", "/scope-maps", {"name": f"{name}-map", "rules": rules})
    out = diag.api("POST", "/tokens", {"name": name, "scopeMap": f"{name}-map"})
    password = {s["name"]: s["value"] for s in out["secrets"]}["password1"]
    secret = pull_secret(tmp_path / "secret.json", {diag.host: Creds(name, password)})
    res = check_pull(f"{diag.host}/{APP}:{TAG}", "--pull-secret", secret, "--plain-http", env=env)
    fix = f"berth scope-map update --name {name}-map --repository 'diag/other=content/read' --repository '{APP}=content/read'"
    v = expect_cause(
        res, "TOKEN_SCOPE_MAP_DENIED", 24, evidence=("403", name, "pull", APP, f"scope map '{name}-map'"), fix=(fix,)
    )
    assert "AcrPull" not in v["fix"] and "role assignment" not in v["fix"], v["fix"]
    text = check_pull(f"{diag.host}/{APP}:{TAG}", "--pull-secret", secret, "--plain-http", env=env, json_output=False)
    expect_text_failure(text, "TOKEN_SCOPE_MAP_DENIED", 24, f"{name}-map")
    record("token whose scope map lacks the repository", text)
    # The fix it gives works.
    diag.api(
        "PATCH",
        f"/scope-maps/{name}-map",
        {"rules": rules + [{"repository": APP, "actions": ["content/read"]}]},
    )
    expect_pass(check_pull(f"{diag.host}/{APP}:{TAG}", "--pull-secret", secret, "--plain-http", env=env), "layer")


# --------------------------------------------------------------------------
# 9: not found
# --------------------------------------------------------------------------


def test_wrong_repository_suggests_the_closest(diag, env, puller, tmp_path):
    """The suggestion comes from the catalog, which the identity must be allowed to list.

    A Reader (catalog + pull) gets "did you mean diag/app"; an AcrPull
    principal (pull only, like ACR's role) gets the same cause without a
    suggestion.
    """
    reader = create_sp(diag, unique("diag-reader"), role="Reader")
    secret = pull_secret(tmp_path / "secret.json", {diag.host: reader.creds})
    res = check_pull(f"{diag.host}/diag/ap:{TAG}", "--pull-secret", secret, "--plain-http", env=env)
    evidence = ("'diag/ap'", "does not exist", "NAME_UNKNOWN")
    expect_cause(res, "IMAGE_NOT_FOUND", 19, evidence=evidence, fix=(f"did you mean {APP}",))
    secret = pull_secret(tmp_path / "puller.json", {diag.host: puller.creds})
    res = check_pull(f"{diag.host}/diag/ap:{TAG}", "--pull-secret", secret, "--plain-http", env=env)
    expect_cause(res, "IMAGE_NOT_FOUND", 19, evidence=("'diag/ap'", "does not exist"), fix=("repository name",))


def test_wrong_tag_suggests_the_closest(diag, env, puller, tmp_path):
    secret = pull_secret(tmp_path / "secret.json", {diag.host: puller.creds})
    res = check_pull(f"{diag.host}/{APP}:v2", "--pull-secret", secret, "--plain-http", env=env)
    expect_cause(res, "IMAGE_NOT_FOUND", 19, evidence=("'v2'", APP), fix=(f"did you mean {TAG}",))


def test_wrong_registry(diag, env, puller, berth_servers):
    """A wrong registry name or port: nothing there (refused), or another registry without the repository.

    (A wrong registry name for which the pull secret has no entry surfaces as
    NO_CREDENTIALS_FOR_HOST, see test_pull_secret_without_credentials_for_this_host;
    one that does not resolve as CONNECTIVITY_DNS_ERROR.)
    """
    wrong = f"127.0.0.1:{free_port()}"
    res = check_pull(f"{wrong}/{APP}:{TAG}", "--plain-http", *creds_args(puller.creds), env=env)
    expect_cause(res, "CONNECTIVITY_REFUSED_ERROR", 13, evidence=(wrong, "refused"), fix=("port",))
    other = berth_servers("berth-other", {"server": {"listen": [f"127.0.0.1:{free_port()}"]}})
    res = check_pull(f"{other.host}/{APP}:{TAG}", "--plain-http", *owner_args(other), env=env)
    expect_cause(
        res, "IMAGE_NOT_FOUND", 19, evidence=(f"'{APP}' does not exist on {other.host}",), fix=("registry name",)
    )


# --------------------------------------------------------------------------
# 10: platform
# --------------------------------------------------------------------------


def test_no_matching_platform(diag, env, puller, oci_images, tmp_path):
    secret = pull_secret(tmp_path / "secret.json", {diag.host: puller.creds})
    image = f"{diag.host}/{MULTI}:{TAG}"
    args = ("--pull-secret", secret, "--plain-http", "--platform", "linux/s390x")
    res = check_pull(image, *args, env=env)
    expect_cause(
        res,
        "NO_MATCHING_PLATFORM",
        20,
        evidence=("linux/s390x", "linux/amd64", "linux/arm64", oci_images.layout.manifest_digest("multi")),
        fix=("nodeSelector", "kubernetes.io/os", "kubernetes.io/arch"),
    )
    text = check_pull(image, *args, env=env, json_output=False)
    expect_text_failure(text, "NO_MATCHING_PLATFORM", 20, "linux/amd64", "nodeSelector")
    record("no matching platform", text)
    # A platform the index has passes.
    res = check_pull(image, "--pull-secret", secret, "--plain-http", "--platform", "linux/amd64", env=env)
    steps = expect_pass(res, "platform", "layer")
    assert oci_images.layout.manifest_digest("amd64") in steps["platform"]


# --------------------------------------------------------------------------
# 11: data endpoint
# --------------------------------------------------------------------------


def test_data_endpoint(diag, dns, env, puller, work):
    """The login server works; the layer's redirect goes to data.registry.test, which must resolve and answer."""
    data_host = diag.config["data_endpoint"][0]["host"]
    args = ("--plain-http", *creds_args(puller.creds))
    image = f"{diag.host}/{APP}:{TAG}"
    # Off: the layer comes from the login server.
    steps = expect_pass(check_pull(image, *args, "--dns-server", dns.server, env=env), "layer")
    assert "via data endpoint" not in steps["layer"]
    wrong = Dnsmasq(work / "dnsmasq-wrong-data", "dnsmasq-wrong-data", {DATA_NAME: UNUSED_DATA_IP})
    missing = Dnsmasq(work / "dnsmasq-no-data", "dnsmasq-no-data", {})
    try:
        diag.api("PATCH", "/network", {"dataEndpointEnabled": True})
        # Resolving to the listener: the layer comes through the data endpoint.
        steps = expect_pass(check_pull(image, *args, "--dns-server", dns.server, env=env), "layer")
        assert f"via data endpoint {data_host}" in steps["layer"]
        # Resolving to an address where nothing listens: refused.
        res = check_pull(image, *args, "--dns-server", wrong.server, env=env)
        evidence = (data_host, UNUSED_DATA_IP, "refused")
        expect_cause(res, "CONNECTIVITY_DATA_ENDPOINT_ERROR", 21, evidence=evidence, fix=(data_host,))
        assert "manifest" in res.steps and "layer" not in res.steps, res.describe()
        # Not resolving at all (the private zone lacks the data endpoint's record).
        res = check_pull(image, *args, "--dns-server", missing.server, env=env)
        expect_cause(res, "CONNECTIVITY_DATA_ENDPOINT_ERROR", 21, evidence=(DATA_NAME, "DNS"), fix=("resolve",))
    finally:
        diag.api("PATCH", "/network", {"dataEndpointEnabled": False})
        wrong.stop()
        missing.stop()


# --------------------------------------------------------------------------
# 12: throttling
# --------------------------------------------------------------------------


def test_throttled_after_failed_logins(berth_servers, env):
    server = berth_servers(
        "berth-throttle", {"server": {"listen": [f"127.0.0.1:{free_port()}"]}, "auth": {"failed_login_limit": 3}}
    )
    image = f"{server.host}/{APP}:{TAG}"
    wrong = ("--plain-http", *creds_args(Creds("owner", "wrong-password")))
    for _ in range(3):
        expect_cause(check_pull(image, *wrong, env=env), "UNAUTHORIZED", 17, evidence=("wrong password",))
    res = check_pull(image, *wrong, env=env)
    expect_cause(
        res, "CONNECTIVITY_TOOMANYREQUESTS_ERROR", 22, evidence=("429", "Retry-After", "127.0.0.1"), fix=("wait",)
    )
    retry_after = re.search(r"Retry-After: (\d+)", res.verdict["evidence"])
    assert retry_after and 1 <= int(retry_after.group(1)) <= 60, res.describe()
    # Even the right password is refused from this address now.
    res = check_pull(image, *owner_args(server), "--plain-http", env=env)
    expect_cause(res, "CONNECTIVITY_TOOMANYREQUESTS_ERROR", 22, evidence=("429",))


# --------------------------------------------------------------------------
# check-health: the same failures from the environment's side
# --------------------------------------------------------------------------


def check_health(*args: str, env: dict) -> tuple[int, dict]:
    """``berth check-health ARGS --output json``: (exit status, report)."""
    from conftest import berth_binary, run

    proc = run([berth_binary(), "check-health", *args, "--output", "json"], env, check=False, timeout=60)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"check-health did not print JSON: {proc.stdout}\n{proc.stderr}") from None


def findings(report: dict) -> dict[str, dict]:
    return {f["step"]: f for f in report["findings"]}


def failed(report: dict) -> list[dict]:
    return [f for f in report["findings"] if not f["ok"]]


def test_check_health_passes_every_step(diag, port, dns, env):
    """Environment, DNS, connect, challenge, tokens, the data endpoint and an image, all passing."""
    status, report = check_health(
        "--registry", f"{REGISTRY_NAME}:{port}", "--dns-server", dns.server, "--plain-http",
        *owner_args(diag), "--repository", APP, "--image", TAG, env=env,
    )  # fmt: skip
    steps = findings(report)
    assert status == 0 and report["ok"], report
    for tool in ("docker", "podman", "skopeo", "ctr", "helm", "oras", "notation"):
        assert f"client {tool}" in steps, steps.keys()
    # What this machine has installed is reported with its version.
    assert "skopeo version" in steps["client skopeo"]["detail"], steps["client skopeo"]
    assert steps["proxy"]["detail"] == "no proxy configured"
    assert steps["dns"]["detail"] == f"{REGISTRY_NAME} → 127.0.0.1"
    assert "Bearer realm=" in steps["challenge"]["detail"]
    assert steps["refresh token"]["ok"] and steps["access token"]["ok"]
    # diag declares a data endpoint but does not use it (dataEndpointEnabled
    # is off): reported, not probed.
    assert "not enabled" in steps["data endpoints"]["detail"], steps
    assert steps["image"]["ok"], steps["image"]


def test_check_health_stops_at_the_first_error_unless_told(dns, env, puller):
    status, report = check_health(
        "--registry", "nosuch.test:5000", "--dns-server", dns.server, "--plain-http", env=env
    )  # fmt: skip
    assert status == 1 and not report["ok"]
    (failure,) = failed(report)
    assert failure["step"] == "dns" and failure["code"] == "CONNECTIVITY_DNS_ERROR", failure
    assert "no such host" in failure["detail"] and failure["fix"], failure
    assert "connect" not in findings(report), "it must stop at the first error"
    status, report = check_health(
        "--registry", "nosuch.test:5000", "--dns-server", dns.server, "--plain-http", "--ignore-errors", env=env
    )  # fmt: skip
    assert status == 1
    assert [f["code"] for f in failed(report)][:2] == ["CONNECTIVITY_DNS_ERROR", "CONNECTIVITY_DNS_ERROR"], report


def test_check_health_names_tls_network_and_credential_failures(tlsdiag, netdiag, diag, port, dns, env):
    # Unknown issuer: the test CA is not trusted.
    status, report = check_health("--registry", tlsdiag.host, env=env)
    (failure,) = failed(report)
    assert status == 1 and failure["code"] == "CONNECTIVITY_SSL_ERROR" and "unknown issuer" in failure["detail"]
    # Network rule.
    try:
        netdiag.api("PATCH", "/network", {"defaultAction": "Deny"})
        status, report = check_health("--registry", netdiag.host, "--plain-http", env=env)
        (failure,) = failed(report)
        assert failure["code"] == "CONNECTIVITY_FORBIDDEN_ERROR", failure
        assert "client with IP '127.0.0.1' is not allowed access" in failure["detail"], failure
    finally:
        netdiag.api("PATCH", "/network", {"defaultAction": "Allow"})
    # Wrong password: the token step says so, with the registry's reason.
    # (diag has a data endpoint named data.registry.test: every check-health
    # against it resolves names with the test's dnsmasq, never the system's.)
    status, report = check_health(
        "--registry", f"127.0.0.1:{port}", "--plain-http", "--dns-server", dns.server,
        "--username=owner", "--password=wrong", env=env,
    )  # fmt: skip
    (failure,) = failed(report)
    assert failure["code"] == "CONNECTIVITY_REFRESH_TOKEN_ERROR" and "wrong password" in failure["detail"], failure
    # A tag that is not there: the image step, with a suggestion.
    status, report = check_health(
        "--registry", f"127.0.0.1:{port}", "--plain-http", "--dns-server", dns.server, *owner_args(diag),
        "--repository", APP, "--image", "v2", env=env,
    )  # fmt: skip
    (failure,) = failed(report)
    assert failure["code"] == "IMAGE_NOT_FOUND" and "did you mean v1" in failure["fix"], failure


def test_check_health_private_dns(netdiag, env):
    """--expect-private-ip: every name must resolve to the private endpoint (127.0.0.2)."""
    status, report = check_health(
        "--registry", netdiag.host, "--plain-http", *owner_args(netdiag), "--expect-private-ip", env=env
    )  # fmt: skip
    assert status == 1
    (failure,) = failed(report)
    assert failure["code"] == "CONNECTIVITY_PRIVATE_DNS_ERROR", failure
    assert f"Expect {PRIVATE_IP}, Actual 127.0.0.1" in failure["detail"], failure
    # Through the private endpoint's own address the expectation holds.
    status, report = check_health(
        "--registry", netdiag.admin_host, "--plain-http", *owner_args(netdiag), "--expect-private-ip", env=env
    )  # fmt: skip
    assert status == 0, report
    assert any(f["step"].startswith("private dns") and f["ok"] for f in report["findings"]), report


# --------------------------------------------------------------------------
# Loopback registries without TLS, and self-signed certificates
# --------------------------------------------------------------------------


def test_loopback_registry_without_tls_falls_back_to_plain_http(diag, env, puller, tmp_path):
    """As Docker and containerd do for 127.0.0.0/8 and localhost: HTTPS first, then plain HTTP — and said so."""
    secret = pull_secret(tmp_path / "secret.json", {diag.host: puller.creds})
    res = check_pull(f"{diag.host}/{APP}:{TAG}", "--pull-secret", secret, env=env)
    steps = expect_pass(res, "scheme", "connect", "token", "layer")
    assert "plain HTTP is used, as Docker and containerd do" in steps["scheme"], steps
    assert steps["connect"].startswith(f"http://{diag.host} answered"), steps
    text = check_pull(f"{diag.host}/{APP}:{TAG}", "--pull-secret", secret, env=env, json_output=False)
    assert text.returncode == 0 and "plain HTTP" in text.stdout, text.describe()
    record("loopback registry without TLS", text)

    # check-health takes --registry as every command does: host:port falls
    # back the same way, a URL's scheme is obeyed.
    status, report = check_health("--registry", diag.host, *owner_args(diag), env=env)
    assert status == 0 and "plain HTTP" in findings(report)["scheme"]["detail"], report
    status, report = check_health("--registry", f"http://{diag.host}", *owner_args(diag), env=env)
    assert status == 0 and "scheme" not in findings(report), report
    status, report = check_health("--registry", f"https://{diag.host}", *owner_args(diag), env=env)
    assert status == 1 and failed(report)[0]["code"] == "CONNECTIVITY_SSL_ERROR", report


@pytest.fixture(scope="module")
def self_signed(work, client_env, client_home, oci_images) -> tuple[Berth, Path]:
    """HTTPS with a certificate made by a plain ``openssl req -x509`` (a CA:TRUE self-signed certificate)."""
    import subprocess

    d = work / "self-signed"
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    text = subprocess.run(
        ["openssl", "x509", "-in", cert, "-noout", "-text"], check=True, capture_output=True, text=True
    ).stdout
    # The premise: what openssl made is marked as a CA (what webpki alone refuses as an end entity).
    assert "CA:TRUE" in text, text
    listen = f"127.0.0.1:{free_port()}"
    server = start_berth(
        d / "server", "berth-self-signed",
        {"server": {"listen": [listen], "tls_cert": cert, "tls_key": key}}, client_env, ca_file=cert,
    )  # fmt: skip
    seed(Skopeo(client_env, client_home["policy"], server.owner), server.host, oci_images.layout)
    yield server, cert
    server.stop()


def test_self_signed_openssl_certificate_with_ca_file(self_signed, client_env, client_home, env, tmp_path):
    import subprocess

    from conftest import berth_binary, run

    server, cert = self_signed
    image = f"{server.host}/{APP}:{TAG}"
    # skopeo accepts it when told to trust it ...
    certs = tmp_path / "certs.d"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(cert.read_bytes())
    out = subprocess.run(
        ["skopeo", "inspect", "--cert-dir", certs, "--creds", f"{server.owner.user}:{server.owner.password}",
         f"docker://{image}"],
        env=client_env, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    # ... and so do check-pull and the management commands.
    expect_pass(check_pull(image, "--ca-file", cert, *owner_args(server), env=env), "connect", "layer")
    cli_env = dict(env, BERTH_USERNAME=server.owner.user, BERTH_PASSWORD=server.owner.password)
    listing = run(
        [berth_binary(), "repository", "list", "--registry", f"https://{server.host}", "--ca-file", cert, "-o", "json"],
        cli_env,
    )
    assert APP in listing.stdout, listing.stdout
    # SSL_CERT_FILE works like --ca-file.
    listing = run(
        [berth_binary(), "repository", "list", "--registry", server.host, "-o", "json"],
        dict(cli_env, SSL_CERT_FILE=str(cert)),
    )
    assert APP in listing.stdout, listing.stdout
    # Without it: refused, naming the certificate problem.
    res = check_pull(image, *owner_args(server), env=env)
    expect_cause(res, "CONNECTIVITY_SSL_ERROR", 14, evidence=("certificate",))
    bare = run(
        [berth_binary(), "repository", "list", "--registry", f"https://{server.host}", "-o", "json"],
        cli_env, check=False,
    )  # fmt: skip
    assert bare.returncode == 1 and "CONNECTION_FAILED" in bare.stdout, bare.stdout + bare.stderr
