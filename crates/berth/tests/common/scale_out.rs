//! The scale-out engines of a test server: a PostgreSQL database and an S3
//! key prefix named after its data directory.

use std::path::Path;
use std::process::Command;

use sha2::{Digest as _, Sha256};

fn test_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "BERTH_TEST_SCALE_OUT=1 needs {name}: run the tests through scripts/test.sh, which \
             starts PostgreSQL and Garage (scripts/scale-out-services.sh)"
        )
    })
}

/// The scale-out deployment named after `key` as a TOML configuration file
/// (for commands such as `berth migrate --to`).
pub fn scale_out_config(key: &Path, file: &Path) {
    let mut toml = String::from("[storage]\n");
    let mut metadata = String::new();
    for (var, value) in scale_out_env(key) {
        if let Some(field) = var.strip_prefix("BERTH_STORAGE__") {
            toml.push_str(&format!("{} = {value:?}\n", field.to_lowercase()));
        } else if var == "BERTH_METADATA__URL" {
            metadata = format!("[metadata]\nurl = {value:?}\n");
        }
    }
    toml.push_str(&metadata);
    std::fs::write(file, toml).expect("write config");
}

/// Configuration (as `BERTH_*` variables) putting a server's metadata in a
/// PostgreSQL database and its blobs under an S3 prefix, both named after
/// its data directory and created on first use.
pub(super) fn scale_out_env(data_dir: &Path) -> Vec<(String, String)> {
    let name = scale_out_name(data_dir);
    let marker = data_dir.join(".scale-out-database");
    if !marker.exists() {
        let admin = test_var("BERTH_TEST_POSTGRES_ADMIN_URL");
        let status = Command::new("psql")
            .args([
                "-q",
                &admin,
                "-c",
                &format!("CREATE DATABASE {name} OWNER berth"),
            ])
            .status()
            .expect("run psql");
        assert!(status.success(), "could not create database {name}");
        std::fs::create_dir_all(data_dir).expect("data dir");
        std::fs::write(&marker, &name).expect("marker");
    }
    let base = test_var("BERTH_TEST_POSTGRES_URL");
    let url = format!("{}/{name}", base.rsplit_once('/').expect("database url").0);
    vec![
        ("BERTH_METADATA__URL".into(), url),
        ("BERTH_STORAGE__KIND".into(), "s3".into()),
        (
            "BERTH_STORAGE__BUCKET".into(),
            test_var("BERTH_TEST_S3_BUCKET"),
        ),
        (
            "BERTH_STORAGE__ENDPOINT".into(),
            test_var("BERTH_TEST_S3_ENDPOINT"),
        ),
        (
            "BERTH_STORAGE__REGION".into(),
            test_var("BERTH_TEST_S3_REGION"),
        ),
        (
            "BERTH_STORAGE__ACCESS_KEY_ID".into(),
            test_var("BERTH_TEST_S3_ACCESS_KEY_ID"),
        ),
        (
            "BERTH_STORAGE__SECRET_ACCESS_KEY".into(),
            test_var("BERTH_TEST_S3_SECRET_ACCESS_KEY"),
        ),
        ("BERTH_STORAGE__PREFIX".into(), format!("{name}/")),
    ]
}

/// The S3 key prefix a scale-out test server uses (see `scale_out_env`),
/// or `None` on the embedded backends.
pub(super) fn scale_out_prefix(data_dir: &Path) -> Option<String> {
    if std::env::var("BERTH_TEST_SCALE_OUT").as_deref() != Ok("1") {
        return None;
    }
    Some(format!("{}/", scale_out_name(data_dir)))
}

pub(super) fn scale_out_name(data_dir: &Path) -> String {
    format!(
        "it_{}",
        &hex::encode(Sha256::digest(data_dir.as_os_str().as_encoded_bytes()))[..24]
    )
}

/// Runs an object-store request to completion from sync test code (which
/// may itself be inside a runtime).
pub(super) fn s3_call<T: Send>(
    f: impl FnOnce(&object_store::aws::AmazonS3) -> futures::future::BoxFuture<'_, T> + Send,
) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let store = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(test_var("BERTH_TEST_S3_BUCKET"))
                    .with_endpoint(test_var("BERTH_TEST_S3_ENDPOINT"))
                    .with_region(test_var("BERTH_TEST_S3_REGION"))
                    .with_access_key_id(test_var("BERTH_TEST_S3_ACCESS_KEY_ID"))
                    .with_secret_access_key(test_var("BERTH_TEST_S3_SECRET_ACCESS_KEY"))
                    .with_allow_http(true)
                    .build()
                    .expect("s3 client");
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(f(&store))
            })
            .join()
            .expect("s3 thread")
    })
}

/// Every object key under `prefix`, relative to it.
pub fn s3_keys(prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let prefix = prefix.to_string();
    s3_call(move |store| {
        Box::pin(async move {
            let path = object_store::path::Path::from(prefix.as_str());
            let listed: Vec<_> = store.list(Some(&path)).try_collect().await.expect("list");
            listed
                .into_iter()
                .map(|m| {
                    m.location
                        .as_ref()
                        .strip_prefix(prefix.trim_end_matches('/'))
                        .unwrap_or(m.location.as_ref())
                        .trim_start_matches('/')
                        .to_string()
                })
                .collect()
        })
    })
}
