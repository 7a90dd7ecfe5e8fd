//! `kill -9` in the middle of 1 GiB uploads: a crash never
//! leaves a partial blob visible, never corrupts metadata, and loses no
//! acknowledged write. The 1 GiB is generated on the fly from a cheap
//! position-addressable pattern and hashed while it is sent; it is never
//! held in memory.

mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};

const MIB: u64 = 1024 * 1024;
const TOTAL: u64 = 1024 * MIB;
const CHUNK: u64 = 16 * MIB;
/// Size of the pieces a streamed body is made of.
const PIECE: usize = 256 * 1024;

// ---------------------------------------------------------------------------
// The 1 GiB of content
// ---------------------------------------------------------------------------

/// One MiB of pseudo-random bytes; byte `p` of the content is
/// `PATTERN[p % 1 MiB]`, except that every MiB starts with its own index so
/// that a chunk stored at the wrong offset changes the digest.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| bytes(0xC0FFEE, MIB as usize))
}

fn fill(pos: u64, out: &mut [u8]) {
    let pattern = pattern();
    let mut done = 0usize;
    while done < out.len() {
        let p = pos + done as u64;
        let within = (p % MIB) as usize;
        let n = (out.len() - done).min(MIB as usize - within);
        out[done..done + n].copy_from_slice(&pattern[within..within + n]);
        if within < 8 {
            let stamp = ((p / MIB) ^ 0xA5A5_5A5A_0BAD_F00D).to_le_bytes();
            let k = (8 - within).min(n);
            out[done..done + k].copy_from_slice(&stamp[within..within + k]);
        }
        done += n;
    }
}

fn generate(pos: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill(pos, &mut out);
    out
}

/// sha256 of the content's first `len` bytes.
fn prefix_digest(len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(CHUNK);
        hasher.update(generate(pos, n as usize));
        pos += n;
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// sha256 of the whole GiB (computed once per test binary).
async fn full_digest() -> String {
    static DIGEST: OnceLock<String> = OnceLock::new();
    if let Some(d) = DIGEST.get() {
        return d.clone();
    }
    let d = tokio::task::spawn_blocking(|| prefix_digest(TOTAL))
        .await
        .expect("hash");
    DIGEST.get_or_init(|| d).clone()
}

/// The content from `start` to `end` as a request body, in pieces. With
/// `stall_at`, the stream stops producing (without ending) once it reaches
/// that position: the request stays open, mid-body, until the server dies.
fn content_stream(
    start: u64,
    end: u64,
    stall_at: Option<u64>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(start, move |pos| async move {
        if pos >= end {
            return None;
        }
        if stall_at.is_some_and(|s| pos >= s) {
            futures::future::pending::<()>().await;
        }
        let limit = stall_at.map_or(end, |s| s.min(end));
        let n = (limit - pos).min(PIECE as u64) as usize;
        Some((Ok(Bytes::from(generate(pos, n))), pos + n as u64))
    })
}

/// A client without a whole-request timeout, for gigabyte transfers, with
/// the owner's credentials.
fn big_client(server: &TestServer) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        server.authorization().parse().expect("header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .connect_timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn upload_file(data_dir: &Path, location: &str) -> std::path::PathBuf {
    let id = location.rsplit('/').next().expect("upload id");
    data_dir.join("blobs").join("_uploads").join(id)
}

/// Waits (bounded) until the server has written at least `len` bytes of
/// the upload; returns the length seen. Fails at once if the request that
/// should be sending them has ended.
async fn wait_for_upload_bytes<T>(
    server: &TestServer,
    request: &tokio::task::JoinHandle<T>,
    path: &Path,
    len: u64,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let seen = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if seen >= len {
            return seen;
        }
        assert!(
            !request.is_finished(),
            "the upload request ended after {seen} of {len} bytes reached the server\n{}",
            server.logs()
        );
        assert!(
            Instant::now() < deadline,
            "the server wrote only {seen} of {len} bytes within 300 s\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Streams a blob and hashes it; returns (length, digest).
async fn pull_and_hash(
    api: &Api,
    client: &reqwest::Client,
    repo: &str,
    digest: &str,
) -> (u64, String) {
    let resp = client
        .get(api.url(&format!("/v2/{repo}/blobs/{digest}")))
        .send()
        .await
        .expect("GET blob");
    let resp = expect_status(resp, 200).await;
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("blob body");
        len += piece.len() as u64;
        hasher.update(&piece);
    }
    (len, format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// A registry with a pushed image to check metadata against after a crash.
async fn base_store(server: &TestServer) -> (Api, Image, Vec<String>) {
    let api = Api::new(server);
    let image = push_image(&api, "crash/base", "v1", 1, 200_000).await;
    push_image(&api, "crash/base", "v2", 2, 50_000).await;
    push_image(&api, "crash/other", "latest", 3, 10_000).await;
    let catalog = api.catalog().await;
    assert_eq!(catalog, vec!["crash/base", "crash/other"]);
    (api, image, catalog)
}

// ---------------------------------------------------------------------------
// (a) A monolithic PUT of 1 GiB, killed after ~300 MB
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_monolithic_1gib_put() {
    let dir = tempdir("berth-crash-mono-");
    let mut server = TestServer::start(dir.path());
    let (mut api, image, catalog) = base_store(&server).await;
    let files_before = blob_files(dir.path());
    let digest = full_digest().await;

    let location = api.start_upload("crash/mono").await;
    let file = upload_file(dir.path(), &location);
    let url = with_query(&api.url(&location), "digest", &digest);
    let client = big_client(&server);
    let put = tokio::spawn(async move {
        client
            .put(url)
            .header("content-type", "application/octet-stream")
            .header("content-length", TOTAL.to_string())
            .body(reqwest::Body::wrap_stream(content_stream(
                0,
                TOTAL,
                Some(320 * MIB),
            )))
            .send()
            .await
    });
    let written = wait_for_upload_bytes(&server, &put, &file, 300 * MIB).await;
    server.kill();
    match tokio::time::timeout(Duration::from_secs(60), put).await {
        Ok(Ok(Ok(resp))) => assert_ne!(resp.status().as_u16(), 201, "a partial PUT succeeded"),
        Ok(Ok(Err(_))) | Err(_) => {}
        Ok(Err(e)) => panic!("PUT task: {e}"),
    }

    server.restart();
    api.retarget(&server);

    // No blob, partial or whole, became visible.
    assert!(!api.blob_exists("crash/mono", &digest).await);
    assert_eq!(blob_files(dir.path()), files_before, "a blob file appeared");
    // Metadata is intact.
    assert_eq!(api.catalog().await, catalog);
    assert_eq!(
        api.tags("crash/base").await,
        Some(vec!["v1".into(), "v2".into()])
    );
    assert_eq!(api.tags("crash/mono").await, None);
    assert_image_pulls(&api, &image).await;

    // The session: gone, or resumable from what it reports, and then
    // consistent with what a PATCH accepts.
    match api.upload_offset(&location).await {
        None => {
            expect_error(
                api.patch_chunk(&location, 0, &generate(0, MIB as usize))
                    .await,
                404,
                "BLOB_UPLOAD_UNKNOWN",
            )
            .await;
            assert!(
                upload_files(dir.path()).is_empty(),
                "bytes of a forgotten session remain"
            );
        }
        Some(offset) => {
            assert!(
                offset <= written.max(320 * MIB),
                "the session claims {offset} bytes but the server got at most {written}"
            );
            // Nothing was acknowledged, so nothing is owed; whatever is
            // reported must be exactly what the next PATCH continues from.
            let next = generate(offset, MIB as usize);
            let resp = api.patch_chunk(&location, offset + 1, &next).await;
            assert_eq!(header(&resp, "range"), Some(upload_range(offset)));
            expect_error(resp, 416, "RANGE_INVALID").await;
            let resp = expect_status(api.patch_chunk(&location, offset, &next).await, 202).await;
            assert_eq!(must_header(&resp, "range"), upload_range(offset + MIB));
            let short = prefix_digest(offset + MIB);
            expect_status(api.put_upload(&location, &short, &[]).await, 201).await;
            let (len, pulled) =
                pull_and_hash(&api, &big_client(&server), "crash/mono", &short).await;
            assert_eq!((len, pulled), (offset + MIB, short));
            assert!(!api.blob_exists("crash/mono", &digest).await);
        }
    }
    assert_image_pulls(&api, &image).await;
}

// ---------------------------------------------------------------------------
// (b) A chunked upload of 1 GiB in 16 MiB PATCHes, killed mid-chunk
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_chunked_1gib_upload_then_resume() {
    let dir = tempdir("berth-crash-chunked-");
    let mut server = TestServer::start(dir.path());
    let (mut api, image, catalog) = base_store(&server).await;
    let client = big_client(&server);
    let chunks = TOTAL / CHUNK;
    let killed_chunk = 20u64;

    let location = api.start_upload("crash/chunked").await;
    let file = upload_file(dir.path(), &location);
    // Hash of the acknowledged bytes, in order.
    let mut hasher = Sha256::new();
    for i in 0..killed_chunk {
        let chunk = generate(i * CHUNK, CHUNK as usize);
        hasher.update(&chunk);
        let resp = expect_status(api.patch_chunk(&location, i * CHUNK, &chunk).await, 202).await;
        assert_eq!(must_header(&resp, "range"), upload_range((i + 1) * CHUNK));
    }
    let acknowledged = killed_chunk * CHUNK;

    // The next chunk: half of it sent, then the server dies.
    let start = acknowledged;
    let end = start + CHUNK;
    let url = api.url(&location);
    let patch_client = client.clone();
    let patch = tokio::spawn(async move {
        patch_client
            .patch(url)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{start}-{}", end - 1))
            .header("content-length", CHUNK.to_string())
            .body(reqwest::Body::wrap_stream(content_stream(
                start,
                end,
                Some(start + CHUNK / 2),
            )))
            .send()
            .await
    });
    wait_for_upload_bytes(&server, &patch, &file, start + CHUNK / 2 - 2 * MIB).await;
    server.kill();
    match tokio::time::timeout(Duration::from_secs(60), patch).await {
        Ok(Ok(Ok(resp))) => {
            assert_ne!(resp.status().as_u16(), 202, "a half chunk was acknowledged")
        }
        Ok(Ok(Err(_))) | Err(_) => {}
        Ok(Err(e)) => panic!("PATCH task: {e}"),
    }

    server.restart();
    api.retarget(&server);

    // Exactly the acknowledged chunks survive.
    let offset = api
        .upload_offset(&location)
        .await
        .expect("the session survives a crash");
    assert_eq!(
        offset % CHUNK,
        0,
        "offset {offset} is not on a chunk boundary"
    );
    assert_eq!(
        offset, acknowledged,
        "acknowledged chunks were lost or a partial one kept"
    );
    assert!(!api.blob_exists("crash/chunked", &full_digest().await).await);
    assert_eq!(api.catalog().await, catalog);
    assert_image_pulls(&api, &image).await;

    // Resume and finish, the last chunk in the PUT.
    for i in killed_chunk..chunks - 1 {
        let chunk = generate(i * CHUNK, CHUNK as usize);
        hasher.update(&chunk);
        let resp = expect_status(api.patch_chunk(&location, i * CHUNK, &chunk).await, 202).await;
        assert_eq!(must_header(&resp, "range"), upload_range((i + 1) * CHUNK));
    }
    let last = generate((chunks - 1) * CHUNK, CHUNK as usize);
    hasher.update(&last);
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    assert_eq!(digest, full_digest().await);
    let resp = client
        .put(with_query(&api.url(&location), "digest", &digest))
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{}-{}", (chunks - 1) * CHUNK, TOTAL - 1),
        )
        .body(last)
        .send()
        .await
        .expect("PUT");
    let resp = expect_status(resp, 201).await;
    assert_eq!(must_header(&resp, "docker-content-digest"), digest);

    let resp = expect_status(
        api.head(&format!("/v2/crash/chunked/blobs/{digest}")).await,
        200,
    )
    .await;
    assert_eq!(must_header(&resp, "content-length"), TOTAL.to_string());
    let (len, pulled) = pull_and_hash(&api, &client, "crash/chunked", &digest).await;
    assert_eq!(len, TOTAL);
    assert_eq!(pulled, digest);
    assert_eq!(
        stored_blob_size(dir.path(), &digest).expect("blob file"),
        TOTAL
    );
    assert!(
        upload_files(dir.path()).is_empty(),
        "upload bytes left behind"
    );
    assert_image_pulls(&api, &image).await;
}
