"""containerd's `ctr` (the kubelet/CRI pull path) against the registry.

Each test uses its own containerd namespace, so content pulled by one test is
not visible to another one (`ctr content get` is namespace-scoped).
"""

import json
import re

from conftest import OCI_INDEX, sha256_digest

_FETCHED = re.compile(r"\b(index|manifest|config|layer)-(sha256:[0-9a-f]{64})\b")


def fetched(output: str) -> dict[str, set[str]]:
    """Descriptors ctr reports in its progress output, by kind."""
    kinds: dict[str, set[str]] = {"index": set(), "manifest": set(), "config": set(), "layer": set()}
    for kind, digest in _FETCHED.findall(output):
        kinds[kind].add(digest)
    return kinds


def image_target(containerd, name: str, namespace: str) -> tuple[str, str]:
    """(media type, digest) of the image record `name` in `namespace`."""
    out = containerd.ctr("images", "ls", namespace=namespace).stdout
    for line in out.splitlines()[1:]:
        cols = line.split()
        if cols and cols[0] == name:
            return cols[1], cols[2]
    raise AssertionError(f"image {name} not in `ctr images ls`:\n{out}")


def content_get(containerd, digest: str, namespace: str) -> bytes:
    return containerd.ctr("content", "get", digest, namespace=namespace, text=False).stdout


def test_pull_single_image(registry, containerd, oci_images, seeded):
    ns = "pull-single"
    lay = oci_images.layout
    name = registry.ref(seeded.app, seeded.tag)
    out = containerd.ctr("images", "pull", "--plain-http", name, namespace=ns).stdout

    got = fetched(out)
    assert got["manifest"] == {lay.manifest_digest("v1")}
    assert got["layer"] == set(lay.layer_digests("v1"))
    assert image_target(containerd, name, ns)[1] == lay.manifest_digest("v1")
    # Content store holds the exact bytes.
    assert content_get(containerd, lay.manifest_digest("v1"), ns) == lay.manifest_bytes("v1")
    assert content_get(containerd, lay.config_digest("v1"), ns) == lay.blob(lay.config_digest("v1"))
    for layer in lay.layer_digests("v1"):
        assert content_get(containerd, layer, ns) == lay.blob(layer)
    # The image was unpacked into a snapshot for linux/amd64.
    assert "unpacking linux/amd64" in out
    containerd.ctr("images", "check", namespace=ns)


def test_pull_arm64_from_index(registry, containerd, oci_images, seeded):
    ns = "pull-arm64"
    lay = oci_images.layout
    name = registry.ref(seeded.multi, seeded.tag)
    out = containerd.ctr("images", "pull", "--plain-http", "--platform", "linux/arm64", name, namespace=ns).stdout

    got = fetched(out)
    assert got["index"] == {lay.manifest_digest("multi")}
    # Exactly the arm64 child was pulled (not the amd64 one).
    assert got["manifest"] == {lay.manifest_digest("arm64")}
    assert got["layer"] == set(lay.layer_digests("arm64"))
    assert image_target(containerd, name, ns) == (OCI_INDEX, lay.manifest_digest("multi"))
    assert content_get(containerd, lay.manifest_digest("arm64"), ns) == lay.manifest_bytes("arm64")
    assert content_get(containerd, lay.manifest_digest("multi"), ns) == lay.manifest_bytes("multi")
    for layer in lay.layer_digests("arm64"):
        assert content_get(containerd, layer, ns) == lay.blob(layer)
    containerd.ctr_fail("content", "get", lay.manifest_digest("amd64"), namespace=ns)


def test_pull_missing_platform_fails(registry, containerd, oci_images, seeded):
    ns = "pull-s390x"
    name = registry.ref(seeded.multi, seeded.tag)
    res = containerd.ctr_fail("images", "pull", "--plain-http", "--platform", "linux/s390x", name, namespace=ns)
    output = res.stdout + res.stderr
    assert "no match for platform in manifest" in output
    assert oci_images.layout.manifest_digest("multi") in output


def test_pull_unknown_tag_fails(registry, containerd, seeded):
    res = containerd.ctr_fail(
        "images", "pull", "--plain-http", registry.ref(seeded.app, "no-such-tag"), namespace="pull-404"
    )
    output = res.stdout + res.stderr
    assert "not found" in output
    assert f'failed to resolve reference "{registry.ref(seeded.app, "no-such-tag")}"' in output


def test_content_fetch(registry, containerd, oci_images, seeded):
    """`ctr content fetch` downloads (without unpacking) the big image's blobs."""
    ns = "content-fetch"
    lay = oci_images.layout
    big_layer = lay.manifest("big")["layers"][-1]
    containerd.ctr_fail("content", "get", big_layer["digest"], namespace=ns)

    out = containerd.ctr("content", "fetch", "--plain-http", registry.ref(seeded.big, seeded.tag), namespace=ns).stdout
    assert fetched(out)["manifest"] == {lay.manifest_digest("big")}

    data = content_get(containerd, big_layer["digest"], ns)
    assert len(data) == big_layer["size"] > 4 * 1024 * 1024
    assert data == lay.blob(big_layer["digest"])
    assert content_get(containerd, lay.manifest_digest("big"), ns) == lay.manifest_bytes("big")
    listing = containerd.ctr("content", "ls", "-q", namespace=ns).stdout.split()
    assert set(listing) >= {lay.manifest_digest("big"), lay.config_digest("big"), *lay.layer_digests("big")}


def test_tag_and_push_to_other_repository(registry, containerd, skopeo, oci_images, seeded):
    ns = "tag-push"
    lay = oci_images.layout
    src = registry.ref(seeded.app, seeded.tag)
    dst = registry.ref("ctr/pushed", "v1")
    containerd.ctr("images", "pull", "--plain-http", src, namespace=ns)
    containerd.ctr("images", "tag", src, dst, namespace=ns)
    containerd.ctr("images", "push", "--plain-http", dst, namespace=ns)

    raw = skopeo.inspect_raw(f"docker://{dst}")
    assert sha256_digest(raw) == lay.manifest_digest("v1")
    assert raw == lay.manifest_bytes("v1")
    info = skopeo.inspect(f"docker://{dst}")
    assert info["Digest"] == lay.manifest_digest("v1")
    assert info["Layers"] == lay.layer_digests("v1")
    for layer in lay.layer_digests("v1"):
        assert registry.get_blob("ctr/pushed", layer) == lay.blob(layer)


def test_push_whole_index(registry, containerd, skopeo, oci_images, seeded):
    """Pull all platforms of the index, push it to a new repository, digests unchanged."""
    ns = "push-index"
    lay = oci_images.layout
    src = registry.ref(seeded.multi, seeded.tag)
    dst = registry.ref("ctr/multi", "v1")
    containerd.ctr("images", "pull", "--plain-http", "--all-platforms", src, namespace=ns)
    containerd.ctr("images", "tag", src, dst, namespace=ns)
    containerd.ctr("images", "push", "--plain-http", dst, namespace=ns)

    raw = skopeo.inspect_raw(f"docker://{dst}")
    assert sha256_digest(raw) == lay.manifest_digest("multi")
    index = json.loads(raw)
    assert {m["digest"] for m in index["manifests"]} == {lay.manifest_digest("amd64"), lay.manifest_digest("arm64")}
    for ref in ("amd64", "arm64"):
        assert registry.manifest_bytes("ctr/multi", lay.manifest_digest(ref)) == lay.manifest_bytes(ref)
