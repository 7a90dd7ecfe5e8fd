//! The access log: one JSON line per request, written when its response
//! body has been sent (so `bytes` and `durationMs` cover the whole
//! transfer), to standard error or a file. Off unless configured.
//!
//! Lines go through a bounded queue to a writer thread, so a slow disk
//! never slows requests; a full queue drops lines and counts them in
//! `berth_access_log_dropped_total`. Query values are logged only for
//! parameters known to carry no secret; every other value is `***`
//! (signed data-endpoint URLs, upload states, a password someone put in a
//! URL). Headers are never logged.

use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use serde::Serialize;

const QUEUE: usize = 16_384;

/// Query parameters whose values are logged as they are.
const PLAIN_QUERY_KEYS: &[&str] = &[
    "n",
    "last",
    "digest",
    "mount",
    "from",
    "tag",
    "artifactType",
    "scope",
    "service",
    "account",
    "repository",
    "since",
    "failed",
    "limit",
];

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stderr,
    /// Appended to; reopened on [`AccessLog::reopen`] (after logrotate
    /// moved it).
    File(PathBuf),
}

/// One request, as logged.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessEntry {
    /// When the request arrived (RFC 3339, UTC, milliseconds).
    pub time: String,
    pub method: String,
    /// The path, and the query with secret-bearing values masked.
    pub path: String,
    pub status: u16,
    /// Response body bytes sent.
    pub bytes: u64,
    /// Request body bytes announced (`Content-Length`), 0 when streamed.
    pub bytes_received: u64,
    /// From the request's arrival to the response body's last byte (or
    /// the client going away).
    pub duration_ms: f64,
    /// Who the caller authenticated as, or `anonymous`.
    pub identity: String,
    pub client_address: String,
    pub correlation_id: String,
    pub user_agent: String,
    /// The client went away before the body was sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
}

enum Message {
    Line(String),
    Reopen,
    Close,
}

/// The access log's queue and writer thread.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<Message>,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessLog")
    }
}

fn open(target: &AccessLogTarget) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        AccessLogTarget::Stderr => Box::new(std::io::stderr()),
        AccessLogTarget::File(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            // Paths and identities are not for everyone.
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
            Box::new(std::io::BufWriter::new(options.open(path)?))
        }
    })
}

fn write_lines(target: AccessLogTarget, mut out: Box<dyn Write + Send>, rx: Receiver<Message>) {
    loop {
        // Flushed whenever the queue runs dry, so lines are not held back.
        let message = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match message {
            Message::Line(line) => {
                if out.write_all(line.as_bytes()).is_err() {
                    metrics::counter!("berth_access_log_dropped_total").increment(1);
                }
            }
            Message::Reopen => {
                let _ = out.flush();
                match open(&target) {
                    Ok(new) => {
                        out = new;
                        tracing::info!("access log reopened");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reopen the access log; writing to the old file")
                    }
                }
            }
            Message::Close => break,
        }
    }
    let _ = out.flush();
}

impl AccessLog {
    /// Opens the target (a file that cannot be opened is an error now,
    /// not at the first request) and starts the writer.
    pub fn start(target: AccessLogTarget) -> std::io::Result<AccessLog> {
        let out = open(&target)?;
        let (tx, rx) = sync_channel(QUEUE);
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(target, out, rx))?;
        Ok(AccessLog {
            tx,
            writer: Arc::new(Mutex::new(Some(writer))),
        })
    }

    pub fn record(&self, entry: &AccessEntry) {
        let Ok(mut line) = serde_json::to_string(entry) else {
            return;
        };
        line.push('\n');
        if self.tx.try_send(Message::Line(line)).is_err() {
            metrics::counter!("berth_access_log_dropped_total").increment(1);
        }
    }

    /// Reopens the file (SIGHUP, after a log rotation).
    pub fn reopen(&self) {
        let _ = self.tx.try_send(Message::Reopen);
    }

    /// Writes every line accepted so far and stops the writer (at
    /// shutdown, after the listeners drained).
    pub fn close(&self) {
        let _ = self.tx.send(Message::Close);
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

/// `path?query` with the values of parameters not known to be harmless
/// replaced by `***`.
pub fn loggable_path(uri: &http::Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query().filter(|q| !q.is_empty()) else {
        return path.to_string();
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) => {
                if PLAIN_QUERY_KEYS.contains(&key) {
                    format!("{key}={value}")
                } else {
                    format!("{key}=***")
                }
            }
            None => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", masked.join("&"))
}

/// The response body, counted; the entry is logged when it ends or is
/// dropped.
pub fn wrap(body: Body, log: AccessLog, entry: AccessEntry, started: Instant) -> Body {
    Body::new(LoggedBody {
        inner: body,
        pending: Some((log, entry)),
        started,
        sent: 0,
    })
}

struct LoggedBody {
    inner: Body,
    pending: Option<(AccessLog, AccessEntry)>,
    started: Instant,
    sent: u64,
}

impl LoggedBody {
    fn finish(&mut self, complete: bool) {
        if let Some((log, mut entry)) = self.pending.take() {
            entry.bytes = self.sent;
            entry.duration_ms = (self.started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
            entry.incomplete = !complete;
            log.record(&entry);
        }
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // A body with nothing left (HEAD, 204, an empty body never polled)
        // was sent whole.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harmless_query_values_are_kept() {
        let uri: http::Uri =
            "/data/a/blobs/sha256:ab?id=x&exp=1&sig=deadbeef&n=10&password=hunter2&flag"
                .parse()
                .expect("uri");
        assert_eq!(
            loggable_path(&uri),
            "/data/a/blobs/sha256:ab?id=***&exp=***&sig=***&n=10&password=***&flag"
        );
        let uri: http::Uri = "/v2/_catalog".parse().expect("uri");
        assert_eq!(loggable_path(&uri), "/v2/_catalog");
    }
}
