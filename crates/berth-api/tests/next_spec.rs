//! What the distribution-spec's main branch (its next release) adds, in
//! process: push by digest with `?tag=` answered by `OCI-Tag` headers,
//! `?digest-algorithm=` on uploads, `OCI-Chunk-Min-Length`, and the
//! `sparseManifests` setting — refused by default, accepted when on, with
//! the collector and the referrers API still right.

mod support;

use berth_api::app::AppSettings;
use berth_manage::registry::UpdateRegistry;
use serde_json::json;
use support::manage::send;
use support::*;

async fn setup(prefix: &str) -> (tempfile::TempDir, TestApp) {
    let dir = tempdir(prefix);
    let api = TestApp::embedded(dir.path()).await.as_owner();
    (dir, api)
}

/// Every `OCI-Tag` header of a response, in order.
fn oci_tags(resp: &TestResponse) -> Vec<String> {
    resp.headers
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().expect("ASCII").to_string())
        .collect()
}

fn tag_query(tags: &[String]) -> String {
    tags.iter()
        .map(|t| format!("tag={t}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn push_by_digest_sets_every_tag_parameter() {
    let (_dir, api) = setup("berth-next-tags-").await;
    let image = push_image(&api, "multi/app", "first", 1, 3000).await;
    let tags: Vec<String> = (0..12).map(|i| format!("v{i}")).collect();
    let resp = api
        .put(&format!(
            "/v2/multi/app/manifests/{}?{}",
            image.digest,
            tag_query(&tags)
        ))
        .header("content-type", OCI_MANIFEST)
        .body(image.manifest.clone())
        .await;
    let resp = expect_status(resp, 201);
    assert_eq!(oci_tags(&resp), tags, "one OCI-Tag per ?tag=, in order");
    assert_eq!(must_header(&resp, "docker-content-digest"), image.digest);
    for tag in &tags {
        let (_, body) = api.pull_manifest("multi/app", tag).await;
        assert_eq!(body, image.manifest, "tag {tag}");
    }
    let mut expected: Vec<String> = tags.clone();
    expected.push("first".into());
    expected.sort();
    assert_eq!(api.tags("multi/app").await, Some(expected));

    // Without ?tag= a push by digest sets none, and says so by sending none.
    let other = push_image(&api, "multi/app", "second", 2, 3000).await;
    let resp = api
        .put_manifest("multi/app", &other.digest, OCI_MANIFEST, &other.manifest)
        .await;
    assert!(oci_tags(&expect_status(resp, 201)).is_empty());
}

#[tokio::test]
async fn tag_parameters_are_all_or_nothing() {
    let (_dir, api) = setup("berth-next-tags-atomic-").await;
    let image = push_image(&api, "atomic/app", "base", 3, 2000).await;
    let put = |query: String| {
        api.put(&format!(
            "/v2/atomic/app/manifests/{}?{query}",
            image.digest
        ))
        .header("content-type", OCI_MANIFEST)
        .body(image.manifest.clone())
    };
    // One bad tag among good ones: nothing is tagged.
    let resp = put("tag=good1&tag=-bad&tag=good2".into()).await;
    let message = expect_error(resp, 400, "TAG_INVALID");
    assert!(message.contains("-bad"), "{message}");
    // Past the limit: 414, nothing tagged.
    let many: Vec<String> = (0..=berth_registry::MAX_TAGS_PER_PUSH)
        .map(|i| format!("t{i}"))
        .collect();
    let resp = put(tag_query(&many)).await;
    let message = expect_error(resp, 414, "TAG_INVALID");
    assert!(message.contains("at most 100"), "{message}");
    // A manifest whose blobs are missing: refused, and no tag moves.
    let missing = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, b"{}"),
        &[(OCI_LAYER, b"never uploaded")],
        json!({}),
    );
    let resp = api
        .put(&format!(
            "/v2/atomic/app/manifests/{}?tag=base&tag=extra",
            sha256(&missing)
        ))
        .header("content-type", OCI_MANIFEST)
        .body(missing)
        .await;
    expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(api.tags("atomic/app").await, Some(vec!["base".to_string()]));
    let (_, body) = api.pull_manifest("atomic/app", "base").await;
    assert_eq!(body, image.manifest);
}

#[tokio::test]
async fn sha512_content_uploaded_with_digest_algorithm_and_tagged_by_query() {
    let (dir, api) = setup("berth-next-sha512-").await;
    // Chunked, hashed as sha512 from the first byte.
    let layer = bytes(40, 300_000);
    let layer_digest = sha512(&layer);
    let resp = api
        .post("/v2/five12/app/blobs/uploads/?digest-algorithm=sha512")
        .await;
    let resp = expect_status(resp, 202);
    let location = must_header(&resp, "location");
    expect_status(api.patch_chunk(&location, 0, &layer[..120_000]).await, 202);
    expect_status(
        api.patch_chunk(&location, 120_000, &layer[120_000..]).await,
        202,
    );
    let resp = expect_status(api.put_upload(&location, &layer_digest, &[]).await, 201);
    assert_eq!(must_header(&resp, "docker-content-digest"), layer_digest);
    assert!(blob_stored(dir.path(), &layer_digest));

    // The config as a sha512 upload completed in one PUT.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = sha512(config);
    let resp = api
        .post("/v2/five12/app/blobs/uploads/?digest-algorithm=sha512")
        .await;
    let location = must_header(&expect_status(resp, 202), "location");
    expect_status(api.put_upload(&location, &config_digest, config).await, 201);

    // The wrong algorithm's digest on completion is still checked.
    let resp = api
        .post("/v2/five12/app/blobs/uploads/?digest-algorithm=sha512")
        .await;
    let location = must_header(&expect_status(resp, 202), "location");
    let resp = api.put_upload(&location, &sha256(b"abc"), b"abd").await;
    expect_error(resp, 400, "DIGEST_INVALID");

    // A manifest of sha512 descriptors, pushed by its sha512 digest: the
    // only way to tag it is ?tag=.
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer.len()}],
    }))
    .expect("json");
    let manifest_digest = sha512(&manifest);
    let resp = api
        .put(&format!(
            "/v2/five12/app/manifests/{manifest_digest}?tag=latest&tag=1.0"
        ))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .await;
    let resp = expect_status(resp, 201);
    assert_eq!(oci_tags(&resp), ["latest", "1.0"]);
    assert_eq!(must_header(&resp, "docker-content-digest"), manifest_digest);
    for tag in ["latest", "1.0"] {
        let resp = expect_status(
            api.get(&format!("/v2/five12/app/manifests/{tag}")).await,
            200,
        );
        assert_eq!(must_header(&resp, "docker-content-digest"), manifest_digest);
        assert_eq!(resp.body.as_ref(), manifest.as_slice());
        let resp = expect_status(
            api.head(&format!("/v2/five12/app/manifests/{tag}")).await,
            200,
        );
        assert_eq!(must_header(&resp, "docker-content-digest"), manifest_digest);
    }
    assert_eq!(api.pull_blob("five12/app", &layer_digest).await, layer);
}

#[tokio::test]
async fn unknown_digest_algorithm_is_refused_before_a_session_exists() {
    let (dir, api) = setup("berth-next-algo-").await;
    for algorithm in ["md5", "SHA256", "blake3", ""] {
        let resp = api
            .post(&format!(
                "/v2/algo/app/blobs/uploads/?digest-algorithm={algorithm}"
            ))
            .await;
        let message = expect_error(resp, 400, "DIGEST_INVALID");
        assert!(message.contains("sha256 or sha512"), "{message}");
    }
    assert!(upload_files(dir.path()).is_empty());
    // sha256 named explicitly is the default.
    let resp = api
        .post("/v2/algo/app/blobs/uploads/?digest-algorithm=sha256")
        .await;
    let location = must_header(&expect_status(resp, 202), "location");
    let data = bytes(41, 5000);
    expect_status(api.put_upload(&location, &sha256(&data), &data).await, 201);
}

#[tokio::test]
async fn upload_responses_announce_the_chunk_minimum() {
    let dir = tempdir("berth-next-chunkmin-");
    let mut settings = AppSettings::default();
    settings.registry.chunk_min_length = 65_536;
    let api = TestApp::embedded_with(dir.path(), settings)
        .await
        .as_owner();
    let resp = expect_status(api.post("/v2/chunk/app/blobs/uploads/").await, 202);
    assert_eq!(must_header(&resp, "oci-chunk-min-length"), "65536");
    let location = must_header(&resp, "location");
    let data = bytes(42, 70_000);
    let resp = expect_status(api.patch_chunk(&location, 0, &data).await, 202);
    assert_eq!(must_header(&resp, "oci-chunk-min-length"), "65536");
    let resp = expect_status(api.upload_status(&location).await, 204);
    assert_eq!(must_header(&resp, "oci-chunk-min-length"), "65536");
}

/// An index over two platforms of which only one was pushed, and an image
/// whose second layer was never uploaded.
struct SparseContent {
    present: Image,
    absent_child: String,
    index: Vec<u8>,
    image: Vec<u8>,
    absent_layer: Vec<u8>,
}

async fn sparse_content(api: &TestApp, repo: &str) -> SparseContent {
    let present = push_image(api, repo, "amd64", 50, 4000).await;
    let absent_child = sha256(b"the arm64 manifest, never pushed");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": present.digest, "size": present.manifest.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": absent_child, "size": 1234,
             "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    }))
    .expect("json");
    let absent_layer = bytes(51, 6000);
    let image = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, &present.config),
        &[(OCI_LAYER, &present.layers[0]), (OCI_LAYER, &absent_layer)],
        json!({}),
    );
    SparseContent {
        present,
        absent_child,
        index,
        image,
        absent_layer,
    }
}

fn set_sparse(enabled: bool) -> UpdateRegistry {
    UpdateRegistry {
        sparse_manifests: Some(enabled),
        ..Default::default()
    }
}

#[tokio::test]
async fn sparse_manifests_are_refused_by_default_and_accepted_when_enabled() {
    let dir = tempdir("berth-next-sparse-");
    let mut settings = AppSettings::default();
    settings.registry.gc_grace = std::time::Duration::ZERO;
    let api = TestApp::embedded_with(dir.path(), settings)
        .await
        .as_owner();
    let c = sparse_content(&api, "sparse/app").await;

    // Off (the default): both are refused, naming what is missing.
    assert!(
        !send(&api, &berth_manage::registry::GetRegistry {})
            .await
            .sparse_manifests
    );
    let resp = api
        .put_manifest("sparse/app", "multi", OCI_INDEX, &c.index)
        .await;
    let message = expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN");
    assert!(message.contains(&c.absent_child), "{message}");
    let resp = api
        .put_manifest("sparse/app", "partial", OCI_MANIFEST, &c.image)
        .await;
    let message = expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN");
    assert!(message.contains(&sha256(&c.absent_layer)), "{message}");

    // On: both are stored and serve byte for byte.
    let settings = send(&api, &set_sparse(true)).await;
    assert!(settings.sparse_manifests);
    api.push_manifest("sparse/app", "multi", OCI_INDEX, &c.index)
        .await;
    api.push_manifest("sparse/app", "partial", OCI_MANIFEST, &c.image)
        .await;
    assert_eq!(api.pull_manifest("sparse/app", "multi").await.1, c.index);
    assert_eq!(api.pull_manifest("sparse/app", "partial").await.1, c.image);
    // What is absent stays absent; what is present pulls.
    let resp = api
        .get(&format!("/v2/sparse/app/manifests/{}", c.absent_child))
        .await;
    expect_error(resp, 404, "MANIFEST_UNKNOWN");
    assert!(
        !api.blob_exists("sparse/app", &sha256(&c.absent_layer))
            .await
    );

    // The collector: the untagged child the index names is kept, and the
    // layer pushed later is kept alive by the sparse manifest naming it.
    let resp = api
        .delete(&format!("/v2/sparse/app/manifests/{}", "amd64"))
        .await;
    expect_status(resp, 202);
    let late = api.push_blob("other/repo", &c.absent_layer).await;
    let resp = api
        .post(&format!(
            "/v2/sparse/app/blobs/uploads/?mount={late}&from=other/repo"
        ))
        .await;
    expect_status(resp, 201);
    expect_status(
        api.delete(&format!("/v2/other/repo/blobs/{late}")).await,
        202,
    );
    // A blob nothing names, to see the run collect.
    let stray = api.push_blob("sparse/app", &bytes(52, 100)).await;
    age_blob_links(dir.path(), 10).await;
    api.state()
        .registry
        .collect_garbage()
        .await
        .expect("collector run");
    assert_image_pulls_by_digest(&api, &c.present).await;
    assert_eq!(api.pull_blob("sparse/app", &late).await, c.absent_layer);
    assert!(
        !api.blob_exists("sparse/app", &stray).await,
        "the run collected nothing"
    );

    // Referrers of a sparse manifest work as for any other.
    let signature = image_manifest(
        OCI_MANIFEST,
        (OCI_EMPTY, b"{}"),
        &[],
        json!({"artifactType": "application/vnd.test.signature",
               "subject": {"mediaType": OCI_MANIFEST, "digest": sha256(&c.image), "size": c.image.len()}}),
    );
    api.push_blob("sparse/app", b"{}").await;
    api.push_manifest("sparse/app", &sha256(&signature), OCI_MANIFEST, &signature)
        .await;
    let referrers = expect_status(
        api.get(&format!("/v2/sparse/app/referrers/{}", sha256(&c.image)))
            .await,
        200,
    )
    .json();
    assert_eq!(
        referrers["manifests"][0]["digest"].as_str(),
        Some(sha256(&signature).as_str()),
        "{referrers}"
    );

    // Off again: refused again.
    send(&api, &set_sparse(false)).await;
    let resp = api
        .put_manifest("sparse/app", "again", OCI_INDEX, &c.index)
        .await;
    expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN");
}

/// The image still pulls by digest: manifest, config and layers.
async fn assert_image_pulls_by_digest(api: &TestApp, image: &Image) {
    let (_, body) = api.pull_manifest(&image.repo, &image.digest).await;
    assert_eq!(body, image.manifest);
    assert_eq!(
        api.pull_blob(&image.repo, &image.config_digest()).await,
        image.config
    );
    for layer in &image.layers {
        assert_eq!(&api.pull_blob(&image.repo, &sha256(layer)).await, layer);
    }
}
