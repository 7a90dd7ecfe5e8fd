//! Workload parameters: the full preset (the sizes), the `--smoke`
//! preset (tiny, a few seconds), and flags that override either.

use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::units::{format_size, parse_duration, parse_size, GIB, KIB, MIB};

/// Every size, count and duration the workloads use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Size of the big blob of `push`, `push-chunked`, `pull` and `pull-range`.
    pub blob_size: u64,
    /// PATCH size of `push-chunked`.
    pub chunk_size: u64,
    /// Pushes of the big blob (each a distinct blob).
    pub repeat: u32,
    /// Full pulls of the big blob.
    pub pull_repeat: u32,
    /// Size of each `Range` GET.
    pub range_size: u64,
    /// Number of `Range` GETs; 0 covers the blob four times.
    pub range_requests: u64,
    /// Concurrent `Range` GETs.
    pub range_concurrency: usize,
    /// Connections of `manifest-get`.
    pub connections: usize,
    /// How long `manifest-get` runs.
    #[serde(with = "seconds")]
    pub duration: Duration,
    /// Layers of the `layers` image.
    pub layers: usize,
    pub layer_size: u64,
    /// Concurrent layer uploads.
    pub layer_parallelism: usize,
    /// Concurrent pushes of `concurrent-push`, each a distinct blob.
    pub concurrent_pushes: usize,
    pub concurrent_blob_size: u64,
    /// Tags of the `tags-list` repository.
    pub tags: usize,
    /// Page size (`n`) of the tags walk.
    pub page_size: usize,
    /// Walks of the whole tag list.
    pub tag_walks: u32,
    /// Pages averaged at each end of the walk (first vs last pages).
    pub edge_pages: usize,
    /// Concurrent manifest PUTs while creating the tags.
    pub tag_put_concurrency: usize,
    /// Check the bytes and digests of what is pulled (costs client CPU).
    pub verify: bool,
    /// How `manifest-get` authenticates.
    #[serde(default)]
    pub manifest_auth: ManifestAuth,
}

/// How the manifest GET loop authenticates: the credentials as HTTP Basic
/// on every request, a bearer token fetched once from the token service,
/// or nothing (the registry must allow anonymous pull).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestAuth {
    #[default]
    Basic,
    Bearer,
    Anonymous,
}

pub(crate) mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

impl Params {
    /// The workloads at full size.
    pub fn full() -> Self {
        Params {
            blob_size: GIB,
            chunk_size: 16 * MIB,
            repeat: 3,
            pull_repeat: 10,
            range_size: MIB,
            range_requests: 0,
            range_concurrency: 64,
            connections: 64,
            duration: Duration::from_secs(10),
            layers: 200,
            layer_size: 64 * KIB,
            layer_parallelism: 8,
            concurrent_pushes: 32,
            concurrent_blob_size: 32 * MIB,
            tags: 10_000,
            page_size: 100,
            tag_walks: 3,
            edge_pages: 10,
            tag_put_concurrency: 16,
            verify: false,
            manifest_auth: ManifestAuth::Basic,
        }
    }

    /// Tiny sizes: every workload runs, in a few seconds, with checks on.
    pub fn smoke() -> Self {
        Params {
            blob_size: 4 * MIB + 123,
            chunk_size: MIB,
            repeat: 1,
            pull_repeat: 2,
            range_size: 256 * KIB,
            range_requests: 0,
            range_concurrency: 8,
            connections: 8,
            duration: Duration::from_millis(500),
            layers: 12,
            layer_size: 4 * KIB,
            layer_parallelism: 4,
            concurrent_pushes: 4,
            concurrent_blob_size: MIB + 7,
            tags: 230,
            page_size: 50,
            tag_walks: 1,
            edge_pages: 2,
            tag_put_concurrency: 8,
            verify: true,
            manifest_auth: ManifestAuth::Basic,
        }
    }

    /// Number of `Range` GETs `pull-range` makes.
    pub fn range_count(&self) -> u64 {
        if self.range_requests > 0 {
            self.range_requests
        } else {
            4 * self.blob_size.div_ceil(self.range_size.max(1))
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.blob_size > 0, "--blob-size must be positive");
        anyhow::ensure!(self.chunk_size > 0, "--chunk-size must be positive");
        anyhow::ensure!(self.range_size > 0, "--range-size must be positive");
        anyhow::ensure!(
            self.repeat > 0 && self.pull_repeat > 0,
            "--repeat and --pull-repeat must be at least 1"
        );
        anyhow::ensure!(
            self.connections > 0 && self.range_concurrency > 0,
            "connection counts must be at least 1"
        );
        anyhow::ensure!(
            self.layers > 0 && self.layer_parallelism > 0,
            "--layers and --layer-parallelism must be at least 1"
        );
        anyhow::ensure!(
            self.concurrent_pushes > 0 && self.concurrent_blob_size > 0,
            "--concurrent-pushes and --concurrent-blob-size must be positive"
        );
        anyhow::ensure!(
            self.tags > 0 && self.page_size > 0 && self.tag_walks > 0,
            "--tags, --page-size and --tag-walks must be positive"
        );
        anyhow::ensure!(
            self.tag_put_concurrency > 0,
            "--tag-put-concurrency must be at least 1"
        );
        Ok(())
    }

    /// One line for the report's header.
    pub fn summary(&self) -> String {
        format!(
            "blob {} ×{} (chunks {}), pulls ×{}, ranges {}×{} at {}, manifest GET {} conns {:.1}s, \
             {} layers of {} by {}, {} pushes of {}, {} tags n={}",
            format_size(self.blob_size),
            self.repeat,
            format_size(self.chunk_size),
            self.pull_repeat,
            self.range_count(),
            format_size(self.range_size),
            self.range_concurrency,
            self.connections,
            self.duration.as_secs_f64(),
            self.layers,
            format_size(self.layer_size),
            self.layer_parallelism,
            self.concurrent_pushes,
            format_size(self.concurrent_blob_size),
            self.tags,
            self.page_size,
        )
    }
}

/// Flags for [`Params`]; each overrides the preset (`--smoke` or full).
#[derive(Debug, Clone, Default, Args)]
pub struct ParamArgs {
    /// Tiny sizes and short durations (a few seconds in all), with checks on.
    #[arg(long)]
    pub smoke: bool,
    /// Size of the big blob [full: 1GiB].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub blob_size: Option<u64>,
    /// PATCH size of the chunked push [16MiB].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub chunk_size: Option<u64>,
    /// Pushes of the big blob, each a distinct blob [3].
    #[arg(long, value_name = "N")]
    pub repeat: Option<u32>,
    /// Full pulls of the big blob [10].
    #[arg(long, value_name = "N")]
    pub pull_repeat: Option<u32>,
    /// Size of each Range GET [1MiB].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub range_size: Option<u64>,
    /// Number of Range GETs [4 × blob size / range size].
    #[arg(long, value_name = "N")]
    pub range_requests: Option<u64>,
    /// Concurrent Range GETs [64].
    #[arg(long, value_name = "N")]
    pub range_concurrency: Option<usize>,
    /// Connections of the manifest GET workload [64].
    #[arg(long, value_name = "N")]
    pub connections: Option<usize>,
    /// Duration of the manifest GET workload [10s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// Layers of the many-layer image [200].
    #[arg(long, value_name = "N")]
    pub layers: Option<usize>,
    /// Size of each layer [64KiB].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub layer_size: Option<u64>,
    /// Parallel layer uploads [8].
    #[arg(long, value_name = "N")]
    pub layer_parallelism: Option<usize>,
    /// Concurrent pushes of distinct blobs [32].
    #[arg(long, value_name = "N")]
    pub concurrent_pushes: Option<usize>,
    /// Size of each concurrently pushed blob [32MiB].
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub concurrent_blob_size: Option<u64>,
    /// Tags in the tag-list repository [10000].
    #[arg(long, value_name = "N")]
    pub tags: Option<usize>,
    /// Page size of the tag walk [100].
    #[arg(long, value_name = "N")]
    pub page_size: Option<usize>,
    /// Walks of the whole tag list [3].
    #[arg(long, value_name = "N")]
    pub tag_walks: Option<u32>,
    /// Pages averaged at each end of the tag walk [10].
    #[arg(long, value_name = "N")]
    pub edge_pages: Option<usize>,
    /// Concurrent manifest PUTs while creating the tags [16].
    #[arg(long, value_name = "N")]
    pub tag_put_concurrency: Option<usize>,
    /// Check digests and bytes of everything pulled (on with --smoke).
    #[arg(long)]
    pub verify: bool,
    /// How manifest-get authenticates: basic (every request), bearer (a
    /// token from the registry's token service), anonymous [basic].
    #[arg(long, value_enum, value_name = "MODE")]
    pub manifest_auth: Option<ManifestAuth>,
}

impl ParamArgs {
    pub fn resolve(&self) -> anyhow::Result<Params> {
        let base = if self.smoke {
            Params::smoke()
        } else {
            Params::full()
        };
        let p = Params {
            blob_size: self.blob_size.unwrap_or(base.blob_size),
            chunk_size: self.chunk_size.unwrap_or(base.chunk_size),
            repeat: self.repeat.unwrap_or(base.repeat),
            pull_repeat: self.pull_repeat.unwrap_or(base.pull_repeat),
            range_size: self.range_size.unwrap_or(base.range_size),
            range_requests: self.range_requests.unwrap_or(base.range_requests),
            range_concurrency: self.range_concurrency.unwrap_or(base.range_concurrency),
            connections: self.connections.unwrap_or(base.connections),
            duration: self.duration.unwrap_or(base.duration),
            layers: self.layers.unwrap_or(base.layers),
            layer_size: self.layer_size.unwrap_or(base.layer_size),
            layer_parallelism: self.layer_parallelism.unwrap_or(base.layer_parallelism),
            concurrent_pushes: self.concurrent_pushes.unwrap_or(base.concurrent_pushes),
            concurrent_blob_size: self
                .concurrent_blob_size
                .unwrap_or(base.concurrent_blob_size),
            tags: self.tags.unwrap_or(base.tags),
            page_size: self.page_size.unwrap_or(base.page_size),
            tag_walks: self.tag_walks.unwrap_or(base.tag_walks),
            edge_pages: self.edge_pages.unwrap_or(base.edge_pages),
            tag_put_concurrency: self.tag_put_concurrency.unwrap_or(base.tag_put_concurrency),
            verify: self.verify || base.verify,
            manifest_auth: self.manifest_auth.unwrap_or(base.manifest_auth),
        };
        p.validate()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_preset() {
        let args = ParamArgs {
            smoke: true,
            blob_size: Some(GIB),
            tags: Some(7),
            ..ParamArgs::default()
        };
        let p = args.resolve().expect("valid");
        assert_eq!(p.blob_size, GIB);
        assert_eq!(p.tags, 7);
        assert_eq!(p.chunk_size, Params::smoke().chunk_size);
        assert!(p.verify);
        assert_eq!(Params::full().range_count(), 4096);
        let bad = ParamArgs {
            repeat: Some(0),
            ..ParamArgs::default()
        };
        assert!(bad.resolve().is_err());
        let json = serde_json::to_string(&Params::full()).expect("json");
        let back: Params = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, Params::full());
    }
}
