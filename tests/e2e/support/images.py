"""OCI media types, digests, and the test images built with umoci.

* ``OciLayout``: an OCI image layout on disk (refs, blobs, manifests; an
  index written by hand with ``add_index``).
* ``TestImages`` is what the ``oci_images`` fixture builds; ``Seeded`` names
  the images the ``seeded`` fixture pushes once per session.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ALL_MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


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


@dataclass
class Seeded:
    """Images pushed once per session with skopeo for other clients to pull."""

    app: str = "seed/app"  # :v1 -> layout "v1"
    big: str = "seed/big"  # :v1 -> layout "big"
    multi: str = "seed/multi"  # :v1 -> layout "multi" (index, both platforms)
    tag: str = "v1"
