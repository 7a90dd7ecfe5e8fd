//! The same behaviour tests against both metadata backends: SQLite (a fresh
//! file) and PostgreSQL (a fresh database on the server named by
//! `BERTH_TEST_POSTGRES_ADMIN_URL`, which `scripts/test.sh` starts). Each
//! check is written once, generic over the store, and instantiated for both
//! by `both!`.

use std::sync::Arc;

use berth_metadata::{
    Activity, AuthStore, EventFilter, EventStore, IdentityRecord, LoginEvent, MetadataError,
    MetadataStore, NewManifest, PostgresStore, RepositoryEvent, RepositoryOrder, RepositorySummary,
    SqliteStore,
};
use berth_types::{Algorithm, Digest, Reference, RepositoryName, Tag};
use sqlx::Connection;

trait Store: MetadataStore + AuthStore + EventStore {}
impl<T: MetadataStore + AuthStore + EventStore> Store for T {}

async fn sqlite() -> (Arc<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    (
        Arc::new(SqliteStore::connect(&url).await.expect("sqlite")),
        dir,
    )
}

/// A fresh database on the test PostgreSQL server.
async fn postgres() -> (Arc<PostgresStore>, ()) {
    let admin = std::env::var("BERTH_TEST_POSTGRES_ADMIN_URL").expect(
        "BERTH_TEST_POSTGRES_ADMIN_URL is not set: run the tests through scripts/test.sh, \
         which starts PostgreSQL (or start it with scripts/scale-out-services.sh and source its env file)",
    );
    let name = format!("t_{}", uuid_like());
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("admin");
    sqlx::query(&format!("CREATE DATABASE {name} OWNER berth"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').expect("url").0;
    let url = base.replacen("postgres@", "berth:berth@", 1) + "/" + &name;
    (
        Arc::new(PostgresStore::connect(&url).await.expect("postgres")),
        (),
    )
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{nanos:x}{:x}", std::process::id())
}

fn repo(name: &str) -> RepositoryName {
    name.parse().expect("repository name")
}

fn blob(n: u32) -> Digest {
    Digest::sha256_of(format!("blob {n}").as_bytes())
}

fn manifest<'a>(
    repository: &'a RepositoryName,
    digest: &'a Digest,
    content: &'a [u8],
    blobs: Vec<Digest>,
    tag: Option<&'a Tag>,
) -> NewManifest<'a> {
    NewManifest {
        repository,
        digest,
        media_type: "application/vnd.oci.image.manifest.v1+json",
        artifact_type: None,
        subject: None,
        annotations_json: None,
        content,
        blobs,
        references: Vec::new(),
        children: Vec::new(),
        tags: tag.map(std::slice::from_ref).unwrap_or_default(),
        sparse: false,
    }
}

/// Claims, links and returns a blob.
async fn stored_blob(s: &impl Store, r: &RepositoryName, n: u32) -> Digest {
    let d = blob(n);
    assert!(s.claim_blob(&d, 100 + u64::from(n)).await.expect("claim"));
    assert!(s.link_blob(r, &d).await.expect("link"));
    d
}

const FUTURE: i64 = i64::MAX / 2;

async fn links_need_a_claimed_blob(s: Arc<impl Store>) {
    let r = repo("app/one");
    let d = blob(1);
    assert!(
        !s.link_blob(&r, &d).await.expect("store call"),
        "no record, no link"
    );
    assert_eq!(s.linked_blob_size(&r, &d).await.expect("store call"), None);
    stored_blob(&*s, &r, 1).await;
    assert_eq!(
        s.linked_blob_size(&r, &d).await.expect("store call"),
        Some(101)
    );
    assert!(s.unlink_blob(&r, &d).await.expect("store call"));
    assert!(!s.unlink_blob(&r, &d).await.expect("store call"));
    assert_eq!(s.linked_blob_size(&r, &d).await.expect("store call"), None);
}

async fn manifests_need_their_blobs(s: Arc<impl Store>) {
    let r = repo("app/two");
    let layer = stored_blob(&*s, &r, 2).await;
    let missing = blob(3);
    let content = b"{\"m\":1}";
    let digest = Digest::sha256_of(content);
    let tag: Tag = "v1".parse().expect("store call");
    let err = s
        .put_manifest(manifest(
            &r,
            &digest,
            content,
            vec![layer.clone(), missing.clone()],
            Some(&tag),
        ))
        .await
        .expect_err("should fail");
    assert!(
        matches!(err, MetadataError::MissingBlobs(ref m) if m == &vec![missing.clone()]),
        "{err}"
    );
    assert!(
        s.list_tags(&r, 10, None)
            .await
            .expect("store call")
            .expect("store call")
            .is_empty(),
        "nothing half-stored"
    );
    s.put_manifest(manifest(&r, &digest, content, vec![layer], Some(&tag)))
        .await
        .expect("store call");
    let got = s
        .get_manifest(&r, &Reference::Tag(tag))
        .await
        .expect("store call")
        .expect("store call");
    assert_eq!(got.digest, digest);
    assert_eq!(got.content, content);
    let listed = s.list_manifests(&r).await.expect("store call");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tags, vec!["v1".to_string()]);
}

/// Several tags in one push, all or none; a sparse manifest is stored with
/// its missing references recorded (so the collector keeps what arrives
/// later).
async fn tags_in_one_push_and_sparse_manifests(s: Arc<impl Store>) {
    let r = repo("app/multi");
    let layer = stored_blob(&*s, &r, 20).await;
    let missing = blob(21);
    let content = b"{\"m\":\"multi\"}";
    let digest = Digest::sha256_of(content);
    let tags: Vec<Tag> = ["a", "b", "c"]
        .iter()
        .map(|t| t.parse().expect("tag"))
        .collect();
    let mut m = manifest(
        &r,
        &digest,
        content,
        vec![layer.clone(), missing.clone()],
        None,
    );
    m.tags = &tags;
    let err = s.put_manifest(m).await.expect_err("a blob is missing");
    assert!(matches!(err, MetadataError::MissingBlobs(_)), "{err}");
    assert!(s
        .list_tags(&r, 10, None)
        .await
        .expect("store call")
        .expect("store call")
        .is_empty());
    let mut m = manifest(&r, &digest, content, vec![layer, missing.clone()], None);
    m.tags = &tags;
    m.sparse = true;
    s.put_manifest(m).await.expect("sparse push");
    assert_eq!(
        s.list_tags(&r, 10, None)
            .await
            .expect("store call")
            .expect("store call"),
        ["a", "b", "c"]
    );
    // The missing blob, claimed later and past its grace, is not collected:
    // the sparse manifest names it.
    assert!(s.claim_blob(&missing, 7).await.expect("claim"));
    assert_eq!(
        s.mark_blob_deleting(&missing, FUTURE)
            .await
            .expect("store call"),
        None,
        "a blob a manifest names is never marked"
    );
}

async fn listings_page_in_byte_order(s: Arc<impl Store>) {
    let r = repo("app/order");
    let layer = stored_blob(&*s, &r, 4).await;
    // Bytewise: 'B' (66) < '_' (95) < 'a' (97); a locale collation differs.
    for name in ["a", "B", "_x", "a-1", "A"] {
        let content = format!("{{\"t\":\"{name}\"}}");
        let digest = Digest::sha256_of(content.as_bytes());
        let tag: Tag = name.parse().expect("store call");
        s.put_manifest(manifest(
            &r,
            &digest,
            content.as_bytes(),
            vec![layer.clone()],
            Some(&tag),
        ))
        .await
        .expect("store call");
    }
    let all = s
        .list_tags(&r, 100, None)
        .await
        .expect("store call")
        .expect("store call");
    assert_eq!(all, ["A", "B", "_x", "a", "a-1"]);
    let page = s
        .list_tags(&r, 2, Some("B"))
        .await
        .expect("store call")
        .expect("store call");
    assert_eq!(page, ["_x", "a"]);
    assert_eq!(
        s.list_tags(&repo("nope/x"), 10, None)
            .await
            .expect("store call"),
        None
    );
}

/// Many writers moving one tag at once: every write succeeds and the tag
/// ends on exactly one of the manifests.
async fn racing_tag_moves_leave_one_winner(s: Arc<impl Store + 'static>) {
    let r = repo("app/race");
    let layer = stored_blob(&*s, &r, 5).await;
    let tag: Tag = "latest".parse().expect("store call");
    let mut tasks = Vec::new();
    let mut digests = Vec::new();
    for i in 0..16 {
        let content = format!("{{\"race\":{i}}}").into_bytes();
        let digest = Digest::sha256_of(&content);
        digests.push(digest.clone());
        let (s, r, tag, layer) = (s.clone(), r.clone(), tag.clone(), layer.clone());
        tasks.push(tokio::spawn(async move {
            s.put_manifest(manifest(&r, &digest, &content, vec![layer], Some(&tag)))
                .await
        }));
    }
    for t in tasks {
        t.await.expect("store call").expect("every move succeeds");
    }
    assert_eq!(
        s.list_tags(&r, 10, None)
            .await
            .expect("store call")
            .expect("store call"),
        ["latest"]
    );
    let winner = s
        .get_manifest(&r, &Reference::Tag(tag))
        .await
        .expect("store call")
        .expect("store call");
    assert!(digests.contains(&winner.digest));
    assert_eq!(s.list_manifests(&r).await.expect("store call").len(), 16);
}

async fn collector_protocol(s: Arc<impl Store>) {
    let r = repo("app/gc");
    let kept = stored_blob(&*s, &r, 6).await;
    let garbage = stored_blob(&*s, &r, 7).await;
    let content = b"{\"gc\":1}";
    let digest = Digest::sha256_of(content);
    s.put_manifest(manifest(&r, &digest, content, vec![kept.clone()], None))
        .await
        .expect("store call");

    // Both were queued when claimed; nothing is due before its grace period.
    assert_eq!(s.gc_queue_length().await.expect("store call"), 2);
    assert!(s
        .gc_candidates(0, None, 10)
        .await
        .expect("store call")
        .is_empty());
    let due = s.gc_candidates(FUTURE, None, 10).await.expect("store call");
    assert_eq!(due.len(), 2);

    // Referenced: stays, and leaves the queue.
    assert_eq!(
        s.mark_blob_deleting(&kept, FUTURE)
            .await
            .expect("store call"),
        None
    );
    // Unreferenced: marked, unlinked, off the queue.
    assert_eq!(
        s.mark_blob_deleting(&garbage, FUTURE)
            .await
            .expect("store call"),
        Some(107)
    );
    assert_eq!(s.gc_queue_length().await.expect("store call"), 0);
    assert_eq!(
        s.linked_blob_size(&r, &garbage).await.expect("store call"),
        None
    );
    assert!(
        !s.link_blob(&r, &garbage).await.expect("store call"),
        "no links to a blob being deleted"
    );
    assert!(
        !s.claim_blob(&garbage, 107).await.expect("store call"),
        "an upload waits for the delete"
    );
    assert_eq!(
        s.blobs_being_deleted(10).await.expect("store call"),
        vec![(garbage.clone(), 107)]
    );
    s.forget_blob(&garbage).await.expect("store call");
    assert!(s
        .blobs_being_deleted(10)
        .await
        .expect("store call")
        .is_empty());
    assert!(
        s.claim_blob(&garbage, 107).await.expect("store call"),
        "gone: may be uploaded again"
    );

    // Deleting the manifest queues what it referenced.
    assert!(s.delete_manifest(&r, &digest).await.expect("store call"));
    let queued = s.gc_candidates(FUTURE, None, 10).await.expect("store call");
    assert!(queued.contains(&kept), "{queued:?}");
    // Paging through the queue.
    let first = s.gc_candidates(FUTURE, None, 1).await.expect("store call");
    let rest = s
        .gc_candidates(FUTURE, Some(&first[0].to_string()), 10)
        .await
        .expect("store call");
    assert_eq!(first.len() + rest.len(), queued.len());
}

/// A manifest push and the collector deciding about the same blob at the
/// same moment: either the manifest wins (blob kept) or the collector does
/// (manifest refused as missing the blob); never a manifest whose blob is
/// being deleted.
async fn manifest_and_collector_race(s: Arc<impl Store + 'static>) {
    let r = repo("app/gcrace");
    for i in 0..40u32 {
        let d = stored_blob(&*s, &r, 1000 + i).await;
        let content = format!("{{\"gcrace\":{i}}}").into_bytes();
        let digest = Digest::sha256_of(&content);
        let push = {
            let (s, r, d, digest) = (s.clone(), r.clone(), d.clone(), digest.clone());
            tokio::spawn(async move {
                s.put_manifest(manifest(&r, &digest, &content, vec![d], None))
                    .await
            })
        };
        let collect = {
            let (s, d) = (s.clone(), d.clone());
            tokio::spawn(async move { s.mark_blob_deleting(&d, FUTURE).await })
        };
        let pushed = push.await.expect("store call");
        let marked = collect.await.expect("store call").expect("store call");
        match (pushed, marked) {
            (Ok(()), None) => {}
            (Err(MetadataError::MissingBlobs(_)), Some(_)) => {}
            (pushed, marked) => panic!("round {i}: push {pushed:?} with collector {marked:?}"),
        }
    }
}

async fn collector_lease_is_exclusive(s: Arc<impl Store>) {
    assert!(s.acquire_gc_lease("node-a", 60).await.expect("store call"));
    assert!(
        s.acquire_gc_lease("node-a", 60).await.expect("store call"),
        "renewal"
    );
    assert!(!s.acquire_gc_lease("node-b", 60).await.expect("store call"));
    s.release_gc_lease("node-a").await.expect("store call");
    assert!(s.acquire_gc_lease("node-b", -1).await.expect("store call"));
    // node-b's lease expired at once: another node may take over.
    assert!(s.acquire_gc_lease("node-a", 60).await.expect("store call"));

    let id = s.start_gc_run("node-a").await.expect("store call");
    let mut run = s.gc_runs(1).await.expect("store call").remove(0);
    assert_eq!((run.id, run.state.as_str()), (id, "running"));
    run.state = "finished".into();
    run.blobs_deleted = 3;
    run.storage_requests = 9;
    run.finished_at = Some(run.started_at + 5);
    s.update_gc_run(&run).await.expect("store call");
    let back = s.gc_runs(5).await.expect("store call").remove(0);
    assert_eq!(
        (
            back.state.as_str(),
            back.blobs_deleted,
            back.storage_requests
        ),
        ("finished", 3, 9)
    );
}

async fn upload_sessions(s: Arc<impl Store>) {
    let r = repo("app/up");
    s.create_upload("u-1", &r, Algorithm::Sha512)
        .await
        .expect("store call");
    s.set_upload_offset("u-1", 4096).await.expect("store call");
    let got = s
        .get_upload("u-1")
        .await
        .expect("store call")
        .expect("store call");
    assert_eq!(
        (got.repository.as_str(), got.offset, got.algorithm),
        ("app/up", 4096, Algorithm::Sha512)
    );
    assert_eq!(s.stale_uploads(FUTURE).await.expect("store call"), ["u-1"]);
    assert!(s.stale_uploads(0).await.expect("store call").is_empty());
    assert!(s.delete_upload("u-1").await.expect("store call"));
    assert!(s.get_upload("u-1").await.expect("store call").is_none());
}

async fn repository_delete_queues_its_blobs(s: Arc<impl Store>) {
    let r = repo("app/gone");
    let d = stored_blob(&*s, &r, 9).await;
    assert!(s
        .mark_blob_deleting(&d, FUTURE)
        .await
        .expect("store call")
        .is_some());
    s.forget_blob(&d).await.expect("store call");
    let d = stored_blob(&*s, &r, 9).await;
    let content = b"{\"gone\":1}";
    let digest = Digest::sha256_of(content);
    s.put_manifest(manifest(&r, &digest, content, vec![d.clone()], None))
        .await
        .expect("store call");
    assert_eq!(
        s.mark_blob_deleting(&d, FUTURE).await.expect("store call"),
        None
    );
    assert_eq!(s.delete_repository(&r).await.expect("store call"), 1);
    assert!(!s.repository_exists(&r).await.expect("store call"));
    assert!(s
        .gc_candidates(FUTURE, None, 10)
        .await
        .expect("store call")
        .contains(&d));
    assert!(s
        .mark_blob_deleting(&d, FUTURE)
        .await
        .expect("store call")
        .is_some());
}

async fn identities_and_flags(s: Arc<impl Store>) {
    let activity = Activity {
        actor: "owner".into(),
        operation: "identity/create".into(),
        target: "ci".into(),
        before: None,
        after: Some("{}".into()),
    };
    let mut identity = IdentityRecord {
        id: "11111111-2222-3333-4444-555555555555".into(),
        kind: "token".into(),
        login: "ci".into(),
        display_name: "CI".into(),
        enabled: true,
        trusted_service: false,
        scope_map: Some("pull".into()),
        created_at: 1,
    };
    s.create_identity(&identity, &[], &activity)
        .await
        .expect("store call");
    let err = s
        .create_identity(&identity, &[], &activity)
        .await
        .expect_err("should fail");
    assert!(matches!(err, MetadataError::AlreadyExists(_)), "{err}");
    identity.enabled = false;
    identity.trusted_service = true;
    s.update_identity(&identity, &activity)
        .await
        .expect("store call");
    let back = s
        .identity_by_login("ci")
        .await
        .expect("store call")
        .expect("store call");
    assert_eq!(back, identity);
    assert_eq!(
        s.identities(Some("token")).await.expect("store call"),
        vec![identity.clone()]
    );
    assert!(s
        .identities(Some("sp"))
        .await
        .expect("store call")
        .is_empty());
    let log = s.activities(0, 10).await.expect("store call");
    assert_eq!(
        log.len(),
        2,
        "create and update are logged, the refused create is not"
    );
}

macro_rules! both {
    ($($check:ident),* $(,)?) => {
        mod on_sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let (store, _keep) = sqlite().await;
                    super::$check(store).await;
                }
            )*
        }
        mod on_postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let (store, _keep) = postgres().await;
                    super::$check(store).await;
                }
            )*
        }
    };
}

/// The cache's eviction query: by target (a repository or `prefix/*`, with
/// LIKE's wildcards in the prefix taken literally) and by last pull.
async fn unused_manifests_by_target_and_last_pull(s: Arc<impl Store>) {
    let mut digests = Vec::new();
    for (i, name) in ["cache_x/a", "cache_x/b", "cacheax/d", "cachey/c"]
        .iter()
        .enumerate()
    {
        let r = repo(name);
        let content = format!("{{\"m\":{i}}}");
        let digest = Digest::sha256_of(content.as_bytes());
        let mut m = manifest(&r, &digest, content.as_bytes(), Vec::new(), None);
        m.sparse = true;
        s.put_manifest(m).await.expect("put");
        digests.push(digest);
    }
    let names = |found: Vec<(RepositoryName, Digest)>| -> Vec<String> {
        found.into_iter().map(|(r, _)| r.to_string()).collect()
    };
    let unused = s
        .unused_manifests("cache_x/*", FUTURE, 100)
        .await
        .expect("query");
    assert_eq!(names(unused), vec!["cache_x/a", "cache_x/b"]);
    assert_eq!(
        names(
            s.unused_manifests("cachey/c", FUTURE, 100)
                .await
                .expect("query")
        ),
        vec!["cachey/c"]
    );
    assert!(
        s.unused_manifests("cache_x/*", 0, 100)
            .await
            .expect("query")
            .is_empty(),
        "all newer"
    );
    s.touch_manifests(&repo("cache_x/a"), &digests[..1], FUTURE + 10)
        .await
        .expect("touch");
    assert_eq!(
        names(
            s.unused_manifests("cache_x/*", FUTURE, 100)
                .await
                .expect("query")
        ),
        vec!["cache_x/b"],
        "a pull after the cut-off keeps it"
    );
}

/// The portal's listing: every repository's figures in one page, each order
/// (ties by name), the search taken literally and case-insensitively, and
/// paging with the total.
async fn repository_summaries_figures_orders_search_and_paging(s: Arc<impl Store>) {
    let tag = |t: &str| -> Tag { t.parse().expect("tag") };
    // app/one: two manifests sharing blob 30 (counted once), three tags.
    let one = repo("app/one");
    let shared = stored_blob(&*s, &one, 30).await; // 130 bytes
    let own = stored_blob(&*s, &one, 31).await; // 131 bytes
    let (c1, c2) = (b"{\"one\":1}".as_slice(), b"{\"one\":22}".as_slice());
    let (d1, d2) = (Digest::sha256_of(c1), Digest::sha256_of(c2));
    let tags_one = [tag("v1"), tag("latest")];
    let mut m = manifest(&one, &d1, c1, vec![shared.clone()], None);
    m.tags = &tags_one;
    s.put_manifest(m).await.expect("put");
    let v2 = tag("v2");
    s.put_manifest(manifest(
        &one,
        &d2,
        c2,
        vec![shared.clone(), own],
        Some(&v2),
    ))
    .await
    .expect("put");
    // big_data/x: the same blob 30 (its own link counts here too) and a
    // larger one; one untagged manifest.
    let big = repo("big_data/x");
    stored_blob(&*s, &big, 30).await;
    stored_blob(&*s, &big, 900).await; // 1000 bytes
    let c3 = b"{\"big\":1}".as_slice();
    let d3 = Digest::sha256_of(c3);
    s.put_manifest(manifest(&big, &d3, c3, vec![shared.clone()], None))
        .await
        .expect("put");
    // bigxdata/y: a name `big_data` matches only with `_` taken as a
    // wildcard; pushed last, a second later (pushes are stamped in seconds).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let bigx = repo("bigxdata/y");
    stored_blob(&*s, &bigx, 32).await; // 132 bytes
    let c4 = b"{\"bigx\":1}".as_slice();
    let d4 = Digest::sha256_of(c4);
    let t4 = tag("t");
    s.put_manifest(manifest(&bigx, &d4, c4, Vec::new(), Some(&t4)))
        .await
        .expect("put");
    // blobs/only: a repository holding a blob and no manifests.
    let only = repo("blobs/only");
    stored_blob(&*s, &only, 33).await; // 133 bytes

    let page = |search: &'static str, order: RepositoryOrder, limit: u32, offset: u64| {
        let s = s.clone();
        async move {
            s.repository_summaries(search, order, limit, offset)
                .await
                .expect("repository_summaries")
        }
    };
    let all = page("", RepositoryOrder::Name, 100, 0).await;
    assert_eq!(all.total, 4);
    let names: Vec<&str> = all.repositories.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["app/one", "big_data/x", "bigxdata/y", "blobs/only"]);
    let by_name = |name: &str| -> RepositorySummary {
        all.repositories
            .iter()
            .find(|r| r.name == name)
            .cloned()
            .expect("listed")
    };
    // Pushes are stamped in seconds: compare with what list_manifests says.
    let newest = |r: RepositoryName| {
        let s = s.clone();
        async move {
            s.list_manifests(&r)
                .await
                .expect("list_manifests")
                .iter()
                .map(|m| m.created_at)
                .max()
        }
    };
    let len = |c: &[u8]| c.len() as u64;
    assert_eq!(
        by_name("app/one"),
        RepositorySummary {
            name: "app/one".into(),
            tags: 3,
            manifests: 2,
            size: 130 + 131 + len(c1) + len(c2),
            last_push: newest(one.clone()).await,
        }
    );
    assert!(by_name("app/one").last_push.is_some());
    assert_eq!(
        by_name("big_data/x"),
        RepositorySummary {
            name: "big_data/x".into(),
            tags: 0,
            manifests: 1,
            size: 130 + 1000 + len(c3),
            last_push: newest(big.clone()).await,
        }
    );
    assert_eq!(
        by_name("bigxdata/y"),
        RepositorySummary {
            name: "bigxdata/y".into(),
            tags: 1,
            manifests: 1,
            size: 132 + len(c4),
            last_push: newest(bigx.clone()).await,
        }
    );
    assert_eq!(
        by_name("blobs/only"),
        RepositorySummary {
            name: "blobs/only".into(),
            tags: 0,
            manifests: 0,
            size: 133,
            last_push: None,
        }
    );

    let order_of = |order: RepositoryOrder| {
        let page = page("", order, 100, 0);
        async move {
            page.await
                .repositories
                .into_iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
        }
    };
    // Sizes: big_data/x 1000+, app/one ~280, blobs/only 133 < bigxdata/y 132+.
    assert_eq!(
        order_of(RepositoryOrder::Size).await,
        ["big_data/x", "app/one", "bigxdata/y", "blobs/only"]
    );
    // Newest first, ties (the same second) by name, never pushed last: the
    // stamps themselves say which of app/one and big_data/x comes first.
    let mut expected: Vec<(Option<i64>, String)> = all
        .repositories
        .iter()
        .map(|r| (r.last_push, r.name.clone()))
        .collect();
    expected.sort_by(|a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => y.cmp(&x).then_with(|| a.1.cmp(&b.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    let expected: Vec<String> = expected.into_iter().map(|(_, n)| n).collect();
    let by_push = order_of(RepositoryOrder::LastPush).await;
    assert_eq!(by_push, expected);
    assert_eq!(by_push.first().map(String::as_str), Some("bigxdata/y"));
    assert_eq!(by_push.last().map(String::as_str), Some("blobs/only"));

    // Search: a substring, case-insensitive, `_` and `%` literal.
    let found = |search: &'static str| {
        let page = page(search, RepositoryOrder::Name, 100, 0);
        async move {
            let p = page.await;
            let names: Vec<String> = p.repositories.into_iter().map(|r| r.name).collect();
            assert_eq!(p.total as usize, names.len(), "total for {search:?}");
            names
        }
    };
    assert_eq!(
        found("big_data").await,
        ["big_data/x"],
        "`_` is no wildcard"
    );
    assert_eq!(found("BIG").await, ["big_data/x", "bigxdata/y"]);
    assert_eq!(found("/O").await, ["app/one", "blobs/only"]);
    assert!(found("%").await.is_empty(), "`%` is no wildcard");
    assert!(found("b%y").await.is_empty());
    assert!(
        found("\\").await.is_empty(),
        "the escape character is literal too"
    );
    assert!(found("nothing").await.is_empty());

    // Paging: the total counts every match, the page only its part.
    let second = page("", RepositoryOrder::Name, 2, 1).await;
    assert_eq!(second.total, 4);
    let names: Vec<&str> = second
        .repositories
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, ["big_data/x", "bigxdata/y"]);
    assert_eq!(second.repositories[0], by_name("big_data/x"));
    let sized = page("", RepositoryOrder::Size, 2, 2).await;
    let names: Vec<&str> = sized.repositories.iter().map(|r| r.name.as_str()).collect();
    assert_eq!((sized.total, names), (4, vec!["bigxdata/y", "blobs/only"]));
    assert_eq!(sized.repositories[1], by_name("blobs/only"));
    let past = page("", RepositoryOrder::LastPush, 10, 10).await;
    assert_eq!((past.total, past.repositories.len()), (4, 0));
    let none = page("big", RepositoryOrder::Name, 0, 0).await;
    assert_eq!((none.total, none.repositories.len()), (2, 0));
    let huge = page("", RepositoryOrder::Name, 10, u64::MAX).await;
    assert_eq!((huge.total, huge.repositories.len()), (4, 0));

    // Deleting a repository's manifests leaves it listed with its blobs;
    // deleting the repository removes it.
    assert!(s.delete_manifest(&bigx, &d4).await.expect("delete"));
    let after = page("bigx", RepositoryOrder::Name, 10, 0).await;
    assert_eq!(
        after.repositories,
        [RepositorySummary {
            name: "bigxdata/y".into(),
            tags: 0,
            manifests: 0,
            size: 132,
            last_push: None,
        }]
    );
    s.delete_repository(&bigx).await.expect("delete");
    assert_eq!(page("", RepositoryOrder::Name, 10, 0).await.total, 3);
}

/// One storage sample an hour, whichever node (or call) comes first; the
/// history reads back from an hour on.
async fn storage_is_sampled_once_an_hour(s: Arc<impl Store>) {
    let r = repo("sizes/app");
    stored_blob(&*s, &r, 1).await; // 101 bytes
    stored_blob(&*s, &r, 2).await; // 102 bytes
    let hour = 500_000 * 3600;
    assert!(s.sample_storage(hour + 10).await.expect("sample"));
    stored_blob(&*s, &r, 3).await; // 103 bytes
                                   // Later in the same hour (another node, say): that hour keeps its sample.
    assert!(!s.sample_storage(hour + 3599).await.expect("sample"));
    assert!(s.sample_storage(hour + 3600).await.expect("sample"));
    assert!(s.sample_storage(hour + 5 * 3600 + 1).await.expect("sample"));
    let all = s.storage_samples(0).await.expect("samples");
    assert_eq!(
        all.iter()
            .map(|x| (x.at, x.blobs, x.bytes))
            .collect::<Vec<_>>(),
        [
            (hour, 2, 203),
            (hour + 3600, 3, 306),
            (hour + 5 * 3600, 3, 306)
        ]
    );
    let later = s.storage_samples(hour + 3600 + 59).await.expect("samples");
    assert_eq!(later.len(), 2, "{later:?}");
}

/// The overview's figures are counted in the database, per hour and
/// operation (successes) and per description (failed logins).
async fn events_are_counted_per_hour_and_per_reason(s: Arc<impl Store>) {
    let hour = 480_000_i64 * 3600 * 1000; // unix ms at an hour's start
    let repo_event = |at: i64, operation: &str, status: u16| RepositoryEvent {
        time_generated: at,
        login_server: "r.test".into(),
        operation_name: operation.into(),
        repository: "app/one".into(),
        tag: None,
        digest: None,
        media_type: None,
        artifact_type: None,
        size: None,
        identity: "owner".into(),
        caller_ip_address: "127.0.0.1".into(),
        user_agent: "test".into(),
        result_type: status,
        result_description: String::new(),
        duration_ms: 1,
        correlation_id: "c".into(),
    };
    let login = |at: i64, status: u16, description: &str| LoginEvent {
        time_generated: at,
        login_server: "r.test".into(),
        identity: "x".into(),
        caller_ip_address: "127.0.0.1".into(),
        user_agent: "test".into(),
        operation_name: "Login".into(),
        result_type: status,
        result_description: description.into(),
        duration_ms: 1,
        correlation_id: "c".into(),
        jwt_id: None,
    };
    let repositories = [
        repo_event(hour - 1, "Pull", 200), // before `since`
        repo_event(hour, "Pull", 200),
        repo_event(hour + 10, "Pull", 200),
        repo_event(hour + 20, "Push", 201),
        repo_event(hour + 30, "Pull", 404), // a failure: not counted
        repo_event(hour + 3_600_000, "Pull", 200),
    ];
    let logins = [
        login(hour, 401, "unknown identity 'a'"),
        login(hour + 1, 401, "unknown identity 'a'"),
        login(hour + 2, 401, "wrong password"),
        login(hour + 3, 200, "success"),
        login(hour - 5, 401, "wrong password"), // before `since`
    ];
    s.insert_events(&logins, &repositories)
        .await
        .expect("insert");
    let counts = s.repository_event_counts(hour).await.expect("counts");
    let seconds = hour / 1000;
    assert_eq!(
        counts
            .iter()
            .map(|c| (c.hour, c.operation.as_str(), c.count))
            .collect::<Vec<_>>(),
        [
            (seconds, "Pull", 2),
            (seconds, "Push", 1),
            (seconds + 3600, "Pull", 1)
        ]
    );
    assert_eq!(
        s.failed_login_counts(hour).await.expect("counts"),
        [
            ("unknown identity 'a'".to_string(), 2),
            ("wrong password".to_string(), 1)
        ]
    );
    // The listings agree with the counts.
    let listed = s
        .repository_events(&EventFilter {
            since: hour,
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("events");
    assert_eq!(listed.len(), 5);
}

both!(
    events_are_counted_per_hour_and_per_reason,
    storage_is_sampled_once_an_hour,
    repository_summaries_figures_orders_search_and_paging,
    unused_manifests_by_target_and_last_pull,
    links_need_a_claimed_blob,
    manifests_need_their_blobs,
    tags_in_one_push_and_sparse_manifests,
    listings_page_in_byte_order,
    racing_tag_moves_leave_one_winner,
    collector_protocol,
    manifest_and_collector_race,
    collector_lease_is_exclusive,
    upload_sessions,
    repository_delete_queues_its_blobs,
    identities_and_flags,
);
