"""Upstream registries for the artifact-cache tests.

``ReferenceUpstream`` is Debian's ``docker-registry`` (distribution 2.8), a
real upstream, optionally with htpasswd (Basic) authentication.  An
``UpstreamShim`` sits in front of it: a small HTTP relay that is the
upstream's access log as the cache sees it (every request it relays is
recorded), and injects the faults a test chooses — ``429 Retry-After`` for
every registry request, or bodies trickled out slowly so a test can act in
the middle of a transfer.  The upstream itself stays real: the shim only
relays its answers.
"""

from __future__ import annotations

import http.client
import http.server
import subprocess
import threading
import time
from pathlib import Path

from .processes import READY_TIMEOUT, Daemon, free_port, require_tool, wait_for
from .server import http_session

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class ReferenceUpstream:
    """docker-registry on 127.0.0.1 with its own data directory; ``users`` (name → password) turn on htpasswd."""

    def __init__(self, work: Path, env: dict, users: dict[str, str] | None = None):
        exe = require_tool("docker-registry")
        work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        auth = ""
        if users:
            htpasswd = work / "htpasswd"
            htpasswd.write_text("")
            for user, password in users.items():
                subprocess.run(
                    ["htpasswd", "-bB", str(htpasswd), user, password], check=True, capture_output=True
                )
            auth = f"auth:\n  htpasswd:\n    realm: upstream\n    path: {htpasswd}\n"
        config = work / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {work / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n" + auth
        )
        # distribution reads REGISTRY_* variables as configuration: none may reach it.
        clean = {k: v for k, v in env.items() if not k.startswith("REGISTRY_")}
        self.daemon = Daemon(f"upstream-{self.port}", [exe, "serve", str(config)], work, env=clean, cwd=work)
        session = http_session()
        wait_for(
            lambda: session.get(f"http://{self.host}/v2/", timeout=2).status_code in (200, 401),
            READY_TIMEOUT,
            f"docker-registry on {self.host} to answer /v2/",
            proc=self.daemon,
        )

    def stop(self):
        self.daemon.stop()


class UpstreamShim:
    """An HTTP relay on 127.0.0.1 in front of ``target`` (``host:port``); see the module docstring."""

    def __init__(self, target: str):
        self.target = target
        self.requests: list[str] = []  # "METHOD /path STATUS" of every request relayed
        self.rate_limit = False  # answer 429 Retry-After: 30 to /v2/<name>/... requests
        self.trickle: float = 0.0  # seconds between 64 KiB chunks of blob bodies
        self.lock = threading.Lock()
        shim = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def relay(self):
                path = self.path
                registry = path.startswith("/v2/") and ("/manifests/" in path or "/blobs/" in path)
                if registry and shim.rate_limit:
                    body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"rate limited"}]}'
                    self.send_response(429)
                    self.send_header("Retry-After", "30")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":  # a HEAD answer has no body, whatever its length says
                        self.wfile.write(body)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
                upstream = http.client.HTTPConnection(shim.target, timeout=60)
                try:
                    upstream.request(self.command, path, body=body, headers=headers)
                    response = upstream.getresponse()
                    with shim.lock:
                        shim.requests.append(f"{self.command} {path.split('?')[0]} {response.status}")
                    self.send_response(response.status)
                    for k, v in response.getheaders():
                        if k.lower() not in HOP_BY_HOP:
                            # Realms name the upstream's own address: point them at the shim.
                            self.send_header(k, v.replace(shim.target, shim.host))
                    self.end_headers()
                    slow = shim.trickle if "/blobs/" in path and self.command == "GET" else 0.0
                    while True:
                        chunk = response.read(64 * 1024)
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        if slow:
                            time.sleep(slow)
                finally:
                    upstream.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, prefix: str) -> int:
        """Requests relayed whose "METHOD /path STATUS" starts with ``prefix``."""
        with self.lock:
            return sum(1 for r in self.requests if r.startswith(prefix))

    def served(self, what: str) -> int:
        """Requests ``what`` ("METHOD /path") the upstream answered 200 (not the 401 of a challenge)."""
        return self.count(f"{what} 200")

    def registry_requests(self) -> int:
        with self.lock:
            return sum(1 for r in self.requests if "/manifests/" in r or "/blobs/" in r)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
