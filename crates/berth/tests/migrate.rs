//! `berth migrate`: an embedded registry (filesystem + SQLite) moved into a
//! scale-out deployment (Garage + PostgreSQL, started by `scripts/test.sh`)
//! loses nothing — images pull byte for byte, identities and passwords
//! still work, the activity log came along — a second run copies nothing,
//! and a damaged blob in the source stops the move, named.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn migrate(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("migrate")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run berth migrate")
}

#[tokio::test]
async fn an_embedded_registry_moves_into_s3_and_postgres_intact() {
    let dir = tempdir("migrate");
    let source_dir = dir.path().join("embedded");
    let mut source = TestServer::start(&source_dir);
    let api = Api::new(&source);
    let big = push_image(&api, "team/app", "v1", 1, 3 * 1024 * 1024).await;
    let small = push_image(&api, "team/tool", "latest", 2, 10_000).await;
    let gone = push_image(&api, "team/old", "v0", 3, 5_000).await;
    expect_status(
        api.delete(&format!("/v2/team/old/manifests/{}", gone.digest))
            .await,
        202,
    )
    .await;
    let (status, created) = manage_request(
        &source,
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
    let tags_before = api.tags("team/app").await;
    let owner_password = source.owner_password().to_string();
    source.stop();

    let target_key = dir.path().join("deployment");
    let target_config = dir.path().join("scale-out.toml");
    scale_out_config(&target_key, &target_config);
    let from = source_dir.to_str().expect("utf-8");
    let to = target_config.to_str().expect("utf-8");
    let out = migrate(&["--from-data", from, "--to", to, "-o", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("blobs: 9 copied"), "{stdout}");
    let report: Value = serde_json::from_str(
        stdout
            .lines()
            .skip_while(|l| !l.starts_with('{'))
            .take_while(|l| !l.starts_with("done:"))
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    )
    .expect("json report");
    let rows = |table: &str| -> (u64, u64) {
        let t = report["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .find(|t| t["table"] == table)
            .unwrap_or_else(|| panic!("{table} missing from {report}"));
        (
            t["sourceRows"].as_u64().expect("n"),
            t["targetRows"].as_u64().expect("n"),
        )
    };
    assert_eq!(rows("manifests"), (2, 2));
    assert_eq!(rows("tags"), (2, 2));
    let (activity, moved) = rows("activity_log");
    assert!(activity >= 2 && moved == activity, "{activity} {moved}");

    // Again: nothing to copy, nothing duplicated.
    let again = migrate(&["--from-data", from, "--to", to]);
    let again_out = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(again.status.success(), "{again_out}");
    assert!(
        again_out.contains("blobs: 0 copied (0 bytes), 9 already there"),
        "{again_out}"
    );

    // A node on the deployment serves everything as before.
    let node = TestServer::start_scale_out_as(&target_key, &owner_password, &[]);
    let on_node = Api::new(&node);
    assert_image_pulls(&on_node, &big).await;
    assert_image_pulls(&on_node, &small).await;
    assert_eq!(on_node.tags("team/app").await, tags_before);
    assert_eq!(on_node.manifest_status("team/old", &gone.digest).await, 404);
    let sp_status = http_client()
        .get(format!("{}/v2/", node.url()))
        .basic_auth(&app, Some(&secret))
        .send()
        .await
        .expect("sp login")
        .status();
    assert_eq!(sp_status, 200);
    // New rows after the copied ones (sequences moved past them).
    let pushed = push_image(&on_node, "team/new", "v1", 4, 1000).await;
    assert_image_pulls(&on_node, &pushed).await;
}

#[tokio::test]
async fn a_damaged_blob_stops_the_move_and_is_named() {
    let dir = tempdir("migrate-damaged");
    let source_dir = dir.path().join("embedded");
    let mut source = TestServer::start(&source_dir);
    let api = Api::new(&source);
    let image = push_image(&api, "team/app", "v1", 5, 50_000).await;
    source.stop();
    let layer = sha256(&image.layers[0]);
    std::fs::write(blob_path(&source_dir, &layer), b"bit rot").expect("damage");

    let target_config = dir.path().join("scale-out.toml");
    scale_out_config(&dir.path().join("deployment"), &target_config);
    let out = migrate(&[
        "--from-data",
        source_dir.to_str().expect("utf-8"),
        "--to",
        target_config.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&layer) && stderr.contains("damaged"),
        "{stderr}"
    );
}

#[tokio::test]
async fn migrate_refuses_the_wrong_kinds_of_source_and_target() {
    let dir = tempdir("migrate-refuse");
    let embedded = dir.path().join("embedded.toml");
    std::fs::write(
        &embedded,
        format!("data_dir = {:?}\n", dir.path().join("d")),
    )
    .expect("write");
    let out = migrate(&[
        "--from",
        embedded.to_str().expect("utf-8"),
        "--to",
        embedded.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the target must be a scale-out deployment"),
        "{stderr}"
    );
}
