//! Several `berth serve` nodes over one PostgreSQL database and one bucket
//! (real engines, started by `scripts/test.sh`): settings, identities and
//! signing keys changed on one node take effect on the others within a
//! second; uploads move between nodes; blob downloads can be redirected to
//! presigned storage URLs; one collector at a time, with its runs visible
//! from every node.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn status_as(server: &TestServer, user: &str, password: &str, path: &str) -> u16 {
    http_client()
        .get(format!("{}{path}", server.url()))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// How long a change may take to reach another node: nodes re-read
/// settings, keys and rules every second; the rest is slack for a loaded
/// machine (a node that never re-reads would take minutes: cache expiry).
const PROPAGATION: Duration = Duration::from_millis(2500);

/// Polls `check` every 200 ms for up to `limit`; the time it took. (Not
/// faster: refused logins count towards the per-(address, name) throttle.)
async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

#[tokio::test]
async fn changes_on_one_node_reach_the_others_within_a_second() {
    let dir = tempdir("scale-settings");
    let a = TestServer::start_scale_out(&dir.path().join("a"), &[]);
    let b = TestServer::start_node(&dir.path().join("b"), &a, &[]);

    // An identity created through A logs in through B.
    let (status, created) = manage_request(
        &a,
        reqwest::Method::POST,
        "/api/v1/service-principals",
        json!({"name": "ci", "role": "AcrPull", "scope": "team/*"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let app = created["identity"]["id"].as_str().expect("id").to_string();
    let secret = created["secrets"][0]["value"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_eq!(status_as(&b, &app, &secret, "/v2/").await, 200);

    // A token issued by A is accepted by B; after A rotates the signing
    // key, B accepts tokens signed with the new key within a second.
    let token = |server: &TestServer| {
        let url = format!("{}/oauth2/token", server.url());
        let (app, secret) = (app.clone(), secret.clone());
        async move {
            let body: Value = http_client()
                .get(url)
                .query(&[("service", "x"), ("scope", "repository:team/app:pull")])
                .basic_auth(app, Some(secret))
                .send()
                .await
                .expect("token")
                .json()
                .await
                .expect("json");
            body["token"].as_str().expect("token").to_string()
        }
    };
    let bearer = |server: &TestServer, t: String| {
        let url = format!("{}/v2/", server.url());
        async move {
            http_client()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    assert_eq!(bearer(&b, token(&a).await).await, 200);
    let (status, _) = manage_request(
        &a,
        reqwest::Method::POST,
        "/api/v1/signing-keys/rotate",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let fresh = token(&a).await;
    let took = within(Duration::from_secs(3), || {
        bearer(&b, fresh.clone()).then_ok(200)
    })
    .await;
    assert!(
        took.is_some_and(|t| t <= PROPAGATION),
        "B took {took:?} to accept A's new signing key"
    );

    // Deleting the identity on A locks it out of B too.
    let (status, _) = manage_request(
        &a,
        reqwest::Method::DELETE,
        &format!("/api/v1/service-principals/{app}"),
        Value::Null,
    )
    .await;
    assert!(status == 200 || status == 204, "delete: {status}");
    let took = within(Duration::from_secs(3), || {
        let (b, app, secret) = (&b, app.clone(), secret.clone());
        async move { status_as(b, &app, &secret, "/v2/").await == 401 }
    })
    .await;
    assert!(
        took.is_some_and(|t| t <= PROPAGATION),
        "B took {took:?} to refuse a deleted identity"
    );

    // A network rule set through A applies on B.
    let (status, body) = manage_request(
        &a,
        reqwest::Method::PATCH,
        "/api/v1/network",
        json!({"defaultAction": "Deny", "force": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let took = within(Duration::from_secs(3), || {
        let b = &b;
        async move { status_as(b, "owner", b.owner_password(), "/v2/").await == 403 }
    })
    .await;
    assert!(
        took.is_some_and(|t| t <= PROPAGATION),
        "B took {took:?} to apply A's network rule"
    );
}

#[tokio::test]
async fn network_rules_added_on_two_nodes_at_once_are_all_kept() {
    let dir = tempdir("scale-rules");
    let a = TestServer::start_scale_out(&dir.path().join("a"), &[]);
    let b = TestServer::start_node(&dir.path().join("b"), &a, &[]);
    let mut adds = Vec::new();
    for i in 0..12u8 {
        let node = if i % 2 == 0 { a.url() } else { b.url() };
        let password = a.owner_password().to_string();
        adds.push(tokio::spawn(async move {
            http_client()
                .post(format!("{node}/api/v1/network/rules"))
                .basic_auth("owner", Some(password))
                .json(&json!({"ipAddress": format!("10.9.{i}.0/24")}))
                .send()
                .await
                .expect("add rule")
                .status()
                .as_u16()
        }));
    }
    for add in adds {
        assert_eq!(add.await.expect("task"), 200);
    }
    let (_, network) =
        manage_request(&b, reqwest::Method::GET, "/api/v1/network", Value::Null).await;
    let rules = network["networkRuleSet"]["ipRules"]
        .as_array()
        .unwrap_or_else(|| panic!("{network}"))
        .len();
    assert_eq!(rules, 12, "{network}");
}

/// `Future<Output = u16>` → `Future<Output = bool>` comparing with a status.
trait ThenOk {
    fn then_ok(self, want: u16) -> impl std::future::Future<Output = bool>;
}

impl<F: std::future::Future<Output = u16>> ThenOk for F {
    async fn then_ok(self, want: u16) -> bool {
        self.await == want
    }
}

#[tokio::test]
async fn an_upload_moves_between_nodes_and_a_tag_race_has_one_winner() {
    let dir = tempdir("scale-upload");
    let a = TestServer::start_scale_out(&dir.path().join("a"), &[]);
    let b = TestServer::start_node(&dir.path().join("b"), &a, &[]);
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));

    let data = bytes(7, 3 * 1024 * 1024 + 11);
    let digest = sha256(&data);
    let location = api_a.start_upload("moving/blob").await;
    let mut at = 0usize;
    for (i, chunk) in data.chunks(700 * 1024).enumerate() {
        let api = if i % 2 == 0 { &api_b } else { &api_a };
        expect_status(api.patch_chunk(&location, at as u64, chunk).await, 202).await;
        at += chunk.len();
        assert_eq!(api_a.upload_offset(&location).await, Some(at as u64));
        assert_eq!(api_b.upload_offset(&location).await, Some(at as u64));
    }
    // A chunk that does not start at the offset is refused on either node.
    expect_error(
        api_a.patch_chunk(&location, 5, b"x").await,
        416,
        "RANGE_INVALID",
    )
    .await;
    expect_status(api_b.put_upload(&location, &digest, &[]).await, 201).await;
    assert_eq!(api_a.pull_blob("moving/blob", &digest).await, data);
    assert!(
        upload_files(a.data_dir()).is_empty()
            && s3_keys(&format!("{}_uploads/", a.s3_prefix())).is_empty()
    );

    // Two nodes moving one tag at once: one consistent winner on both.
    let base = push_image(&api_a, "race/app", "seed", 1, 1000).await;
    let mut pushes = Vec::new();
    for i in 0..8u64 {
        let api = if i % 2 == 0 {
            api_a.fresh(&a)
        } else {
            api_b.fresh(&b)
        };
        let layers = base.layers.clone();
        let config = format!("{{\"race\":{i}}}").into_bytes();
        pushes.push(tokio::spawn(async move {
            push_image_from(&api, "race/app", "latest", config, layers).await
        }));
    }
    let mut digests = Vec::new();
    for p in pushes {
        digests.push(p.await.expect("push").digest);
    }
    let on_a = sha256(&api_a.pull_manifest("race/app", "latest").await.1);
    let on_b = sha256(&api_b.pull_manifest("race/app", "latest").await.1);
    assert_eq!(on_a, on_b);
    assert!(digests.contains(&on_a));
}

#[tokio::test]
async fn blob_downloads_can_be_redirected_to_presigned_storage_urls() {
    let dir = tempdir("scale-redirect");
    let a = TestServer::start_scale_out(
        &dir.path().join("a"),
        &[("BERTH_STORAGE__REDIRECT", "storage")],
    );
    let api = Api::new(&a);
    let data = bytes(9, 200_000);
    let digest = api.push_blob("redirect/me", &data).await;

    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = no_follow
        .get(format!("{}/v2/redirect/me/blobs/{digest}", a.url()))
        .header("authorization", a.authorization())
        .send()
        .await
        .expect("GET");
    let resp = expect_status(resp, 307).await;
    let location = must_header(&resp, "location");
    let endpoint = std::env::var("BERTH_TEST_S3_ENDPOINT").expect("endpoint");
    assert!(location.starts_with(&endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    // The URL alone (no registry credentials) serves the bytes.
    let fetched = http_client().get(&location).send().await.expect("fetch");
    let fetched = expect_status(fetched, 200)
        .await
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(sha256(&fetched), digest);
    // HEAD is answered by the registry itself.
    let head = api.head(&format!("/v2/redirect/me/blobs/{digest}")).await;
    assert_eq!(head.status(), 200);
    // Unknown blobs are the registry's 404, not a redirect to nothing.
    let missing = sha256(b"nothing");
    expect_error(
        no_follow
            .get(format!("{}/v2/redirect/me/blobs/{missing}", a.url()))
            .header("authorization", a.authorization())
            .send()
            .await
            .expect("GET"),
        404,
        "BLOB_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn one_collector_at_a_time_with_runs_visible_everywhere() {
    let dir = tempdir("scale-gc");
    let env = [
        ("BERTH_GC__INTERVAL_SECONDS", "0"),
        ("BERTH_GC__GRACE_SECONDS", "0"),
    ];
    let a = TestServer::start_scale_out(&dir.path().join("a"), &env);
    let b = TestServer::start_node(&dir.path().join("b"), &a, &env);
    let api = Api::new(&a);
    let kept = push_image(&api, "gc/app", "v1", 3, 5000).await;
    let garbage = api.push_blob("gc/app", &bytes(4, 4000)).await;
    let mut garbage_too = Vec::new();
    for i in 0..20 {
        garbage_too.push(api.push_blob("gc/other", &bytes(50 + i, 3000)).await);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Both nodes asked at once: one collects, the other is told so (or runs
    // after it, with nothing left to do); never both deleting.
    let (ra, rb) = tokio::join!(
        manage_request(&a, reqwest::Method::POST, "/api/v1/gc/run", json!({})),
        manage_request(&b, reqwest::Method::POST, "/api/v1/gc/run", json!({}))
    );
    let deleted: u64 = [&ra, &rb]
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, v)| v["blobsDeleted"].as_u64().expect("count"))
        .sum();
    assert!(ra.0 == 200 || rb.0 == 200, "{ra:?} {rb:?}");
    for (status, body) in [&ra, &rb] {
        assert!(*status == 200 || *status == 409, "{status}: {body}");
    }
    assert_eq!(deleted, 21, "{ra:?} {rb:?}");
    assert!(!blob_stored(a.data_dir(), &garbage));
    assert!(garbage_too.iter().all(|d| !blob_stored(a.data_dir(), d)));
    assert_image_pulls(&Api::new(&b), &kept).await;

    // The run, with its cost, from the other node.
    let (status, gc) = manage_request(&b, reqwest::Method::GET, "/api/v1/gc", Value::Null).await;
    assert_eq!(status, 200);
    let run = gc["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["blobsDeleted"] == 21)
        .unwrap_or_else(|| panic!("no run deleted 21 blobs: {gc}"));
    assert_eq!(run["state"], "finished");
    assert!(
        run["storageRequests"].as_u64().expect("requests") >= 21,
        "{run}"
    );
    assert_eq!(gc["queuedCandidates"], 0, "{gc}");

    // And its metrics, on the node that ran it.
    let ran = if ra.0 == 200 { &a } else { &b };
    let metrics = metrics_text(ran).await;
    for name in [
        "berth_gc_blobs_deleted_total",
        "berth_gc_runs_total",
        "berth_gc_duration_seconds",
        "berth_gc_queue_length",
    ] {
        assert!(
            metrics.contains(name),
            "{name} missing from /metrics:\n{metrics}"
        );
    }

    // The CLI shows the same.
    let out = std::process::Command::new(BIN)
        .args([
            "gc",
            "status",
            "--registry",
            &a.url(),
            "-u",
            "owner",
            "-o",
            "json",
        ])
        .env("BERTH_PASSWORD", a.owner_password())
        .output()
        .expect("berth gc status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed["runs"][0]["state"], "finished", "{listed}");
}

/// `psql URL -c SQL`: the rows, one per line.
fn psql(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args(["-qAt", url, "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn tag_digest(api: &Api, repo: &str, tag: &str) -> String {
    let resp = api.get(&format!("/v2/{repo}/manifests/{tag}")).await;
    assert_eq!(resp.status(), 200);
    must_header(&resp, "docker-content-digest")
}

async fn read_cache_on(server: &TestServer) -> bool {
    let metrics = metrics_text(server).await;
    metrics
        .lines()
        .any(|l| l.starts_with("berth_read_cache_enabled ") && l.ends_with(" 1"))
}

/// With shared metadata node B serves tags from its own read cache, and a
/// tag moved on node A still reaches it: through A's notification at once,
/// and when a change reaches the database without one (a lost
/// notification: the generation moves, nothing is heard), within the
/// stated bound (berth_registry::remote::STALE_BOUND, 2 s).
#[tokio::test]
async fn a_tag_moved_on_one_node_reaches_the_others_read_cache() {
    let dir = tempdir("scale-read-cache");
    let a = TestServer::start_scale_out(&dir.path().join("a"), &[]);
    let b = TestServer::start_node(&dir.path().join("b"), &a, &[]);
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    let one = push_image(&api_a, "cached/app", "stable", 1, 1024).await;
    let two = push_image(&api_a, "cached/app", "two", 2, 1024).await;
    assert!(
        within(Duration::from_secs(20), || read_cache_on(&b))
            .await
            .is_some(),
        "B's read cache never came on: {}",
        b.logs()
    );
    assert_eq!(tag_digest(&api_b, "cached/app", "stable").await, one.digest);

    // 1. Moved through A: B hears it.
    let moved = api_a
        .put_manifest("cached/app", "stable", OCI_MANIFEST, &two.manifest)
        .await;
    assert_eq!(moved.status(), 201);
    assert!(
        within(PROPAGATION, || async {
            tag_digest(&api_b, "cached/app", "stable").await == two.digest
        })
        .await
        .is_some(),
        "B kept serving the old digest after A moved the tag"
    );

    // 2. Moved behind every node's back, with no announcement at all: B
    // answers from its cache (which is what makes it fast) ...
    let url = b.database_url();
    psql(
        &url,
        &format!(
            "UPDATE tags SET manifest_digest = '{}' WHERE name = 'stable' AND repository_id = \
             (SELECT id FROM repositories WHERE name = 'cached/app')",
            one.digest
        ),
    );
    for _ in 0..5 {
        assert_eq!(
            tag_digest(&api_b, "cached/app", "stable").await,
            two.digest,
            "B read the database: its read cache is not in use"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // ... 3. and when a generation is taken that B never hears of (a lost
    // notification), B empties its cache within the bound.
    psql(&url, "SELECT nextval('berth_cache_generation')");
    assert!(
        within(Duration::from_secs(5), || async {
            tag_digest(&api_b, "cached/app", "stable").await == one.digest
        })
        .await
        .is_some(),
        "B never noticed the missed change: {}",
        b.logs()
    );
}
