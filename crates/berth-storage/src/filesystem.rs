//! Filesystem backend: `<root>/<alg>/<first two hex>/<hex>` for blobs and
//! `<root>/_uploads/<uuid>` for uploads, on the same filesystem so a commit
//! is one `rename`. Upload chunks are handed to the OS when acknowledged
//! (they survive a process crash); the commit fsyncs the data, renames, and
//! fsyncs the directory, so a committed blob survives a power loss and a
//! partial one is never visible under a digest.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_types::Digest;
use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;
use uuid::Uuid;

use crate::{BlobRead, BlobStore, ByteStream, StorageError, UploadWriter};

/// Read size for streaming large blobs out: a 1 GiB pull is two thousand
/// reads.
const READ_CHUNK: usize = 512 * 1024;
/// Read size for short ranges (many of them run at once, as when a client
/// fetches a layer in parallel pieces): memory per stream stays small.
const SMALL_READ_CHUNK: usize = 64 * 1024;
/// Ranges up to this length use the small read size.
const SMALL_RANGE: u64 = 8 * 1024 * 1024;
/// Chunks read ahead of the client per stream.
const READ_QUEUE: usize = 2;
/// Blobs kept open for reading. Blobs never change under their digest, so
/// an open handle stays valid until the blob is deleted (which drops it);
/// a hot blob read in many ranges costs no `open` + `stat` per request.
const OPEN_BLOBS: usize = 256;
/// Chunks queued between the request and the writer thread (each is what
/// one socket read gave, up to a few hundred KiB).
const WRITE_QUEUE: usize = 2;

#[derive(Clone)]
pub struct FilesystemStore {
    root: PathBuf,
    abandoned: AbandonedWriters,
    open_blobs: Arc<quick_cache::sync::Cache<Digest, OpenBlob>>,
}

impl std::fmt::Debug for FilesystemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesystemStore")
            .field("root", &self.root)
            .field("open_blobs", &self.open_blobs.len())
            .finish()
    }
}

/// A blob's file, open for positioned reads (`pread`: no shared cursor, so
/// any number of requests read it at once), and its size.
#[derive(Debug, Clone)]
struct OpenBlob {
    file: Arc<std::fs::File>,
    size: u64,
}

type WriterThread = tokio::task::JoinHandle<std::io::Result<u64>>;

/// Writer threads of requests that were dropped mid-body, by upload. Their
/// queued chunks could still land after a trim or a new writer's
/// truncation, so anything that touches the upload's file waits for them
/// first.
#[derive(Debug, Clone, Default)]
struct AbandonedWriters(Arc<Mutex<HashMap<Uuid, Vec<WriterThread>>>>);

impl AbandonedWriters {
    fn add(&self, id: Uuid, thread: WriterThread) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default()
            .push(thread);
    }

    async fn wait(&self, id: Uuid) {
        let threads = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
            .unwrap_or_default();
        for thread in threads {
            let _ = thread.await;
        }
    }
}

impl FilesystemStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(root.join("_uploads"))
            .map_err(StorageError::io(format!("create {}", root.display())))?;
        Ok(FilesystemStore {
            root,
            abandoned: AbandonedWriters::default(),
            open_blobs: Arc::new(quick_cache::sync::Cache::new(OPEN_BLOBS)),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(blob_relative_path(digest))
    }

    fn upload_path(&self, id: Uuid) -> PathBuf {
        self.root.join("_uploads").join(id.to_string())
    }

    async fn open_blob(&self, digest: &Digest) -> Result<OpenBlob, StorageError> {
        let path = self.blob_path(digest);
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<OpenBlob> {
            let file = std::fs::File::open(path)?;
            let size = file.metadata()?.len();
            Ok(OpenBlob {
                file: Arc::new(file),
                size,
            })
        })
        .await
        .map_err(|e| StorageError::io(format!("open blob {digest}"))(std::io::Error::other(e)))?;
        match opened {
            Ok(blob) => Ok(blob),
            Err(e) if not_found(&e) => Err(StorageError::BlobNotFound(digest.clone())),
            Err(e) => Err(StorageError::io(format!("open blob {digest}"))(e)),
        }
    }
}

/// Where a blob lives under the storage root (`sha256/ab/abcd...`): the
/// layout backups keep too.
pub fn blob_relative_path(digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    PathBuf::from(digest.algorithm().as_str())
        .join(&hex[..2])
        .join(hex)
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for FilesystemStore {
    async fn probe(&self) -> Result<(), StorageError> {
        // The upload directory is where every write starts.
        let uploads = self.root.join("_uploads");
        tokio::fs::metadata(&uploads)
            .await
            .map_err(StorageError::io(format!("stat {}", uploads.display())))?;
        Ok(())
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, StorageError> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(StorageError::io(format!("stat blob {digest}"))(e)),
        }
    }

    async fn read_blob(
        &self,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BlobRead, StorageError> {
        let blob = match self.open_blobs.get(digest) {
            Some(blob) => blob,
            None => {
                let blob = self.open_blob(digest).await?;
                self.open_blobs.insert(digest.clone(), blob.clone());
                blob
            }
        };
        let range = range.unwrap_or(0..blob.size);
        crate::check_range(&range, blob.size)?;
        Ok(BlobRead {
            size: blob.size,
            stream: spawn_reader(blob.file, range),
        })
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<bool, StorageError> {
        self.open_blobs.remove(digest);
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(StorageError::io(format!("delete blob {digest}"))(e)),
        }
    }

    async fn upload_writer(
        &self,
        id: Uuid,
        offset: u64,
        _length: Option<u64>,
    ) -> Result<Box<dyn UploadWriter>, StorageError> {
        self.abandoned.wait(id).await;
        let path = self.upload_path(id);
        let action = format!("open upload {id}");
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let mut file = std::fs::OpenOptions::new()
                .create(offset == 0)
                .truncate(false)
                .write(true)
                .open(&path)?;
            // Discard bytes of a request that died before it was acknowledged.
            file.set_len(offset)?;
            file.seek(SeekFrom::Start(offset))?;
            Ok(file)
        })
        .await
        .map_err(|e| StorageError::io(action.clone())(std::io::Error::other(e)))?;
        let file = match file {
            Ok(f) => f,
            Err(e) if not_found(&e) => return Err(StorageError::UploadNotFound(id)),
            Err(e) => return Err(StorageError::io(action)(e)),
        };
        Ok(Box::new(FileUploadWriter::spawn(
            id,
            file,
            self.abandoned.clone(),
        )))
    }

    async fn read_upload(&self, id: Uuid, len: u64) -> Result<ByteStream, StorageError> {
        let file = match tokio::fs::File::open(self.upload_path(id)).await {
            Ok(f) => f,
            Err(e) if not_found(&e) => return Err(StorageError::UploadNotFound(id)),
            Err(e) => return Err(StorageError::io(format!("open upload {id}"))(e)),
        };
        Ok(Box::pin(ReaderStream::with_capacity(
            file.take(len),
            READ_CHUNK,
        )))
    }

    async fn commit_upload(&self, id: Uuid, len: u64, digest: &Digest) -> Result<(), StorageError> {
        let from = self.upload_path(id);
        let to = self.blob_path(digest);
        let action = format!("commit upload {id} as {digest}");
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let parent = to.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent)?;
            // Same digest, same bytes: an existing blob is kept as it is.
            if to.exists() {
                return std::fs::remove_file(&from);
            }
            // Bytes past the durable length belong to a request that was
            // never acknowledged: they are not part of the blob.
            let file = std::fs::OpenOptions::new().write(true).open(&from)?;
            if file.metadata()?.len() != len {
                file.set_len(len)?;
            }
            file.sync_all()?;
            std::fs::rename(&from, &to)?;
            sync_dir(parent)
        })
        .await
        .map_err(|e| StorageError::io(action.clone())(std::io::Error::other(e)))?
        .map_err(|e| {
            if not_found(&e) {
                StorageError::UploadNotFound(id)
            } else {
                StorageError::io(action)(e)
            }
        })
    }

    async fn trim_upload(&self, id: Uuid, len: u64) -> Result<(), StorageError> {
        self.abandoned.wait(id).await;
        let path = self.upload_path(id);
        let trimmed = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            if file.metadata()?.len() > len {
                file.set_len(len)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StorageError::io(format!("trim upload {id}"))(std::io::Error::other(e)))?;
        match trimmed {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(StorageError::io(format!("trim upload {id}"))(e)),
        }
    }

    async fn delete_upload(&self, id: Uuid) -> Result<bool, StorageError> {
        self.abandoned.wait(id).await;
        match tokio::fs::remove_file(self.upload_path(id)).await {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(StorageError::io(format!("delete upload {id}"))(e)),
        }
    }
}

/// Reads `range` of `file` on a blocking thread straight into the buffers
/// that go to the socket (one copy fewer than `tokio::fs`, which reads into
/// its own buffer first), at most `READ_QUEUE` chunks ahead of the client.
fn spawn_reader(file: Arc<std::fs::File>, range: Range<u64>) -> ByteStream {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(READ_QUEUE);
    tokio::task::spawn_blocking(move || {
        let mut reader = PositionedReader {
            file: &file,
            position: range.start,
        };
        let mut left = range.end - range.start;
        let chunk = if left <= SMALL_RANGE {
            SMALL_READ_CHUNK
        } else {
            READ_CHUNK
        };
        while left > 0 {
            let want = left.min(chunk as u64);
            let mut chunk = Vec::with_capacity(want as usize);
            match (&mut reader).take(want).read_to_end(&mut chunk) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob is shorter than its recorded size",
                    )));
                    return;
                }
                Ok(n) => {
                    left -= n as u64;
                    // The client went away: stop reading.
                    if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Reads a shared file from its own position (`pread`), leaving the file's
/// cursor alone for the other readers.
struct PositionedReader<'a> {
    file: &'a std::fs::File,
    position: u64,
}

impl Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

/// Writes on a blocking thread fed through a bounded queue, so receiving and
/// hashing the next chunk overlaps with writing this one, and memory stays at
/// most `WRITE_QUEUE` chunks whatever the upload's size.
struct FileUploadWriter {
    id: Uuid,
    sender: Option<mpsc::Sender<Bytes>>,
    thread: Option<WriterThread>,
    /// Set when the writer is dropped unfinished: the thread stops writing.
    abort: Arc<AtomicBool>,
    abandoned: AbandonedWriters,
}

impl FileUploadWriter {
    fn spawn(id: Uuid, file: std::fs::File, abandoned: AbandonedWriters) -> Self {
        let (sender, mut receiver) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        let abort = Arc::new(AtomicBool::new(false));
        let aborted = abort.clone();
        let thread = tokio::task::spawn_blocking(move || {
            // Chunks are already socket-read sized: written as they come.
            let mut file = file;
            while let Some(chunk) = receiver.blocking_recv() {
                if aborted.load(Ordering::Acquire) {
                    break;
                }
                file.write_all(&chunk)?;
            }
            // Handed to the OS, not fsync'd: survives a process crash; the
            // commit fsyncs before the blob becomes visible.
            file.stream_position()
        });
        FileUploadWriter {
            id,
            sender: Some(sender),
            thread: Some(thread),
            abort,
            abandoned,
        }
    }

    /// Closes the queue and waits for the thread's result.
    async fn join(&mut self) -> Result<u64, StorageError> {
        self.sender = None;
        let action = format!("write upload {}", self.id);
        let Some(thread) = self.thread.take() else {
            return Err(StorageError::io(action)(std::io::Error::other(
                "upload writer already finished",
            )));
        };
        match thread.await {
            Ok(result) => result.map_err(StorageError::io(action)),
            Err(e) => Err(StorageError::io(action)(std::io::Error::other(e))),
        }
    }
}

impl Drop for FileUploadWriter {
    fn drop(&mut self) {
        // Dropped before `finish` (the request failed or was cut off).
        if let Some(thread) = self.thread.take() {
            self.abort.store(true, Ordering::Release);
            self.sender = None;
            self.abandoned.add(self.id, thread);
        }
    }
}

#[async_trait]
impl UploadWriter for FileUploadWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        if let Some(sender) = &self.sender {
            if sender.send(chunk).await.is_ok() {
                return Ok(());
            }
        }
        // The thread stopped early: it has the I/O error to report.
        Err(match self.join().await {
            Err(e) => e,
            Ok(_) => StorageError::io(format!("write upload {}", self.id))(std::io::Error::other(
                "upload writer stopped early",
            )),
        })
    }

    async fn finish(mut self: Box<Self>) -> Result<u64, StorageError> {
        self.join().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_types::Digest;
    use futures::StreamExt;

    #[tokio::test]
    async fn concurrent_ranges_of_one_open_blob_each_read_their_own_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let id = Uuid::new_v4();
        let mut w = store.upload_writer(id, 0, None).await.expect("writer");
        w.write(Bytes::from(content.clone())).await.expect("write");
        w.finish().await.expect("finish");
        let digest = Digest::sha256_of(&content);
        store
            .commit_upload(id, content.len() as u64, &digest)
            .await
            .expect("commit");
        // One handle, many readers at different offsets (no shared cursor).
        let reads = (0..16u64).map(|i| {
            let store = store.clone();
            let digest = digest.clone();
            let range = i * 14_000..i * 14_000 + 70_000;
            async move {
                let r = store.read_blob(&digest, Some(range.clone())).await;
                (range, collect(r.expect("range").stream).await)
            }
        });
        for (range, bytes) in futures::future::join_all(reads).await {
            assert_eq!(bytes, &content[range.start as usize..range.end as usize]);
        }
        assert_eq!(store.open_blobs.len(), 1);
    }

    async fn collect(mut s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.expect("read"));
        }
        out
    }

    #[tokio::test]
    async fn upload_commit_read_range_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FilesystemStore::open(dir.path()).expect("open");
        let id = Uuid::new_v4();
        let mut w = store.upload_writer(id, 0, None).await.expect("writer");
        w.write(Bytes::from_static(b"hello ")).await.expect("write");
        assert_eq!(w.finish().await.expect("finish"), 6);
        // An unacknowledged tail is discarded when the upload resumes.
        let mut w = store.upload_writer(id, 6, None).await.expect("writer");
        w.write(Bytes::from_static(b"world")).await.expect("write");
        assert_eq!(w.finish().await.expect("finish"), 11);
        assert_eq!(
            collect(store.read_upload(id, 11).await.expect("read")).await,
            b"hello world"
        );

        let digest = Digest::sha256_of(b"hello world");
        assert_eq!(store.blob_size(&digest).await.expect("stat"), None);
        store.commit_upload(id, 11, &digest).await.expect("commit");
        assert_eq!(store.blob_size(&digest).await.expect("stat"), Some(11));
        let r = store.read_blob(&digest, Some(6..11)).await.expect("range");
        assert_eq!(r.size, 11);
        assert_eq!(collect(r.stream).await, b"world");
        assert!(matches!(
            store.read_blob(&digest, Some(5..12)).await,
            Err(StorageError::RangeNotSatisfiable { .. })
        ));
        assert!(store.delete_blob(&digest).await.expect("delete"));
        // The open handle kept for reads went with the blob.
        assert!(matches!(
            store.read_blob(&digest, None).await,
            Err(StorageError::BlobNotFound(_))
        ));
        assert!(!store.delete_blob(&digest).await.expect("delete"));
        assert!(matches!(
            store.upload_writer(Uuid::new_v4(), 5, None).await,
            Err(StorageError::UploadNotFound(_))
        ));
    }
}
