"""Operating a running berth: certificate rotation and the access log.

* Certificates are reloaded when their files change and on SIGHUP: a new
  TLS client sees the new certificate, a client connected before keeps
  working on its connection, and a broken certificate leaves the one in
  use (with a log line saying it was refused).
* SIGHUP without TLS is logged, not fatal.
* The access log (``[access_log] enabled``) is one JSON object per request
  with the documented fields, and never holds an ``Authorization`` value or
  a password from a query string.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import ssl
import time
from pathlib import Path

import pytest

from conftest import free_port, wait_for
from diag_support import CertAuthority, start_berth


def _fingerprint(host: str, port: int, ca: Path) -> str:
    """The SHA-256 of the certificate a new TLS connection is served."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((host, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def _pem_fingerprint(cert: Path) -> str:
    pem = cert.read_text()
    body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    return hashlib.sha256(base64.b64decode("".join(body.split()))).hexdigest()


class KeptConnection:
    """One TLS connection kept open across requests (HTTP/1.1 keep-alive)."""

    def __init__(self, host: str, port: int, ca: Path):
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.set_alpn_protocols(["http/1.1"])
        raw = socket.create_connection((host, port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.host = f"{host}:{port}"
        self.fingerprint = hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()

    def get_status(self, path: str) -> int:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            assert chunk, "the server closed the connection"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = self.sock.recv(4096)
            assert chunk, "the server closed the connection mid-body"
            rest += chunk
        return int(head.split(b" ")[1])

    def close(self):
        self.sock.close()


def _replace(src: Path, dst: Path):
    """Puts ``src``'s content at ``dst`` the way deployment tools do: a rename."""
    tmp = dst.with_suffix(dst.suffix + ".new")
    tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dst)


def test_certificates_are_reloaded_on_change_and_on_sighup_and_a_broken_one_is_refused(tmp_path: Path):
    ca = CertAuthority(tmp_path / "ca")
    first_cert, first_key = ca.issue("first", ["localhost"], ["127.0.0.1"])
    second_cert, second_key = ca.issue("second", ["localhost"], ["127.0.0.1"])
    third_cert, third_key = ca.issue("third", ["localhost"], ["127.0.0.1"])
    live_cert, live_key = tmp_path / "tls.crt", tmp_path / "tls.key"
    _replace(first_cert, live_cert)
    _replace(first_key, live_key)
    port = free_port()
    server = start_berth(
        tmp_path / "berth",
        "berth-tls-reload",
        {"server": {"listen": f"127.0.0.1:{port}", "tls_cert": live_cert, "tls_key": live_key}},
        dict(os.environ),
        ca_file=ca.cert,
    )
    try:
        assert _fingerprint("127.0.0.1", port, ca.cert) == _pem_fingerprint(first_cert)
        before = KeptConnection("127.0.0.1", port, ca.cert)
        assert before.get_status("/v2/") == 401

        # 1. The files change (key first, as a careless tool might): the
        # half-written pair is refused, the whole one taken.
        _replace(second_key, live_key)
        _replace(second_cert, live_cert)
        wait_for(
            lambda: _fingerprint("127.0.0.1", port, ca.cert) == _pem_fingerprint(second_cert),
            30,
            "new connections to get the second certificate",
            proc=server.daemon,
        )
        # The connection made before keeps its certificate and works.
        assert before.fingerprint == _pem_fingerprint(first_cert)
        assert before.get_status("/v2/") == 401
        log = server.daemon.stderr_path.read_text()
        assert "TLS certificate reloaded" in log, log[-3000:]

        # 2. A broken certificate, then SIGHUP: refused, the second stays.
        live_cert.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n")
        os.kill(server.daemon.popen.pid, signal.SIGHUP)
        wait_for(
            lambda: "new TLS certificate refused" in server.daemon.stderr_path.read_text(),
            30,
            "the broken certificate to be refused in the log",
            proc=server.daemon,
        )
        assert _fingerprint("127.0.0.1", port, ca.cert) == _pem_fingerprint(second_cert)
        assert not server.daemon.exited()
        r = server.session().get(f"{server.url}/v2/", timeout=10)
        assert r.status_code == 200

        # 3. SIGHUP with a good pair in place (written in place, no rename).
        live_key.write_bytes(third_key.read_bytes())
        live_cert.write_bytes(third_cert.read_bytes())
        os.kill(server.daemon.popen.pid, signal.SIGHUP)
        wait_for(
            lambda: _fingerprint("127.0.0.1", port, ca.cert) == _pem_fingerprint(third_cert),
            30,
            "new connections to get the third certificate",
            proc=server.daemon,
        )
        assert before.get_status("/v2/") == 401
        before.close()
    finally:
        server.stop()


def test_sighup_without_tls_is_logged_and_harmless(tmp_path: Path):
    port = free_port()
    server = start_berth(tmp_path / "berth", "berth-hup", {"server": {"listen": f"127.0.0.1:{port}"}}, dict(os.environ))
    try:
        os.kill(server.daemon.popen.pid, signal.SIGHUP)
        wait_for(
            lambda: "nothing to reload" in server.daemon.stderr_path.read_text(),
            30,
            "the SIGHUP log line",
            proc=server.daemon,
        )
        assert server.session().get(f"{server.url}/v2/", timeout=10).status_code == 200
    finally:
        server.stop()


ACCESS_FIELDS = {
    "time",
    "method",
    "path",
    "status",
    "bytes",
    "bytesReceived",
    "durationMs",
    "identity",
    "clientAddress",
    "correlationId",
    "userAgent",
}


def test_the_access_log_is_json_without_secrets(tmp_path: Path):
    port = free_port()
    log_file = tmp_path / "access.jsonl"
    server = start_berth(
        tmp_path / "berth",
        "berth-access-log",
        {"server": {"listen": f"127.0.0.1:{port}"}, "access_log": {"enabled": True, "path": log_file}},
        dict(os.environ),
    )
    secret = "s3cr3t-Pa55word-never-logged"
    try:
        owner = server.session()
        # A blob pushed and pulled: its size must be the logged bytes.
        blob = os.urandom(300_000)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        r = owner.post(f"{server.url}/v2/ops/app/blobs/uploads/?digest={digest}", data=blob, timeout=30)
        assert r.status_code == 201, r.text
        r = owner.get(f"{server.url}/v2/ops/app/blobs/{digest}", timeout=30)
        assert r.content == blob
        pull_correlation = r.headers["X-Correlation-Id"]
        # Secrets in places they do not belong: a query string, a token
        # request's form, a wrong password.
        anonymous = server.session(None)
        anonymous.get(f"{server.url}/v2/_catalog?n=5&password={secret}", timeout=10)
        anonymous.post(
            f"{server.url}/oauth2/token",
            data={"grant_type": "password", "username": "owner", "password": secret, "service": "x"},
            timeout=10,
        )
        wrong = server.session(("owner", secret))
        assert wrong.get(f"{server.url}/v2/", timeout=10).status_code == 401
        # A client that goes away mid-body (larger than the socket buffers).
        big = os.urandom(32 << 20)
        big_digest = "sha256:" + hashlib.sha256(big).hexdigest()
        r = owner.post(f"{server.url}/v2/ops/big/blobs/uploads/?digest={big_digest}", data=big, timeout=60)
        assert r.status_code == 201, r.text
        with owner.get(f"{server.url}/v2/ops/big/blobs/{big_digest}", stream=True, timeout=30) as partial:
            partial.raw.read(10)
    finally:
        # SIGTERM: every line accepted is written before exit.
        server.stop()

    text = log_file.read_text()
    assert secret not in text
    basic = base64.b64encode(f"owner:{server.owner.password}".encode()).decode()
    assert basic not in text and server.owner.password not in text
    assert "authorization" not in text.lower()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines, "no access log lines"
    for entry in lines:
        assert ACCESS_FIELDS <= set(entry), entry
        assert entry["time"].endswith("Z") and entry["clientAddress"] == "127.0.0.1", entry
    pull = next(e for e in lines if e["correlationId"] == pull_correlation)
    assert pull["method"] == "GET" and pull["status"] == 200 and pull["bytes"] == len(blob), pull
    assert pull["identity"] == "owner 'owner'" and pull["path"] == f"/v2/ops/app/blobs/{digest}", pull
    push = next(e for e in lines if e["method"] == "POST" and e["path"].startswith("/v2/ops/app/blobs/uploads/"))
    assert push["status"] == 201 and push["bytesReceived"] == len(blob), push
    assert push["path"].endswith(f"?digest={digest}"), push
    catalog = next(e for e in lines if e["path"].startswith("/v2/_catalog"))
    assert catalog["path"] == "/v2/_catalog?n=5&password=***", catalog
    assert catalog["identity"] == "anonymous", catalog
    assert any(e["path"] == "/v2/" and e["status"] == 401 for e in lines)
    assert any(e.get("incomplete") and e["bytes"] < len(big) for e in lines), lines[-3:]
