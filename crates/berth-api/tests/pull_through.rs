//! The artifact cache's pull path in process: registry A caches a
//! repository of registry B, a second berth application served on a
//! loopback port (a real registry with the Docker token flow). A shim in
//! front of B counts its requests and injects faults (429, corrupt bodies);
//! stopping B closes its listener and connections.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use berth_manage::cache::*;
use http_body_util::BodyExt;
use support::manage::send;
use support::*;

/// What the shim in front of upstream B does and saw.
#[derive(Default)]
struct Shim {
    /// `METHOD path` of every request B answered.
    seen: Mutex<Vec<String>>,
    /// Answer `429 Retry-After: 30` to every registry request.
    rate_limit: AtomicBool,
    /// Flip the first byte of blob bodies.
    corrupt_blobs: AtomicBool,
    /// Blob bodies in flight: how many are being streamed right now.
    streaming: AtomicUsize,
}

impl Shim {
    fn count(&self, what: &str) -> usize {
        let seen = self.seen.lock().expect("shim log");
        seen.iter().filter(|s| s.as_str() == what).count()
    }

    fn registry_requests(&self) -> usize {
        let seen = self.seen.lock().expect("shim log");
        seen.iter()
            .filter(|s| s.contains("/manifests/") || s.contains("/blobs/"))
            .count()
    }
}

async fn shim(shim: Arc<Shim>, request: Request, next: Next) -> Response {
    let what = format!("{} {}", request.method(), request.uri().path());
    let registry = what.contains("/manifests/") || what.contains("/blobs/");
    if registry && shim.rate_limit.load(Ordering::SeqCst) {
        return (
            ::http::StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "30")],
            "slow down",
        )
            .into_response();
    }
    shim.seen.lock().expect("shim log").push(what.clone());
    let response = next.run(request).await;
    if what.starts_with("GET") && what.contains("/blobs/") && response.status() == 200 {
        if shim.corrupt_blobs.load(Ordering::SeqCst) {
            let (parts, body) = response.into_parts();
            let mut bytes = body.collect().await.expect("blob body").to_bytes().to_vec();
            bytes[0] ^= 0xff;
            return Response::from_parts(parts, Body::from(bytes));
        }
        shim.streaming.fetch_add(1, Ordering::SeqCst);
    }
    response
}

struct Setup {
    /// The cache (A), as its owner.
    cache: TestApp,
    /// The upstream (B), as its owner, for pushes.
    upstream: TestApp,
    served: Served,
    shim: Arc<Shim>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// B holds `lib/app:v1`; A has a rule `hub/*` ← B's `lib/*` with the
/// credential set `b` (B's owner), tag TTL `ttl` seconds.
async fn setup(ttl: u64) -> (Setup, Image) {
    let dir_a = tempdir("berth-cache-a-");
    let dir_b = tempdir("berth-cache-b-");
    let upstream = TestApp::embedded(dir_b.path()).await.as_owner();
    let image = push_image(&upstream, "lib/app", "v1", 7, 300_000).await;
    let shim_state = Arc::new(Shim::default());
    let s = shim_state.clone();
    let served = upstream
        .serve(move |router: Router| {
            router.layer(axum::middleware::from_fn(move |req, next| {
                shim(s.clone(), req, next)
            }))
        })
        .await;
    let cache = TestApp::embedded(dir_a.path()).await.as_owner();
    send(
        &cache,
        &CreateCredentialSet {
            name: "b".into(),
            username: "owner".into(),
            password: upstream.owner_password().into(),
        },
    )
    .await;
    send(
        &cache,
        &CreateCacheRule {
            name: "hub".into(),
            target: "hub/*".into(),
            upstreams: vec![Upstream {
                source: format!("{}/lib/*", served.base()),
                credential_set: Some("b".into()),
            }],
            tag_ttl_seconds: Some(ttl),
            evict_unused_days: None,
        },
    )
    .await;
    (
        Setup {
            cache,
            upstream,
            served,
            shim: shim_state,
            _dirs: (dir_a, dir_b),
        },
        image,
    )
}

/// The repository events of `repo` on `app` with `operation`, once the
/// event writer stored them (it batches in the background).
async fn events(app: &TestApp, repo: &str, operation: &str, at_least: usize) -> Vec<String> {
    for _ in 0..100 {
        let listed = app
            .state()
            .event_store
            .repository_events(&berth_metadata::EventFilter {
                repository: Some(repo.into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("events");
        let found: Vec<String> = listed
            .iter()
            .filter(|e| e.operation_name == operation)
            .map(|e| e.result_description.clone())
            .collect();
        if found.len() >= at_least {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {at_least} {operation} events for {repo}");
}

#[tokio::test]
async fn a_pull_fills_the_cache_and_the_second_asks_the_upstream_nothing() {
    let (s, image) = setup(300).await;
    let (_, manifest) = s.cache.pull_manifest("hub/app", "v1").await;
    assert_eq!(
        manifest, image.manifest,
        "the upstream's manifest, byte for byte"
    );
    assert_eq!(
        s.cache.pull_blob("hub/app", &image.config_digest()).await,
        image.config
    );
    for (layer, digest) in image.layers.iter().zip(image.layer_digests()) {
        assert_eq!(&s.cache.pull_blob("hub/app", &digest).await, layer);
    }
    let asked = s.shim.registry_requests();
    // The first request is answered with the challenge (401), then one
    // manifest and three blobs with the token.
    assert_eq!(asked, 5, "{:?}", s.shim.seen);
    let logins = s.cache.state().cache.upstream_logins();
    assert_eq!(logins, 1, "one token for the whole pull, then reused");

    // Again, by tag and by digest: nothing goes upstream.
    s.cache.pull_manifest("hub/app", "v1").await;
    s.cache.pull_manifest("hub/app", &image.digest).await;
    for digest in image.blob_digests() {
        s.cache.pull_blob("hub/app", &digest).await;
    }
    assert_eq!(s.shim.registry_requests(), asked, "{:?}", s.shim.seen);
    let fills = events(&s.cache, "hub/app", "CacheFill", 4).await;
    assert!(fills.iter().all(|d| d.contains("rule hub")), "{fills:?}");

    // The cached repository holds it as its own now: the tag is listed.
    assert_eq!(s.cache.tags("hub/app").await, Some(vec!["v1".to_string()]));
}

#[tokio::test]
async fn concurrent_pulls_of_an_uncached_layer_fetch_it_once() {
    let (s, image) = setup(300).await;
    s.cache.pull_manifest("hub/app", "v1").await;
    let layer = image.layer_digests()[0].clone();
    let pulls = (0..16).map(|_| {
        let cache = s.cache.clone();
        let layer = layer.clone();
        tokio::spawn(async move { cache.pull_blob("hub/app", &layer).await })
    });
    for pull in futures::future::join_all(pulls).await {
        assert_eq!(pull.expect("pull"), image.layers[0]);
    }
    let path = format!("GET /v2/lib/app/blobs/{layer}");
    assert_eq!(s.shim.count(&path), 1, "{:?}", s.shim.seen);
}

#[tokio::test]
async fn pushes_and_deletes_in_a_cached_repository_are_denied_naming_the_rule() {
    let (s, image) = setup(300).await;
    s.cache.pull_manifest("hub/app", "v1").await;
    let resp = s.cache.post("/v2/hub/app/blobs/uploads/").await;
    let message = expect_error(resp, 403, "DENIED");
    assert!(
        message.contains("read-only cache") && message.contains("cache rule 'hub'"),
        "{message}"
    );
    let resp = s
        .cache
        .put("/v2/hub/app/manifests/v2")
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(image.manifest.clone())
        .await;
    expect_error(resp, 403, "DENIED");
    let resp = s
        .cache
        .delete(&format!("/v2/hub/app/manifests/{}", image.digest))
        .await;
    expect_error(resp, 403, "DENIED");
    // Untouched, and other repositories take pushes as ever.
    s.cache.pull_manifest("hub/app", "v1").await;
    s.cache.push_blob("own/app", b"mine").await;
}

#[tokio::test]
async fn a_moved_tag_is_fetched_again_once_its_ttl_passed() {
    let (s, image) = setup(0).await;
    s.cache.pull_manifest("hub/app", "v1").await;
    let moved = push_image(&s.upstream, "lib/app", "v1", 8, 1000).await;
    assert_ne!(moved.digest, image.digest);
    let (_, now) = s.cache.pull_manifest("hub/app", "v1").await;
    assert_eq!(now, moved.manifest, "TTL 0: checked upstream on every pull");
    assert_eq!(
        s.cache.pull_blob("hub/app", &moved.config_digest()).await,
        moved.config
    );
    // The old image stays pullable by digest from the cache.
    let (_, old) = s.cache.pull_manifest("hub/app", &image.digest).await;
    assert_eq!(old, image.manifest);
    // An unchanged tag costs a HEAD, not a GET.
    let gets = s.shim.count("GET /v2/lib/app/manifests/v1");
    s.cache.pull_manifest("hub/app", "v1").await;
    assert_eq!(s.shim.count("GET /v2/lib/app/manifests/v1"), gets);
    assert!(s.shim.count("HEAD /v2/lib/app/manifests/v1") >= 2);
}

#[tokio::test]
async fn with_the_upstream_down_cached_content_is_served_stale_and_the_rest_named() {
    let (s, image) = setup(0).await;
    s.cache.pull_manifest("hub/app", "v1").await;
    s.cache.pull_blob("hub/app", &image.config_digest()).await;
    s.served.stop();

    let (_, by_tag) = s.cache.pull_manifest("hub/app", "v1").await;
    assert_eq!(by_tag, image.manifest, "served stale");
    s.cache.pull_manifest("hub/app", &image.digest).await;
    s.cache.pull_blob("hub/app", &image.config_digest()).await;
    let stale = events(&s.cache, "hub/app", "CacheStale", 1).await;
    assert!(stale[0].contains("unreachable"), "{stale:?}");

    // Not cached: the cause is named, upstream and all.
    let resp = s.cache.get("/v2/hub/app/manifests/v9").await;
    let body = resp.json();
    let message = expect_error(resp, 502, "UNAVAILABLE");
    assert!(
        message.contains(&s.served.host()) && message.contains("unreachable"),
        "{message}"
    );
    assert_eq!(body["errors"][0]["detail"]["cacheRule"], "hub");
    assert_eq!(
        body["errors"][0]["detail"]["upstreams"][0]["cause"],
        "UNREACHABLE"
    );
    let layer = &image.layer_digests()[0];
    let resp = s.cache.get(&format!("/v2/hub/app/blobs/{layer}")).await;
    expect_error(resp, 502, "UNAVAILABLE");
}

#[tokio::test]
async fn a_rejected_credential_set_is_named() {
    let (s, _image) = setup(300).await;
    send(
        &s.cache,
        &UpdateCredentialSet {
            name: "b".into(),
            username: None,
            password: Some("not-the-password".into()),
        },
    )
    .await;
    let resp = s.cache.get("/v2/hub/app/manifests/v1").await;
    let body = resp.json();
    let message = expect_error(resp, 502, "DENIED");
    assert!(message.contains("credential set 'b'"), "{message}");
    let cause = &body["errors"][0]["detail"]["upstreams"][0];
    assert_eq!(cause["cause"], "CREDENTIALS_REJECTED");
    assert_eq!(cause["credentialSet"], "b");
    assert_eq!(cause["status"], 401);
}

#[tokio::test]
async fn upstreams_are_tried_in_order() {
    let (s, image) = setup(300).await;
    // A port nothing listens on, first.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let dead = closed.local_addr().expect("addr");
    drop(closed);
    send(
        &s.cache,
        &UpdateCacheRule {
            name: "hub".into(),
            upstreams: Some(vec![
                Upstream {
                    source: format!("http://{dead}/lib/*"),
                    credential_set: None,
                },
                Upstream {
                    source: format!("{}/lib/*", s.served.base()),
                    credential_set: Some("b".into()),
                },
            ]),
            tag_ttl_seconds: None,
            evict_unused_days: None,
        },
    )
    .await;
    let (_, manifest) = s.cache.pull_manifest("hub/app", "v1").await;
    assert_eq!(manifest, image.manifest);
    assert_eq!(
        s.cache.pull_blob("hub/app", &image.config_digest()).await,
        image.config
    );
}

#[tokio::test]
async fn a_rate_limited_upstream_serves_what_is_cached_and_names_its_retry_time() {
    let (s, image) = setup(0).await;
    s.cache.pull_manifest("hub/app", "v1").await;
    s.shim.rate_limit.store(true, Ordering::SeqCst);
    let (_, cached) = s.cache.pull_manifest("hub/app", "v1").await;
    assert_eq!(cached, image.manifest, "stale, not failed, on a 429");
    let resp = s.cache.get("/v2/hub/app/manifests/other").await;
    assert_eq!(resp.header("retry-after").as_deref(), Some("30"));
    let message = expect_error(resp, 429, "TOOMANYREQUESTS");
    assert!(message.contains("retry after 30"), "{message}");
}

#[tokio::test]
async fn a_corrupt_upstream_body_cuts_the_client_and_leaves_nothing() {
    let (s, image) = setup(300).await;
    s.cache.pull_manifest("hub/app", "v1").await;
    s.shim.corrupt_blobs.store(true, Ordering::SeqCst);
    let layer = image.layer_digests()[0].clone();
    let (resp, body) = s
        .cache
        .get(&format!("/v2/hub/app/blobs/{layer}"))
        .send_streaming()
        .await;
    assert_eq!(resp.status(), 200, "the stream had begun");
    let error = body.expect_err("the body must not complete");
    assert!(error.contains("cache fill failed"), "{error}");
    assert!(!blob_stored(s.cache.data_dir(), &layer), "nothing kept");
    let resp = s.cache.head(&format!("/v2/hub/app/blobs/{layer}")).await;
    assert_eq!(
        resp.status(),
        200,
        "HEAD answers from the upstream, still uncached"
    );

    // The upstream mends: the next pull fetches again, whole.
    s.shim.corrupt_blobs.store(false, Ordering::SeqCst);
    let fetches = s.shim.registry_requests();
    assert_eq!(s.cache.pull_blob("hub/app", &layer).await, image.layers[0]);
    // The client is answered once the bytes are verified; the commit may
    // still run. A second pull waits for it and is served from storage.
    assert_eq!(s.cache.pull_blob("hub/app", &layer).await, image.layers[0]);
    assert!(blob_stored(s.cache.data_dir(), &layer));
    assert_eq!(s.shim.registry_requests(), fetches + 1, "fetched once more");
}

#[tokio::test]
async fn repositories_no_rule_targets_are_not_cached() {
    let (s, _image) = setup(300).await;
    let resp = s.cache.get("/v2/elsewhere/app/manifests/v1").await;
    expect_error(resp, 404, "NAME_UNKNOWN");
    assert_eq!(s.shim.registry_requests(), 0);
}

#[tokio::test]
async fn content_nobody_pulled_for_the_rules_days_is_evicted() {
    let (s, image) = setup(300).await;
    let other = push_image(&s.upstream, "lib/other", "v1", 9, 1000).await;
    s.cache.pull_manifest("hub/app", "v1").await;
    s.cache.pull_manifest("hub/other", "v1").await;
    send(
        &s.cache,
        &UpdateCacheRule {
            name: "hub".into(),
            upstreams: None,
            tag_ttl_seconds: None,
            evict_unused_days: Some(30),
        },
    )
    .await;
    let state = s.cache.state();
    let rules = state.auth.cached_rules();
    let now = berth_util::now();
    // Thirty-one days pass; then hub/app is pulled again, hub/other not.
    age_manifests(s.cache.data_dir(), 31 * 86_400).await;
    s.cache.pull_manifest("hub/app", "v1").await;
    assert_eq!(state.cache.evict(&rules, now).await.expect("evict"), 1);

    let repo = |name: &str| name.parse::<berth_types::RepositoryName>().expect("name");
    let digest = |d: &str| d.parse::<berth_types::Digest>().expect("digest");
    let registry = &state.registry;
    let reference = |d: &str| berth_types::Reference::Digest(digest(d));
    assert!(registry
        .find_manifest(&repo("hub/app"), &reference(&image.digest))
        .await
        .expect("lookup")
        .is_some());
    assert!(
        registry
            .find_manifest(&repo("hub/other"), &reference(&other.digest))
            .await
            .expect("lookup")
            .is_none(),
        "evicted"
    );
    // A rule without eviction keeps everything, however old.
    send(
        &s.cache,
        &UpdateCacheRule {
            name: "hub".into(),
            upstreams: None,
            tag_ttl_seconds: None,
            evict_unused_days: Some(0),
        },
    )
    .await;
    age_manifests(s.cache.data_dir(), 365 * 86_400).await;
    assert_eq!(
        state
            .cache
            .evict(&state.auth.cached_rules(), now)
            .await
            .expect("evict"),
        0
    );
    // Evicted content is simply fetched again on the next pull.
    let (_, again) = s.cache.pull_manifest("hub/other", "v1").await;
    assert_eq!(again, other.manifest);
}
