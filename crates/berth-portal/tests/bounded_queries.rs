//! The portal's pages cost a fixed number of metadata queries whatever the
//! registry holds: none is made per repository, tag or manifest. Checked on
//! a repository with 10,000 tags and a registry with 200 repositories, by
//! counting the metadata store's calls (support/counting.rs).

mod support;

use std::sync::Arc;

use http::StatusCode;
use support::app::{TestPortal, OWNER_PASSWORD};
use support::counting::CountingMetadata;

const TAGS: usize = 10_000;
/// Tags one push by digest may set (`?tag=` repeated).
const TAGS_PER_PUSH: usize = 100;

async fn counted_portal() -> (TestPortal, Arc<CountingMetadata>) {
    let mut counter = None;
    let portal = TestPortal::open_with(|inner| {
        let c = CountingMetadata::new(inner);
        counter = Some(c.clone());
        c
    })
    .await;
    (portal, counter.expect("the store was wrapped"))
}

#[tokio::test]
async fn pages_cost_a_fixed_number_of_queries_on_a_repository_with_10000_tags() {
    let (portal, counter) = counted_portal().await;
    let (digest, manifest) = portal
        .push_image("big/tags", "first", &[100, 200], ("linux", "amd64"))
        .await;
    for chunk in 0..TAGS / TAGS_PER_PUSH {
        let query: Vec<String> = (0..TAGS_PER_PUSH)
            .map(|i| format!("tag=t{:05}", chunk * TAGS_PER_PUSH + i))
            .collect();
        let page = portal
            .as_owner(
                "PUT",
                &format!("/v2/big/tags/manifests/{digest}?{}", query.join("&")),
                "application/vnd.oci.image.manifest.v1+json",
                manifest.clone(),
            )
            .await;
        assert_eq!(page.status, StatusCode::CREATED, "{}", page.body);
    }
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;

    let mut measure = async |path: &str, needle: &str, most: u64| {
        counter.reset();
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(page.has(needle), "{path} shows {needle}");
        let calls = counter.calls();
        assert!(
            calls <= most,
            "{path} made {calls} metadata queries (at most {most}): {:?}",
            counter.by_method()
        );
        calls
    };
    measure("/repository?name=big%2Ftags", "10001 tags", 3).await;
    measure("/repository?name=big%2Ftags&page=101", ">t09999<", 3).await;
    measure("/repository?name=big%2Ftags&tag=t0500", ">t05009<", 3).await;
    measure(
        "/manifest?repository=big%2Ftags&reference=t05000",
        "t09999",
        5,
    )
    .await;
    measure("/repositories", "big/tags", 1).await;
    measure("/", "Repositories", 4).await;

    // The management API's tag listing (`berth repository` in the CLI) too.
    counter.reset();
    let tags = portal
        .as_owner(
            "GET",
            "/api/v1/repositories/tags?repository=big%2Ftags",
            "application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(tags.status, StatusCode::OK);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&tags.body).expect("json");
    assert_eq!(listed.len(), TAGS + 1);
    assert!(counter.calls() <= 2, "{:?}", counter.by_method());
}

#[tokio::test]
async fn the_repository_list_costs_the_same_for_3_and_for_200_repositories() {
    let (portal, counter) = counted_portal().await;
    let (_, manifest) = portal
        .push_image("many/r000", "v1", &[64], ("linux", "amd64"))
        .await;
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    let mut blobs = vec![parsed["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string()];
    blobs.extend(
        parsed["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("digest").to_string()),
    );
    let mut browser = portal.browser();
    browser.sign_in("owner", OWNER_PASSWORD).await;
    let mut cost = Vec::new();
    for count in [3usize, 200] {
        // The repositories of the first round stay for the second.
        for n in 1..count {
            let repo = format!("many/r{n:03}");
            for blob in &blobs {
                let page = portal
                    .as_owner(
                        "POST",
                        &format!("/v2/{repo}/blobs/uploads/?mount={blob}&from=many/r000"),
                        "application/octet-stream",
                        Vec::new(),
                    )
                    .await;
                assert_eq!(page.status, StatusCode::CREATED, "{}", page.body);
            }
            portal
                .put_manifest(
                    &repo,
                    "v1",
                    "application/vnd.oci.image.manifest.v1+json",
                    &manifest,
                )
                .await;
        }
        for path in [
            "/repositories?sort=size",
            "/repositories?sort=pushed",
            "/repositories?q=r1",
        ] {
            counter.reset();
            let page = browser.get(path).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.body);
            cost.push((count, path, counter.calls(), counter.by_method()));
        }
    }
    let (small, large): (Vec<_>, Vec<_>) = cost.iter().partition(|c| c.0 == 3);
    for (s, l) in small.iter().zip(&large) {
        assert_eq!(
            s.2, l.2,
            "{}: {:?} with 3 repositories, {:?} with 200",
            s.1, s.3, l.3
        );
        assert!(l.2 <= 1, "{}: {:?}", l.1, l.3);
    }
    let page = browser.get("/repositories?sort=name&page=4").await;
    assert!(
        page.has("many/r199"),
        "the last page holds the last repository: {}",
        page.body
    );
    assert!(page.has("Page 4 of 4"), "{}", page.body);
}
