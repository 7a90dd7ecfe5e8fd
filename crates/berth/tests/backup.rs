//! `berth backup create | verify | restore` on an embedded registry
//! (docs/operations.md): a backup taken while eight clients push restores
//! into a new data directory where every image acknowledged before the
//! backup began pulls byte for byte; `verify` finds a damaged blob; an
//! existing directory is never overwritten.

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use common::{berth_command as berth, output_text as text};

const PUSHERS: u64 = 8;
const PUSHING: Duration = Duration::from_secs(20);

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn restore(backup: &Path, into: &Path) -> Output {
    berth(&[
        "backup",
        "restore",
        "--from",
        path(backup),
        "--data",
        path(into),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_during_pushes_restores_everything_acknowledged_before_it() {
    let dir = tempdir("berth-backup-");
    let data = dir.path().join("data");
    let backup = dir.path().join("backup");
    let restored = dir.path().join("restored");
    let server = TestServer::start(&data);
    let api = Api::new(&server);
    let first = push_image(&api, "base/app", "v1", 1, 256 * 1024).await;

    // Eight clients push small images until told to stop; each records
    // when its push was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged: Arc<Mutex<Vec<(Instant, Image)>>> = Arc::default();
    let mut pushers = Vec::new();
    for client in 0..PUSHERS {
        let api = api.fresh(&server);
        let stop = stop.clone();
        let acknowledged = acknowledged.clone();
        pushers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let seed = 1000 + client * 100_000 + n;
                let image = push_image(
                    &api,
                    &format!("push/client{client}"),
                    &format!("t{n}"),
                    seed,
                    16 * 1024 + (n as usize % 7) * 1024,
                )
                .await;
                acknowledged
                    .lock()
                    .expect("lock")
                    .push((Instant::now(), image));
                n += 1;
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(PUSHING / 2).await;
    let began = Instant::now();
    let out = tokio::task::spawn_blocking({
        let (backup, data) = (backup.clone(), data.clone());
        move || {
            berth(&[
                "backup",
                "create",
                "--to",
                path(&backup),
                "--data",
                path(&data),
            ])
        }
    })
    .await
    .expect("backup ran");
    assert!(out.status.success(), "backup create: {}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(report.contains("hard-linked"), "{report}");
    tokio::time::sleep(PUSHING.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    for p in pushers {
        p.await.expect("pusher");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let before: Vec<&Image> = acknowledged
        .iter()
        .filter(|(at, _)| *at < began)
        .map(|(_, image)| image)
        .collect();
    let after = acknowledged.len() - before.len();
    assert!(
        before.len() >= PUSHERS as usize && after >= PUSHERS as usize,
        "the pushers must push before and after the backup began: {} before, {after} after",
        before.len()
    );
    // The backup is private: it holds password hashes and signing keys.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup)
            .expect("backup")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        let mode = std::fs::metadata(backup.join("berth.db"))
            .expect("db")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    let out = berth(&["backup", "verify", "--from", path(&backup)]);
    assert!(out.status.success(), "backup verify: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is whole"),
        "{}",
        text(&out)
    );

    let out = restore(&backup, &restored);
    assert!(out.status.success(), "backup restore: {}", text(&out));

    // A second registry on the restored directory, beside the first.
    let copy = TestServer::start_as(&restored, server.owner_password(), &[]);
    let copy_api = Api::new(&copy);
    assert_image_pulls(&copy_api, &first).await;
    for image in &before {
        assert_image_pulls(&copy_api, image).await;
    }
    // What came after may or may not be in it, but what is, is whole.
    let mut later_present = 0;
    for (_, image) in acknowledged.iter().filter(|(at, _)| *at >= began) {
        if copy_api.manifest_status(&image.repo, &image.tag).await == 200 {
            assert_image_pulls(&copy_api, image).await;
            later_present += 1;
        }
    }
    eprintln!(
        "{} images acknowledged before the backup began, all restored; {later_present} of {after} later ones were in it",
        before.len()
    );

    // A restore never writes over a directory that has something in it.
    let out = restore(&backup, &restored);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("is not empty"), "{}", text(&out));

    // A damaged blob: replaced (not written through the hard link, which
    // the live registry shares) with the same length of other bytes.
    let layer = sha256(&first.layers[0]);
    let hex = layer.trim_start_matches("sha256:");
    let blob = backup.join("blobs/sha256").join(&hex[..2]).join(hex);
    let replacement = backup.join("damaged");
    let mut bytes = std::fs::read(&blob).expect("blob");
    bytes[1000] ^= 0xff;
    std::fs::write(&replacement, &bytes).expect("write");
    std::fs::rename(&replacement, &blob).expect("rename");
    let out = berth(&["backup", "verify", "--from", path(&backup)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains(&layer) && report.contains("damaged"),
        "{report}"
    );
    // The live registry still has the good bytes.
    assert_image_pulls(&api, &first).await;
    // And a restore of the damaged backup stops at the bad blob.
    let out = restore(&backup, &dir.path().join("restored-again"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&layer), "{}", text(&out));
}

#[test]
fn backups_refuse_what_they_cannot_do_safely() {
    let dir = tempdir("berth-backup-refusals-");
    // Not a registry.
    let out = berth(&[
        "backup",
        "create",
        "--to",
        path(&dir.path().join("b")),
        "--data",
        path(&dir.path().join("nothing")),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("embedded registry's data directory"),
        "{}",
        text(&out)
    );
    // Not a backup (an interrupted one has no backup.json).
    std::fs::create_dir_all(dir.path().join("half")).expect("mkdir");
    let out = berth(&["backup", "verify", "--from", path(&dir.path().join("half"))]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a finished berth backup"),
        "{}",
        text(&out)
    );
    // Scale-out is backed up with the engines' own tools.
    let config = dir.path().join("s3.toml");
    std::fs::write(
        &config,
        "[storage]\nkind = \"s3\"\nbucket = \"b\"\n[metadata]\nurl = \"postgres://u@127.0.0.1:1/db\"\n",
    )
    .expect("write");
    let out = berth(&[
        "backup",
        "create",
        "--to",
        path(&dir.path().join("c")),
        "--config",
        path(&config),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("pg_dump"), "{}", text(&out));
}
