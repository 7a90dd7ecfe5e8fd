//! Blob contents: deterministic pseudo-random bytes, never held whole in
//! memory.
//!
//! Byte `i` of a blob is a pure function of its seed and `i` (a counter-based
//! generator: word `i / 8` is SplitMix64's finaliser applied to
//! `key + word * γ`), so any range can be produced on its own. A blob is
//! generated twice: once, before the clock starts, to compute its sha256
//! (which a push must name up front); then again, 1 MiB at a time, as the
//! upload's body. Regenerating costs ~0.2 ms of CPU per MiB, several times less
//! than hashing, and unlike a pre-written temp file it neither competes with
//! the server for the disk and page cache nor needs gigabytes of scratch
//! space; see docs/performance.md.

use std::ops::Range;

use bytes::Bytes;
use futures::Stream;
use sha2::{Digest as _, Sha256};

/// Size of each generated chunk of a streamed body.
pub const STREAM_CHUNK: usize = 1024 * 1024;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A blob defined by its seed and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobSpec {
    pub seed: u64,
    pub size: u64,
}

impl BlobSpec {
    pub fn new(seed: u64, size: u64) -> Self {
        BlobSpec { seed, size }
    }

    fn key(&self) -> u64 {
        mix(self.seed.wrapping_add(GAMMA))
    }

    /// Fills `buf` with the blob's bytes starting at `offset` (bytes past the
    /// blob's end continue the same sequence; callers stay within `size`).
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let key = self.key();
        let word_at = |w: u64| mix(key.wrapping_add(w.wrapping_mul(GAMMA))).to_le_bytes();
        let mut word = offset / 8;
        let skip = (offset % 8) as usize;
        let mut pos = 0;
        if skip != 0 {
            let bytes = word_at(word);
            let n = (8 - skip).min(buf.len());
            buf[..n].copy_from_slice(&bytes[skip..skip + n]);
            pos = n;
            word += 1;
        }
        let mut chunks = buf[pos..].chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&word_at(word));
            word += 1;
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let n = tail.len();
            tail.copy_from_slice(&word_at(word)[..n]);
        }
    }

    /// The bytes of `range` (clamped to the blob) in memory; for small blobs
    /// and for checking ranges.
    pub fn bytes(&self, range: Range<u64>) -> Bytes {
        let end = range.end.min(self.size);
        let start = range.start.min(end);
        let mut buf = vec![0u8; (end - start) as usize];
        self.fill(start, &mut buf);
        Bytes::from(buf)
    }

    /// The whole blob in memory; only for small blobs.
    pub fn all(&self) -> Bytes {
        self.bytes(0..self.size)
    }

    /// The bytes of `range` as a stream of [`STREAM_CHUNK`]-sized chunks,
    /// generated as the consumer pulls them.
    pub fn stream(
        self,
        range: Range<u64>,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let end = range.end.min(self.size);
        futures::stream::unfold(range.start, move |pos| async move {
            if pos >= end {
                return None;
            }
            let n = (end - pos).min(STREAM_CHUNK as u64) as usize;
            let mut buf = vec![0u8; n];
            self.fill(pos, &mut buf);
            Some((Ok(Bytes::from(buf)), pos + n as u64))
        })
    }

    /// `sha256:<hex>` of the blob, generated and hashed a chunk at a time.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; STREAM_CHUNK];
        let mut pos = 0;
        while pos < self.size {
            let n = (self.size - pos).min(STREAM_CHUNK as u64) as usize;
            self.fill(pos, &mut buf[..n]);
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }
}

/// `sha256:<hex>` of bytes in memory.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Digests of many blobs, computed on all cores off the async runtime.
pub async fn digests(specs: &[BlobSpec]) -> anyhow::Result<Vec<String>> {
    let specs = specs.to_vec();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(specs.len().max(1));
    let digests = tokio::task::spawn_blocking(move || {
        let mut out = vec![String::new(); specs.len()];
        let per_thread = specs.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for (specs, out) in specs.chunks(per_thread).zip(out.chunks_mut(per_thread)) {
                scope.spawn(move || {
                    for (spec, digest) in specs.iter().zip(out.iter_mut()) {
                        *digest = spec.digest();
                    }
                });
            }
        });
        out
    })
    .await?;
    Ok(digests)
}

/// Incremental sha256 for checking what a pull received.
#[derive(Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.0.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn ranges_agree_with_the_whole() {
        let spec = BlobSpec::new(7, 3 * 1024 + 5);
        let all = spec.all();
        assert_eq!(all.len() as u64, spec.size);
        for (start, end) in [(0, 1), (1, 9), (3, 3000), (8, 16), (1000, spec.size)] {
            assert_eq!(
                spec.bytes(start..end),
                all.slice(start as usize..end as usize)
            );
        }
        assert_ne!(BlobSpec::new(8, spec.size).all(), all);
        assert_eq!(spec.digest(), digest_of(&all));
    }

    #[tokio::test]
    async fn stream_matches_digest() {
        let spec = BlobSpec::new(3, STREAM_CHUNK as u64 * 2 + 100);
        let mut hasher = Hasher::default();
        let mut stream = Box::pin(spec.stream(0..spec.size));
        let mut chunks = 0;
        while let Some(chunk) = stream.next().await {
            hasher.update(&chunk.expect("chunk"));
            chunks += 1;
        }
        assert_eq!(chunks, 3);
        assert_eq!(hasher.finish(), spec.digest());
        let two = digests(&[spec, BlobSpec::new(4, 10)])
            .await
            .expect("digests");
        assert_eq!(two[0], spec.digest());
        assert_eq!(two[1], BlobSpec::new(4, 10).digest());
    }
}
