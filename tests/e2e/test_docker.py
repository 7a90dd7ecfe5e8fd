"""The Docker engine (dockerd started by a fixture) pushing to and pulling from the registry.

127.0.0.0/8 registries are plain-HTTP ("insecure") for dockerd by default.
Every test gets the ``docker`` fixture: the CLI with its own DOCKER_CONFIG,
logged in (``docker login --password-stdin``) as the owner when the registry
requires authentication.
"""

import gzip
import io
import json
import os
import re
import tarfile

from conftest import DOCKER_MANIFEST, sha256_digest

_PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)")


def pushed_digest(output: str) -> tuple[str, int]:
    m = _PUSH_DIGEST.search(output)
    assert m, f"no digest line in docker push output:\n{output}"
    return m.group(1), int(m.group(2))


def assert_gone(docker, ref: str):
    res = docker.fail("image", "inspect", ref)
    assert "no such image" in (res.stderr + res.stdout).lower()


def test_load_tag_push_rmi_pull(registry, docker, skopeo, oci_images, tmp_path):
    """docker load (archive made offline by skopeo) -> tag -> push -> rmi -> pull.

    Uses the "big" image (8 MiB random layer), which no other test loads into
    dockerd, so `rmi` really removes it and `pull` really downloads it.
    """
    lay = oci_images.layout
    archive = tmp_path / "big.tar"
    skopeo.copy(lay.transport("big"), f"docker-archive:{archive}:e2e-local/big:v1")
    assert "Loaded image: e2e-local/big:v1" in docker("load", "-i", archive).stdout
    image_id = docker.inspect("e2e-local/big:v1")["Id"]
    # docker keeps the image config bytes: its ID is the OCI config digest.
    assert image_id == lay.config_digest("big")

    target = registry.ref("docker/big", "v1")
    docker("tag", "e2e-local/big:v1", target)
    digest, size = pushed_digest(docker("push", target).stdout)

    raw = skopeo.inspect_raw(f"docker://{target}")
    assert sha256_digest(raw) == digest and len(raw) == size
    manifest = json.loads(raw)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["digest"] == image_id
    assert registry.get_blob("docker/big", image_id) == lay.blob(lay.config_digest("big"))
    # dockerd re-compresses layers on push; the content must still be the same.
    top = registry.get_blob("docker/big", manifest["layers"][-1]["digest"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(top))) as tar:
        assert tar.extractfile("big.bin").read() == oci_images.big_payload

    docker("rmi", target, "e2e-local/big:v1")
    assert_gone(docker, target)
    assert_gone(docker, image_id)

    docker("pull", target)
    info = docker.inspect(target)
    assert info["Id"] == image_id
    assert info["RepoDigests"] == [f"{registry.host}/docker/big@{digest}"]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"

    # Pull by digest resolves to the same image.
    docker("rmi", target)
    assert_gone(docker, image_id)
    docker("pull", registry.ref("docker/big", digest))
    assert docker.inspect(registry.ref("docker/big", digest))["Id"] == image_id


def _rootfs_tar(path, payload: bytes):
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("data")
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        info = tarfile.TarInfo("data/random.bin")
        info.size = len(payload)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(payload))


def test_import_big_push_rmi_pull(registry, docker, tmp_path):
    """docker import of a rootfs tar with a 6 MiB random file; the pushed layer holds it byte for byte."""
    payload = os.urandom(6 * 1024 * 1024)
    rootfs = tmp_path / "rootfs.tar"
    _rootfs_tar(rootfs, payload)
    target = registry.ref("docker/imported", "big")
    image_id = docker("import", "--change", 'CMD ["/data/random.bin"]', rootfs, target).stdout.strip()
    assert image_id.startswith("sha256:")

    digest, _ = pushed_digest(docker("push", target).stdout)
    manifest = json.loads(registry.manifest_bytes("docker/imported", "big"))
    assert sha256_digest(registry.manifest_bytes("docker/imported", "big")) == digest
    assert manifest["config"]["digest"] == image_id
    (layer,) = manifest["layers"]
    blob = registry.get_blob("docker/imported", layer["digest"])
    assert len(blob) == layer["size"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        assert tar.extractfile("data/random.bin").read() == payload

    docker("rmi", target)
    assert_gone(docker, image_id)
    docker("pull", target)
    info = docker.inspect(target)
    assert info["Id"] == image_id
    assert info["RepoDigests"] == [f"{registry.host}/docker/imported@{digest}"]
    assert info["Config"]["Cmd"] == ["/data/random.bin"]

    out = tmp_path / "saved.tar"
    docker("save", "-o", out, target)
    with tarfile.open(out) as saved:
        (layer_member,) = [m for m in saved.getnames() if m.endswith("layer.tar")]
        with tarfile.open(fileobj=saved.extractfile(layer_member)) as layer_tar:
            assert layer_tar.extractfile("data/random.bin").read() == payload


def test_pull_oci_images_pushed_by_skopeo(registry, docker, oci_images, seeded):
    """dockerd pulls OCI manifests and OCI indexes (selecting linux/amd64)."""
    lay = oci_images.layout
    app = registry.ref(seeded.app, seeded.tag)
    docker("pull", app)
    info = docker.inspect(app)
    assert info["Id"] == lay.config_digest("v1")
    # Same config as docker/app from another test, hence the same image ID: check membership.
    assert f"{registry.host}/{seeded.app}@{lay.manifest_digest('v1')}" in info["RepoDigests"]

    by_digest = registry.ref(seeded.multi, lay.manifest_digest("multi"))
    docker("pull", by_digest)
    info = docker.inspect(by_digest)
    assert info["Id"] == lay.config_digest("amd64")
    assert info["Architecture"] == "amd64"
    assert f"{registry.host}/{seeded.multi}@{lay.manifest_digest('multi')}" in info["RepoDigests"]


def test_pull_unknown_tag_fails(registry, docker, seeded):
    res = docker.fail("pull", registry.ref(seeded.app, "does-not-exist"))
    assert "manifest unknown" in (res.stderr + res.stdout).lower() or "not found" in (res.stderr + res.stdout).lower()
