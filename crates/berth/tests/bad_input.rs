//! Bad input: every malformed request gets the spec's error
//! code in the JSON envelope with a readable message, and changes nothing —
//! no tag moves, no repository appears, no blob or upload file is left on
//! disk, and no path escapes the data directory.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;

/// A registry holding `bad/repo:stable` and a blob in `other/repo`, with a
/// snapshot of everything a client or the disk can show.
struct Fixture {
    dir: tempfile::TempDir,
    server: TestServer,
    api: Api,
    image: Image,
    other_blob: Vec<u8>,
    before: Snapshot,
}

/// Repositories whose state every check compares, including one that must
/// stay unknown.
const REPOS: &[&str] = &["bad/repo", "other/repo", "fresh/repo"];

async fn fixture(prefix: &str) -> Fixture {
    let dir = tempdir(prefix);
    let server = TestServer::start(&dir.path().join("data"));
    let api = Api::new(&server);
    let image = push_image(&api, "bad/repo", "stable", 1, 4000).await;
    let other_blob = bytes(2, 3000);
    api.push_blob("other/repo", &other_blob).await;
    let before = snapshot(&api, server.data_dir(), REPOS).await;
    Fixture {
        dir,
        server,
        api,
        image,
        other_blob,
        before,
    }
}

impl Fixture {
    fn data(&self) -> &Path {
        self.server.data_dir()
    }

    /// Nothing a client or the disk shows has changed, and the image still
    /// pulls byte for byte.
    async fn assert_unchanged(&self) {
        let now = snapshot(&self.api, self.data(), REPOS).await;
        assert_eq!(now, self.before, "the store changed");
        assert_image_pulls(&self.api, &self.image).await;
        assert_eq!(
            self.api
                .pull_blob("other/repo", &sha256(&self.other_blob))
                .await,
            self.other_blob
        );
    }
}

// ---------------------------------------------------------------------------
// Names and paths
// ---------------------------------------------------------------------------

/// Repository names that the spec's grammar rejects, as they appear in a
/// request target (some percent-encoded).
fn invalid_names() -> Vec<String> {
    vec![
        "../etc".into(),
        "a/../../etc".into(),
        "..".into(),
        ".".into(),
        "a/./b".into(),
        "%2e%2e".into(),
        "%2E%2E/etc".into(),
        "..%2fetc".into(),
        "a%2f..%2f..%2fetc".into(),
        "a/%2e%2e/b".into(),
        "%00".into(),
        "Upper".into(),
        "lib/Ubuntu".into(),
        "a//b".into(),
        "a/".into(),
        "-a".into(),
        "a-".into(),
        "a___b".into(),
        "a..b".into(),
        "with%20space".into(),
        "a".repeat(256),
        format!("{}/{}", "a".repeat(200), "b".repeat(55)),
    ]
}

#[tokio::test]
async fn invalid_repository_names_are_name_invalid() {
    let f = fixture("berth-bad-names-").await;
    let digest = sha256(b"x");
    let manifest = f.image.manifest.clone();
    for name in invalid_names() {
        let cases: Vec<(&str, String, Vec<u8>)> = vec![
            ("GET", format!("/v2/{name}/tags/list"), vec![]),
            ("GET", format!("/v2/{name}/manifests/latest"), vec![]),
            (
                "PUT",
                format!("/v2/{name}/manifests/latest"),
                manifest.clone(),
            ),
            ("DELETE", format!("/v2/{name}/manifests/{digest}"), vec![]),
            ("GET", format!("/v2/{name}/blobs/{digest}"), vec![]),
            ("POST", format!("/v2/{name}/blobs/uploads/"), vec![]),
            (
                "POST",
                format!("/v2/{name}/blobs/uploads/?digest={digest}"),
                b"x".to_vec(),
            ),
            ("GET", format!("/v2/{name}/referrers/{digest}"), vec![]),
        ];
        for (method, target, body) in cases {
            let headers: &[(&str, &str)] = if method == "PUT" {
                &[("Content-Type", OCI_MANIFEST)]
            } else {
                &[]
            };
            let resp = f.server.raw(method, &target, headers, &body);
            let message = resp.expect_error(&format!("{method} {target}"), 400, "NAME_INVALID");
            assert!(
                message.to_lowercase().contains("name"),
                "{method} {target}: message does not say what is wrong: {message}"
            );
        }
    }
    // A cross-repository mount from an invalid source name (in the query,
    // which URL libraries leave as it is).
    let resp = f
        .api
        .http
        .post(f.api.url(&format!(
            "/v2/fresh/repo/blobs/uploads/?mount={digest}&from=../bad/repo"
        )))
        .send()
        .await
        .expect("POST mount");
    expect_error(resp, 400, "NAME_INVALID").await;

    // The longest valid name is 255 characters: valid, just unknown.
    let longest = format!("{}/{}", "a".repeat(200), "b".repeat(54));
    assert_eq!(longest.len(), 255);
    let resp = f.api.get(&format!("/v2/{longest}/tags/list")).await;
    expect_error(resp, 404, "NAME_UNKNOWN").await;
    f.assert_unchanged().await;
}

#[tokio::test]
async fn path_traversal_touches_nothing_outside_the_data_dir() {
    let f = fixture("berth-bad-traversal-").await;
    let root = f.dir.path().to_path_buf();
    let marker = format!("escape-{}", std::process::id());
    let good = f.image.layer_digests()[0].clone();
    let body = b"escaping bytes".to_vec();
    let body_digest = sha256(&body);
    let upload = f.api.start_upload("bad/repo").await;
    let upload_id = upload.rsplit('/').next().expect("id").to_string();
    let before_uploads = upload_files(f.data());

    // (method, target, expected status, expected code)
    let cases: Vec<(&str, String, u16, &str)> = vec![
        // Names.
        (
            "POST",
            format!("/v2/../../{marker}/blobs/uploads/?digest={body_digest}"),
            400,
            "NAME_INVALID",
        ),
        (
            "POST",
            format!("/v2/..%2f..%2f{marker}/blobs/uploads/?digest={body_digest}"),
            400,
            "NAME_INVALID",
        ),
        (
            "POST",
            format!("/v2/%2e%2e/%2e%2e/{marker}/blobs/uploads/"),
            400,
            "NAME_INVALID",
        ),
        (
            "PUT",
            format!("/v2/%2e%2e%2f%2e%2e%2f{marker}/manifests/latest"),
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            format!("/v2/../../../../../../etc/blobs/{good}"),
            400,
            "NAME_INVALID",
        ),
        // Tags.
        (
            "PUT",
            format!("/v2/bad/repo/manifests/..%2f..%2f{marker}"),
            400,
            "TAG_INVALID",
        ),
        (
            "PUT",
            "/v2/bad/repo/manifests/%2e%2e".to_string(),
            400,
            "TAG_INVALID",
        ),
        // Digests, which become storage paths.
        (
            "POST",
            format!("/v2/bad/repo/blobs/uploads/?digest=sha256:../../../{marker}"),
            400,
            "DIGEST_INVALID",
        ),
        (
            "POST",
            format!("/v2/bad/repo/blobs/uploads/?digest=sha256:..%2f..%2f{marker}"),
            400,
            "DIGEST_INVALID",
        ),
        (
            "PUT",
            format!("{upload}?digest=sha256:..%2f..%2f..%2f{marker}"),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/bad/repo/blobs/sha256:..%2f..%2f..%2fberth.db".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/bad/repo/blobs/sha256:%2e%2e".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/bad/repo/manifests/sha256:..%2f..%2fberth.db".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            "POST",
            format!("/v2/bad/repo/blobs/uploads/?mount=sha256:..%2f..%2f{marker}&from=other/repo"),
            400,
            "DIGEST_INVALID",
        ),
        // Upload ids, which become storage paths too.
        (
            "PATCH",
            format!("/v2/bad/repo/blobs/uploads/..%2f..%2f{marker}"),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            "PUT",
            format!("/v2/bad/repo/blobs/uploads/..%2f..%2f{marker}?digest={body_digest}"),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            "GET",
            "/v2/bad/repo/blobs/uploads/..%2f..%2fberth.db".to_string(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            "GET",
            format!("/v2/bad/repo/blobs/uploads/%2e%2e%2f{upload_id}"),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            "DELETE",
            "/v2/bad/repo/blobs/uploads/%2e%2e".to_string(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        // Paths that are not API paths at all.
        (
            "GET",
            "/v2/../../../../etc/passwd".to_string(),
            404,
            "NAME_UNKNOWN",
        ),
        ("GET", "/v2/..".to_string(), 404, "NAME_UNKNOWN"),
        (
            "PUT",
            format!("/v2/bad/repo/blobs/uploads/../../../{marker}?digest={body_digest}"),
            404,
            "NAME_UNKNOWN",
        ),
        (
            "GET",
            "/../../../etc/passwd".to_string(),
            404,
            "NAME_UNKNOWN",
        ),
    ];
    for (method, target, status, code) in cases {
        let headers: &[(&str, &str)] = if target.contains("/manifests/") {
            &[("Content-Type", OCI_MANIFEST)]
        } else {
            &[("Content-Type", "application/octet-stream")]
        };
        let payload: &[u8] = if target.contains("/manifests/") {
            &f.image.manifest
        } else {
            &body
        };
        let resp = f.server.raw(method, &target, headers, payload);
        resp.expect_error(&format!("{method} {target}"), status, code);
    }

    // Nothing outside <data>: the test's root holds only the data
    // directory, and the marker appears nowhere.
    for path in all_paths(&root) {
        assert!(
            path.starts_with(root.join("data")),
            "{} was created outside the data directory",
            path.display()
        );
    }
    let mut searched = all_paths(&root);
    for dir in [
        Path::new("/tmp"),
        Path::new("/"),
        root.parent().expect("parent"),
    ] {
        searched.extend(
            std::fs::read_dir(dir)
                .expect("read_dir")
                .flatten()
                .map(|e| e.path()),
        );
    }
    for path in searched {
        assert!(
            !path.to_string_lossy().contains(&marker),
            "{} was created",
            path.display()
        );
    }
    assert_eq!(
        upload_files(f.data()),
        before_uploads,
        "upload files changed"
    );
    assert_eq!(
        f.api.upload_offset(&upload).await,
        Some(0),
        "the real session was touched"
    );
    expect_status(f.api.delete(&upload).await, 204).await;
    f.assert_unchanged().await;
}

// ---------------------------------------------------------------------------
// Digests
// ---------------------------------------------------------------------------

fn bad_digests() -> Vec<String> {
    let hex64 = "0123456789abcdef".repeat(4);
    vec![
        "sha256:xyz".into(),
        "md5:d41d8cd98f00b204e9800998ecf8427e".into(),
        "sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709".into(),
        format!("sha256:{}", &hex64[..63]),
        format!("sha256:{hex64}0"),
        format!("sha256:{}", hex64.to_uppercase()),
        format!("sha512:{hex64}"),
        format!("sha256:{}g", &hex64[..63]),
        "sha256:".into(),
        "sha256".into(),
        format!(":{hex64}"),
    ]
}

#[tokio::test]
async fn bad_digests_are_digest_invalid() {
    let f = fixture("berth-bad-digests-").await;
    let api = &f.api;
    let data = bytes(3, 1000);
    let location = api.start_upload("bad/repo").await;
    expect_status(api.patch_chunk(&location, 0, &data[..500]).await, 202).await;
    let uploads = upload_files(f.data());

    for bad in bad_digests() {
        let what = |m: &str| format!("{m} with digest {bad:?}");
        expect_error(
            api.get(&format!("/v2/bad/repo/blobs/{bad}")).await,
            400,
            "DIGEST_INVALID",
        )
        .await;
        let resp = api.head(&format!("/v2/bad/repo/blobs/{bad}")).await;
        assert_eq!(resp.status().as_u16(), 400, "{}", what("HEAD blob"));
        expect_error(
            api.delete(&format!("/v2/bad/repo/blobs/{bad}")).await,
            400,
            "DIGEST_INVALID",
        )
        .await;
        // Single-request upload.
        let resp = api
            .http
            .post(api.url(&format!("/v2/bad/repo/blobs/uploads/?digest={bad}")))
            .body(data.clone())
            .send()
            .await
            .expect("POST");
        expect_error(resp, 400, "DIGEST_INVALID").await;
        // Completing an upload: refused, and the session is left as it was.
        let resp = api.put_upload(&location, &bad, &data[500..]).await;
        expect_error(resp, 400, "DIGEST_INVALID").await;
        assert_eq!(
            api.upload_offset(&location).await,
            Some(500),
            "{}",
            what("PUT")
        );
        // Mounts and referrers.
        let resp = api
            .http
            .post(api.url(&format!(
                "/v2/fresh/repo/blobs/uploads/?mount={bad}&from=bad/repo"
            )))
            .send()
            .await
            .expect("POST mount");
        expect_error(resp, 400, "DIGEST_INVALID").await;
        if bad.contains(':') {
            expect_error(
                api.get(&format!("/v2/bad/repo/referrers/{bad}")).await,
                400,
                "DIGEST_INVALID",
            )
            .await;
            expect_error(
                api.get(&format!("/v2/bad/repo/manifests/{bad}")).await,
                400,
                "DIGEST_INVALID",
            )
            .await;
            expect_error(
                api.delete(&format!("/v2/bad/repo/manifests/{bad}")).await,
                400,
                "DIGEST_INVALID",
            )
            .await;
            let resp = api
                .put_manifest("bad/repo", &bad, OCI_MANIFEST, &f.image.manifest)
                .await;
            expect_error(resp, 400, "DIGEST_INVALID").await;
        }
    }
    // A PUT that names no digest at all.
    let resp = api
        .http
        .put(api.url(&location))
        .body(data[500..].to_vec())
        .send()
        .await
        .expect("PUT");
    expect_error(resp, 400, "DIGEST_INVALID").await;
    assert_eq!(api.upload_offset(&location).await, Some(500));
    assert_eq!(upload_files(f.data()), uploads);

    // The session still completes.
    expect_status(
        api.put_upload(&location, &sha256(&data), &data[500..])
            .await,
        201,
    )
    .await;
    assert_eq!(api.pull_blob("bad/repo", &sha256(&data)).await, data);
    expect_status(
        api.delete(&format!("/v2/bad/repo/blobs/{}", sha256(&data)))
            .await,
        202,
    )
    .await;
    // Its (now unlinked) bytes are left for the collector; ignore them.
    let mut expected = f.before.clone();
    expected.blob_files = blob_files(f.data());
    assert_eq!(snapshot(api, f.data(), REPOS).await, expected);
    assert_image_pulls(api, &f.image).await;
}

/// After a refused upload of `data` claimed as `claimed`: neither digest is
/// served, no bytes are left, and the store is as before.
async fn assert_nothing_stored(f: &Fixture, data: &[u8], claimed: &str) {
    for digest in [claimed.to_string(), sha256(data), sha512(data)] {
        for repo in ["bad/repo", "fresh/repo"] {
            assert!(
                !f.api.blob_exists(repo, &digest).await,
                "{repo}@{digest} is served"
            );
        }
        assert!(!blob_stored(f.data(), &digest), "{digest} is on disk");
    }
    f.assert_unchanged().await;
}

#[tokio::test]
async fn digest_mismatch_on_monolithic_put() {
    let f = fixture("berth-bad-mismatch-mono-").await;
    let data = bytes(4, 100_000);
    let claimed = sha256(b"something else");
    let location = f.api.start_upload("fresh/repo").await;
    let message = expect_error(
        f.api.put_upload(&location, &claimed, &data).await,
        400,
        "DIGEST_INVALID",
    )
    .await;
    assert!(
        message.contains(&claimed),
        "message does not name the digest: {message}"
    );
    expect_error(
        f.api.upload_status(&location).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    // The session is gone for good: the right digest cannot finish it now.
    expect_error(
        f.api.put_upload(&location, &sha256(&data), &data).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_nothing_stored(&f, &data, &claimed).await;
}

#[tokio::test]
async fn digest_mismatch_on_single_post() {
    let f = fixture("berth-bad-mismatch-post-").await;
    let data = bytes(5, 100_000);
    for claimed in [
        sha256(b"something else"),
        sha512(b"something else"),
        // The right bytes with one hex digit changed.
        {
            let mut d = sha256(&data);
            let last = if d.ends_with('0') { "1" } else { "0" };
            d.truncate(d.len() - 1);
            d + last
        },
    ] {
        let resp = f
            .api
            .http
            .post(
                f.api
                    .url(&format!("/v2/fresh/repo/blobs/uploads/?digest={claimed}")),
            )
            .header("content-type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .expect("POST");
        expect_error(resp, 400, "DIGEST_INVALID").await;
        assert_nothing_stored(&f, &data, &claimed).await;
    }
}

#[tokio::test]
async fn digest_mismatch_on_chunked_upload() {
    let f = fixture("berth-bad-mismatch-chunked-").await;
    let data = bytes(6, 300_000);
    let claimed = sha256(&data[..299_999]);
    // Final PUT without a body.
    let location = f.api.start_upload("fresh/repo").await;
    expect_status(f.api.patch_chunk(&location, 0, &data[..150_000]).await, 202).await;
    expect_status(
        f.api
            .patch_chunk(&location, 150_000, &data[150_000..])
            .await,
        202,
    )
    .await;
    expect_error(
        f.api.put_upload(&location, &claimed, &[]).await,
        400,
        "DIGEST_INVALID",
    )
    .await;
    expect_error(
        f.api.upload_status(&location).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    expect_error(
        f.api.patch_chunk(&location, 300_000, b"more").await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_nothing_stored(&f, &data, &claimed).await;

    // Final PUT carrying the last chunk.
    let location = f.api.start_upload("bad/repo").await;
    expect_status(f.api.patch_chunk(&location, 0, &data[..200_000]).await, 202).await;
    expect_error(
        f.api
            .put_upload(&location, &claimed, &data[200_000..])
            .await,
        400,
        "DIGEST_INVALID",
    )
    .await;
    expect_error(
        f.api.upload_status(&location).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    assert_nothing_stored(&f, &data, &claimed).await;
}

// ---------------------------------------------------------------------------
// Upload sessions and chunks
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unknown_upload_ids_are_blob_upload_unknown() {
    let f = fixture("berth-bad-uploadid-").await;
    let api = &f.api;
    let data = bytes(7, 2000);
    let digest = sha256(&data);
    // A real session in another repository.
    let theirs = api.start_upload("other/repo").await;
    expect_status(api.patch_chunk(&theirs, 0, &data[..1000]).await, 202).await;
    let their_id = theirs.rsplit('/').next().expect("id").to_string();
    let uploads = upload_files(f.data());

    let ids = [
        "3f2b8e4a-9c1d-4e6f-8a7b-2c5d9e0f1a3b".to_string(),
        "not-a-uuid".to_string(),
        "0".to_string(),
        "x".repeat(300),
        their_id.clone(),
        their_id.replace('-', ""),
    ];
    for id in &ids {
        for repo in ["bad/repo", "fresh/repo", "other"] {
            let location = format!("/v2/{repo}/blobs/uploads/{id}");
            expect_error(
                api.upload_status(&location).await,
                404,
                "BLOB_UPLOAD_UNKNOWN",
            )
            .await;
            expect_error(
                api.patch_chunk(&location, 0, &data[..10]).await,
                404,
                "BLOB_UPLOAD_UNKNOWN",
            )
            .await;
            expect_error(
                api.patch_chunk(&location, 1000, &data[1000..]).await,
                404,
                "BLOB_UPLOAD_UNKNOWN",
            )
            .await;
            expect_error(
                api.put_upload(&location, &digest, &data[1000..]).await,
                404,
                "BLOB_UPLOAD_UNKNOWN",
            )
            .await;
            expect_error(
                api.put_upload(&location, &digest, &[]).await,
                404,
                "BLOB_UPLOAD_UNKNOWN",
            )
            .await;
            expect_error(api.delete(&location).await, 404, "BLOB_UPLOAD_UNKNOWN").await;
        }
    }
    // The other repository's session is untouched and still completes.
    assert_eq!(upload_files(f.data()), uploads);
    assert_eq!(api.upload_offset(&theirs).await, Some(1000));
    assert!(!api.blob_exists("bad/repo", &digest).await);
    expect_status(api.put_upload(&theirs, &digest, &data[1000..]).await, 201).await;
    assert_eq!(api.pull_blob("other/repo", &digest).await, data);
    assert!(!api.blob_exists("bad/repo", &digest).await);
    assert!(!api.blob_exists("fresh/repo", &digest).await);
}

/// A chunk at the wrong offset: 416 with the offset to resume from, and the
/// session as it was.
async fn expect_416(api: &Api, location: &str, start: u64, chunk: &[u8], offset: u64) {
    let resp = api.patch_chunk(location, start, chunk).await;
    let range = header(&resp, "range");
    let loc = header(&resp, "location");
    expect_error(resp, 416, "RANGE_INVALID").await;
    assert_eq!(
        range.as_deref(),
        Some(upload_range(offset).as_str()),
        "Range of the 416"
    );
    if let Some(loc) = loc {
        assert_eq!(loc, location);
    }
    assert_eq!(
        api.upload_offset(location).await,
        Some(offset),
        "offset moved"
    );
}

#[tokio::test]
async fn out_of_order_chunk_is_416() {
    let f = fixture("berth-bad-order-").await;
    let api = &f.api;
    let data = bytes(8, 30_000);
    let digest = sha256(&data);
    let location = api.start_upload("fresh/repo").await;
    // The first chunk must start at 0.
    expect_416(api, &location, 1, &data[1..10_000], 0).await;
    expect_status(api.patch_chunk(&location, 0, &data[..10_000]).await, 202).await;
    // A gap.
    expect_416(api, &location, 20_000, &data[20_000..], 10_000).await;
    expect_416(api, &location, 10_001, &data[10_001..20_000], 10_000).await;
    // A final PUT whose Content-Range does not start at the offset.
    let resp = api
        .http
        .put(with_query(&api.url(&location), "digest", &digest))
        .header("content-range", "20000-29999")
        .body(data[20_000..].to_vec())
        .send()
        .await
        .expect("PUT");
    expect_error(resp, 416, "RANGE_INVALID").await;
    assert_eq!(api.upload_offset(&location).await, Some(10_000));
    // The right chunks finish it.
    expect_status(
        api.patch_chunk(&location, 10_000, &data[10_000..20_000])
            .await,
        202,
    )
    .await;
    expect_status(
        api.put_upload(&location, &digest, &data[20_000..]).await,
        201,
    )
    .await;
    assert_eq!(api.pull_blob("fresh/repo", &digest).await, data);
}

#[tokio::test]
async fn overlapping_chunk_is_416() {
    let f = fixture("berth-bad-overlap-").await;
    let api = &f.api;
    let data = bytes(9, 30_000);
    let digest = sha256(&data);
    let location = api.start_upload("fresh/repo").await;
    expect_status(api.patch_chunk(&location, 0, &data[..10_000]).await, 202).await;
    // Starts inside what the upload has.
    expect_416(api, &location, 5000, &data[5000..15_000], 10_000).await;
    expect_416(api, &location, 9999, &data[9999..12_000], 10_000).await;
    // The same chunk again (a client retrying an acknowledged chunk).
    expect_416(api, &location, 0, &data[..10_000], 10_000).await;
    expect_status(
        api.patch_chunk(&location, 10_000, &data[10_000..20_000])
            .await,
        202,
    )
    .await;
    expect_status(
        api.patch_chunk(&location, 20_000, &data[20_000..]).await,
        202,
    )
    .await;
    expect_status(api.put_upload(&location, &digest, &[]).await, 201).await;
    assert_eq!(api.pull_blob("fresh/repo", &digest).await, data);
}

#[tokio::test]
async fn content_range_disagreeing_with_body_is_blob_upload_invalid() {
    let f = fixture("berth-bad-length-").await;
    let api = &f.api;
    let data = bytes(10, 40_000);
    let digest = sha256(&data);
    let location = api.start_upload("fresh/repo").await;

    let patch = |range: String, body: Vec<u8>| {
        api.http
            .patch(api.url(&location))
            .header("content-type", "application/octet-stream")
            .header("content-range", range)
            .body(body)
            .send()
    };
    // Shorter than announced.
    let resp = patch("0-99".into(), data[..50].to_vec())
        .await
        .expect("PATCH");
    expect_error(resp, 400, "BLOB_UPLOAD_INVALID").await;
    assert_eq!(api.upload_offset(&location).await, Some(0));
    expect_status(api.patch_chunk(&location, 0, &data[..10_000]).await, 202).await;
    // Longer than announced.
    let resp = patch("10000-10099".into(), data[10_000..10_200].to_vec())
        .await
        .expect("PATCH");
    expect_error(resp, 400, "BLOB_UPLOAD_INVALID").await;
    assert_eq!(api.upload_offset(&location).await, Some(10_000));
    // A Content-Length that disagrees with the Content-Range (raw, as an
    // HTTP library would not send it).
    let resp = f.server.raw(
        "PATCH",
        &location,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", "10000-10999"),
        ],
        &data[10_000..10_500],
    );
    resp.expect_error(
        "PATCH Content-Range 1000 bytes, body 500",
        400,
        "BLOB_UPLOAD_INVALID",
    );
    assert_eq!(api.upload_offset(&location).await, Some(10_000));
    // A Content-Range that is not a range at all.
    for bad in ["garbage", "10000", "bytes=abc-def", "20000-10000"] {
        let resp = patch(bad.into(), data[10_000..10_100].to_vec())
            .await
            .expect("PATCH");
        let status = resp.status().as_u16();
        assert!(
            matches!(status, 400 | 416),
            "Content-Range {bad:?}: {status}"
        );
        let code = if status == 416 {
            "RANGE_INVALID"
        } else {
            "BLOB_UPLOAD_INVALID"
        };
        expect_error(resp, status, code).await;
        assert_eq!(api.upload_offset(&location).await, Some(10_000), "{bad:?}");
    }
    // The upload goes on as if nothing had happened, and none of the refused
    // bytes end up in the blob.
    expect_status(
        api.patch_chunk(&location, 10_000, &data[10_000..30_000])
            .await,
        202,
    )
    .await;
    expect_status(
        api.put_upload(&location, &digest, &data[30_000..]).await,
        201,
    )
    .await;
    assert_eq!(api.pull_blob("fresh/repo", &digest).await, data);
    assert_eq!(
        stored_blob_size(f.data(), &digest).expect("blob"),
        data.len() as u64
    );
}

#[tokio::test]
async fn refused_large_chunk_leaves_no_stray_bytes() {
    // A big chunk refused for its length is still being written out when the
    // client sends the next one; the blob must hold exactly the accepted
    // bytes.
    let f = fixture("berth-bad-stray-").await;
    let api = &f.api;
    for round in 0..5u64 {
        let data = bytes(100 + round, 64 * 1024);
        let digest = sha256(&data);
        let location = api.start_upload("fresh/repo").await;
        expect_status(api.patch_chunk(&location, 0, &data[..1024]).await, 202).await;
        let junk = bytes(200 + round, 8 * 1024 * 1024);
        let resp = api
            .http
            .patch(api.url(&location))
            .header("content-range", format!("1024-{}", 1024 + junk.len()))
            .body(junk)
            .send()
            .await
            .expect("PATCH");
        expect_error(resp, 400, "BLOB_UPLOAD_INVALID").await;
        expect_status(api.patch_chunk(&location, 1024, &data[1024..]).await, 202).await;
        expect_status(api.put_upload(&location, &digest, &[]).await, 201).await;
        let on_disk = stored_blob_size(f.data(), &digest).expect("blob");
        assert_eq!(
            on_disk,
            data.len() as u64,
            "round {round}: blob file has stray bytes"
        );
        assert_eq!(
            api.pull_blob("fresh/repo", &digest).await,
            data,
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_chunks_for_the_same_offset_are_serialised() {
    let f = fixture("berth-bad-race-").await;
    let half = 256 * 1024;
    for round in 0..10u64 {
        let data = bytes(300 + round, 2 * half);
        let digest = sha256(&data);
        let location = f.api.start_upload("fresh/repo").await;
        // Separate clients: each request on its own connection.
        let (a, b) = (f.api.fresh(&f.server), f.api.fresh(&f.server));
        let (ra, rb) = tokio::join!(
            a.patch_chunk(&location, 0, &data[..half]),
            b.patch_chunk(&location, 0, &data[..half])
        );
        let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
        statuses.sort();
        assert_eq!(
            statuses,
            [202, 416],
            "round {round}: both or neither chunk accepted"
        );
        let fresh = f.api.fresh(&f.server);
        assert_eq!(
            fresh.upload_offset(&location).await,
            Some(half as u64),
            "round {round}"
        );
        expect_status(
            fresh
                .patch_chunk(&location, half as u64, &data[half..])
                .await,
            202,
        )
        .await;
        expect_status(fresh.put_upload(&location, &digest, &[]).await, 201).await;
        assert_eq!(
            fresh.pull_blob("fresh/repo", &digest).await,
            data,
            "round {round}"
        );
    }
}

/// Sends a request with a body the server may refuse before reading it,
/// reads exactly one response, then tries a second request on the same
/// connection. Returns (status of the first response, whether it said
/// `Connection: close`, status line of the second or the failure).
fn refuse_then_reuse(
    addr: SocketAddr,
    authorization: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, bool, Result<String, String>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut writer = stream.try_clone().expect("clone");
    writer
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&body);
    });
    // One response: the head, then Content-Length bytes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).expect("read first response");
        assert!(
            n > 0,
            "{method} {target}: connection closed without a response"
        );
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while raw.len() < head_end + length {
        let n = stream.read(&mut buf).expect("read first body");
        assert!(n > 0, "{method} {target}: response body cut short");
        raw.extend_from_slice(&buf[..n]);
    }
    let close = head
        .lines()
        .any(|l| l.starts_with("connection:") && l.contains("close"));
    let _ = sender.join();
    let second = (|| {
        stream
            .write_all(
                format!(
                    "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\n\r\n"
                )
                .as_bytes(),
            )
            .map_err(|e| format!("write: {e}"))?;
        let mut line = Vec::new();
        loop {
            let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".to_string());
            }
            line.extend_from_slice(&buf[..n]);
            if let Some(i) = line.windows(2).position(|w| w == b"\r\n") {
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
        }
    })();
    (status, close, second)
}

#[tokio::test]
async fn refusals_before_reading_the_body_keep_the_connection_usable_or_say_close() {
    let f = fixture("berth-bad-keepalive-").await;
    let addr = f.server.addr();
    let auth = f.server.authorization();
    let big = bytes(12, 1024 * 1024);
    let location = f.api.start_upload("fresh/repo").await;
    let limit = 4 * 1024 * 1024;
    let oversized = padded_manifest(&f, limit + 1);
    let octet = ("Content-Type", "application/octet-stream");
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "PATCH",
            location.clone(),
            vec![octet, ("Content-Range", "5-1048580")],
            big.clone(),
            416,
        ),
        (
            "PATCH",
            "/v2/fresh/repo/blobs/uploads/3f2b8e4a-9c1d-4e6f-8a7b-2c5d9e0f1a3b".into(),
            vec![octet],
            big.clone(),
            404,
        ),
        (
            "POST",
            "/v2/fresh/repo/blobs/uploads/?digest=sha256:xyz".into(),
            vec![octet],
            big.clone(),
            400,
        ),
        (
            "PUT",
            format!("{location}?digest=md5:abc"),
            vec![octet],
            big.clone(),
            400,
        ),
        (
            "POST",
            "/v2/Fresh/blobs/uploads/?digest=sha256:xyz".into(),
            vec![octet],
            big.clone(),
            400,
        ),
        (
            "POST",
            "/v2/fresh/repo/manifests/x".into(),
            vec![("Content-Type", OCI_MANIFEST)],
            big.clone(),
            405,
        ),
        (
            "PUT",
            "/v2/bad/repo/manifests/big".into(),
            vec![("Content-Type", OCI_MANIFEST)],
            oversized,
            413,
        ),
    ];
    let mut broken = Vec::new();
    for (method, target, headers, body, status) in cases {
        let (got, close, second) = refuse_then_reuse(addr, &auth, method, &target, &headers, body);
        assert_eq!(got, status, "{method} {target}");
        match (close, second) {
            (true, _) => {}
            (false, Ok(line)) if line.starts_with("HTTP/1.1 200") => {}
            (false, outcome) => broken.push(format!(
                "{method} {target} -> {got} without Connection: close; next request on the connection: {outcome:?}"
            )),
        }
    }
    assert!(
        broken.is_empty(),
        "connections left unusable:\n{}",
        broken.join("\n")
    );
    assert_eq!(f.api.upload_offset(&location).await, Some(0));
}

// ---------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------

/// PUTs `body` as `stable` (which must not move) and as a new tag (which
/// must not appear), expecting `status`/`code` both times.
async fn refuse_manifest(
    f: &Fixture,
    content_type: Option<&str>,
    body: &[u8],
    status: u16,
    code: &str,
) -> String {
    let mut message = String::new();
    for reference in ["stable", "new-tag"] {
        let mut req = f
            .api
            .http
            .put(f.api.url(&format!("/v2/bad/repo/manifests/{reference}")))
            .body(body.to_vec());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("PUT manifest");
        message = expect_error(resp, status, code).await;
    }
    expect_error(
        f.api.get("/v2/bad/repo/manifests/new-tag").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let resp = f
        .api
        .get(&format!("/v2/bad/repo/manifests/{}", sha256(body)))
        .await;
    assert_eq!(
        resp.status().as_u16(),
        404,
        "the refused manifest is served by digest"
    );
    f.assert_unchanged().await;
    message
}

#[tokio::test]
async fn manifest_that_is_not_json_is_manifest_invalid() {
    let f = fixture("berth-bad-notjson-").await;
    let truncated = &f.image.manifest[..f.image.manifest.len() / 2];
    for body in [
        b"not json at all".as_slice(),
        b"{".as_slice(),
        b"".as_slice(),
        b"null".as_slice(),
        b"[]".as_slice(),
        b"42".as_slice(),
        truncated,
        b"\xff\xfe{}".as_slice(),
    ] {
        refuse_manifest(&f, Some(OCI_MANIFEST), body, 400, "MANIFEST_INVALID").await;
    }
    // Valid JSON that is not a valid manifest.
    let config = descriptor(OCI_CONFIG, &f.image.config);
    for value in [
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}),
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": OCI_CONFIG, "digest": "sha256:zz", "size": 1}, "layers": []}),
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": sha256(&f.image.config)}, "layers": []}),
        json!({"schemaVersion": "2", "mediaType": OCI_MANIFEST, "config": config, "layers": []}),
        json!({"schemaVersion": 3, "mediaType": OCI_MANIFEST, "config": config, "layers": []}),
        json!({"mediaType": OCI_MANIFEST, "config": config, "layers": []}),
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": {}}),
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "config": config, "manifests": []}),
        json!({"schemaVersion": 2, "mediaType": "application/vnd.example.unknown+json", "config": config, "layers": []}),
    ] {
        let body = serde_json::to_vec(&value).expect("json");
        let ct = value["mediaType"]
            .as_str()
            .unwrap_or(OCI_MANIFEST)
            .to_string();
        refuse_manifest(&f, Some(&ct), &body, 400, "MANIFEST_INVALID").await;
    }
}

#[tokio::test]
async fn schema1_manifest_is_manifest_invalid() {
    let f = fixture("berth-bad-schema1-").await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 1,
        "name": "bad/repo",
        "tag": "stable",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": f.image.layer_digests()[0]}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": [],
    }))
    .expect("json");
    for ct in [
        Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
        Some("application/vnd.docker.distribution.manifest.v1+json"),
        Some("application/json"),
        None,
    ] {
        let message = refuse_manifest(&f, ct, &body, 400, "MANIFEST_INVALID").await;
        assert!(message.to_lowercase().contains("schema"), "{message}");
    }
}

/// A valid OCI manifest over the fixture's blobs padded to exactly `size`
/// bytes with an annotation.
fn padded_manifest(f: &Fixture, size: usize) -> Vec<u8> {
    let layers: Vec<(&str, &[u8])> = f
        .image
        .layers
        .iter()
        .map(|l| (OCI_LAYER, l.as_slice()))
        .collect();
    let build = |pad: usize| {
        image_manifest(
            OCI_MANIFEST,
            (OCI_CONFIG, &f.image.config),
            &layers,
            json!({"annotations": {"pad": "p".repeat(pad)}}),
        )
    };
    let overhead = build(0).len();
    let body = build(size - overhead);
    assert_eq!(body.len(), size);
    body
}

#[tokio::test]
async fn oversized_manifest_is_size_invalid() {
    let f = fixture("berth-bad-large-").await;
    let limit = 4 * 1024 * 1024;
    // Raw requests: the server may answer before reading the body (as it
    // should) and an HTTP library then reports the broken pipe of its body
    // write instead of the answer.
    for (size, chunked) in [
        (limit + 1, false),
        (limit + 1, true),
        (limit + 512 * 1024, true),
    ] {
        let body = padded_manifest(&f, size);
        for tag in ["stable", "too-big"] {
            let what = format!("PUT {size}-byte manifest as {tag} (chunked: {chunked})");
            let resp = f.server.raw_framed(
                "PUT",
                &format!("/v2/bad/repo/manifests/{tag}"),
                &[("Content-Type", OCI_MANIFEST)],
                &body,
                chunked,
            );
            let message = resp.expect_error(&what, 413, "SIZE_INVALID");
            assert!(message.contains(&limit.to_string()), "{what}: {message}");
        }
        expect_error(
            f.api.get("/v2/bad/repo/manifests/too-big").await,
            404,
            "MANIFEST_UNKNOWN",
        )
        .await;
        f.assert_unchanged().await;
    }

    // Exactly at the limit is accepted.
    let body = padded_manifest(&f, limit);
    f.api
        .push_manifest("bad/repo", "at-limit", OCI_MANIFEST, &body)
        .await;
    let (_, pulled) = f.api.pull_manifest("bad/repo", "at-limit").await;
    assert_eq!(pulled, body);
}

#[tokio::test]
async fn manifest_referencing_missing_blobs_is_manifest_blob_unknown() {
    let f = fixture("berth-bad-missing-").await;
    let absent = bytes(11, 500);
    let layers: Vec<(&str, &[u8])> = f
        .image
        .layers
        .iter()
        .map(|l| (OCI_LAYER, l.as_slice()))
        .collect();
    // A missing layer.
    let mut with_absent = layers.clone();
    with_absent.push((OCI_LAYER, &absent));
    let body = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, &f.image.config),
        &with_absent,
        json!({}),
    );
    let message =
        refuse_manifest(&f, Some(OCI_MANIFEST), &body, 400, "MANIFEST_BLOB_UNKNOWN").await;
    assert!(
        message.contains(&sha256(&absent)),
        "message does not name the blob: {message}"
    );
    // A missing config.
    let absent_config = br#"{"architecture":"amd64","os":"linux","absent":true}"#;
    let body = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, absent_config),
        &layers,
        json!({}),
    );
    let message =
        refuse_manifest(&f, Some(OCI_MANIFEST), &body, 400, "MANIFEST_BLOB_UNKNOWN").await;
    assert!(message.contains(&sha256(absent_config)), "{message}");
    // A layer that only another repository holds.
    let mut with_foreign = layers.clone();
    with_foreign.push((OCI_LAYER, &f.other_blob));
    let body = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, &f.image.config),
        &with_foreign,
        json!({}),
    );
    refuse_manifest(&f, Some(OCI_MANIFEST), &body, 400, "MANIFEST_BLOB_UNKNOWN").await;
    // Docker schema 2 too.
    let body = image_manifest(
        DOCKER_MANIFEST,
        (DOCKER_CONFIG, &f.image.config),
        &[(DOCKER_LAYER, &absent)],
        json!({}),
    );
    refuse_manifest(
        &f,
        Some(DOCKER_MANIFEST),
        &body,
        400,
        "MANIFEST_BLOB_UNKNOWN",
    )
    .await;
    // In a repository that does not exist yet: it must not come into being.
    let resp = f
        .api
        .put_manifest("fresh/repo", "v1", OCI_MANIFEST, &f.image.manifest)
        .await;
    expect_error(resp, 400, "MANIFEST_BLOB_UNKNOWN").await;
    f.assert_unchanged().await;
}

#[tokio::test]
async fn index_referencing_missing_manifest_is_manifest_blob_unknown() {
    let f = fixture("berth-bad-index-").await;
    let ghost = image_manifest(OCI_MANIFEST, (OCI_CONFIG, b"{}"), &[], json!({}));
    for (media_type, child_type) in [(OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)] {
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": f.image.digest, "size": f.image.manifest.len(),
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": child_type, "digest": sha256(&ghost), "size": ghost.len(),
                 "platform": {"architecture": "arm64", "os": "linux"}},
            ],
        }))
        .expect("json");
        let message =
            refuse_manifest(&f, Some(media_type), &body, 400, "MANIFEST_BLOB_UNKNOWN").await;
        assert!(message.contains(&sha256(&ghost)), "{message}");
    }
}

#[tokio::test]
async fn manifest_put_by_wrong_digest_is_digest_invalid() {
    let f = fixture("berth-bad-mdigest-").await;
    let layers: Vec<(&str, &[u8])> = f
        .image
        .layers
        .iter()
        .map(|l| (OCI_LAYER, l.as_slice()))
        .collect();
    let body = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, &f.image.config),
        &layers,
        json!({"annotations": {"x": "y"}}),
    );
    for claimed in [f.image.digest.clone(), sha256(b"other"), sha512(b"other")] {
        let resp = f
            .api
            .put_manifest("bad/repo", &claimed, OCI_MANIFEST, &body)
            .await;
        expect_error(resp, 400, "DIGEST_INVALID").await;
        if claimed != f.image.digest {
            expect_error(
                f.api
                    .get(&format!("/v2/bad/repo/manifests/{claimed}"))
                    .await,
                404,
                "MANIFEST_UNKNOWN",
            )
            .await;
        }
    }
    // The stored manifest under the digest we lied about is still the
    // original one.
    let (_, pulled) = f.api.pull_manifest("bad/repo", &f.image.digest).await;
    assert_eq!(pulled, f.image.manifest);
    expect_error(
        f.api
            .get(&format!("/v2/bad/repo/manifests/{}", sha256(&body)))
            .await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    f.assert_unchanged().await;
}

#[tokio::test]
async fn invalid_tags_are_tag_invalid() {
    let f = fixture("berth-bad-tags-").await;
    let long = "t".repeat(129);
    for tag in [
        "-bad",
        ".bad",
        long.as_str(),
        "a%20b",
        "tag+plus",
        "%2e%2e",
        "t%2fx",
        "ta%00g",
    ] {
        let resp = f.server.raw(
            "PUT",
            &format!("/v2/bad/repo/manifests/{tag}"),
            &[("Content-Type", OCI_MANIFEST)],
            &f.image.manifest,
        );
        let message = resp.expect_error(&format!("PUT tag {tag:?}"), 400, "TAG_INVALID");
        assert!(message.to_lowercase().contains("tag"), "{message}");
        let resp = f
            .server
            .raw("GET", &format!("/v2/bad/repo/manifests/{tag}"), &[], &[]);
        resp.expect_error(&format!("GET tag {tag:?}"), 400, "TAG_INVALID");
    }
    f.assert_unchanged().await;
    // 128 characters is the longest valid tag.
    let longest = "t".repeat(128);
    f.api
        .push_manifest("bad/repo", &longest, OCI_MANIFEST, &f.image.manifest)
        .await;
    let (_, pulled) = f.api.pull_manifest("bad/repo", &longest).await;
    assert_eq!(pulled, f.image.manifest);
}

#[tokio::test]
async fn content_type_disagreeing_with_media_type_is_manifest_invalid() {
    let f = fixture("berth-bad-ctype-").await;
    let layers: Vec<(&str, &[u8])> = f
        .image
        .layers
        .iter()
        .map(|l| (OCI_LAYER, l.as_slice()))
        .collect();
    let body = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, &f.image.config),
        &layers,
        json!({"annotations": {"ct": "mismatch"}}),
    );
    for ct in [OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST] {
        let message = refuse_manifest(&f, Some(ct), &body, 400, "MANIFEST_INVALID").await;
        assert!(
            message.contains(ct) || message.to_lowercase().contains("content-type"),
            "{message}"
        );
    }
}

// ---------------------------------------------------------------------------
// Deletes of things that do not exist
// ---------------------------------------------------------------------------

#[tokio::test]
async fn delete_of_unknown_manifest_is_manifest_unknown() {
    let f = fixture("berth-bad-del-manifest-").await;
    for digest in [sha256(b"no such manifest"), sha256(&f.image.config)] {
        let resp = f
            .api
            .delete(&format!("/v2/bad/repo/manifests/{digest}"))
            .await;
        expect_error(resp, 404, "MANIFEST_UNKNOWN").await;
    }
    // A manifest of another repository.
    let resp = f
        .api
        .delete(&format!("/v2/other/repo/manifests/{}", f.image.digest))
        .await;
    expect_error(resp, 404, "MANIFEST_UNKNOWN").await;
    f.assert_unchanged().await;
}

#[tokio::test]
async fn delete_of_unknown_tag_is_manifest_unknown() {
    let f = fixture("berth-bad-del-tag-").await;
    for tag in ["latest", "Stable", "stable2"] {
        let resp = f.api.delete(&format!("/v2/bad/repo/manifests/{tag}")).await;
        expect_error(resp, 404, "MANIFEST_UNKNOWN").await;
    }
    f.assert_unchanged().await;
}

#[tokio::test]
async fn delete_of_unknown_blob_is_blob_unknown() {
    let f = fixture("berth-bad-del-blob-").await;
    // Unknown everywhere, held only by another repository, and a manifest
    // (not a blob) of this one.
    for digest in [
        sha256(b"no such blob"),
        sha256(&f.other_blob),
        f.image.digest.clone(),
    ] {
        let resp = f.api.delete(&format!("/v2/bad/repo/blobs/{digest}")).await;
        expect_error(resp, 404, "BLOB_UNKNOWN").await;
    }
    f.assert_unchanged().await;
}

#[tokio::test]
async fn delete_in_unknown_repository_is_name_unknown() {
    let f = fixture("berth-bad-del-repo-").await;
    let resp = f
        .api
        .delete(&format!("/v2/fresh/repo/manifests/{}", f.image.digest))
        .await;
    expect_error(resp, 404, "NAME_UNKNOWN").await;
    let resp = f.api.delete("/v2/fresh/repo/manifests/stable").await;
    expect_error(resp, 404, "NAME_UNKNOWN").await;
    // Blobs: the spec allows either code for a repository that does not
    // exist.
    let resp = f
        .api
        .delete(&format!("/v2/fresh/repo/blobs/{}", f.image.config_digest()))
        .await;
    let code = if resp.status().as_u16() == 404 {
        let body: serde_json::Value =
            serde_json::from_str(&resp.text().await.expect("body")).expect("JSON");
        body["errors"][0]["code"].as_str().unwrap_or("").to_string()
    } else {
        panic!("DELETE blob in unknown repository: {}", resp.status());
    };
    assert!(
        matches!(code.as_str(), "NAME_UNKNOWN" | "BLOB_UNKNOWN"),
        "{code}"
    );
    f.assert_unchanged().await;
}

// ---------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------

#[tokio::test]
async fn missing_or_malformed_credentials_are_401() {
    let f = fixture("berth-bad-auth-").await;
    let anon = Api::anonymous(&f.server);
    // No credentials: the Bearer challenge.
    let resp = anon.get("/v2/").await;
    let challenge = header(&resp, "www-authenticate").unwrap_or_default();
    expect_error(resp, 401, "UNAUTHORIZED").await;
    let host = f.server.addr().to_string();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"http://{host}/oauth2/token\"")),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!("service=\"{host}\"")),
        "{challenge}"
    );
    for resp in [
        anon.get("/v2/bad/repo/manifests/stable").await,
        anon.get("/v2/_catalog").await,
        anon.put_manifest("bad/repo", "anon", OCI_MANIFEST, &f.image.manifest)
            .await,
        anon.http
            .post(anon.url("/v2/fresh/repo/blobs/uploads/"))
            .send()
            .await
            .expect("POST"),
    ] {
        expect_error(resp, 401, "UNAUTHORIZED").await;
    }
    // Malformed or wrong credentials, on a push (six failures: below the
    // throttle).
    let wrong = format!("Basic {}", base64(b"owner:not-the-password"));
    let no_colon = format!("Basic {}", base64(b"owner"));
    for value in [
        "Basic !!!not-base64!!!",
        no_colon.as_str(),
        "Bearer not.a.jwt",
        "Bearer",
        "Digest username=\"owner\"",
        wrong.as_str(),
    ] {
        let resp = anon
            .http
            .post(anon.url(&format!(
                "/v2/fresh/repo/blobs/uploads/?digest={}",
                sha256(b"x")
            )))
            .header("authorization", value)
            .body(b"x".to_vec())
            .send()
            .await
            .expect("POST");
        assert!(
            header(&resp, "www-authenticate").is_some(),
            "{value}: no challenge"
        );
        expect_error(resp, 401, "UNAUTHORIZED").await;
    }
    f.assert_unchanged().await;
}

// ---------------------------------------------------------------------------
// Methods and HEAD
// ---------------------------------------------------------------------------

#[tokio::test]
async fn unsupported_methods_are_405_unsupported() {
    let f = fixture("berth-bad-method-").await;
    let d = f.image.layer_digests()[0].clone();
    let upload = f.api.start_upload("bad/repo").await;
    let cases = [
        ("POST", "/v2/bad/repo/manifests/stable".to_string()),
        ("POST", "/v2/fresh/repo/manifests/x".to_string()),
        ("PATCH", "/v2/bad/repo/manifests/stable".to_string()),
        ("PUT", format!("/v2/bad/repo/blobs/{d}")),
        ("PATCH", format!("/v2/bad/repo/blobs/{d}")),
        ("POST", format!("/v2/bad/repo/blobs/{d}")),
        ("PUT", "/v2/bad/repo/tags/list".to_string()),
        ("DELETE", "/v2/bad/repo/tags/list".to_string()),
        ("POST", "/v2/_catalog".to_string()),
        ("DELETE", "/v2/_catalog".to_string()),
        ("POST", "/v2/".to_string()),
        ("DELETE", "/v2/".to_string()),
        ("PUT", format!("/v2/bad/repo/referrers/{}", f.image.digest)),
        ("GET", "/v2/bad/repo/blobs/uploads/".to_string()),
        ("PUT", "/v2/fresh/repo/blobs/uploads/".to_string()),
        ("POST", upload.clone()),
    ];
    for (method, path) in cases {
        let resp = f
            .api
            .http
            .request(method.parse().expect("method"), f.api.url(&path))
            .header("content-type", OCI_MANIFEST)
            .body(f.image.manifest.clone())
            .send()
            .await
            .expect("request");
        let message = expect_error(resp, 405, "UNSUPPORTED").await;
        assert!(message.contains(method), "{method} {path}: {message}");
    }
    assert_eq!(f.api.upload_offset(&upload).await, Some(0));
    expect_status(f.api.delete(&upload).await, 204).await;
    f.assert_unchanged().await;
}

#[tokio::test]
async fn head_errors_carry_no_body() {
    let f = fixture("berth-bad-head-").await;
    let unknown = sha256(b"unknown");
    let cases = [
        (format!("/v2/bad/repo/blobs/{unknown}"), 404),
        (format!("/v2/fresh/repo/blobs/{unknown}"), 404),
        (format!("/v2/bad/repo/manifests/{unknown}"), 404),
        ("/v2/bad/repo/manifests/nope".to_string(), 404),
        ("/v2/fresh/repo/manifests/latest".to_string(), 404),
        ("/v2/Bad/manifests/latest".to_string(), 400),
        ("/v2/../etc/manifests/latest".to_string(), 400),
        ("/v2/bad/repo/blobs/sha256:xyz".to_string(), 400),
        ("/v2/bad/repo/manifests/sha256:xyz".to_string(), 400),
        ("/v2/bad/repo/manifests/-bad".to_string(), 400),
        ("/v2/bad/repo/nothing".to_string(), 404),
    ];
    for (path, status) in cases {
        let resp = f.server.raw("HEAD", &path, &[], &[]);
        assert_eq!(resp.status, status, "HEAD {path}");
        assert!(
            resp.raw_body.is_empty(),
            "HEAD {path} sent a body: {:?}",
            String::from_utf8_lossy(&resp.raw_body)
        );
        assert_eq!(
            resp.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "HEAD {path}"
        );
        // GET of the same path says why, in the envelope.
        let get = f.server.raw("GET", &path, &[], &[]);
        assert_eq!(get.status, status, "GET {path}");
        assert!(!get.body.is_empty(), "GET {path} has no error body");
    }
    f.assert_unchanged().await;
}
