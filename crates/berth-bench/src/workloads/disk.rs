//! Reference row: how fast this filesystem takes `--blob-size` bytes written
//! in 16 MiB writes and fsync'd once, the same pattern a registry needs to
//! acknowledge a blob durably. `--repeat` files, removed after the clock
//! stops (unlinking a big file on a filesystem mounted with `discard` takes
//! as long as writing it).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::data::BlobSpec;
use crate::params::Params;
use crate::stats::{Meter, Recorder, WorkloadResult};

pub const NAME: &str = "disk-write";
const WRITE: usize = 16 * 1024 * 1024;

pub async fn run(dir: &Path, params: &Params) -> anyhow::Result<WorkloadResult> {
    let dir = dir.to_path_buf();
    let (size, repeat) = (params.blob_size, params.repeat);
    tokio::task::spawn_blocking(move || write_files(&dir, size, repeat)).await?
}

fn write_files(dir: &Path, size: u64, repeat: u32) -> anyhow::Result<WorkloadResult> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut buf = vec![0u8; WRITE];
    BlobSpec::new(0, WRITE as u64).fill(0, &mut buf);
    let mut recorder = Recorder::new();
    let meter = Meter::start(None);
    let paths: Vec<PathBuf> = (0..repeat)
        .map(|i| dir.join(format!("berth-bench-disk-{}-{i}", std::process::id())))
        .collect();
    for path in &paths {
        let start = Instant::now();
        let result = write_one(path, &buf, size);
        recorder.outcome(start, size, result);
    }
    let result = meter.finish(
        None,
        NAME,
        "reference: the blob size written in 16 MiB writes to the data filesystem, then fsync",
        &recorder,
        true,
        BTreeMap::from([("write_bytes".to_string(), WRITE as f64)]),
    );
    for path in &paths {
        // A leftover file is only clutter.
        let _ = std::fs::remove_file(path);
    }
    Ok(result)
}

fn write_one(path: &PathBuf, buf: &[u8], size: u64) -> anyhow::Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut written = 0u64;
    while written < size {
        let n = (size - written).min(buf.len() as u64) as usize;
        file.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        written += n as u64;
    }
    file.sync_all()
        .with_context(|| format!("cannot fsync {}", path.display()))?;
    Ok(())
}
