//! The workloads, one module each, and what they share: the client, the
//! parameters, the server probe, and fixtures (the big blob, the small
//! image) that several workloads need and create on demand.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::client::{Client, Mode, OCI_MANIFEST};
use crate::data::{self, BlobSpec};
use crate::image::Image;
use crate::params::Params;
use crate::procfs::ServerProbe;
use crate::stats::{Meter, Recorder, WorkloadResult};

pub mod concurrent_push;
pub mod disk;
pub mod layers;
pub mod manifest_get;
pub mod pull;
pub mod push;
pub mod tags_list;

/// Seeds of the generated blobs; each workload pushes distinct content.
pub(crate) mod seeds {
    /// The big blob is the first `push`; its repeats follow.
    pub const PUSH: u64 = 1;
    pub const CHUNKED: u64 = 1_000;
    pub const CONCURRENT: u64 = 2_000;
    pub const LAYERS: u64 = 3_000;
}

/// Repository (under the prefix) holding the big blob.
pub(crate) const BLOB_REPO: &str = "blob";
/// Repository and tag of the small image `manifest-get` reads.
pub(crate) const IMAGE_REPO: &str = "image";
pub(crate) const IMAGE_TAG: &str = "latest";

/// The workloads of the issue, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    Push,
    PushChunked,
    Pull,
    PullRange,
    ManifestGet,
    Layers,
    ConcurrentPush,
    TagsList,
}

impl Workload {
    pub const ALL: [Workload; 8] = [
        Workload::Push,
        Workload::PushChunked,
        Workload::Pull,
        Workload::PullRange,
        Workload::ManifestGet,
        Workload::Layers,
        Workload::ConcurrentPush,
        Workload::TagsList,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Push => "push",
            Workload::PushChunked => "push-chunked",
            Workload::Pull => "pull",
            Workload::PullRange => "pull-range",
            Workload::ManifestGet => "manifest-get",
            Workload::Layers => "layers",
            Workload::ConcurrentPush => "concurrent-push",
            Workload::TagsList => "tags-list",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Workload::Push => "push of the big blob, monolithic (POST + PUT of the whole body)",
            Workload::PushChunked => "push of a big blob as PATCHes of --chunk-size, then PUT",
            Workload::Pull => "full GET of the big blob",
            Workload::PullRange => "Range GETs of --range-size across the big blob, concurrently",
            Workload::ManifestGet => "manifest GET by tag on --connections keep-alive connections",
            Workload::Layers => "image of many small layers, parallel uploads, then the manifest",
            Workload::ConcurrentPush => "concurrent monolithic pushes of distinct blobs",
            Workload::TagsList => "tags list walked page by page to the end (time per page)",
        }
    }

    /// Whether the workload runs against a static file server.
    pub fn reads_only(self) -> bool {
        matches!(
            self,
            Workload::Pull | Workload::PullRange | Workload::ManifestGet
        )
    }

    /// Whether MiB/s (rather than op/s) is the headline figure.
    pub fn headline_mib(self) -> bool {
        !matches!(
            self,
            Workload::ManifestGet | Workload::Layers | Workload::TagsList
        )
    }

    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
        match self {
            Workload::Push => push::monolithic(ctx).await,
            Workload::PushChunked => push::chunked(ctx).await,
            Workload::Pull => pull::full(ctx).await,
            Workload::PullRange => pull::ranges(ctx).await,
            Workload::ManifestGet => manifest_get::run(ctx).await,
            Workload::Layers => layers::run(ctx).await,
            Workload::ConcurrentPush => concurrent_push::run(ctx).await,
            Workload::TagsList => tags_list::run(ctx).await,
        }
    }
}

/// What every workload gets.
pub struct Ctx {
    pub client: Client,
    pub params: Params,
    pub server: Option<ServerProbe>,
    pub repo_prefix: String,
    digests: Mutex<HashMap<BlobSpec, String>>,
}

impl Ctx {
    pub fn new(
        client: Client,
        params: Params,
        server: Option<ServerProbe>,
        repo_prefix: &str,
    ) -> Self {
        Ctx {
            client,
            params,
            server,
            repo_prefix: repo_prefix.trim_matches('/').to_string(),
            digests: Mutex::new(HashMap::new()),
        }
    }

    pub fn repo(&self, name: &str) -> String {
        format!("{}/{name}", self.repo_prefix)
    }

    pub fn mode(&self) -> Mode {
        self.client.mode
    }

    /// Starts the clock of a timed part.
    pub fn meter(&self) -> Meter {
        Meter::start(self.server.as_ref())
    }

    pub fn finish(
        &self,
        meter: Meter,
        workload: Workload,
        recorder: &Recorder,
        details: BTreeMap<String, f64>,
    ) -> WorkloadResult {
        meter.finish(
            self.server.as_ref(),
            workload.name(),
            workload.description(),
            recorder,
            workload.headline_mib(),
            details,
        )
    }

    /// Digests of generated blobs, computed once per run (untimed).
    pub async fn digests(&self, specs: &[BlobSpec]) -> anyhow::Result<Vec<String>> {
        let missing: Vec<BlobSpec> = {
            let known = self.digests.lock().unwrap_or_else(|p| p.into_inner());
            specs
                .iter()
                .filter(|s| !known.contains_key(s))
                .copied()
                .collect()
        };
        let computed = data::digests(&missing).await?;
        let mut known = self.digests.lock().unwrap_or_else(|p| p.into_inner());
        known.extend(missing.into_iter().zip(computed));
        specs
            .iter()
            .map(|s| known.get(s).cloned().context("digest not computed"))
            .collect()
    }

    /// The big blob, pushed (untimed) if the registry lacks it; a static
    /// server must already have it.
    pub async fn big_blob(&self) -> anyhow::Result<(BlobSpec, String)> {
        let spec = BlobSpec::new(seeds::PUSH, self.params.blob_size);
        let digest = self.digests(&[spec]).await?.remove(0);
        let repo = self.repo(BLOB_REPO);
        let exists = self.client.blob_exists(&repo, &digest).await?;
        match (exists, self.mode()) {
            (true, _) => {}
            (false, Mode::Registry) => self
                .client
                .push_stream(&repo, spec, &digest)
                .await
                .context("cannot push the big blob for the pull workloads")?,
            (false, Mode::Static) => anyhow::bail!(
                "the static server has no {} (was it started on the --static-dir?)",
                self.client.blob_url(&repo, &digest)?
            ),
        }
        Ok((spec, digest))
    }

    /// Pushes `image` (layers, config, manifest under `tag`) to `repo`.
    pub async fn push_image(&self, repo: &str, tag: &str, image: &Image) -> anyhow::Result<()> {
        for blob in image.layers.iter().chain(std::iter::once(&image.config)) {
            if !self.client.blob_exists(repo, &blob.digest).await? {
                self.client
                    .push_bytes(repo, blob.bytes.clone(), &blob.digest)
                    .await?;
            }
        }
        self.client
            .put_manifest(repo, tag, OCI_MANIFEST, image.manifest.clone())
            .await
    }

    /// The small image under `IMAGE_REPO:IMAGE_TAG`, pushed if the registry
    /// lacks it; a static server must serve its manifest.
    pub async fn small_image(&self) -> anyhow::Result<Image> {
        let image = Image::small();
        let repo = self.repo(IMAGE_REPO);
        match self.mode() {
            Mode::Registry => self
                .push_image(&repo, IMAGE_TAG, &image)
                .await
                .context("cannot push the small image")?,
            Mode::Static => {
                let served = self.client.get_manifest(&repo, IMAGE_TAG).await?;
                anyhow::ensure!(
                    served == image.manifest,
                    "the static server's manifest differs from the generated one"
                );
            }
        }
        Ok(image)
    }
}

/// Writes the files a static server needs to serve the read-only workloads
/// at the registry's paths: the big blob and the small image's manifest.
pub fn write_static_files(
    dir: &std::path::Path,
    params: &Params,
    repo_prefix: &str,
) -> anyhow::Result<()> {
    use std::io::Write;

    let prefix = repo_prefix.trim_matches('/');
    let spec = BlobSpec::new(seeds::PUSH, params.blob_size);
    let digest = spec.digest();
    let blob_dir = dir.join(format!("v2/{prefix}/{BLOB_REPO}/blobs"));
    std::fs::create_dir_all(&blob_dir)
        .with_context(|| format!("cannot create {}", blob_dir.display()))?;
    let path = blob_dir.join(&digest);
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(data::STREAM_CHUNK, file);
    let mut buf = vec![0u8; data::STREAM_CHUNK];
    let mut pos = 0;
    while pos < spec.size {
        let n = (spec.size - pos).min(buf.len() as u64) as usize;
        spec.fill(pos, &mut buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        pos += n as u64;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;

    let manifest_dir = dir.join(format!("v2/{prefix}/{IMAGE_REPO}/manifests"));
    std::fs::create_dir_all(&manifest_dir)
        .with_context(|| format!("cannot create {}", manifest_dir.display()))?;
    let path = manifest_dir.join(IMAGE_TAG);
    std::fs::write(&path, Image::small().manifest)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
