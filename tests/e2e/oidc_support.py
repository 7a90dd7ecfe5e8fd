"""An OIDC issuer on loopback, as a Kubernetes API server serves its
service-account issuer: the discovery document and the JWKS it names, over
HTTPS with a CA of its own, RSA keys made here (rotatable), and tokens
shaped as the API server mints them. Used by test_federation.py and
test_scale_out.py.
"""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
import time
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from conftest import free_port
from diag_support import CertAuthority

SUBJECT = "system:serviceaccount:shop:puller"
AUDIENCE = "berth"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class RsaKey:
    def __init__(self, kid: str):
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.private.public_key().public_numbers()
        self.jwk = {
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
            "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url(numbers.e.to_bytes(3, "big")),
        }  # fmt: skip

    def sign(self, claims: dict, kid: str | None = None) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": kid or self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = self.private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"


class Issuer:
    """A service-account issuer as a Kubernetes API server serves it (discovery + JWKS, HTTPS)."""

    def __init__(self, ca: CertAuthority, name: str):
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.keys = [RsaKey(f"{name}-1")]
        self.requests: list[str] = []
        cert, key = ca.issue(name, [], ["127.0.0.1"])
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                issuer.requests.append(self.path)
                if self.path == "/.well-known/openid-configuration":
                    body = {
                        "issuer": issuer.url,
                        "jwks_uri": f"{issuer.url}/openid/v1/jwks",
                        "response_types_supported": ["id_token"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }
                elif self.path == "/openid/v1/jwks":
                    body = {"keys": [k.jwk for k in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(self, subject: str = SUBJECT, audience: str = AUDIENCE, lifetime: int = 600, key=None, **extra) -> str:
        """A projected service-account token as the API server mints it."""
        now = int(time.time())
        namespace, account = subject.split(":")[2:4] if subject.count(":") >= 3 else ("default", "x")
        claims = {
            "iss": self.url, "sub": subject, "aud": [audience],
            "exp": now + lifetime, "iat": now, "nbf": now,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": account, "uid": str(uuid.uuid4())},
                "pod": {"name": f"{account}-7d4b9", "uid": str(uuid.uuid4())},
                "node": {"name": "node-1", "uid": str(uuid.uuid4())},
            },
            **extra,
        }  # fmt: skip
        return (key or self.keys[0]).sign(claims)

    def rotate(self, name: str) -> RsaKey:
        new = RsaKey(name)
        self.keys = [new]
        return new

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
