//! `berth migrate`: moves an embedded single-node registry (filesystem +
//! SQLite) into a scale-out deployment (S3-compatible bucket + PostgreSQL)
//! without losing anything. Blobs first — streamed, re-hashed and checked
//! against their digests on the way — then the metadata that makes them
//! visible, then a count of every table on both sides. Everything already
//! copied is skipped, so an interrupted run is simply started again.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use berth_metadata::{copy, PostgresStore, SqliteStore};
use berth_types::DigestHasher;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::config::{Config, Overrides};
use crate::output::{print, reportln, Format};

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Configuration of the embedded registry to move (stop it first).
    #[arg(long, value_name = "FILE", conflicts_with = "from_data")]
    from: Option<PathBuf>,
    /// Or just its data directory, with the default embedded configuration.
    #[arg(long, value_name = "DIR")]
    from_data: Option<PathBuf>,
    /// Configuration of the scale-out deployment to move it into
    /// (`[storage] kind = "s3"` and a `postgres://` `[metadata] url`).
    #[arg(long, value_name = "FILE")]
    to: PathBuf,
    /// Output format of the final report.
    #[arg(long, short, value_enum, ignore_case = true, default_value_t = Format::Table)]
    output: Format,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(migrate(args))
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let source = Config::of_registry(args.from.as_deref(), args.from_data.as_deref())?
        .context("say which registry to move: --from FILE or --from-data DIR")?;
    let target = Config::load(Some(&args.to), Overrides::default())?;
    ensure!(
        source.storage.kind == "filesystem" && !source.shared_metadata(),
        "the source must be an embedded registry (filesystem storage, SQLite metadata)"
    );
    ensure!(
        target.storage.kind == "s3" && target.shared_metadata(),
        "the target must be a scale-out deployment: [storage] kind = \"s3\" and a postgres:// [metadata] url"
    );
    let db = source.data_dir.join("berth.db");
    ensure!(
        source.metadata.url.is_some() || db.exists(),
        "{} does not exist: is {} an embedded registry's data directory?",
        db.display(),
        source.data_dir.display()
    );
    // A server running on the source would change it under the copy.
    let _lock = crate::datadir::DataDirLock::acquire(&source.data_dir)
        .context("the source registry must be stopped before it is moved")?;

    let from_blobs = crate::backends::open_blob_store(&source)?;
    let from_meta = SqliteStore::connect(&source.metadata_url())
        .await
        .with_context(|| format!("cannot open {}", source.metadata_url()))?;
    let to_blobs = crate::backends::open_blob_store(&target)?;
    let target_url = target.metadata_url();
    let to_meta = PostgresStore::connect(&target_url)
        .await
        .with_context(|| format!("cannot open {}", crate::backends::redact(&target_url)))?;

    // 1. Bytes, before anything that could make them visible.
    let blobs = copy::stored_blobs(&from_meta).await?;
    let total: u64 = blobs.iter().map(|(_, size)| size).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "blobs {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let (mut copied, mut present, mut bytes) = (0u64, 0u64, 0u64);
    for (i, (digest, size)) in blobs.iter().enumerate() {
        bar.set_message(format!("{}/{}", i + 1, blobs.len()));
        if to_blobs.blob_size(digest).await? == Some(*size) {
            present += 1;
            bar.inc(*size);
            continue;
        }
        let read = from_blobs
            .read_blob(digest, None)
            .await
            .with_context(|| format!("cannot read blob {digest} of the source"))?;
        let id = uuid::Uuid::new_v4();
        let mut writer = to_blobs.upload_writer(id, 0, Some(read.size)).await?;
        let mut hasher = DigestHasher::new(digest.algorithm());
        let mut stream = read.stream;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("reading blob {digest}"))?;
            hasher.update(&chunk);
            bar.inc(chunk.len() as u64);
            writer.write(chunk).await?;
        }
        let written = writer.finish().await?;
        let actual = hasher.finish();
        if &actual != digest || written != *size {
            let _ = to_blobs.delete_upload(id).await;
            bail!(
                "blob {digest} of the source is damaged ({written} bytes hashing to {actual}); \
                 nothing was moved for it — repair or remove it in the source and run again"
            );
        }
        to_blobs.commit_upload(id, written, digest).await?;
        copied += 1;
        bytes += written;
    }
    bar.finish_and_clear();
    reportln!(
        "blobs: {copied} copied ({bytes} bytes), {present} already there, in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // 2. Metadata, table by table.
    let tables = copy::copy_to_postgres(&from_meta, &to_meta, |t| {
        reportln!("metadata: {} ({} rows)", t.table, t.source_rows);
    })
    .await?;

    // 3. Nothing lost: every row of the source is in the target.
    let short: Vec<_> = tables
        .iter()
        .filter(|t| t.target_rows < t.source_rows)
        .collect();
    let report = json!({
        "blobsCopied": copied,
        "blobsAlreadyPresent": present,
        "bytesCopied": bytes,
        "tables": tables.iter().map(|t| json!({
            "table": t.table,
            "sourceRows": t.source_rows,
            "targetRows": t.target_rows,
        })).collect::<Vec<_>>(),
    });
    if args.output == Format::Json {
        print(&report, &[], args.output);
    } else {
        print(
            &report["tables"],
            &[
                ("TABLE", "/table"),
                ("SOURCE ROWS", "/sourceRows"),
                ("TARGET ROWS", "/targetRows"),
            ],
            args.output,
        );
    }
    from_meta.close().await;
    to_meta.close().await;
    ensure!(
        short.is_empty(),
        "rows missing in the target after the copy: {short:?}"
    );
    reportln!(
        "done: start the scale-out nodes with --config {}; identities, passwords and tokens are unchanged",
        args.to.display()
    );
    Ok(())
}
