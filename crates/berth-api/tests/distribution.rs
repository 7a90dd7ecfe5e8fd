//! The happy paths of the OCI distribution API, in process (see
//! `tests/support`): uploads of every kind, blob reads with ranges, every
//! manifest format with `Accept` negotiation, tags and catalog pagination,
//! cross-repository mounts, the referrers API, and a collector run.
//!
//! What needs a process stays in `crates/berth/tests/api_conformance.rs`:
//! uploads that survive a restart, the collector on its own schedule, and
//! the same suite on the scale-out backends.

mod support;

use serde_json::{json, Value};
use support::*;

/// An application on a fresh data directory, and the owner's view of it.
async fn setup(prefix: &str) -> (tempfile::TempDir, TestApp) {
    let dir = tempdir(prefix);
    let api = TestApp::embedded(dir.path()).await.as_owner();
    (dir, api)
}

// ---------------------------------------------------------------------------
// Base
// ---------------------------------------------------------------------------

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    let (_dir, api) = setup("berth-conf-base-").await;
    for path in ["/v2/", "/v2"] {
        let resp = expect_status(api.get(path).await, 200);
        assert_eq!(
            must_header(&resp, "docker-distribution-api-version"),
            "registry/2.0"
        );
    }
    let resp = expect_status(api.head("/v2/").await, 200);
    assert_eq!(
        must_header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
    // Errors carry it too: clients use it to recognise a registry.
    let resp = api.get("/v2/nothing/manifests/latest").await;
    assert_eq!(
        must_header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
}

// ---------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------

#[tokio::test]
async fn monolithic_upload_post_then_put() {
    let (dir, api) = setup("berth-conf-mono-").await;
    let data = bytes(1, 70_000);
    let digest = sha256(&data);

    let resp = api.post("/v2/mono/app/blobs/uploads/").await;
    let resp = expect_status(resp, 202);
    let location = must_header(&resp, "location");
    let uuid = must_header(&resp, "docker-upload-uuid");
    assert!(location.contains(&uuid), "{location} does not name {uuid}");
    assert!(location.starts_with("/v2/mono/app/blobs/uploads/"));
    assert_eq!(must_header(&resp, "range"), "0-0");
    // The filesystem keeps an (empty) file per session; S3 stores nothing
    // until bytes arrive.
    let sessions = upload_files(dir.path());
    assert!(sessions.iter().all(|s| s == &uuid), "{sessions:?}");

    let resp = expect_status(api.put_upload(&location, &digest, &data).await, 201);
    assert_eq!(
        must_header(&resp, "location"),
        format!("/v2/mono/app/blobs/{digest}")
    );
    assert_eq!(must_header(&resp, "docker-content-digest"), digest);

    assert_eq!(api.pull_blob("mono/app", &digest).await, data);
    assert!(blob_stored(dir.path(), &digest));
    assert!(upload_files(dir.path()).is_empty(), "upload file left over");
    // The session is finished.
    let resp = api.upload_status(&location).await;
    expect_error(resp, 404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn single_request_upload_with_digest() {
    let (dir, api) = setup("berth-conf-single-").await;
    let data = bytes(2, 123_457);
    let digest = sha256(&data);
    let resp = api
        .post(&format!("/v2/single/blobs/uploads/?digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .await;
    let resp = expect_status(resp, 201);
    assert_eq!(
        must_header(&resp, "location"),
        format!("/v2/single/blobs/{digest}")
    );
    assert_eq!(must_header(&resp, "docker-content-digest"), digest);
    assert_eq!(api.pull_blob("single", &digest).await, data);
    assert!(upload_files(dir.path()).is_empty());

    // Pushing the same content again is fine and changes nothing.
    assert_eq!(api.push_blob("single", &data).await, digest);
    assert_eq!(api.pull_blob("single", &digest).await, data);
}

#[tokio::test]
async fn chunked_upload_then_put_without_body() {
    let (_dir, api) = setup("berth-conf-chunk-").await;
    let data = bytes(3, 300_000);
    let digest = sha256(&data);
    let location = api.start_upload("chunky").await;
    let mut offset = 0u64;
    for chunk in data.chunks(100_000) {
        let resp = expect_status(api.patch_chunk(&location, offset, chunk).await, 202);
        offset += chunk.len() as u64;
        assert_eq!(must_header(&resp, "range"), upload_range(offset));
        assert!(must_header(&resp, "location").starts_with("/v2/chunky/blobs/uploads/"));
        assert!(!must_header(&resp, "docker-upload-uuid").is_empty());
    }
    let resp = expect_status(api.put_upload(&location, &digest, &[]).await, 201);
    assert_eq!(must_header(&resp, "docker-content-digest"), digest);
    assert_eq!(api.pull_blob("chunky", &digest).await, data);
}

#[tokio::test]
async fn chunked_upload_then_put_with_final_chunk() {
    let (_dir, api) = setup("berth-conf-chunkfin-").await;
    let data = bytes(4, 250_000);
    let digest = sha256(&data);

    // Final chunk in the PUT with a Content-Range.
    let location = api.start_upload("chunky").await;
    expect_status(api.patch_chunk(&location, 0, &data[..100_000]).await, 202);
    expect_status(
        api.patch_chunk(&location, 100_000, &data[100_000..200_000])
            .await,
        202,
    );
    let resp = api
        .put(&with_query(&location, "digest", &digest))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("200000-{}", data.len() - 1))
        .body(data[200_000..].to_vec())
        .await;
    let resp = expect_status(resp, 201);
    assert_eq!(must_header(&resp, "docker-content-digest"), digest);
    assert_eq!(api.pull_blob("chunky", &digest).await, data);

    // Final chunk in the PUT without a Content-Range, and PATCHes without
    // one either (streamed, as the docker CLI sends them).
    let data = bytes(5, 250_000);
    let digest = sha256(&data);
    let location = api.start_upload("chunky").await;
    let resp = api
        .patch(&location)
        .header("content-type", "application/octet-stream")
        .body(data[..150_000].to_vec())
        .await;
    let resp = expect_status(resp, 202);
    assert_eq!(must_header(&resp, "range"), upload_range(150_000));
    let resp = expect_status(
        api.put_upload(&location, &digest, &data[150_000..]).await,
        201,
    );
    assert_eq!(must_header(&resp, "docker-content-digest"), digest);
    assert_eq!(api.pull_blob("chunky", &digest).await, data);
}

#[tokio::test]
async fn upload_status_and_cancel() {
    let (dir, api) = setup("berth-conf-status-").await;
    let location = api.start_upload("status/repo").await;
    let resp = expect_status(api.upload_status(&location).await, 204);
    assert_eq!(must_header(&resp, "range"), "0-0");

    let data = bytes(6, 4321);
    expect_status(api.patch_chunk(&location, 0, &data).await, 202);
    let resp = expect_status(api.upload_status(&location).await, 204);
    assert_eq!(must_header(&resp, "range"), "0-4320");
    assert_eq!(must_header(&resp, "location"), location);
    let uuid = must_header(&resp, "docker-upload-uuid");
    assert!(location.ends_with(&uuid));
    // (No Content-Length: a 204 must not carry one.)
    assert!(resp.body.is_empty());
    assert_eq!(upload_files(dir.path()), vec![uuid]);

    let resp = expect_status(api.delete(&location).await, 204);
    drop(resp);
    expect_error(
        api.upload_status(&location).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    expect_error(
        api.patch_chunk(&location, 4321, b"more").await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    expect_error(
        api.put_upload(&location, &sha256(&data), &[]).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    expect_error(api.delete(&location).await, 404, "BLOB_UPLOAD_UNKNOWN");
    assert!(
        upload_files(dir.path()).is_empty(),
        "cancel left the upload's bytes"
    );
    assert!(!api.blob_exists("status/repo", &sha256(&data)).await);
}

#[tokio::test]
async fn empty_blob_uploads() {
    let (_dir, api) = setup("berth-conf-empty-").await;
    let empty = sha256(b"");
    // Single request.
    let resp = api
        .post(&format!("/v2/empty/one/blobs/uploads/?digest={empty}"))
        .header("content-length", "0")
        .await;
    expect_status(resp, 201);
    // POST then a bodiless PUT.
    let location = api.start_upload("empty/two").await;
    expect_status(api.put_upload(&location, &empty, &[]).await, 201);
    for repo in ["empty/one", "empty/two"] {
        let resp = expect_status(api.head(&format!("/v2/{repo}/blobs/{empty}")).await, 200);
        assert_eq!(must_header(&resp, "content-length"), "0");
        assert_eq!(must_header(&resp, "docker-content-digest"), empty);
        assert!(api.pull_blob(repo, &empty).await.is_empty());
    }
    // Any range of nothing is unsatisfiable.
    let resp = api
        .get(&format!("/v2/empty/one/blobs/{empty}"))
        .header("range", "bytes=0-0")
        .await;
    expect_error(resp, 416, "RANGE_INVALID");
}

#[tokio::test]
async fn repository_names_containing_endpoint_words() {
    let (_dir, api) = setup("berth-conf-words-").await;
    let repos = [
        "a/blobs",
        "a/blobs/uploads",
        "a/manifests",
        "a/tags",
        "a/tags/list",
        "a/referrers",
        "blobs/manifests/tags",
        "uploads",
    ];
    for (i, repo) in repos.iter().enumerate() {
        let image = push_image(&api, repo, "list", 40 + i as u64, 500).await;
        // A chunked upload too (its Location ends in /blobs/uploads/<id>).
        let data = bytes(60 + i as u64, 5000);
        let location = api.start_upload(repo).await;
        assert!(location.starts_with(&format!("/v2/{repo}/blobs/uploads/")));
        expect_status(api.patch_chunk(&location, 0, &data[..2500]).await, 202);
        assert_eq!(api.upload_offset(&location).await, Some(2500));
        expect_status(
            api.put_upload(&location, &sha256(&data), &data[2500..])
                .await,
            201,
        );
        assert_eq!(api.pull_blob(repo, &sha256(&data)).await, data);
        assert_image_pulls(&api, &image).await;
        assert_eq!(
            api.tags(repo).await,
            Some(vec!["list".to_string()]),
            "{repo}"
        );
    }
    let mut sorted: Vec<String> = repos.iter().map(|r| r.to_string()).collect();
    sorted.sort();
    assert_eq!(api.catalog().await, sorted);
}

// ---------------------------------------------------------------------------
// Blob reads and deletes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn blob_head_get_and_ranges() {
    let (_dir, api) = setup("berth-conf-range-").await;
    let data = bytes(7, 10_000);
    let digest = api.push_blob("ranges", &data).await;
    let path = format!("/v2/ranges/blobs/{digest}");

    let resp = expect_status(api.head(&path).await, 200);
    assert_eq!(must_header(&resp, "content-length"), "10000");
    assert_eq!(must_header(&resp, "docker-content-digest"), digest);
    assert!(resp.body.is_empty());

    let resp = expect_status(api.get(&path).await, 200);
    assert_eq!(must_header(&resp, "content-length"), "10000");
    assert_eq!(must_header(&resp, "docker-content-digest"), digest);
    assert_eq!(resp.body.as_ref(), data.as_slice());

    for (range, start, end) in [
        ("bytes=0-0", 0usize, 0usize),
        ("bytes=100-199", 100, 199),
        ("bytes=9990-", 9990, 9999),
        ("bytes=-10", 9990, 9999),
        ("bytes=0-9999", 0, 9999),
    ] {
        let resp = api.get(&path).header("range", range).await;
        let resp = expect_status(resp, 206);
        assert_eq!(
            must_header(&resp, "content-range"),
            format!("bytes {start}-{end}/10000"),
            "{range}"
        );
        assert_eq!(
            must_header(&resp, "content-length"),
            (end - start + 1).to_string()
        );
        let body = resp.body;
        assert_eq!(body.as_ref(), &data[start..=end], "{range}");
    }

    for range in ["bytes=10000-10010", "bytes=20000-"] {
        let resp = api.get(&path).header("range", range).await;
        let content_range = header(&resp, "content-range");
        expect_error(resp, 416, "RANGE_INVALID");
        assert_eq!(content_range.as_deref(), Some("bytes */10000"), "{range}");
    }
    // The blob is untouched.
    assert_eq!(api.pull_blob("ranges", &digest).await, data);
}

#[tokio::test]
async fn blob_delete() {
    let (_dir, api) = setup("berth-conf-blobdel-").await;
    let data = bytes(8, 2048);
    let digest = api.push_blob("deleting", &data).await;
    let other = api.push_blob("deleting", &bytes(9, 2048)).await;
    // Read first, so that anything cached about the blob must be forgotten.
    assert_eq!(api.pull_blob("deleting", &digest).await, data);
    assert!(api.blob_exists("deleting", &digest).await);
    let resp = expect_status(
        api.delete(&format!("/v2/deleting/blobs/{digest}")).await,
        202,
    );
    drop(resp);
    assert!(!api.blob_exists("deleting", &digest).await);
    expect_error(
        api.get(&format!("/v2/deleting/blobs/{digest}")).await,
        404,
        "BLOB_UNKNOWN",
    );
    expect_error(
        api.delete(&format!("/v2/deleting/blobs/{digest}")).await,
        404,
        "BLOB_UNKNOWN",
    );
    assert!(
        api.blob_exists("deleting", &other).await,
        "the other blob went too"
    );
}

#[tokio::test]
async fn sha512_uploads_and_manifests() {
    let (dir, api) = setup("berth-conf-sha512-").await;
    // Single request.
    let layer = bytes(10, 50_000);
    let digest = sha512(&layer);
    let resp = api
        .post(&format!("/v2/five12/blobs/uploads/?digest={digest}"))
        .body(layer.clone())
        .await;
    let resp = expect_status(resp, 201);
    assert_eq!(must_header(&resp, "docker-content-digest"), digest);
    let resp = expect_status(api.head(&format!("/v2/five12/blobs/{digest}")).await, 200);
    assert_eq!(must_header(&resp, "content-length"), "50000");
    assert_eq!(must_header(&resp, "docker-content-digest"), digest);
    assert_eq!(api.pull_blob("five12", &digest).await, layer);
    assert!(blob_stored(dir.path(), &digest));

    // Chunked, finished with a sha512 digest.
    let layer2 = bytes(11, 90_000);
    let digest2 = sha512(&layer2);
    let location = api.start_upload("five12").await;
    expect_status(api.patch_chunk(&location, 0, &layer2[..40_000]).await, 202);
    expect_status(
        api.patch_chunk(&location, 40_000, &layer2[40_000..]).await,
        202,
    );
    let resp = expect_status(api.put_upload(&location, &digest2, &[]).await, 201);
    assert_eq!(must_header(&resp, "docker-content-digest"), digest2);
    assert_eq!(api.pull_blob("five12", &digest2).await, layer2);

    // A manifest referencing sha512 layers, pushed by tag and by its
    // sha512 digest.
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    api.push_blob("five12", &config).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": [
            {"mediaType": OCI_LAYER, "digest": digest, "size": layer.len()},
            {"mediaType": OCI_LAYER, "digest": digest2, "size": layer2.len()},
        ],
    }))
    .expect("json");
    api.push_manifest("five12", "v1", OCI_MANIFEST, &manifest)
        .await;
    let manifest_digest = sha512(&manifest);
    let resp = api
        .put_manifest("five12", &manifest_digest, OCI_MANIFEST, &manifest)
        .await;
    let resp = expect_status(resp, 201);
    assert_eq!(must_header(&resp, "docker-content-digest"), manifest_digest);
    let resp = expect_status(
        api.get(&format!("/v2/five12/manifests/{manifest_digest}"))
            .await,
        200,
    );
    assert_eq!(must_header(&resp, "docker-content-digest"), manifest_digest);
    assert_eq!(resp.body.as_ref(), manifest.as_slice());
    let (_, body) = api.pull_manifest("five12", "v1").await;
    assert_eq!(body, manifest);
}

// ---------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------

/// GET and HEAD by `reference` serve exactly `body` as `media_type`.
async fn check_manifest(api: &TestApp, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let digest = sha256(body);
    let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}");
    let resp = api.get(&path).header("accept", &accept).await;
    let resp = expect_status(resp, 200);
    assert_eq!(must_header(&resp, "content-type"), media_type, "{path}");
    assert_eq!(
        must_header(&resp, "docker-content-digest"),
        digest,
        "{path}"
    );
    assert_eq!(must_header(&resp, "content-length"), body.len().to_string());
    assert_eq!(resp.body.as_ref(), body, "{path}");

    let resp = api.head(&path).header("accept", &accept).await;
    let resp = expect_status(resp, 200);
    assert_eq!(
        must_header(&resp, "content-type"),
        media_type,
        "HEAD {path}"
    );
    assert_eq!(
        must_header(&resp, "docker-content-digest"),
        digest,
        "HEAD {path}"
    );
    assert_eq!(must_header(&resp, "content-length"), body.len().to_string());
    assert!(resp.body.is_empty());
}

#[tokio::test]
async fn oci_image_manifest_by_tag_and_digest() {
    let (_dir, api) = setup("berth-conf-oci-").await;
    let image = push_image(&api, "oci/app", "v1", 12, 3000).await;
    check_manifest(&api, "oci/app", "v1", OCI_MANIFEST, &image.manifest).await;
    check_manifest(
        &api,
        "oci/app",
        &image.digest,
        OCI_MANIFEST,
        &image.manifest,
    )
    .await;
    assert_image_pulls(&api, &image).await;

    // Pushed by digest: reachable by digest, not tagged.
    let layer = bytes(13, 777);
    api.push_blob("oci/app", &layer).await;
    let manifest = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, &image.config),
        &[(OCI_LAYER, &layer)],
        json!({"annotations": {"org.opencontainers.image.title": "by digest"}}),
    );
    let digest = sha256(&manifest);
    api.push_manifest("oci/app", &digest, OCI_MANIFEST, &manifest)
        .await;
    check_manifest(&api, "oci/app", &digest, OCI_MANIFEST, &manifest).await;
    assert_eq!(api.tags("oci/app").await, Some(vec!["v1".to_string()]));

    // Moving a tag.
    api.push_manifest("oci/app", "v1", OCI_MANIFEST, &manifest)
        .await;
    check_manifest(&api, "oci/app", "v1", OCI_MANIFEST, &manifest).await;
    check_manifest(
        &api,
        "oci/app",
        &image.digest,
        OCI_MANIFEST,
        &image.manifest,
    )
    .await;
    // Manifests can be read through the blobs endpoint as well.
    assert_eq!(api.pull_blob("oci/app", &digest).await, manifest);
}

#[tokio::test]
async fn oci_index() {
    let (_dir, api) = setup("berth-conf-index-").await;
    let amd = push_image(&api, "multi", "amd", 14, 1000).await;
    let arm = push_image(&api, "multi", "arm", 15, 1000).await;
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": arm.digest, "size": arm.manifest.len(),
             "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": amd.digest, "size": amd.manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }))
    .expect("json");
    api.push_manifest("multi", "latest", OCI_INDEX, &index)
        .await;
    check_manifest(&api, "multi", "latest", OCI_INDEX, &index).await;
    check_manifest(&api, "multi", &sha256(&index), OCI_INDEX, &index).await;
    // Without Accept the stored type is served.
    let (media_type, body) = api.pull_manifest("multi", "latest").await;
    assert_eq!(media_type, OCI_INDEX);
    assert_eq!(body, index);
}

/// Pushes a Docker schema 2 image; returns its manifest.
async fn push_docker_image(api: &TestApp, repo: &str, seed: u64, arch: &str) -> Vec<u8> {
    let config = serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "seed": seed}))
        .expect("json");
    let layer = bytes(seed, 1500);
    api.push_blob(repo, &config).await;
    api.push_blob(repo, &layer).await;
    let manifest = image_manifest(
        DOCKER_MANIFEST,
        (DOCKER_CONFIG, &config),
        &[(DOCKER_LAYER, &layer)],
        json!({}),
    );
    api.push_manifest(repo, &sha256(&manifest), DOCKER_MANIFEST, &manifest)
        .await;
    manifest
}

#[tokio::test]
async fn docker_schema2_manifest() {
    let (_dir, api) = setup("berth-conf-docker-").await;
    let manifest = push_docker_image(&api, "docker/app", 16, "amd64").await;
    api.push_manifest("docker/app", "latest", DOCKER_MANIFEST, &manifest)
        .await;
    check_manifest(&api, "docker/app", "latest", DOCKER_MANIFEST, &manifest).await;
    check_manifest(
        &api,
        "docker/app",
        &sha256(&manifest),
        DOCKER_MANIFEST,
        &manifest,
    )
    .await;
}

#[tokio::test]
async fn docker_manifest_list_and_accept_negotiation() {
    let (_dir, api) = setup("berth-conf-list-").await;
    let arm = push_docker_image(&api, "listed", 17, "arm64").await;
    let amd = push_docker_image(&api, "listed", 18, "amd64").await;
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": sha256(&arm), "size": arm.len(),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": DOCKER_MANIFEST, "digest": sha256(&amd), "size": amd.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
        ],
    }))
    .expect("json");
    api.push_manifest("listed", "multi", DOCKER_LIST, &list)
        .await;
    check_manifest(&api, "listed", "multi", DOCKER_LIST, &list).await;
    check_manifest(&api, "listed", &sha256(&list), DOCKER_LIST, &list).await;

    // A client that only takes schema 2 manifests gets the linux/amd64 one.
    for reference in ["multi".to_string(), sha256(&list)] {
        for method in ["GET", "HEAD"] {
            let resp = api
                .request(method, &format!("/v2/listed/manifests/{reference}"))
                .header("accept", DOCKER_MANIFEST)
                .await;
            let resp = expect_status(resp, 200);
            assert_eq!(must_header(&resp, "content-type"), DOCKER_MANIFEST);
            assert_eq!(must_header(&resp, "docker-content-digest"), sha256(&amd));
            assert_eq!(must_header(&resp, "content-length"), amd.len().to_string());
            if method == "GET" {
                assert_eq!(resp.body.as_ref(), amd.as_slice());
            }
        }
    }
    // A client that takes lists gets the list.
    let resp = api
        .get("/v2/listed/manifests/multi")
        .header("accept", format!("{DOCKER_MANIFEST}, {DOCKER_LIST}"))
        .await;
    let resp = expect_status(resp, 200);
    assert_eq!(must_header(&resp, "content-type"), DOCKER_LIST);
    assert_eq!(resp.body.as_ref(), list.as_slice());
}

#[tokio::test]
async fn artifact_manifest_with_empty_config() {
    let (_dir, api) = setup("berth-conf-artifact-").await;
    let empty = b"{}".to_vec();
    assert_eq!(
        sha256(&empty),
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    api.push_blob("artifacts", &empty).await;
    let payload = bytes(19, 5000);
    api.push_blob("artifacts", &payload).await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.thing.v1",
        "config": {"mediaType": OCI_EMPTY, "digest": sha256(&empty), "size": 2, "data": "e30="},
        "layers": [
            {"mediaType": "application/vnd.example.thing.layer.v1+tar", "digest": sha256(&payload),
             "size": payload.len(), "annotations": {"org.opencontainers.image.title": "thing.tar"}},
        ],
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }))
    .expect("json");
    api.push_manifest("artifacts", "thing", OCI_MANIFEST, &manifest)
        .await;
    check_manifest(&api, "artifacts", "thing", OCI_MANIFEST, &manifest).await;
    check_manifest(
        &api,
        "artifacts",
        &sha256(&manifest),
        OCI_MANIFEST,
        &manifest,
    )
    .await;
    assert_eq!(api.pull_blob("artifacts", &sha256(&payload)).await, payload);
}

#[tokio::test]
async fn manifest_delete_by_digest_removes_its_tags() {
    let (_dir, api) = setup("berth-conf-mdel-").await;
    let image = push_image(&api, "deleting", "one", 20, 1000).await;
    api.push_manifest("deleting", "two", OCI_MANIFEST, &image.manifest)
        .await;
    let keep = push_image(&api, "deleting", "keep", 21, 1000).await;
    // Read through every path once (a cache must not outlive the delete).
    check_manifest(&api, "deleting", "one", OCI_MANIFEST, &image.manifest).await;
    check_manifest(&api, "deleting", "two", OCI_MANIFEST, &image.manifest).await;
    check_manifest(
        &api,
        "deleting",
        &image.digest,
        OCI_MANIFEST,
        &image.manifest,
    )
    .await;

    let resp = api
        .delete(&format!("/v2/deleting/manifests/{}", image.digest))
        .await;
    expect_status(resp, 202);
    for reference in ["one", "two", image.digest.as_str()] {
        expect_error(
            api.get(&format!("/v2/deleting/manifests/{reference}"))
                .await,
            404,
            "MANIFEST_UNKNOWN",
        );
        let resp = api
            .head(&format!("/v2/deleting/manifests/{reference}"))
            .await;
        assert_eq!(resp.status(), 404, "HEAD {reference}");
    }
    assert_eq!(api.tags("deleting").await, Some(vec!["keep".to_string()]));
    assert_image_pulls(&api, &keep).await;

    // Pushing the same bytes again by digest does not bring the tags back.
    api.push_manifest("deleting", &image.digest, OCI_MANIFEST, &image.manifest)
        .await;
    check_manifest(
        &api,
        "deleting",
        &image.digest,
        OCI_MANIFEST,
        &image.manifest,
    )
    .await;
    for tag in ["one", "two"] {
        expect_error(
            api.get(&format!("/v2/deleting/manifests/{tag}")).await,
            404,
            "MANIFEST_UNKNOWN",
        );
    }
    assert_eq!(api.tags("deleting").await, Some(vec!["keep".to_string()]));
}

#[tokio::test]
async fn manifest_delete_by_tag_keeps_the_manifest() {
    let (_dir, api) = setup("berth-conf-tdel-").await;
    let image = push_image(&api, "untag", "one", 22, 1000).await;
    api.push_manifest("untag", "two", OCI_MANIFEST, &image.manifest)
        .await;
    check_manifest(&api, "untag", "one", OCI_MANIFEST, &image.manifest).await;

    expect_status(api.delete("/v2/untag/manifests/one").await, 202);
    expect_error(
        api.get("/v2/untag/manifests/one").await,
        404,
        "MANIFEST_UNKNOWN",
    );
    check_manifest(&api, "untag", "two", OCI_MANIFEST, &image.manifest).await;
    check_manifest(&api, "untag", &image.digest, OCI_MANIFEST, &image.manifest).await;
    assert_eq!(api.tags("untag").await, Some(vec!["two".to_string()]));
    expect_error(
        api.delete("/v2/untag/manifests/one").await,
        404,
        "MANIFEST_UNKNOWN",
    );
}

// ---------------------------------------------------------------------------
// Listings
// ---------------------------------------------------------------------------

/// Walks a paginated listing by following `Link`; returns the pages.
async fn walk_pages(api: &TestApp, first: &str, key: &str, n: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(path) = next.take() {
        assert!(pages.len() < 100, "pagination does not end");
        let resp = expect_status(api.get(&path).await, 200);
        let link = header(&resp, "link");
        let v: Value = resp.json();
        let items = string_list(&v[key]);
        assert!(items.len() <= n, "page of {} items for n={n}", items.len());
        if let Some(link) = link {
            let last = items.last().expect("a page with a Link has items");
            let base = first.split('?').next().expect("path");
            assert_eq!(link, format!("<{base}?n={n}&last={last}>; rel=\"next\""));
            let target = link
                .strip_prefix('<')
                .and_then(|l| l.split_once('>'))
                .map(|(t, _)| t.to_string())
                .expect("<target>");
            next = Some(target);
        }
        pages.push(items);
    }
    pages
}

#[tokio::test]
async fn tags_list_pagination() {
    let (_dir, api) = setup("berth-conf-tags-").await;
    let image = push_image(&api, "paged/repo", "seed", 23, 100).await;
    expect_status(api.delete("/v2/paged/repo/manifests/seed").await, 202);
    // 25 tags, pushed out of order.
    let mut names: Vec<String> = (0..25).map(|i| format!("t{:02}", (i * 7) % 25)).collect();
    for name in &names {
        api.push_manifest("paged/repo", name, OCI_MANIFEST, &image.manifest)
            .await;
    }
    names.sort();

    let all = api.tags("paged/repo").await.expect("repo");
    assert_eq!(all, names, "unpaginated list is sorted and complete");
    let resp = expect_status(api.get("/v2/paged/repo/tags/list").await, 200);
    assert!(header(&resp, "link").is_none(), "no Link without n");

    let pages = walk_pages(&api, "/v2/paged/repo/tags/list?n=10", "tags", 10).await;
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(pages[0], names[..10]);
    assert_eq!(pages[1], names[10..20]);
    assert_eq!(pages[2], names[20..]);

    // `last` alone, and a page from the middle.
    let resp = expect_status(api.get("/v2/paged/repo/tags/list?n=3&last=t10").await, 200);
    let v: Value = resp.json();
    assert_eq!(string_list(&v["tags"]), vec!["t11", "t12", "t13"]);
    let resp = expect_status(api.get("/v2/paged/repo/tags/list?last=t22").await, 200);
    let v: Value = resp.json();
    assert_eq!(string_list(&v["tags"]), vec!["t23", "t24"]);
}

#[tokio::test]
async fn catalog_pagination() {
    let (_dir, api) = setup("berth-conf-catalog-").await;
    let config = b"{}".to_vec();
    let mut repos: Vec<String> = Vec::new();
    for i in 0..12 {
        let repo = if i % 3 == 0 {
            format!("team/app-{i:02}")
        } else {
            format!("app{i:02}")
        };
        api.push_blob(&repo, &config).await;
        let manifest = image_manifest(OCI_MANIFEST, (OCI_EMPTY, &config), &[], json!({}));
        api.push_manifest(&repo, "latest", OCI_MANIFEST, &manifest)
            .await;
        repos.push(repo);
    }
    // A repository with only a blob is not listed.
    api.push_blob("blobonly", &config).await;
    repos.sort();

    assert_eq!(api.catalog().await, repos);
    let pages = walk_pages(&api, "/v2/_catalog?n=5", "repositories", 5).await;
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(pages.concat(), repos);
    assert_eq!(pages[2].len(), 2);
}

#[tokio::test]
async fn tags_list_of_unknown_repository() {
    let (_dir, api) = setup("berth-conf-unknown-").await;
    expect_error(
        api.get("/v2/nobody/here/tags/list").await,
        404,
        "NAME_UNKNOWN",
    );
    expect_error(
        api.get("/v2/nobody/manifests/latest").await,
        404,
        "NAME_UNKNOWN",
    );
}

// ---------------------------------------------------------------------------
// Cross-repository mount
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cross_repository_mount() {
    let (dir, api) = setup("berth-conf-mount-").await;
    let data = bytes(24, 40_000);
    let digest = api.push_blob("source/a", &data).await;
    let files = blob_files(dir.path());

    let resp = api
        .post(&format!(
            "/v2/target/b/blobs/uploads/?mount={digest}&from=source/a"
        ))
        .await;
    let resp = expect_status(resp, 201);
    assert_eq!(
        must_header(&resp, "location"),
        format!("/v2/target/b/blobs/{digest}")
    );
    assert_eq!(must_header(&resp, "docker-content-digest"), digest);
    assert_eq!(api.pull_blob("target/b", &digest).await, data);
    assert_eq!(blob_files(dir.path()), files, "a mount copies nothing");

    // From a repository that lacks the blob: an ordinary upload session.
    let other = bytes(25, 1000);
    let other_digest = sha256(&other);
    let resp = api
        .post(&format!(
            "/v2/target/c/blobs/uploads/?mount={other_digest}&from=source/a"
        ))
        .await;
    let resp = expect_status(resp, 202);
    let location = must_header(&resp, "location");
    assert!(
        location.starts_with("/v2/target/c/blobs/uploads/"),
        "{location}"
    );
    assert!(!must_header(&resp, "docker-upload-uuid").is_empty());
    assert!(!api.blob_exists("target/c", &other_digest).await);
    expect_status(api.put_upload(&location, &other_digest, &other).await, 201);
    assert_eq!(api.pull_blob("target/c", &other_digest).await, other);

    // Without `from`: a mount (201) or an upload session (202), either
    // consistent with what is then served.
    let resp = api
        .post(&format!("/v2/target/e/blobs/uploads/?mount={digest}"))
        .await;
    match resp.status() {
        201 => assert_eq!(api.pull_blob("target/e", &digest).await, data),
        202 => {
            assert!(must_header(&resp, "location").starts_with("/v2/target/e/blobs/uploads/"));
            assert!(!api.blob_exists("target/e", &digest).await);
        }
        other => panic!("mount without from: {other}"),
    }

    // From a repository that does not exist: also a fallback.
    let resp = api
        .post(&format!(
            "/v2/target/d/blobs/uploads/?mount={digest}&from=ghost"
        ))
        .await;
    let resp = expect_status(resp, 202);
    assert!(must_header(&resp, "location").starts_with("/v2/target/d/blobs/uploads/"));
    assert!(!api.blob_exists("target/d", &digest).await);
}

// ---------------------------------------------------------------------------
// Referrers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn referrers_api() {
    let (_dir, api) = setup("berth-conf-referrers-").await;
    let subject = push_image(&api, "signed/app", "v1", 26, 1000).await;
    let empty = b"{}".to_vec();
    api.push_blob("signed/app", &empty).await;
    let subject_descriptor = json!({
        "mediaType": OCI_MANIFEST, "digest": subject.digest, "size": subject.manifest.len(),
    });

    let mut referrers = Vec::new();
    for (i, artifact_type) in [
        "application/vnd.example.sbom.v1+json",
        "application/vnd.example.signature.v1",
    ]
    .into_iter()
    .enumerate()
    {
        let payload = bytes(27 + i as u64, 300);
        api.push_blob("signed/app", &payload).await;
        let annotations =
            json!({"org.example.kind": artifact_type, "org.example.n": i.to_string()});
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "digest": sha256(&empty), "size": 2},
            "layers": [descriptor("application/octet-stream", &payload)],
            "subject": subject_descriptor,
            "annotations": annotations,
        }))
        .expect("json");
        let digest = sha256(&manifest);
        let resp = api
            .push_manifest("signed/app", &digest, OCI_MANIFEST, &manifest)
            .await;
        assert_eq!(must_header(&resp, "oci-subject"), subject.digest);
        referrers.push((artifact_type, digest, manifest, annotations));
    }
    // Without artifactType the config's media type stands in for it.
    let config = br#"{"kind":"attestation"}"#.to_vec();
    api.push_blob("signed/app", &config).await;
    let attestation = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.example.attestation.config.v1+json", &config),
        "layers": [],
        "subject": subject_descriptor,
    }))
    .expect("json");
    let resp = api
        .push_manifest("signed/app", "attestation", OCI_MANIFEST, &attestation)
        .await;
    assert_eq!(must_header(&resp, "oci-subject"), subject.digest);
    // A manifest without a subject reports none.
    let plain = push_image(&api, "signed/app", "plain", 29, 100).await;
    let resp = api
        .put_manifest("signed/app", "plain", OCI_MANIFEST, &plain.manifest)
        .await;
    assert!(header(&resp, "oci-subject").is_none());

    let path = format!("/v2/signed/app/referrers/{}", subject.digest);
    let resp = expect_status(api.get(&path).await, 200);
    assert_eq!(must_header(&resp, "content-type"), OCI_INDEX);
    assert!(header(&resp, "oci-filters-applied").is_none());
    let index: Value = resp.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let listed = index["manifests"].as_array().expect("manifests").clone();
    assert_eq!(listed.len(), 3, "{index}");
    for (artifact_type, digest, manifest, annotations) in &referrers {
        let d = listed
            .iter()
            .find(|d| d["digest"] == json!(digest))
            .unwrap_or_else(|| panic!("{digest} not listed: {index}"));
        assert_eq!(d["mediaType"], OCI_MANIFEST);
        assert_eq!(d["size"], json!(manifest.len()));
        assert_eq!(d["artifactType"], json!(artifact_type));
        assert_eq!(d["annotations"], *annotations);
    }
    let d = listed
        .iter()
        .find(|d| d["digest"] == json!(sha256(&attestation)))
        .unwrap_or_else(|| panic!("attestation not listed: {index}"));
    assert_eq!(
        d["artifactType"],
        "application/vnd.example.attestation.config.v1+json"
    );
    assert_eq!(d["size"], json!(attestation.len()));

    // Filtered.
    let resp = expect_status(
        api.get(&format!(
            "{path}?artifactType=application/vnd.example.sbom.v1%2Bjson"
        ))
        .await,
        200,
    );
    assert_eq!(must_header(&resp, "oci-filters-applied"), "artifactType");
    let index: Value = resp.json();
    let listed = index["manifests"].as_array().expect("manifests");
    assert_eq!(listed.len(), 1, "{index}");
    assert_eq!(listed[0]["digest"], json!(referrers[0].1));
    assert_eq!(
        listed[0]["artifactType"],
        "application/vnd.example.sbom.v1+json"
    );

    // A filter nothing matches.
    let resp = expect_status(
        api.get(&format!("{path}?artifactType=application/vnd.example.none"))
            .await,
        200,
    );
    assert_eq!(must_header(&resp, "oci-filters-applied"), "artifactType");
    let index: Value = resp.json();
    assert_eq!(index["manifests"], json!([]));

    // An unknown subject, or a known one asked of another repository: an
    // empty index, not an error.
    let resp = expect_status(
        api.get(&format!("/v2/signed/other/referrers/{}", subject.digest))
            .await,
        200,
    );
    let index: Value = resp.json();
    assert_eq!(
        index["manifests"],
        json!([]),
        "referrers leak across repositories"
    );
    for repo in ["signed/app", "unknown/repo"] {
        let resp = expect_status(
            api.get(&format!("/v2/{repo}/referrers/{}", sha256(b"nothing")))
                .await,
            200,
        );
        assert_eq!(must_header(&resp, "content-type"), OCI_INDEX);
        let index: Value = resp.json();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], OCI_INDEX);
        assert_eq!(index["manifests"], json!([]));
    }

    // Deleting a referrer takes it off the list.
    expect_status(
        api.delete(&format!("/v2/signed/app/manifests/{}", referrers[1].1))
            .await,
        202,
    );
    let resp = expect_status(api.get(&path).await, 200);
    let index: Value = resp.json();
    let listed = index["manifests"].as_array().expect("manifests");
    assert_eq!(listed.len(), 2, "{index}");
    assert!(listed.iter().all(|d| d["digest"] != json!(referrers[1].1)));
}
