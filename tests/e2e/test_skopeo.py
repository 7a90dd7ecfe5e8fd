"""skopeo against the registry: copy (push/pull), copy --all, inspect, list-tags, delete."""

import json

from conftest import INDEX_TYPES, OCI_INDEX, OciLayout, sha256_digest


def _assert_layout_image_equal(src: OciLayout, src_ref: str, dst: OciLayout, dst_ref: str):
    """Manifest, config and every layer of dst_ref are byte-identical to src_ref."""
    assert dst.manifest_digest(dst_ref) == src.manifest_digest(src_ref)
    assert dst.manifest_bytes(dst_ref) == src.manifest_bytes(src_ref)
    manifest = src.manifest(src_ref)
    for desc in [manifest["config"], *manifest["layers"]]:
        assert dst.blob(desc["digest"]) == src.blob(desc["digest"]), f"blob {desc['digest']} differs"
        assert len(dst.blob(desc["digest"])) == desc["size"]


def test_copy_push_and_pull_back(registry, skopeo, oci_images, tmp_path):
    """Push oci:v1, read the manifest back raw, then pull it into a fresh layout."""
    lay = oci_images.layout
    dest = registry.docker_ref("skopeo/app", "v1")
    skopeo.copy(lay.transport("v1"), dest)

    raw = skopeo.inspect_raw(dest)
    assert raw == lay.manifest_bytes("v1"), "registry returned a different manifest than was pushed"
    assert sha256_digest(raw) == lay.manifest_digest("v1")
    # Same bytes straight over HTTP, by tag and by digest.
    assert registry.manifest_bytes("skopeo/app", "v1") == raw
    assert registry.manifest_bytes("skopeo/app", lay.manifest_digest("v1")) == raw
    for layer in lay.layer_digests("v1"):
        assert registry.get_blob("skopeo/app", layer) == lay.blob(layer)

    pulled = OciLayout(tmp_path / "pulled")
    skopeo.copy(dest, f"oci:{pulled.path}:back")
    _assert_layout_image_equal(lay, "v1", pulled, "back")


def test_copy_big_layer_roundtrip(registry, skopeo, oci_images, tmp_path):
    """A several-MiB random layer survives push and pull (to oci: and dir:) byte for byte."""
    lay = oci_images.layout
    dest = registry.docker_ref("skopeo/big", "v1")
    skopeo.copy(lay.transport("big"), dest)
    assert sha256_digest(skopeo.inspect_raw(dest)) == lay.manifest_digest("big")

    pulled = OciLayout(tmp_path / "pulled")
    skopeo.copy(dest, f"oci:{pulled.path}:back")
    _assert_layout_image_equal(lay, "big", pulled, "back")

    # dir: writes each blob to a file named by its hex digest.
    dir_dest = tmp_path / "dir"
    skopeo.copy(dest, f"dir:{dir_dest}")
    big_layer = lay.manifest("big")["layers"][-1]
    data = (dir_dest / big_layer["digest"].split(":", 1)[1]).read_bytes()
    assert len(data) == big_layer["size"] > 4 * 1024 * 1024
    assert sha256_digest(data) == big_layer["digest"]
    assert (dir_dest / "manifest.json").read_bytes() == lay.manifest_bytes("big")


def test_copy_all_multiplatform_index(registry, skopeo, oci_images, tmp_path):
    """copy --all pushes the index and both children unchanged."""
    lay = oci_images.layout
    dest = registry.docker_ref("skopeo/multi", "v1")
    skopeo.copy(lay.transport("multi"), dest, "--all")

    raw = skopeo.inspect_raw(dest)
    assert sha256_digest(raw) == lay.manifest_digest("multi")
    assert raw == lay.manifest_bytes("multi")
    index = json.loads(raw)
    assert index["mediaType"] == OCI_INDEX
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]): m["digest"] for m in index["manifests"]}
    assert platforms == {
        ("linux", "amd64"): lay.manifest_digest("amd64"),
        ("linux", "arm64"): lay.manifest_digest("arm64"),
    }
    for ref in ("amd64", "arm64"):
        child = skopeo.inspect_raw(registry.docker_ref("skopeo/multi", lay.manifest_digest(ref)))
        assert child == lay.manifest_bytes(ref)
        cfg = skopeo.inspect_raw(registry.docker_ref("skopeo/multi", lay.manifest_digest(ref)), "--config")
        assert cfg == lay.blob(lay.config_digest(ref))

    # Platform selection through the index.
    info = skopeo.inspect(dest, "--override-arch", "arm64", "--override-os", "linux")
    assert info["Architecture"] == "arm64"
    assert info["Layers"] == lay.layer_digests("arm64")

    # Pull the whole index back.
    pulled = OciLayout(tmp_path / "pulled")
    skopeo.copy(dest, f"oci:{pulled.path}:back", "--all")
    assert pulled.manifest_digest("back") == lay.manifest_digest("multi")
    for ref in ("amd64", "arm64"):
        assert pulled.manifest_bytes(lay.manifest_digest(ref)) == lay.manifest_bytes(ref)
        for layer in lay.layer_digests(ref):
            assert pulled.blob(layer) == lay.blob(layer)


def test_inspect_and_inspect_raw(registry, skopeo, oci_images, seeded):
    lay = oci_images.layout
    ref = registry.docker_ref(seeded.app, seeded.tag)

    info = skopeo.inspect(ref)
    assert info["Name"] == f"{registry.host}/{seeded.app}"
    assert info["Digest"] == lay.manifest_digest("v1")
    assert info["Architecture"] == "amd64"
    assert info["Os"] == "linux"
    assert info["Layers"] == lay.layer_digests("v1")
    assert seeded.tag in info["RepoTags"]

    raw = skopeo.inspect_raw(ref)
    assert raw == lay.manifest_bytes("v1")
    config = skopeo.inspect_raw(ref, "--config")
    assert config == lay.blob(lay.config_digest("v1"))
    assert json.loads(config)["config"]["Cmd"] == ["/app/hello"]

    # An index, inspected raw, is returned as the index itself.
    raw_index = skopeo.inspect_raw(registry.docker_ref(seeded.multi, seeded.tag))
    assert json.loads(raw_index)["mediaType"] in INDEX_TYPES
    assert sha256_digest(raw_index) == lay.manifest_digest("multi")


def test_list_tags(registry, skopeo, oci_images):
    lay = oci_images.layout
    repo = "skopeo/tags"
    tags = ["1.0", "1.1", "latest", "v2-rc.1"]
    for tag in tags:
        skopeo.copy(lay.transport("v1"), registry.docker_ref(repo, tag))
    listing = skopeo.list_tags(f"docker://{registry.host}/{repo}")
    assert listing["Repository"] == f"{registry.host}/{repo}"
    assert sorted(listing["Tags"]) == sorted(tags)
    for tag in tags:
        assert sha256_digest(skopeo.inspect_raw(registry.docker_ref(repo, tag))) == lay.manifest_digest("v1")


def test_delete(registry, skopeo, oci_images):
    lay = oci_images.layout
    repo = "skopeo/del"
    skopeo.copy(lay.transport("v1"), registry.docker_ref(repo, "doomed"))
    skopeo.copy(lay.transport("amd64"), registry.docker_ref(repo, "kept"))
    digest = lay.manifest_digest("v1")
    assert registry.get_manifest(repo, digest).status_code == 200

    skopeo("delete", "--tls-verify=false", registry.docker_ref(repo, "doomed"))

    failed = skopeo.fail("inspect", "--raw", "--tls-verify=false", registry.docker_ref(repo, "doomed"))
    assert "manifest unknown" in (failed.stderr + failed.stdout).lower()
    assert registry.get_manifest(repo, digest).status_code == 404
    assert registry.get_manifest(repo, "doomed").status_code == 404
    # The other tag in the repository is untouched.
    assert sha256_digest(skopeo.inspect_raw(registry.docker_ref(repo, "kept"))) == lay.manifest_digest("amd64")
    assert "doomed" not in skopeo.list_tags(f"docker://{registry.host}/{repo}")["Tags"]
