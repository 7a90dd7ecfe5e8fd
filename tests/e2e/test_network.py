"""Network access, endpoints, data endpoints and audit — berth only.

Every scenario runs against berth servers of its own, started by the
``berth_servers`` factory with a config file: the module's main server
(``netsrv``) has

* public listeners on 127.0.0.1, 127.0.0.3 and 127.0.0.4 (``[server] listen``),
* a private endpoint ``pe1`` on 127.0.0.2,
* ``[[subnet]] build = 127.0.1.0/24``, ``trusted_proxies = ["127.0.0.10"]``,
* a data endpoint whose host is the 127.0.0.4 listener,
* a JSON-lines event sink;

the IPv6 and the expired-URL scenarios start dedicated servers.  The network
rules are runtime state: the ``net`` fixture resets them (through the private
endpoint, which the rules never block) before and after every test.

Client addresses: in-process HTTP binds its connections to a chosen
127.0.x.y source (``SourceAddressAdapter``); real clients cannot choose, so
they go through a ``SourceProxy`` relay that connects from the chosen address.
No traffic ever leaves 127.0.0.0/8 and ::1 — 203.0.113.7 and 198.51.100.9
appear only as ``X-Forwarded-For`` header strings.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import io
import json
import os
import re
import sys
import tarfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from conftest import (
    OCI_MANIFEST,
    BerthServer,
    Creds,
    OciLayout,
    Skopeo,
    SourceProxy,
    free_port,
    host_port,
    requires_auth,
    sha256_digest,
)

pytestmark = requires_auth

PUBLIC_IP = "127.0.0.1"
PUBLIC2_IP = "127.0.0.3"
PRIVATE_IP = "127.0.0.2"
DATA_IP = "127.0.0.4"
ALLOWED_IP = "127.0.0.5"  # gets an IP rule
OTHER_IP = "127.0.0.6"  # never has a rule
SUBNET_IP = "127.0.1.5"  # inside [[subnet]] build
OUTSIDE_SUBNET_IP = "127.0.2.5"
PROXY_IP = "127.0.0.10"  # [server] trusted_proxies
UNTRUSTED_PROXY_IP = "127.0.0.11"
FORWARDED_IP = "203.0.113.7"  # TEST-NET-3: only ever a header value
FORWARDED_OTHER_IP = "198.51.100.9"  # TEST-NET-2: only ever a header value

EVENT_TIMEOUT = 10  # events are written asynchronously, in batches
HTTP_TIMEOUT = 30

DEFAULT_NETWORK = {
    "publicNetworkAccess": "Enabled",
    "defaultAction": "Allow",
    "networkRuleBypassOptions": "None",
    "dataEndpointEnabled": False,
}
LOGIN_EVENT_FIELDS = {
    "TimeGenerated",
    "LoginServer",
    "Identity",
    "CallerIpAddress",
    "UserAgent",
    "OperationName",
    "ResultType",
    "ResultDescription",
    "DurationMs",
    "CorrelationId",
    "JwtId",
}
# The management API's names for the same fields: camelCase.
API_LOGIN_EVENT_FIELDS = {f[0].lower() + f[1:] for f in LOGIN_EVENT_FIELDS}
REPOSITORY_EVENT_FIELDS = {
    "TimeGenerated",
    "LoginServer",
    "OperationName",
    "Repository",
    "Tag",
    "Digest",
    "MediaType",
    "ArtifactType",
    "Size",
    "Identity",
    "CallerIpAddress",
    "UserAgent",
    "ResultType",
    "ResultDescription",
    "DurationMs",
    "CorrelationId",
}
API_REPOSITORY_EVENT_FIELDS = {f[0].lower() + f[1:] for f in REPOSITORY_EVENT_FIELDS}


def no_rule_matches(ip_rules: int, subnet_rules: int) -> str:
    return f"no network rule matches (default action Deny, {ip_rules} IP rule(s), {subnet_rules} subnet rule(s))"


PUBLIC_DISABLED = "public network access is disabled; use a private endpoint"
PUBLIC_DISABLED_SUBNETS = (
    "public network access is disabled, which also disables subnet (service endpoint) access; use a private endpoint"
)


def denial_message(ip: str, reason: str) -> str:
    return f"client with IP '{ip}' is not allowed access: {reason}"


# --------------------------------------------------------------------------
# Servers and helpers
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def netsrv(berth_servers, tmp_path_factory) -> BerthServer:
    """The module's berth: three public listeners, a private endpoint, a subnet, a data endpoint."""
    public = [f"{PUBLIC_IP}:{free_port(PUBLIC_IP)}", f"{PUBLIC2_IP}:{free_port(PUBLIC2_IP)}"]
    data = f"{DATA_IP}:{free_port(DATA_IP)}"
    return berth_servers(
        "berth-net",
        {
            "server": {"listen": [*public, data], "trusted_proxies": [PROXY_IP]},
            "private_endpoint": [{"name": "pe1", "listen": f"{PRIVATE_IP}:{free_port(PRIVATE_IP)}"}],
            "subnet": [{"name": "build", "cidrs": ["127.0.1.0/24"]}],
            "data_endpoint": [{"region": "local", "host": data}],
            "audit": {"jsonl_path": str(tmp_path_factory.mktemp("net-events") / "events.jsonl")},
        },
    )


def data_host(server: BerthServer) -> str:
    return server.config["data_endpoint"][0]["host"]


def jsonl_path(server: BerthServer) -> Path:
    return Path(server.config["audit"]["jsonl_path"])


def reset_network(server: BerthServer):
    """Back to the defaults: no rules, public access, default Allow, no bypass, no data endpoint."""
    current = server.api("GET", "/network")
    for rule in current["networkRuleSet"]["ipRules"]:
        server.api("DELETE", "/network/rules", params={"ipAddress": rule})
    for subnet in current["networkRuleSet"]["subnetRules"]:
        server.api("DELETE", "/network/rules", params={"subnet": subnet})
    server.api("PATCH", "/network", DEFAULT_NETWORK)
    after = server.api("GET", "/network")
    assert after["networkRuleSet"] == {"defaultAction": "Allow", "ipRules": [], "subnetRules": []}, after
    assert (after["publicNetworkAccess"], after["networkRuleBypassOptions"], after["dataEndpointEnabled"]) == (
        "Enabled",
        "None",
        False,
    ), after


@pytest.fixture
def net(netsrv) -> BerthServer:
    """``netsrv`` with default network settings, reset again after the test."""
    reset_network(netsrv)
    yield netsrv
    reset_network(netsrv)


@pytest.fixture(scope="module")
def net_skopeo(client_env, client_home, netsrv) -> Skopeo:
    return Skopeo(client_env, client_home["policy"], netsrv.owner)


@dataclass
class NetImages:
    layout: OciLayout
    app: str = "net/app"  # :v1, layout ref "v1", pushed through the private endpoint
    tag: str = "v1"


@pytest.fixture(scope="module")
def net_images(netsrv, net_skopeo, oci_images) -> NetImages:
    imgs = NetImages(oci_images.layout)
    net_skopeo.copy(imgs.layout.transport("v1"), f"docker://{netsrv.admin_host}/{imgs.app}:{imgs.tag}")
    return imgs


def now_ms() -> int:
    return int(time.time() * 1000)


def correlation_id(r: requests.Response) -> str:
    cid = r.headers.get("X-Correlation-Id")
    assert cid, f"no X-Correlation-Id on {r.request.method} {r.url} -> {r.status_code}"
    uuid.UUID(cid)
    return cid


def assert_denied(r: requests.Response, ip: str, reason: str) -> str:
    """A network denial: 403, JSON ``{"errors":[{"code":"DENIED","message":...}]}``; returns the correlation id."""
    expected = denial_message(ip, reason)
    assert r.status_code == 403, (
        f"{r.request.method} {r.url} -> {r.status_code} {r.text[:500]} (expected 403 {expected})"
    )
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    errors = r.json()["errors"]
    assert [(e["code"], e["message"]) for e in errors] == [("DENIED", expected)], r.text
    return correlation_id(r)


def assert_ok(r: requests.Response, status: int = 200) -> requests.Response:
    assert r.status_code == status, f"{r.request.method} {r.url} -> {r.status_code} {r.text[:500]}"
    correlation_id(r)
    return r


def rfc3339_ms(ms: int) -> str:
    """Unix milliseconds as the management API's RFC 3339 time."""
    at = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def ms_of(text: str) -> int:
    """An RFC 3339 time from the management API as unix milliseconds."""
    return round(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def login_events(server: BerthServer, since_ms: int, failed: bool = False) -> list[dict]:
    params = {"since": rfc3339_ms(since_ms), "limit": 10000}
    if failed:
        params["failed"] = "true"
    return server.api("GET", "/logs/login", params=params)


def wait_login_event(server: BerthServer, cid: str, since_ms: int, failed: bool = False) -> dict:
    """The login event with correlation id ``cid`` (polled: events are stored in batches)."""
    deadline = time.monotonic() + EVENT_TIMEOUT
    while True:
        found = [e for e in login_events(server, since_ms - 1000, failed) if e.get("correlationId") == cid]
        if found:
            assert len(found) == 1, found
            assert API_LOGIN_EVENT_FIELDS <= set(found[0]), found[0]
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no login event{' (failed=true)' if failed else ''} with correlation id {cid} after {EVENT_TIMEOUT}s"
            )
        time.sleep(0.2)


def assert_denial_logged(server: BerthServer, r: requests.Response, ip: str, reason: str, since_ms: int) -> dict:
    """``assert_denied`` + the denial is a failed login event with the same correlation id."""
    cid = assert_denied(r, ip, reason)
    event = wait_login_event(server, cid, since_ms, failed=True)
    assert event["resultType"] == 403, event
    assert event["callerIpAddress"] == ip, event
    assert event["resultDescription"] == denial_message(ip, reason), event
    assert event["loginServer"] == urllib.parse.urlsplit(r.url).netloc, event
    assert ms_of(event["timeGenerated"]) >= since_ms - 1000, event
    return event


def assert_login_logged(server: BerthServer, r: requests.Response, ip: str, since_ms: int, identity: str = "'owner'"):
    """A request with Basic credentials that got through: a login event with status 200 from ``ip``."""
    event = wait_login_event(server, correlation_id(r), since_ms)
    assert event["resultType"] == 200, event
    assert event["callerIpAddress"] == ip, event
    assert identity in event["identity"], event
    return event


def manifest_url(host: str, repo: str, ref: str) -> str:
    return f"http://{host}/v2/{repo}/manifests/{ref}"


def get_manifest(session: requests.Session, host: str, repo: str, ref: str, **kw) -> requests.Response:
    return session.get(manifest_url(host, repo, ref), headers={"Accept": OCI_MANIFEST}, timeout=HTTP_TIMEOUT, **kw)


def assert_manifest(r: requests.Response, expected: bytes):
    assert_ok(r)
    assert sha256_digest(r.content) == sha256_digest(expected), "manifest bytes differ"


@contextlib.contextmanager
def relay(host: str, source_ip: str):
    """A SourceProxy to ``host`` whose connections come from ``source_ip``; yields the relay's host."""
    addr, port = host.rsplit(":", 1)
    proxy = SourceProxy((addr.strip("[]"), int(port)), source_ip)
    try:
        yield proxy.host
    finally:
        proxy.close()


def output(res) -> str:
    return f"{res.stdout}\n{res.stderr}"


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(server: BerthServer, host: str | None = None, source_ip: str | None = None) -> list[tuple[str, dict, float]]:
    """``/metrics`` (no credentials) as (name, labels, value) samples."""
    r = server.session(source_ip, creds=None).get(f"http://{host or server.host}/metrics", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, f"/metrics -> {r.status_code} {r.text[:300]}"
    samples = []
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        samples.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return samples


def metric(samples, name: str, **labels) -> float:
    return sum(v for n, lab, v in samples if n == name and all(lab.get(k) == val for k, val in labels.items()))


# --------------------------------------------------------------------------
# Unique images pushed over HTTP (so every client really downloads every blob)
# --------------------------------------------------------------------------


@dataclass
class Image:
    repo: str
    tag: str
    manifest: bytes
    config: bytes
    layer: bytes
    payload: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)

    @property
    def layer_digest(self) -> str:
        return sha256_digest(self.layer)

    @property
    def blobs(self) -> dict[str, bytes]:
        return {self.config_digest: self.config, self.layer_digest: self.layer}


def make_image(repo: str, tag: str = "v1", size: int = 256 * 1024) -> Image:
    """An amd64 OCI image with one gzip layer holding ``/net/payload.bin`` of random bytes."""
    payload = os.urandom(size)
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("net")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        f = tarfile.TarInfo("net/payload.bin")
        f.size, f.mode = len(payload), 0o644
        tar.addfile(f, io.BytesIO(payload))
    tar_bytes = tar_buf.getvalue()
    layer = gzip.compress(tar_bytes, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/net/payload.bin"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar_bytes)]},
            "history": [{"created_by": "berth e2e test_network"}],
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256_digest(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    return Image(repo, tag, manifest, config, layer, payload)


def push_image(server: BerthServer, image: Image, host: str | None = None) -> Image:
    """Monolithic blob uploads + manifest PUT as the owner (through the private endpoint by default)."""
    host = host or server.admin_host
    s = server.session()
    for digest, data in image.blobs.items():
        r = s.post(f"http://{host}/v2/{image.repo}/blobs/uploads/", timeout=HTTP_TIMEOUT)
        assert r.status_code == 202, f"POST upload -> {r.status_code} {r.text}"
        location = urllib.parse.urljoin(f"http://{host}/", r.headers["Location"])
        sep = "&" if "?" in location else "?"
        r = s.put(
            f"{location}{sep}digest={digest}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            timeout=HTTP_TIMEOUT,
        )
        assert r.status_code == 201, f"PUT blob {digest} -> {r.status_code} {r.text}"
    r = s.put(
        manifest_url(host, image.repo, image.tag),
        data=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
        timeout=HTTP_TIMEOUT,
    )
    assert r.status_code == 201, f"PUT manifest -> {r.status_code} {r.text}"
    return image


# --------------------------------------------------------------------------
# 1. Allow-all default
# --------------------------------------------------------------------------


def test_allow_all_by_default_from_any_source_address(net, net_images):
    settings = net.api("GET", "/network")
    assert settings["publicNetworkAccess"] == "Enabled", settings
    assert settings["networkRuleSet"] == {"defaultAction": "Allow", "ipRules": [], "subnetRules": []}, settings
    assert settings["networkRuleBypassOptions"] == "None" and settings["dataEndpointEnabled"] is False, settings
    assert settings["declaredSubnets"] == [{"name": "build", "cidrs": ["127.0.1.0/24"]}], settings

    expected = net_images.layout.manifest_bytes("v1")
    since = now_ms()
    for source in (PRIVATE_IP, ALLOWED_IP, OTHER_IP):
        s = net.session(source)
        for host in net.public[:2]:
            r = assert_ok(s.get(f"http://{host}/v2/", timeout=HTTP_TIMEOUT))
            assert_login_logged(net, r, source, since)
            assert_manifest(get_manifest(s, host, net_images.app, "v1"), expected)

    # show-endpoints (CLI and API): every listener with its role, and the data endpoint.
    shown = json.loads(net.cli("show-endpoints", "-o", "json").stdout)
    assert shown["loginServer"] == net.public[0], shown
    assert sorted((e["endpoint"], e["address"]) for e in shown["endpoints"]) == sorted(
        [("public", h) for h in net.public] + [("private:pe1", net.private["pe1"])]
    ), shown
    assert shown["dataEndpoints"] == [{"region": "local", "host": data_host(net)}], shown
    assert net.api("GET", "/endpoints") == shown


# --------------------------------------------------------------------------
# 2. Default Deny + IP rule
# --------------------------------------------------------------------------


def test_default_deny_with_an_ip_rule(net, net_images, net_skopeo):
    since = now_ms()
    # The CLI, against the private endpoint.
    out = json.loads(net.cli("update", "--default-action", "Deny", "-o", "json").stdout)
    assert out["networkRuleSet"] == {"defaultAction": "Deny", "ipRules": [], "subnetRules": []}, out
    out = json.loads(net.cli("network-rule", "add", "--ip-address", f"{ALLOWED_IP}/32", "-o", "json").stdout)
    assert out["networkRuleSet"]["ipRules"] == [f"{ALLOWED_IP}/32"], out
    listed = json.loads(net.cli("network-rule", "list", "-o", "json").stdout)
    assert listed["networkRuleSet"] == {"defaultAction": "Deny", "ipRules": [f"{ALLOWED_IP}/32"], "subnetRules": []}

    expected = net_images.layout.manifest_bytes("v1")
    allowed = net.session(ALLOWED_IP)
    for host in net.public[:2]:
        r = assert_ok(allowed.get(f"http://{host}/v2/", timeout=HTTP_TIMEOUT))
        assert_login_logged(net, r, ALLOWED_IP, since)
        assert_manifest(get_manifest(allowed, host, net_images.app, "v1"), expected)

    reason = no_rule_matches(1, 0)
    denied = net.session(OTHER_IP)
    r = denied.get(f"http://{net.host}/v2/", timeout=HTTP_TIMEOUT)
    event = assert_denial_logged(net, r, OTHER_IP, reason, since)
    # The same answer for a manifest, the token service and the management API
    # (with the owner's valid credentials: the network rules come first), and unauthenticated.
    assert_denied(get_manifest(denied, net.public[1], net_images.app, "v1"), OTHER_IP, reason)
    assert_denied(
        denied.get(
            f"http://{net.host}/oauth2/token",
            params={"service": net.host, "scope": f"repository:{net_images.app}:pull"},
            timeout=HTTP_TIMEOUT,
        ),
        OTHER_IP,
        reason,
    )
    assert_denied(denied.get(f"http://{net.host}/api/v1/network", timeout=HTTP_TIMEOUT), OTHER_IP, reason)
    anonymous = net.session(OTHER_IP, creds=None)
    assert_denied(anonymous.get(f"http://{net.host}/v2/", timeout=HTTP_TIMEOUT), OTHER_IP, reason)
    # Health checks and metrics are exempt.
    for path in ("/healthz", "/readyz", "/metrics"):
        r = denied.get(f"http://{net.host}{path}", timeout=HTTP_TIMEOUT)
        assert r.status_code == 200, f"{path} from a denied address -> {r.status_code} {r.text[:300]}"

    # `berth logs login --failed -o json` lists the denial with the same correlation id.
    logged = json.loads(net.cli("logs", "login", "--failed", "--since", "1h", "-o", "json", "--limit", "1000").stdout)
    (cli_event,) = [e for e in logged if e["correlationId"] == event["correlationId"]]
    assert cli_event["resultType"] == 403 and cli_event["callerIpAddress"] == OTHER_IP, cli_event
    assert cli_event["resultDescription"] == denial_message(OTHER_IP, reason), cli_event

    # Real client: skopeo from the allowed address reads the manifest; from another one it is refused.
    ref = f"{net_images.app}:v1"
    with relay(net.host, ALLOWED_IP) as via:
        assert net_skopeo.inspect_raw(f"docker://{via}/{ref}") == expected
    with relay(net.host, OTHER_IP) as via:
        res = net_skopeo.fail("inspect", "--raw", "--tls-verify=false", f"docker://{via}/{ref}")
        assert "403" in output(res), output(res)

    # Removing the rule (CLI) denies 127.0.0.5 as well.
    net.cli("network-rule", "remove", "--ip-address", f"{ALLOWED_IP}/32")
    assert_denied(allowed.get(f"http://{net.host}/v2/", timeout=HTTP_TIMEOUT), ALLOWED_IP, no_rule_matches(0, 0))


# --------------------------------------------------------------------------
# 3. IPv6
# --------------------------------------------------------------------------


def test_ipv6_client_and_rules(berth_servers):
    port = free_port("::1")
    srv = berth_servers(
        "berth-ipv6",
        {
            "server": {"listen": [host_port("::1", port)]},
            "private_endpoint": [{"name": "pe6", "listen": f"{PRIVATE_IP}:{free_port(PRIVATE_IP)}"}],
        },
    )
    host6 = host_port("::1", port)
    image = push_image(srv, make_image("net/v6", size=4096))
    s = srv.session("::1")
    since = now_ms()
    assert_manifest(get_manifest(s, host6, image.repo, "v1"), image.manifest)

    srv.api("PATCH", "/network", {"defaultAction": "Deny"})
    settings = srv.api("POST", "/network/rules", {"ipAddress": "::1/128"})
    assert settings["networkRuleSet"]["ipRules"] == ["::1/128"], settings
    r = assert_ok(s.get(f"http://{host6}/v2/", timeout=HTTP_TIMEOUT))
    assert_login_logged(srv, r, "::1", since)
    assert_manifest(get_manifest(s, host6, image.repo, "v1"), image.manifest)

    # An IPv4 loopback rule and another IPv6 range do not cover ::1.
    srv.api("DELETE", "/network/rules", params={"ipAddress": "::1/128"})
    srv.api("POST", "/network/rules", {"ipAddress": "127.0.0.0/8"})
    srv.api("POST", "/network/rules", {"ipAddress": "2001:db8::/32"})
    assert_denial_logged(srv, s.get(f"http://{host6}/v2/", timeout=HTTP_TIMEOUT), "::1", no_rule_matches(2, 0), since)
    assert_denied(get_manifest(s, host6, image.repo, "v1"), "::1", no_rule_matches(2, 0))
    # A bare address is a host route.
    settings = srv.api("POST", "/network/rules", {"ipAddress": "::1"})
    assert "::1/128" in settings["networkRuleSet"]["ipRules"], settings
    assert_manifest(get_manifest(s, host6, image.repo, "v1"), image.manifest)
    srv.stop()


# --------------------------------------------------------------------------
# 4. Public access disabled; the private endpoint keeps working
# --------------------------------------------------------------------------


def test_public_access_disabled_private_endpoint_keeps_serving(net, net_images, net_skopeo, tmp_path):
    since = now_ms()
    out = json.loads(net.cli("update", "--public-network-enabled", "false", "-o", "json").stdout)
    assert out["publicNetworkAccess"] == "Disabled", out
    # Even an IP rule for the address and default Allow do not open the public endpoint.
    net.api("POST", "/network/rules", {"ipAddress": "127.0.0.0/8"})

    for source in (PUBLIC_IP, ALLOWED_IP):
        s = net.session(source)
        for host in net.public:
            assert_denied(s.get(f"http://{host}/v2/", timeout=HTTP_TIMEOUT), source, PUBLIC_DISABLED)
    r = net.session(ALLOWED_IP).get(f"http://{net.host}/v2/", timeout=HTTP_TIMEOUT)
    assert_denial_logged(net, r, ALLOWED_IP, PUBLIC_DISABLED, since)

    # skopeo through the public endpoint is refused ...
    lay = net_images.layout
    res = net_skopeo.fail("copy", "--dest-tls-verify=false", lay.transport("v1"), f"docker://{net.host}/net/private:v1")
    assert "403" in output(res), output(res)
    # ... through the private endpoint it pushes and pulls, byte for byte.
    pe = net.private["pe1"]
    net_skopeo.copy(lay.transport("big"), f"docker://{pe}/net/private:v1")
    assert net_skopeo.inspect_raw(f"docker://{pe}/net/private:v1") == lay.manifest_bytes("big")
    back = OciLayout(tmp_path / "back")
    net_skopeo.copy(f"docker://{pe}/net/private:v1", f"oci:{back.path}:v1")
    assert back.manifest_bytes("v1") == lay.manifest_bytes("big")
    for digest in [lay.config_digest("big"), *lay.layer_digests("big")]:
        assert back.blob(digest) == lay.blob(digest)
    # The private endpoint reports no denial for the same address.
    assert_ok(net.session(PUBLIC_IP).get(f"http://{pe}/v2/", timeout=HTTP_TIMEOUT))
    # Re-enabled: the public endpoint serves again.
    net.cli("update", "--public-network-enabled", "true")
    assert_manifest(get_manifest(net.session(), net.host, "net/private", "v1"), lay.manifest_bytes("big"))


# --------------------------------------------------------------------------
# 5. Subnet rules, and public access disabled turning them off
# --------------------------------------------------------------------------


def test_subnet_rule_and_public_disabled(net, net_images, net_skopeo):
    since = now_ms()
    net.api("PATCH", "/network", {"defaultAction": "Deny"})
    settings = net.api("POST", "/network/rules", {"subnet": "build"})
    assert settings["networkRuleSet"] == {"defaultAction": "Deny", "ipRules": [], "subnetRules": ["build"]}, settings

    expected = net_images.layout.manifest_bytes("v1")
    inside = net.session(SUBNET_IP)
    r = assert_ok(inside.get(f"http://{net.host}/v2/", timeout=HTTP_TIMEOUT))
    assert_login_logged(net, r, SUBNET_IP, since)
    assert_manifest(get_manifest(inside, net.host, net_images.app, "v1"), expected)
    with relay(net.host, SUBNET_IP) as via:
        assert net_skopeo.inspect_raw(f"docker://{via}/{net_images.app}:v1") == expected
    outside = net.session(OUTSIDE_SUBNET_IP)
    r = outside.get(f"http://{net.host}/v2/", timeout=HTTP_TIMEOUT)
    assert_denial_logged(net, r, OUTSIDE_SUBNET_IP, no_rule_matches(0, 1), since)

    net.api("PATCH", "/network", {"publicNetworkAccess": "Disabled"})
    r = inside.get(f"http://{net.host}/v2/", timeout=HTTP_TIMEOUT)
    assert_denial_logged(net, r, SUBNET_IP, PUBLIC_DISABLED_SUBNETS, since)
    assert_denied(get_manifest(inside, net.host, net_images.app, "v1"), SUBNET_IP, PUBLIC_DISABLED_SUBNETS)
    with relay(net.host, SUBNET_IP) as via:
        res = net_skopeo.fail("inspect", "--raw", "--tls-verify=false", f"docker://{via}/{net_images.app}:v1")
        assert "403" in output(res), output(res)
    # The private endpoint still serves, to a client from the subnet too.
    pe = net.private["pe1"]
    assert_manifest(get_manifest(inside, pe, net_images.app, "v1"), expected)
    assert net_skopeo.inspect_raw(f"docker://{pe}/{net_images.app}:v1") == expected


# --------------------------------------------------------------------------
# 6. Trusted services
# --------------------------------------------------------------------------


@dataclass
class SP:
    id: str
    name: str
    creds: Creds


def create_sp(server: BerthServer, name: str, role: str = "AcrPull") -> SP:
    out = server.api("POST", "/service-principals", {"name": name, "years": 1, "role": role, "scope": ""})
    (secret,) = [s["value"] for s in out["secrets"] if s["name"] == "secret"]
    return SP(out["identity"]["id"], name, Creds(out["identity"]["login"], secret))


@pytest.fixture(scope="module")
def trusted_sps(netsrv) -> tuple[SP, SP]:
    """(an AcrPull SP marked as trusted service, an ordinary AcrPull SP)."""
    trusted = create_sp(netsrv, f"net-trusted-{uuid.uuid4().hex[:6]}")
    other = create_sp(netsrv, f"net-untrusted-{uuid.uuid4().hex[:6]}")
    ident = netsrv.api("PATCH", f"/identities/{trusted.id}", {"trustedService": True})
    assert ident["trustedService"] is True, ident
    listed = {i["id"]: i for i in netsrv.api("GET", "/identities")}
    assert listed[trusted.id]["trustedService"] is True and listed[other.id]["trustedService"] is False
    return trusted, other


def bearer_token(server: BerthServer, session: requests.Session, creds: Creds, repo: str) -> requests.Response:
    return session.get(
        f"http://{server.host}/oauth2/token",
        params={"service": server.host, "scope": f"repository:{repo}:pull"},
        auth=tuple(creds),
        timeout=HTTP_TIMEOUT,
    )


def test_trusted_service_bypasses_rules_over_http(net, net_images, trusted_sps):
    trusted, other = trusted_sps
    since = now_ms()
    expected = net_images.layout.manifest_bytes("v1")
    net.api("PATCH", "/network", {"defaultAction": "Deny", "networkRuleBypassOptions": "TrustedServices"})
    source = "127.0.0.7"  # no rule

    for state, reason in (
        ("default Deny", no_rule_matches(0, 0)),
        ("public access disabled", PUBLIC_DISABLED),
    ):
        if state == "public access disabled":
            net.api("PATCH", "/network", {"publicNetworkAccess": "Disabled"})
        # The trusted SP with Basic credentials, and with a bearer token it gets from the token service.
        s = net.session(source, trusted.creds)
        r = get_manifest(s, net.host, net_images.app, "v1")
        assert_manifest(r, expected)
        tok = bearer_token(net, net.session(source, creds=None), trusted.creds, net_images.app)
        assert tok.status_code == 200, f"{state}: token for the trusted SP -> {tok.status_code} {tok.text}"
        bearer = net.session(source, creds=None)
        bearer.headers["Authorization"] = f"Bearer {tok.json()['token']}"
        assert_manifest(get_manifest(bearer, net.host, net_images.app, "v1"), expected)

        # Another SP from the same address is refused, at the registry and at the token service.
        r = get_manifest(net.session(source, other.creds), net.host, net_images.app, "v1")
        event = assert_denial_logged(net, r, source, reason, since)
        assert other.id in event["identity"], f"the denial should name the SP that was identified: {event}"
        assert_denied(bearer_token(net, net.session(source, creds=None), other.creds, net_images.app), source, reason)
        # An anonymous request cannot use the bypass yet: it gets the challenge
        # (naming the denial) so that a trusted service can authenticate.
        anonymous = net.session(source, creds=None)
        r = anonymous.get(f"http://{net.host}/v2/", timeout=HTTP_TIMEOUT)
        assert r.status_code == 401, f"{r.status_code} {r.text}"
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer realm="), r.headers
        assert denial_message(source, reason) in r.json()["errors"][0]["message"], r.text

    # Without the bypass option the trusted SP is refused as well.
    net.api("PATCH", "/network", {"networkRuleBypassOptions": "None"})
    r = get_manifest(net.session(source, trusted.creds), net.host, net_images.app, "v1")
    assert_denied(r, source, PUBLIC_DISABLED)


def test_trusted_service_bypass_with_real_clients(net, net_images, net_skopeo, containerd, trusted_sps):
    """Real clients first ask anonymously (GET /v2/, HEAD manifest) and authenticate only
    when challenged with 401.  A trusted service can therefore only use the bypass if a
    request without credentials that the bypass could let through is answered with the
    challenge (not with the final 403)."""
    trusted, other = trusted_sps
    expected = net_images.layout.manifest_bytes("v1")
    net.api("PATCH", "/network", {"defaultAction": "Deny", "networkRuleBypassOptions": "TrustedServices"})
    ref = f"{net_images.app}:v1"
    with relay(net.host, "127.0.0.8") as via:
        # The untrusted SP is refused.
        res = net_skopeo.as_user(other.creds).fail("inspect", "--raw", "--tls-verify=false", f"docker://{via}/{ref}")
        assert "403" in output(res) or "not allowed access" in output(res), output(res)
        # The trusted one pulls with skopeo and ctr.
        res = net_skopeo.as_user(trusted.creds)("inspect", "--raw", "--tls-verify=false", f"docker://{via}/{ref}",
                                                 check=False, text=False)
        if res.returncode != 0:
            anon = net.session(creds=None).get(f"http://{via}/v2/", timeout=HTTP_TIMEOUT)
            pytest.fail(
                "skopeo as a trusted service from an address no rule allows failed:\n"
                f"{res.stderr.decode(errors='replace')}\n"
                "Its first request carries no credentials (clients authenticate only when challenged); "
                f"GET /v2/ without credentials -> {anon.status_code} {anon.text}\n"
                "With the trusted-service bypass on, such a request must be challenged "
                "(401 + WWW-Authenticate) rather than refused, or no real client can use the bypass.",
                pytrace=False,
            )
        assert res.stdout == expected
        ns = "net-trusted"
        ctr = containerd.as_user(trusted.creds)
        ctr.ctr("images", "pull", "--plain-http", f"{via}/{ref}", namespace=ns)
        digest = net_images.layout.manifest_digest("v1")
        assert ctr.ctr("content", "get", digest, namespace=ns, text=False).stdout == expected


# --------------------------------------------------------------------------
# 7. X-Forwarded-For from trusted proxies only
# --------------------------------------------------------------------------


def test_forwarded_for_is_believed_only_from_trusted_proxies(net, net_images):
    since = now_ms()
    expected = net_images.layout.manifest_bytes("v1")
    net.api("PATCH", "/network", {"defaultAction": "Deny"})
    net.api("POST", "/network/rules", {"ipAddress": f"{FORWARDED_IP}/32"})
    reason = no_rule_matches(1, 0)

    def get(source: str, xff: str | None):
        headers = {"Accept": OCI_MANIFEST} | ({"X-Forwarded-For": xff} if xff is not None else {})
        return net.session(source).get(
            manifest_url(net.host, net_images.app, "v1"), headers=headers, timeout=HTTP_TIMEOUT
        )

    # From the trusted proxy, the forwarded address is the client.
    r = get(PROXY_IP, FORWARDED_IP)
    assert_manifest(r, expected)
    assert_login_logged(net, r, FORWARDED_IP, since)
    # The right-most address that is not a trusted proxy counts ...
    assert_manifest(get(PROXY_IP, f"{FORWARDED_IP}, {PROXY_IP}"), expected)
    # ... so an allowed address further left (set by the client itself) does not help.
    r = get(PROXY_IP, f"{FORWARDED_IP}, {FORWARDED_OTHER_IP}")
    assert_denial_logged(net, r, FORWARDED_OTHER_IP, reason, since)
    # The proxy itself, without the header, is just another address.
    assert_denied(get(PROXY_IP, None), PROXY_IP, reason)
    # From an untrusted source the header is ignored.
    r = get(UNTRUSTED_PROXY_IP, FORWARDED_IP)
    assert_denial_logged(net, r, UNTRUSTED_PROXY_IP, reason, since)
    assert_denied(get(OTHER_IP, FORWARDED_IP), OTHER_IP, reason)


# --------------------------------------------------------------------------
# 8. Data endpoints
# --------------------------------------------------------------------------


def blob_redirect(server: BerthServer, host: str, repo: str, digest: str, session=None) -> str:
    """GET the blob on the login server: asserts 307 to the data host; returns the Location."""
    s = session or server.session()
    r = s.get(f"http://{host}/v2/{repo}/blobs/{digest}", allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert r.status_code == 307, f"GET blob with data endpoints on -> {r.status_code} {r.text[:300]}"
    correlation_id(r)
    location = r.headers["Location"]
    u = urllib.parse.urlsplit(location)
    assert (u.scheme, u.netloc, u.path) == ("http", data_host(server), f"/data/{repo}/blobs/{digest}"), location
    q = urllib.parse.parse_qs(u.query)
    assert set(q) == {"id", "exp", "sig"}, location
    assert re.fullmatch(r"[0-9a-f]{64}", q["sig"][0]), location
    return location


def with_query(location: str, **changes) -> str:
    u = urllib.parse.urlsplit(location)
    q = dict(urllib.parse.parse_qsl(u.query))
    for k, v in changes.items():
        if v is None:
            q.pop(k, None)
        else:
            q[k] = v
    return urllib.parse.urlunsplit(u._replace(query=urllib.parse.urlencode(q, quote_via=urllib.parse.quote)))


def data_denied(r: requests.Response, message: str):
    assert r.status_code == 403, f"{r.url} -> {r.status_code} {r.text[:300]} (expected 403 {message})"
    assert [(e["code"], e["message"]) for e in r.json()["errors"]] == [("DENIED", message)], r.text


BAD_SIGNATURE = "the signature does not match (the URL was altered or signed by another registry)"
EXPIRED = "the signed URL has expired; request the blob from the login server again"


def test_data_endpoint_signed_redirects(net):
    image = push_image(net, make_image("net/data-http"))
    net.api("PATCH", "/network", {"dataEndpointEnabled": True})
    before = scrape(net)

    location = blob_redirect(net, net.host, image.repo, image.layer_digest)
    exp = int(urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["exp"][0])
    assert time.time() < exp <= time.time() + 301, f"exp {exp} is not within the default 300 s lifetime"
    # The data host needs no credentials; it serves the exact bytes.
    anon = net.session(creds=None)
    r = anon.get(location, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and r.content == image.layer, f"{location} -> {r.status_code} {r.text[:300]}"
    # Following the redirect as a client would (requests drops the credentials on another host).
    r = net.session().get(f"http://{net.host}/v2/{image.repo}/blobs/{image.config_digest}", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and r.content == image.config, f"{r.url} -> {r.status_code}"
    assert [h.status_code for h in r.history] == [307] and r.url.startswith(f"http://{data_host(net)}/data/"), r.url
    # A HEAD on the login server is answered there.
    h = net.session().head(f"http://{net.host}/v2/{image.repo}/blobs/{image.layer_digest}", timeout=HTTP_TIMEOUT)
    assert h.status_code == 200 and int(h.headers["Content-Length"]) == len(image.layer), h.headers

    # Tampering: signature, expiry, identity, repository; missing parameters.
    sig = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["sig"][0]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    data_denied(anon.get(with_query(location, sig=flipped), timeout=HTTP_TIMEOUT), BAD_SIGNATURE)
    data_denied(anon.get(with_query(location, exp=str(exp + 3600)), timeout=HTTP_TIMEOUT), BAD_SIGNATURE)
    data_denied(anon.get(with_query(location, id="owner 'someone'"), timeout=HTTP_TIMEOUT), BAD_SIGNATURE)
    other_repo = location.replace(f"/data/{image.repo}/", "/data/net/app/")
    data_denied(anon.get(other_repo, timeout=HTTP_TIMEOUT), BAD_SIGNATURE)
    data_denied(
        anon.get(with_query(location, sig=None), timeout=HTTP_TIMEOUT),
        "the data URL is not signed (id, exp and sig are required)",
    )
    # Only /data/... exists on the data host — not /v2/ nor the management API, even with the owner's credentials.
    for path in ("/v2/", f"/v2/{image.repo}/manifests/v1", "/api/v1/network", "/", "/datax"):
        r = net.session().get(f"http://{data_host(net)}{path}", timeout=HTTP_TIMEOUT)
        assert r.status_code == 404, f"data host {path} -> {r.status_code} {r.text[:300]}"
        assert r.json()["errors"][0]["message"] == "this is a data endpoint: only signed blob URLs are served here"

    # The data host is behind the same network rules (the network message, not the signature's).
    net.api("PATCH", "/network", {"defaultAction": "Deny"})
    assert_denied(anon.get(location, timeout=HTTP_TIMEOUT), PUBLIC_IP, no_rule_matches(0, 0))
    net.api("PATCH", "/network", {"defaultAction": "Allow"})

    # Turned off: blobs are served by the login server again.
    net.api("PATCH", "/network", {"dataEndpointEnabled": False})
    r = net.session().get(
        f"http://{net.host}/v2/{image.repo}/blobs/{image.layer_digest}", allow_redirects=False, timeout=HTTP_TIMEOUT
    )
    assert r.status_code == 200 and r.content == image.layer, r.status_code

    after = scrape(net)
    blob_307 = {"name": "berth_http_requests_total", "route": "blob", "method": "GET", "status": "307"}
    assert metric(after, **blob_307) - metric(before, **blob_307) >= 2
    data_200 = {"name": "berth_http_requests_total", "route": "data", "method": "GET", "status": "200"}
    assert metric(after, **data_200) - metric(before, **data_200) >= 2


def test_data_endpoint_with_real_clients(net, net_skopeo, containerd, dockerd, tmp_path):
    net.api("PATCH", "/network", {"dataEndpointEnabled": True})
    data_200 = {"name": "berth_http_requests_total", "route": "data", "method": "GET", "status": "200"}
    blob_307 = {"name": "berth_http_requests_total", "route": "blob", "method": "GET", "status": "307"}

    def fetched_through_data_endpoint(action):
        before = scrape(net)
        action()
        after = scrape(net)
        redirected = metric(after, **blob_307) - metric(before, **blob_307)
        served = metric(after, **data_200) - metric(before, **data_200)
        # config + layer: each asked at the login server (307) and fetched from the data host.
        assert redirected >= 2 and served >= 2, f"307s: {redirected}, data-host 200s: {served}"

    # skopeo: pull to an OCI layout, byte for byte.
    img = push_image(net, make_image("net/data-skopeo"))
    out = OciLayout(tmp_path / "skopeo-out")
    fetched_through_data_endpoint(
        lambda: net_skopeo.copy(f"docker://{net.host}/{img.repo}:v1", f"oci:{out.path}:v1")
    )
    assert out.manifest_bytes("v1") == img.manifest
    assert out.blob(img.config_digest) == img.config and out.blob(img.layer_digest) == img.layer

    # containerd: ctr images pull --plain-http; the content store holds the same bytes.
    img = push_image(net, make_image("net/data-ctr"))
    ns = "net-data"
    ctr = containerd.as_user(net.owner)
    fetched_through_data_endpoint(
        lambda: ctr.ctr("images", "pull", "--plain-http", f"{net.host}/{img.repo}:v1", namespace=ns)
    )
    for digest, data in [(img.digest, img.manifest), *img.blobs.items()]:
        assert ctr.ctr("content", "get", digest, namespace=ns, text=False).stdout == data, digest

    # Docker engine: pull; the image ID is the config digest (dockerd checks the layer's diff_id).
    img = push_image(net, make_image("net/data-docker"))
    docker = dockerd.with_config(tmp_path / "docker-config")
    docker.login(net.host, net.owner)
    ref = f"{net.host}/{img.repo}:v1"
    fetched_through_data_endpoint(lambda: docker("pull", ref))
    info = docker.inspect(ref)
    assert info["Id"] == img.config_digest, info["Id"]
    assert f"{net.host}/{img.repo}@{img.digest}" in info["RepoDigests"], info["RepoDigests"]
    docker("rmi", ref)


def test_data_endpoint_url_expires(berth_servers):
    port = free_port(PUBLIC_IP)
    dhost = f"{DATA_IP}:{free_port(DATA_IP)}"
    srv = berth_servers(
        "berth-data-ttl",
        {
            "server": {"listen": [f"{PUBLIC_IP}:{port}", dhost], "data_url_ttl_seconds": 1},
            "data_endpoint": [{"region": "local", "host": dhost}],
        },
    )
    image = push_image(srv, make_image("net/ttl", size=4096))
    srv.api("PATCH", "/network", {"dataEndpointEnabled": True})
    location = blob_redirect(srv, srv.host, image.repo, image.layer_digest)
    exp = int(urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["exp"][0])
    assert exp <= time.time() + 2, f"exp {exp} does not reflect data_url_ttl_seconds = 1"
    anon = srv.session(creds=None)
    r = anon.get(location, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and r.content == image.layer, f"fresh URL -> {r.status_code} {r.text[:300]}"
    deadline = time.monotonic() + 5
    while True:
        r = anon.get(location, timeout=HTTP_TIMEOUT)
        if r.status_code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    data_denied(r, EXPIRED)
    assert time.time() >= exp, "refused as expired before its expiry time"
    # A new redirect gives a fresh URL that works.
    r = anon.get(blob_redirect(srv, srv.host, image.repo, image.layer_digest), timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and r.content == image.layer
    srv.stop()


# --------------------------------------------------------------------------
# 9. Rule validation and the activity log
# --------------------------------------------------------------------------


def api_error(r: requests.Response, status: int, code: str) -> str:
    """A refused management request: its status, its management error code, its message."""
    assert r.status_code == status, f"{r.request.method} {r.url} {r.request.body!r} -> {r.status_code} {r.text}"
    errors = r.json()["errors"]
    assert len(errors) == 1 and errors[0]["code"] == code and errors[0]["message"], r.text
    return errors[0]["message"]


def test_rule_validation_limits_and_activity(net):
    since_s = int(time.time()) - 1
    s = net.session()
    rules_url = f"http://{net.admin_host}/api/v1/network/rules"
    net.api("PATCH", "/network", {"defaultAction": "Deny"})
    net.api("POST", "/network/rules", {"ipAddress": f"{ALLOWED_IP}/32"})
    baseline = net.api("GET", "/network")

    def unchanged():
        assert net.api("GET", "/network") == baseline

    msg = api_error(s.post(rules_url, json={"ipAddress": "300.1.1.1"}, timeout=HTTP_TIMEOUT), 400, "VALIDATION")
    assert msg == "'300.1.1.1' is not an IPv4 or IPv6 address or CIDR range (e.g. 203.0.113.0/24, 2001:db8::/48)"
    unchanged()
    msg = api_error(s.post(rules_url, json={"ipAddress": "10.0.0.0/33"}, timeout=HTTP_TIMEOUT), 400, "VALIDATION")
    assert "'10.0.0.0/33' is not an IPv4 or IPv6 address or CIDR range" in msg
    unchanged()
    res = net.cli_fail("network-rule", "add", "--ip-address", "300.1.1.1")
    assert "'300.1.1.1' is not an IPv4 or IPv6 address or CIDR range" in output(res), output(res)
    unchanged()
    for dup in (f"{ALLOWED_IP}/32", ALLOWED_IP):  # a bare address is the same host route
        msg = api_error(s.post(rules_url, json={"ipAddress": dup}, timeout=HTTP_TIMEOUT), 409, "CONFLICT")
        assert msg == f"the rule set already has an IP rule for {ALLOWED_IP}/32", msg
        unchanged()
    msg = api_error(s.post(rules_url, json={"subnet": "nope"}, timeout=HTTP_TIMEOUT), 400, "VALIDATION")
    assert msg == "subnet 'nope' is not declared in the configuration ([[subnet]] name = \"nope\")", msg
    msg = api_error(s.post(rules_url, json={"ipAddress": "10.0.0.1", "subnet": "build"}, timeout=HTTP_TIMEOUT), 400, "VALIDATION")
    assert "exactly one of" in msg, msg
    msg = api_error(s.delete(rules_url, params={"ipAddress": "192.0.2.0/24"}, timeout=HTTP_TIMEOUT), 404, "NOT_FOUND")
    assert msg == "there is no rule for 192.0.2.0/24", msg
    msg = api_error(
        s.patch(f"http://{net.admin_host}/api/v1/network", json={"publicNetworkAccess": "Off"}, timeout=HTTP_TIMEOUT),
        400,
        "VALIDATION",
    )
    assert "expected `Enabled` or `Disabled`" in msg, msg
    unchanged()

    # Up to 100 IP rules; the 101st is refused and the set stays at 100.
    added = [f"10.{i // 250}.{i % 250}.0/24" for i in range(99)]
    for cidr in added:
        net.api("POST", "/network/rules", {"ipAddress": cidr})
    full = net.api("GET", "/network")
    assert len(full["networkRuleSet"]["ipRules"]) == 100, full
    msg = api_error(s.post(rules_url, json={"ipAddress": "172.16.0.0/12"}, timeout=HTTP_TIMEOUT), 422, "LIMIT_EXCEEDED")
    assert msg == "the rule set already has 100 IP rules, the limit", msg
    assert net.api("GET", "/network") == full

    # Every successful change is in the activity log with before and after; no refused one is.
    activity = [a for a in net.api("GET", "/activity", params={"since": rfc3339_ms(since_s * 1000)}) if a["target"] == "networkRuleSet"]
    adds = [a for a in activity if a["operation"] == "add network rule"]
    assert len(adds) == 100, [a["after"]["ipRules"][-1:] for a in adds]
    for a in adds:
        assert a["actor"] == "owner 'owner'", a
        new = set(a["after"]["ipRules"]) - set(a["before"]["ipRules"])
        assert len(new) == 1 and len(a["after"]["ipRules"]) == len(a["before"]["ipRules"]) + 1, a
    assert [next(iter(set(a["after"]["ipRules"]) - set(a["before"]["ipRules"]))) for a in adds] == [
        f"{ALLOWED_IP}/32",
        *added,
    ]
    (deny,) = [
        a
        for a in activity
        if a["operation"] == "update network rule set"
        and (a["before"]["defaultAction"], a["after"]["defaultAction"]) == ("Allow", "Deny")
    ]
    assert deny["before"]["ipRules"] == [] and deny["after"]["publicNetworkAccess"] is True, deny
    refused = ("300.1.1.1", "10.0.0.0/33", "172.16.0.0/12", "nope")
    assert not [a for a in activity if any(x in json.dumps(a) for x in refused)], "a refused change was logged"


# --------------------------------------------------------------------------
# 10. Rule changes under load
# --------------------------------------------------------------------------


def test_rule_changes_under_load(net, net_images):
    url = manifest_url(net.host, net_images.app, "v1")
    expected_digest = net_images.layout.manifest_digest("v1")
    stop = threading.Event()
    failures: list[str] = []
    counts: list[int] = []
    probes: list[tuple[float, float, int, str]] = []  # (start, end, status, body) from OTHER_IP
    lock = threading.Lock()

    def puller():
        s = net.session(ALLOWED_IP)
        n = 0
        while not stop.is_set():
            try:
                r = s.get(url, headers={"Accept": OCI_MANIFEST}, timeout=10)
                ok = r.status_code == 200 and sha256_digest(r.content) == expected_digest
                if not ok:
                    with lock:
                        failures.append(f"{r.status_code} {r.text[:200]}")
            except requests.RequestException as exc:
                with lock:
                    failures.append(repr(exc))
            n += 1
        with lock:
            counts.append(n)

    def prober():
        s = net.session(OTHER_IP)
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = s.get(url, headers={"Accept": OCI_MANIFEST}, timeout=10)
                status, body = r.status_code, r.text[:300]
            except requests.RequestException as exc:
                status, body = -1, repr(exc)
            with lock:
                probes.append((t0, time.monotonic(), status, body))

    threads = [threading.Thread(target=puller, daemon=True) for _ in range(16)]
    threads += [threading.Thread(target=prober, daemon=True) for _ in range(2)]
    windows: list[tuple[str, float, float]] = []  # ("allow" | "deny", start, end)
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        allow_since = started
        cycles = 0
        while time.monotonic() - started < 7.0:
            time.sleep(0.35)
            # Allow -> "Deny + rule for 127.0.0.5": the rule first, then Deny.
            net.api("POST", "/network/rules", {"ipAddress": f"{ALLOWED_IP}/32"})
            windows.append(("allow", allow_since, time.monotonic()))
            net.api("PATCH", "/network", {"defaultAction": "Deny"})
            deny_since = time.monotonic()
            time.sleep(0.35)
            windows.append(("deny", deny_since, time.monotonic()))
            # Back: Allow first, then remove the rule.
            net.api("PATCH", "/network", {"defaultAction": "Allow"})
            allow_since = time.monotonic()
            net.api("DELETE", "/network/rules", params={"ipAddress": f"{ALLOWED_IP}/32"})
            cycles += 1
        time.sleep(0.3)
        windows.append(("allow", allow_since, time.monotonic()))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert not any(t.is_alive() for t in threads), "load threads did not stop"

    total = sum(counts)
    assert cycles >= 5, f"only {cycles} rule flips"
    assert total >= 500, f"only {total} pulls in {time.monotonic() - started:.1f}s"
    assert not failures, f"{len(failures)} of {total} pulls from {ALLOWED_IP} failed, e.g. {failures[:5]}"

    deny_reason = denial_message(OTHER_IP, no_rule_matches(1, 0))
    checked = {"allow": 0, "deny": 0}
    wrong = []
    for t0, t1, status, body in probes:
        inside = [kind for kind, a, b in windows if a < t0 and t1 < b]
        if not inside:
            continue  # straddles a switch
        kind = inside[0]
        checked[kind] += 1
        good = status == 200 if kind == "allow" else (status == 403 and deny_reason in body)
        if not good:
            wrong.append(f"{kind} window, +{t0 - started:.3f}s..+{t1 - started:.3f}s: {status} {body[:200]}")
    print(f"{total} pulls, {len(probes)} probes ({checked}), {cycles} rule flips", file=sys.stderr)
    assert checked["allow"] >= 20 and checked["deny"] >= 20, f"too few probes inside windows: {checked}"
    assert not wrong, (
        f"{len(wrong)} of {sum(checked.values())} probes from {OTHER_IP} got the wrong answer: {wrong[:5]}"
    )


def test_concurrent_rule_changes_are_all_kept(net):
    """Rule changes made at the same time (two operators, a script in parallel) must all
    land: each POST that answers 200 is in the rule set afterwards."""
    cidrs = [f"10.77.{i}.0/24" for i in range(20)]
    responses: dict[str, tuple[int, list[str]]] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(len(cidrs), timeout=30)

    def add(cidr: str):
        s = net.session()
        barrier.wait()
        r = s.post(f"http://{net.admin_host}/api/v1/network/rules", json={"ipAddress": cidr}, timeout=HTTP_TIMEOUT)
        rules = r.json()["networkRuleSet"]["ipRules"] if r.status_code == 200 else [r.text]
        with lock:
            responses[cidr] = (r.status_code, rules)

    threads = [threading.Thread(target=add, args=(c,), daemon=True) for c in cidrs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(responses) == len(cidrs), "not every request finished"
    for cidr, (status, rules) in responses.items():
        assert status == 200 and cidr in rules, f"POST {cidr} -> {status} {rules}"
    final = net.api("GET", "/network")["networkRuleSet"]["ipRules"]
    lost = sorted(set(cidrs) - set(final), key=cidrs.index)
    assert not lost, (
        f"{len(lost)} of {len(cidrs)} concurrently added rules are missing although each POST answered 200 "
        f"listing its rule: {lost}; final set: {final}"
    )


# --------------------------------------------------------------------------
# 11. JSON-lines event sink
# --------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def test_jsonl_event_sink(net, net_images, net_skopeo, tmp_path):
    since = now_ms()
    lay = net_images.layout
    repo = f"net/jsonl-{uuid.uuid4().hex[:6]}"
    net_skopeo.copy(lay.transport("v1"), f"docker://{net.host}/{repo}:v1")
    net_skopeo.copy(f"docker://{net.host}/{repo}:v1", f"oci:{tmp_path / 'out'}:v1")
    net.api("PATCH", "/network", {"defaultAction": "Deny"})
    denied = net.session(OTHER_IP).get(f"http://{net.host}/v2/", timeout=HTTP_TIMEOUT)
    denied_cid = assert_denied(denied, OTHER_IP, no_rule_matches(0, 0))
    digest = lay.manifest_digest("v1")

    def wanted(records):
        repo_events = [r["event"] for r in records if r.get("category") == "ContainerRegistryRepositoryEvents"]
        pushes = [e for e in repo_events if e.get("Repository") == repo and e.get("OperationName") == "Push"]
        pulls = [e for e in repo_events if e.get("Repository") == repo and e.get("OperationName") == "Pull"]
        denial = [
            r["event"]
            for r in records
            if r.get("category") == "ContainerRegistryLoginEvents" and r["event"].get("CorrelationId") == denied_cid
        ]
        return pushes, pulls, denial

    deadline = time.monotonic() + EVENT_TIMEOUT
    while True:
        records = read_jsonl(jsonl_path(net))
        pushes, pulls, denial = wanted(records)
        if (pushes and pulls and denial) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert pushes and pulls and denial, f"in {jsonl_path(net)}: pushes {pushes}, pulls {pulls}, denial {denial}"

    categories = {r.get("category") for r in records}
    assert categories == {"ContainerRegistryLoginEvents", "ContainerRegistryRepositoryEvents"}, categories
    for r in records:
        fields = LOGIN_EVENT_FIELDS if r["category"] == "ContainerRegistryLoginEvents" else REPOSITORY_EVENT_FIELDS
        assert fields <= set(r["event"]), f"missing {fields - set(r['event'])} in {r}"

    (push,) = pushes
    assert (push["Tag"], push["Digest"], push["ResultType"]) == ("v1", digest, 201), push
    assert push["MediaType"] == OCI_MANIFEST and push["Size"] == len(lay.manifest_bytes("v1")), push
    assert "'owner'" in push["Identity"] and push["CallerIpAddress"] == PUBLIC_IP, push
    assert "skopeo" in push["UserAgent"] and push["TimeGenerated"] >= since - 1000, push
    pull = pulls[-1]
    assert (pull["Tag"], pull["Digest"], pull["ResultType"]) == ("v1", digest, 200), pull
    assert "skopeo" in pull["UserAgent"], pull
    (d,) = denial
    assert (d["ResultType"], d["CallerIpAddress"]) == (403, OTHER_IP), d
    assert d["ResultDescription"] == denial_message(OTHER_IP, no_rule_matches(0, 0)), d
    logins = [r["event"] for r in records if r["category"] == "ContainerRegistryLoginEvents"]
    assert any(
        e["ResultType"] == 200 and "skopeo" in e["UserAgent"] and e["TimeGenerated"] >= since - 1000 for e in logins
    ), "no successful skopeo login event"

    # The same repository events over the management API (and the CLI), in
    # the API's casing (camelCase, RFC 3339 times).
    api_events = net.api("GET", "/logs/repository", params={"repository": repo})
    assert {(e["operationName"], e["correlationId"]) for e in api_events} >= {
        ("Push", push["CorrelationId"]),
        ("Pull", pull["CorrelationId"]),
    }, api_events
    for e in api_events:
        assert API_REPOSITORY_EVENT_FIELDS <= set(e), e
        assert ms_of(e["timeGenerated"]) >= since - 1000, e
    cli_events = json.loads(net.cli("logs", "repository", "--repository", repo, "-o", "json").stdout)
    assert {e["correlationId"] for e in cli_events} >= {push["CorrelationId"], pull["CorrelationId"]}


# --------------------------------------------------------------------------
# 12. Metrics
# --------------------------------------------------------------------------


def test_metrics_count_requests_denials_and_auth_failures(net):
    before = scrape(net)
    net.api("PATCH", "/network", {"defaultAction": "Deny"})
    for _ in range(3):
        r = net.session(OTHER_IP).get(f"http://{net.host}/v2/", timeout=HTTP_TIMEOUT)
        assert_denied(r, OTHER_IP, no_rule_matches(0, 0))
    # /metrics itself is exempt from the rules.
    during = scrape(net, source_ip=OTHER_IP)
    net.api("PATCH", "/network", {"defaultAction": "Allow"})
    r = net.session("127.0.0.9", Creds("owner", "wrong")).get(f"http://{net.host}/v2/", timeout=HTTP_TIMEOUT)
    assert r.status_code == 401, r.status_code
    after = scrape(net)

    assert metric(during, "berth_network_denials_total") - metric(before, "berth_network_denials_total") == 3
    assert metric(after, "berth_network_denials_total") > 0
    assert metric(after, "berth_auth_failures_total") - metric(before, "berth_auth_failures_total") >= 1
    requests_total = [(lab, v) for n, lab, v in after if n == "berth_http_requests_total"]
    assert requests_total, "no berth_http_requests_total samples"
    assert all({"route", "method", "status"} <= set(lab) for lab, _ in requests_total), requests_total
    forbidden = metric(after, "berth_http_requests_total", status="403") - metric(
        before, "berth_http_requests_total", status="403"
    )
    assert forbidden >= 3, forbidden
    assert metric(after, "berth_http_requests_total", route="management", method="PATCH", status="200") >= 2
    assert metric(after, "berth_http_requests_total", status="401") >= 1
