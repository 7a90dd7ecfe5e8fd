"""buildah (build from scratch, push, manifest lists) and podman (pull, push).

podman and buildah use separate private storage roots, so podman really
downloads what buildah pushed.
"""

import gzip
import io
import json
import tarfile
from dataclasses import dataclass

import pytest

from conftest import INDEX_TYPES, sha256_digest


def read_digestfile(path) -> str:
    digest = path.read_text().strip()
    assert digest.startswith("sha256:") and len(digest) == 71, f"bad digest file content {digest!r}"
    return digest


def layer_file(blob: bytes, member: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return tar.extractfile(member).read()


def build_scratch_image(buildah, tmp_path, name: str, content: str, arch: str) -> str:
    """buildah from scratch + copy + commit; returns the local image ID."""
    src = tmp_path / f"{name.replace('/', '_').replace(':', '_')}.txt"
    src.write_text(content)
    ctr = buildah("from", "scratch").stdout.strip()
    try:
        buildah("copy", ctr, src, "/data/file.txt")
        buildah(
            "config", "--arch", arch, "--os", "linux", "--cmd", "/data/file.txt", "--label", f"e2e.name={name}", ctr
        )
        return buildah("commit", "-q", ctr, name).stdout.strip()
    finally:
        buildah("rm", ctr)


@dataclass
class BuildahPushed:
    repo: str
    tag: str
    digest: str
    config_digest: str
    content: str


@pytest.fixture(scope="module")
def buildah_pushed(registry, buildah, skopeo, tmp_path_factory) -> BuildahPushed:
    tmp = tmp_path_factory.mktemp("buildah-push")
    content = "built from scratch by buildah for berth\n"
    image_id = build_scratch_image(buildah, tmp, "localhost/e2e/scratch:1", content, "amd64")
    repo, tag = "buildah/scratch", "1"
    digestfile = tmp / "digest"
    buildah(
        "push",
        "--tls-verify=false",
        "--digestfile",
        digestfile,
        "localhost/e2e/scratch:1",
        registry.docker_ref(repo, tag),
    )
    digest = read_digestfile(digestfile)
    config_digest = json.loads(registry.manifest_bytes(repo, tag))["config"]["digest"]
    assert config_digest == f"sha256:{image_id}"
    return BuildahPushed(repo, tag, digest, config_digest, content)


def test_buildah_from_scratch_commit_push(registry, skopeo, buildah_pushed):
    p = buildah_pushed
    raw = skopeo.inspect_raw(registry.docker_ref(p.repo, p.tag))
    assert sha256_digest(raw) == p.digest
    assert registry.manifest_bytes(p.repo, p.digest) == raw
    manifest = json.loads(raw)
    (layer,) = manifest["layers"]
    blob = registry.get_blob(p.repo, layer["digest"])
    assert len(blob) == layer["size"]
    assert layer_file(blob, "data/file.txt").decode() == p.content
    config = json.loads(registry.get_blob(p.repo, manifest["config"]["digest"]))
    assert config["architecture"] == "amd64"
    assert config["config"]["Cmd"] == ["/data/file.txt"]


def test_podman_pull_buildah_image(registry, podman, buildah_pushed):
    p = buildah_pushed
    ref = registry.ref(p.repo, p.tag)
    podman.fail("image", "exists", ref)
    podman("pull", "--tls-verify=false", ref)
    out = podman("image", "inspect", "--format", "{{.Digest}} {{.Id}}", ref).stdout.split()
    assert out == [p.digest, p.config_digest.split(":", 1)[1]]
    info = json.loads(podman("image", "inspect", ref).stdout)[0]
    assert f"{registry.host}/{p.repo}@{p.digest}" in info["RepoDigests"]
    assert info["Labels"]["e2e.name"] == "localhost/e2e/scratch:1"


def test_podman_pull_skopeo_pushed_image(registry, podman, oci_images, seeded):
    lay = oci_images.layout
    ref = registry.ref(seeded.app, seeded.tag)
    podman("pull", "--tls-verify=false", ref)
    digest, image_id = podman("image", "inspect", "--format", "{{.Digest}} {{.Id}}", ref).stdout.split()
    assert digest == lay.manifest_digest("v1")
    assert f"sha256:{image_id}" == lay.config_digest("v1")


def test_podman_pull_platform_from_index(registry, podman, oci_images, seeded):
    lay = oci_images.layout
    ref = registry.ref(seeded.multi, seeded.tag)
    podman("pull", "--tls-verify=false", "--platform", "linux/arm64", ref)
    info = json.loads(podman("image", "inspect", ref).stdout)[0]
    assert info["Architecture"] == "arm64"
    assert f"sha256:{info['Id']}" == lay.config_digest("arm64")
    # podman 4.3 reports the digest it was asked for (the index) as .Digest and
    # records both the index and the arm64 instance digest in RepoDigests.
    assert info["Digest"] == lay.manifest_digest("multi")
    repo = f"{registry.host}/{seeded.multi}"
    assert set(info["RepoDigests"]) == {
        f"{repo}@{lay.manifest_digest('multi')}",
        f"{repo}@{lay.manifest_digest('arm64')}",
    }


def test_podman_push(registry, podman, skopeo, oci_images, seeded, tmp_path):
    """podman push of a pulled image to another repository; skopeo sees the pushed digest."""
    lay = oci_images.layout
    src = registry.ref(seeded.app, seeded.tag)
    dst = registry.ref("podman/app", "pushed")
    podman("pull", "--tls-verify=false", src)
    digestfile = tmp_path / "digest"
    podman("push", "--tls-verify=false", "--digestfile", digestfile, src, f"docker://{dst}")
    digest = read_digestfile(digestfile)
    raw = skopeo.inspect_raw(f"docker://{dst}")
    assert sha256_digest(raw) == digest
    manifest = json.loads(raw)
    assert manifest["config"]["digest"] == lay.config_digest("v1")
    assert registry.get_blob("podman/app", lay.config_digest("v1")) == lay.blob(lay.config_digest("v1"))
    (layer,) = manifest["layers"]
    assert layer_file(registry.get_blob("podman/app", layer["digest"]), "app/hello") == b"hello from berth e2e v1\n"


def test_buildah_manifest_push_all(registry, buildah, skopeo, tmp_path):
    """buildah manifest create/add/push --all of a two-platform list."""
    build_scratch_image(buildah, tmp_path, "localhost/e2e/list-amd64:1", "amd64 payload\n", "amd64")
    build_scratch_image(buildah, tmp_path, "localhost/e2e/list-arm64:1", "arm64 payload\n", "arm64")
    lst = "localhost/e2e/list:1"
    buildah("manifest", "create", lst)
    buildah("manifest", "add", lst, "localhost/e2e/list-amd64:1")
    buildah("manifest", "add", "--arch", "arm64", "--os", "linux", lst, "localhost/e2e/list-arm64:1")
    local = json.loads(buildah("manifest", "inspect", lst).stdout)
    assert len(local["manifests"]) == 2

    repo, tag = "buildah/list", "1"
    digestfile = tmp_path / "digest"
    buildah(
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        "--digestfile",
        digestfile,
        lst,
        registry.docker_ref(repo, tag),
    )
    digest = read_digestfile(digestfile)

    raw = skopeo.inspect_raw(registry.docker_ref(repo, tag))
    assert sha256_digest(raw) == digest
    index = json.loads(raw)
    assert index["mediaType"] in INDEX_TYPES
    by_arch = {m["platform"]["architecture"]: m for m in index["manifests"]}
    assert set(by_arch) == {"amd64", "arm64"} and len(index["manifests"]) == 2
    for arch, desc in by_arch.items():
        assert desc["platform"]["os"] == "linux"
        child_raw = skopeo.inspect_raw(registry.docker_ref(repo, desc["digest"]))
        assert sha256_digest(child_raw) == desc["digest"] and len(child_raw) == desc["size"]
        child = json.loads(child_raw)
        config = json.loads(registry.get_blob(repo, child["config"]["digest"]))
        assert config["architecture"] == arch
        (layer,) = child["layers"]
        assert layer_file(registry.get_blob(repo, layer["digest"]), "data/file.txt") == f"{arch} payload\n".encode()
