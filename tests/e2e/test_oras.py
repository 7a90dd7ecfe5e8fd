"""OCI artifacts with oras-py, manifests with a `subject`, and the referrers API.

The push/pull and subject-manifest tests run against every registry; the
referrers API assertions are gated by ``requires_referrers_api`` because the
reference registry (distribution 2.8) predates OCI 1.1 referrers.
"""

import json
import os
from dataclasses import dataclass

import oras.client
import oras.oci
import pytest
import requests

from conftest import OCI_INDEX, OCI_MANIFEST, make_oras_client, requires_referrers_api, sha256_digest

CONFIG_TYPE = "application/vnd.berth.e2e.config.v1+json"
PAYLOAD_TYPE = "application/vnd.berth.e2e.payload.v1"
SIG_CONFIG_TYPE = "application/vnd.berth.e2e.signature.v1+json"  # artifactType via config.mediaType
SIG_LAYER_TYPE = "application/vnd.berth.e2e.signature.layer.v1"
SBOM_ARTIFACT_TYPE = "application/vnd.berth.e2e.sbom.v1+json"  # explicit artifactType
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"

REPO = "oras/artifact"


@pytest.fixture(scope="module")
def oras_client(registry, oras_home):
    """An oras-py client acting as the owner (no credentials for the reference registry)."""
    return make_oras_client(registry.host, registry.owner)


def upload_blob(registry, repo: str, data: bytes) -> str:
    """Monolithic POST+PUT upload (the reference registry wants application/octet-stream)."""
    digest = sha256_digest(data)
    r = registry.session.post(f"{registry.url}/v2/{repo}/blobs/uploads/", timeout=30)
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    if location.startswith("/"):
        location = registry.url + location
    sep = "&" if "?" in location else "?"
    r = registry.session.put(
        f"{location}{sep}digest={digest}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return digest


def put_manifest(registry, repo: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST) -> requests.Response:
    r = registry.session.put(
        f"{registry.url}/v2/{repo}/manifests/{reference}",
        data=body,
        headers={"Content-Type": media_type},
        timeout=30,
    )
    assert r.status_code == 201, f"PUT manifest {repo}:{reference} -> {r.status_code} {r.text}"
    assert r.headers.get("Docker-Content-Digest") == sha256_digest(body)
    return r


def test_oras_push_pull_roundtrip(registry, oras_client, tmp_path):
    payload = os.urandom(3 * 1024 * 1024 + 123)
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    config = tmp_path / "config.json"
    config.write_bytes(b'{"purpose": "berth e2e"}')

    resp = oras_client.push(
        target=f"{registry.host}/oras/roundtrip:v1",
        files=[f"{src}:{PAYLOAD_TYPE}"],
        manifest_config=f"{config}:{CONFIG_TYPE}",
        manifest_annotations={"org.opencontainers.image.description": "e2e artifact"},
        disable_path_validation=True,
    )
    assert resp.status_code == 201

    raw = registry.manifest_bytes("oras/roundtrip", "v1")
    assert resp.headers["Docker-Content-Digest"] == sha256_digest(raw)
    manifest = json.loads(raw)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == CONFIG_TYPE
    assert registry.get_blob("oras/roundtrip", manifest["config"]["digest"]) == config.read_bytes()
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == PAYLOAD_TYPE
    assert layer["digest"] == sha256_digest(payload) and layer["size"] == len(payload)
    assert layer["annotations"]["org.opencontainers.image.title"] == "payload.bin"
    assert manifest["annotations"] == {"org.opencontainers.image.description": "e2e artifact"}
    assert oras_client.get_manifest(f"{registry.host}/oras/roundtrip:v1") == manifest

    out = tmp_path / "out"
    files = oras_client.pull(target=f"{registry.host}/oras/roundtrip:v1", outdir=str(out))
    assert [os.path.basename(f) for f in files] == ["payload.bin"]
    assert (out / "payload.bin").read_bytes() == payload

    # Pull by digest as well.
    out2 = tmp_path / "out2"
    oras_client.pull(target=f"{registry.host}/oras/roundtrip@{sha256_digest(raw)}", outdir=str(out2))
    assert (out2 / "payload.bin").read_bytes() == payload


@dataclass
class Pushed:
    digest: str
    size: int
    raw: bytes
    put_headers: "requests.structures.CaseInsensitiveDict"


@dataclass
class ReferrerSet:
    subject: Pushed
    signature: Pushed  # pushed by oras-py with `subject`, artifactType from config.mediaType
    sbom: Pushed  # hand-built manifest with explicit artifactType + empty config


@pytest.fixture(scope="module")
def referrer_set(registry, oras_client, tmp_path_factory) -> ReferrerSet:
    tmp = tmp_path_factory.mktemp("referrers")
    (tmp / "subject.txt").write_text("the subject artifact\n")
    (tmp / "config.json").write_text('{"kind": "subject"}')
    oras_client.push(
        target=f"{registry.host}/{REPO}:subject",
        files=[f"{tmp / 'subject.txt'}:{PAYLOAD_TYPE}"],
        manifest_config=f"{tmp / 'config.json'}:{CONFIG_TYPE}",
        disable_path_validation=True,
    )
    subject_raw = registry.manifest_bytes(REPO, "subject")
    subject = Pushed(sha256_digest(subject_raw), len(subject_raw), subject_raw, {})

    # 1) oras-py with subject (it has no artifactType field: config.mediaType stands in).
    (tmp / "sig.txt").write_text("signature over the subject\n")
    (tmp / "sig-config.json").write_text('{"kind": "signature"}')
    resp = oras_client.push(
        target=f"{registry.host}/{REPO}:signature",
        files=[f"{tmp / 'sig.txt'}:{SIG_LAYER_TYPE}"],
        manifest_config=f"{tmp / 'sig-config.json'}:{SIG_CONFIG_TYPE}",
        subject=oras.oci.Subject(mediaType=OCI_MANIFEST, digest=subject.digest, size=subject.size),
        disable_path_validation=True,
    )
    assert resp.status_code == 201
    sig_raw = registry.manifest_bytes(REPO, "signature")
    signature = Pushed(sha256_digest(sig_raw), len(sig_raw), sig_raw, resp.headers)

    # 2) A hand-built OCI 1.1 artifact manifest: artifactType, empty config, subject; pushed by digest only.
    sbom_blob = b'{"sbom": ["berth"]}'
    upload_blob(registry, REPO, EMPTY_JSON)
    upload_blob(registry, REPO, sbom_blob)
    sbom_manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM_ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": sha256_digest(EMPTY_JSON), "size": 2, "data": "e30="},
        "layers": [{"mediaType": "application/json", "digest": sha256_digest(sbom_blob), "size": len(sbom_blob)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": subject.size},
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z", "e2e.kind": "sbom"},
    }
    sbom_raw = json.dumps(sbom_manifest, separators=(",", ":")).encode()
    resp = put_manifest(registry, REPO, sha256_digest(sbom_raw), sbom_raw)
    sbom = Pushed(sha256_digest(sbom_raw), len(sbom_raw), sbom_raw, resp.headers)
    return ReferrerSet(subject, signature, sbom)


def test_manifests_with_subject_roundtrip(registry, referrer_set):
    """Manifests carrying `subject` (and artifactType) are stored and served byte for byte."""
    rs = referrer_set
    sig = json.loads(registry.manifest_bytes(REPO, rs.signature.digest))
    assert sig["subject"] == {"mediaType": OCI_MANIFEST, "digest": rs.subject.digest, "size": rs.subject.size}
    assert sig["config"]["mediaType"] == SIG_CONFIG_TYPE
    assert registry.manifest_bytes(REPO, "signature") == rs.signature.raw

    sbom_raw = registry.manifest_bytes(REPO, rs.sbom.digest)
    assert sbom_raw == rs.sbom.raw
    r = registry.get_manifest(REPO, rs.sbom.digest)
    assert r.headers["Content-Type"] == OCI_MANIFEST
    assert int(r.headers["Content-Length"]) == rs.sbom.size
    sbom = json.loads(sbom_raw)
    assert sbom["artifactType"] == SBOM_ARTIFACT_TYPE
    assert sbom["subject"]["digest"] == rs.subject.digest
    for blob in (sbom["config"], *sbom["layers"]):
        assert len(registry.get_blob(REPO, blob["digest"])) == blob["size"]
    # The subject itself is unchanged by having referrers.
    assert registry.manifest_bytes(REPO, "subject") == rs.subject.raw


def get_referrers(registry, digest: str, artifact_type: str | None = None) -> requests.Response:
    params = {"artifactType": artifact_type} if artifact_type else None
    return registry.session.get(f"{registry.url}/v2/{REPO}/referrers/{digest}", params=params, timeout=30)


@requires_referrers_api
def test_referrers_api_lists_referrers(registry, referrer_set):
    rs = referrer_set
    # A registry that supports referrers MUST answer a subject push with OCI-Subject.
    assert rs.signature.put_headers.get("OCI-Subject") == rs.subject.digest
    assert rs.sbom.put_headers.get("OCI-Subject") == rs.subject.digest

    r = get_referrers(registry, rs.subject.digest)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0].strip() == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert set(by_digest) == {rs.signature.digest, rs.sbom.digest}

    sig = by_digest[rs.signature.digest]
    assert sig["mediaType"] == OCI_MANIFEST
    assert sig["size"] == rs.signature.size
    assert sig["artifactType"] == SIG_CONFIG_TYPE  # falls back to config.mediaType

    sbom = by_digest[rs.sbom.digest]
    assert sbom["mediaType"] == OCI_MANIFEST
    assert sbom["size"] == rs.sbom.size
    assert sbom["artifactType"] == SBOM_ARTIFACT_TYPE
    assert sbom["annotations"] == {"org.opencontainers.image.created": "2026-01-01T00:00:00Z", "e2e.kind": "sbom"}

    # A digest nobody refers to: 200 with an empty index (not 404).
    r = get_referrers(registry, sha256_digest(b"no referrers for this"))
    assert r.status_code == 200, r.text
    assert r.json()["manifests"] == []


@requires_referrers_api
def test_referrers_api_artifact_type_filter(registry, referrer_set):
    rs = referrer_set
    r = get_referrers(registry, rs.subject.digest, SBOM_ARTIFACT_TYPE)
    assert r.status_code == 200, r.text
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [rs.sbom.digest]

    r = get_referrers(registry, rs.subject.digest, SIG_CONFIG_TYPE)
    assert r.status_code == 200, r.text
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [rs.signature.digest]

    r = get_referrers(registry, rs.subject.digest, "application/vnd.berth.e2e.nothing")
    assert r.status_code == 200, r.text
    assert r.json()["manifests"] == []
