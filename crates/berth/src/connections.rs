//! Our own accept loop: every listener's connections are bounded in number
//! (in total and per client address), in how long they may take to say
//! what they want, and in how long they may sit idle.
//!
//! - A connection over either cap is accepted and closed at once (no
//!   response: reading a request first would be the work a flood wants us
//!   to do). The accept loop keeps draining the kernel's backlog, so other
//!   clients are still answered while one address floods.
//! - A new connection must complete its TLS handshake and deliver its first
//!   request headers within `header_read_timeout`; a keep-alive HTTP/1
//!   connection that starts another request must finish its headers within
//!   the same time. Such connections are dropped.
//! - A connection with nothing in flight and no bytes moving for
//!   `idle_timeout` is shut down gracefully; one whose response the client
//!   stopped reading for that long is dropped.
//! - On shutdown every connection is asked to finish (HTTP/1: after the
//!   response in flight; HTTP/2: GOAWAY) and [`Gate::drained`] waits for
//!   them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// The `[server]` limits, as durations and counts.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

/// Why a connection was refused or cut off (metric label and log field).
#[derive(Debug, Clone, Copy)]
enum Reason {
    Total,
    PerIp,
    HeaderTimeout,
    TlsHandshake,
    StalledResponse,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Total => "max_connections",
            Reason::PerIp => "max_connections_per_ip",
            Reason::HeaderTimeout => "header_read_timeout",
            Reason::TlsHandshake => "tls_handshake",
            Reason::StalledResponse => "stalled_response",
        }
    }
}

/// Admission to the server, shared by every listener: the total cap is a
/// semaphore, the per-address cap a small counter map.
pub struct Gate {
    total: Arc<Semaphore>,
    max_total: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
    // Refusals come in floods: one warning per reason every few seconds.
    refusals: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
    /// Cancelled when the shutdown grace runs out: connections still open
    /// are dropped (their requests' clean-ups start) before the database
    /// closes.
    abort: tokio_util::sync::CancellationToken,
}

/// One admitted connection; dropping it frees its place.
struct Admission {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    gate: Arc<Gate>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut map = self.gate.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
                // A flood from many addresses must not keep its table.
                if map.capacity() > 1024 && map.len() < map.capacity() / 4 {
                    map.shrink_to_fit();
                }
            }
        }
        metrics::gauge!("berth_connections_open").decrement(1.0);
    }
}

impl Gate {
    pub fn new(limits: &Limits) -> Arc<Gate> {
        Arc::new(Gate {
            total: Arc::new(Semaphore::new(limits.max_connections)),
            max_total: limits.max_connections,
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: limits.max_connections_per_ip,
            refusals: Mutex::new(HashMap::new()),
            abort: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Drops every connection still open (after the shutdown grace).
    pub async fn abort_all(&self, within: Duration) {
        self.abort.cancel();
        let _ = tokio::time::timeout(within, self.drained()).await;
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Reason> {
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Reason::Total)?;
        let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Reason::PerIp);
        }
        *n += 1;
        drop(map);
        metrics::gauge!("berth_connections_open").increment(1.0);
        Ok(Admission {
            _permit: permit,
            ip,
            gate: self.clone(),
        })
    }

    fn refused(&self, reason: Reason, peer: SocketAddr) {
        metrics::counter!("berth_connections_refused_total", "reason" => reason.as_str())
            .increment(1);
        let mut log = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        let entry = log.entry(reason.as_str()).or_insert((None, 0));
        entry.1 += 1;
        if entry
            .0
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            let limit = match reason {
                Reason::PerIp => self.max_per_ip,
                _ => self.max_total,
            };
            tracing::warn!(
                %peer,
                limit,
                refused = entry.1,
                "refusing connections: server.{} reached (count since the last warning)",
                reason.as_str()
            );
            *entry = (Some(Instant::now()), 0);
        }
    }

    /// Resolves when every admitted connection has finished.
    pub async fn drained(&self) {
        let all = u32::try_from(self.max_total).unwrap_or(u32::MAX);
        let _ = self.total.acquire_many(all).await;
    }
}

/// Accepts connections on `listener` until `stop` turns true, serving each
/// with `app` (which must already carry its endpoint's extensions).
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    gate: Arc<Gate>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timeout also closes idle keep-alive connections
    // after that (short) time; the watchdog below tells the two apart.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors (or memory): back off instead of
                // spinning; places free up as connections finish.
                if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "cannot accept connections");
                    last_accept_error = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admission = match gate.admit(peer.ip()) {
            Ok(a) => a,
            Err(reason) => {
                gate.refused(reason, peer);
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            peer,
            app: app.clone(),
            limits: limits.clone(),
            builder: builder.clone(),
            stop: stop.clone(),
        };
        let tls = tls.clone();
        let abort = gate.abort.clone();
        tokio::spawn(async move {
            let _admission = admission;
            let served = async move {
                match tls {
                    None => connection.run(stream, false).await,
                    Some(acceptor) => {
                        let timeout = connection.limits.header_read_timeout;
                        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                let h2 = stream.get_ref().1.alpn_protocol() == Some(&b"h2"[..]);
                                connection.run(stream, h2).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => closed(peer, Reason::TlsHandshake),
                        }
                    }
                }
            };
            tokio::select! {
                _ = abort.cancelled() => {}
                _ = served => {}
            }
        });
    }
}

fn closed(peer: SocketAddr, reason: Reason) {
    metrics::counter!("berth_connections_closed_total", "reason" => reason.as_str()).increment(1);
    tracing::debug!(%peer, reason = reason.as_str(), "closed a connection");
}

struct Connection {
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run<S>(mut self, io: S, h2: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::new(h2));
        let io = TokioIo::new(Tracked {
            inner: io,
            activity: activity.clone(),
        });
        let service = {
            let activity = activity.clone();
            let app = self.app.clone();
            let peer = self.peer;
            hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                let in_flight = activity.begin(request.version() == http::Version::HTTP_2);
                let handling = Handling(activity.clone());
                request.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    let response = match app.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    drop(handling);
                    // In flight until hyper has sent (and drops) the body.
                    Ok::<_, Infallible>(response.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            let _ = &in_flight;
                            frame
                        }))
                    }))
                }
            })
        };
        let builder = self.builder.clone();
        let conn = builder.serve_connection(io, service).into_owned();
        tokio::pin!(conn);

        let limits = self.limits.clone();
        let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut ticks = tokio::time::interval(tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping = false;
        let mut idle_close: Option<Instant> = None;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.stop.wait_for(|s| *s), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = ticks.tick() => match activity.verdict(&limits) {
                    Verdict::Fine => {}
                    Verdict::Drop(reason) => {
                        closed(self.peer, reason);
                        return;
                    }
                    Verdict::Idle => {
                        match idle_close {
                            None => {
                                idle_close = Some(Instant::now());
                                conn.as_mut().graceful_shutdown();
                            }
                            // Nothing was in flight: a connection that does
                            // not go when asked is dropped.
                            Some(at) if !stopping && at.elapsed() > limits.header_read_timeout => return,
                            Some(_) => {}
                        }
                    }
                },
            }
        }
    }
}

enum Verdict {
    Fine,
    Idle,
    Drop(Reason),
}

/// What a connection has been doing, in milliseconds since it started.
struct Activity {
    origin: Instant,
    h2: AtomicBool,
    last_io: AtomicU64,
    /// When the current request's first bytes came in while nothing was in
    /// flight (`u64::MAX`: none pending).
    header_started: AtomicU64,
    idle_since: AtomicU64,
    requests: AtomicU64,
    /// Requests whose response has not been sent completely.
    in_flight: AtomicUsize,
    /// Requests whose handler has not produced a response yet.
    handling: AtomicUsize,
}

impl Activity {
    fn new(h2: bool) -> Activity {
        Activity {
            origin: Instant::now(),
            h2: AtomicBool::new(h2),
            last_io: AtomicU64::new(0),
            header_started: AtomicU64::new(u64::MAX),
            idle_since: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            handling: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn begin(self: &Arc<Self>, h2: bool) -> InFlight {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.handling.fetch_add(1, Ordering::SeqCst);
        self.header_started.store(u64::MAX, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn read(&self, now: u64) {
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            let _ = self.header_started.compare_exchange(
                u64::MAX,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn verdict(&self, limits: &Limits) -> Verdict {
        let now = self.now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (header, idle) = (ms(limits.header_read_timeout), ms(limits.idle_timeout));
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            // A handler at work may take its time (uploads have their own
            // body timeout); a response the client stopped reading may not.
            if self.handling.load(Ordering::SeqCst) == 0
                && now.saturating_sub(self.last_io.load(Ordering::Relaxed)) >= idle
            {
                return Verdict::Drop(Reason::StalledResponse);
            }
            return Verdict::Fine;
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            if now >= header {
                return Verdict::Drop(Reason::HeaderTimeout);
            }
            return Verdict::Fine;
        }
        let started = self.header_started.load(Ordering::Relaxed);
        // HTTP/2 sends frames (pings, settings) that are not requests.
        if started != u64::MAX
            && !self.h2.load(Ordering::Relaxed)
            && now.saturating_sub(started) >= header
        {
            return Verdict::Drop(Reason::HeaderTimeout);
        }
        let quiet_since = self
            .idle_since
            .load(Ordering::Relaxed)
            .max(self.last_io.load(Ordering::Relaxed));
        if now.saturating_sub(quiet_since) >= idle {
            return Verdict::Idle;
        }
        Verdict::Fine
    }
}

/// Held from a request's headers until its response body is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.now();
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle_since.store(now, Ordering::Relaxed);
        }
    }
}

/// Held while a request's handler runs.
struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A stream that records when bytes last moved.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = self.activity.now();
            self.activity.read(now);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> Tracked<S> {
    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = result {
            if *n > 0 {
                let now = self.activity.now();
                self.activity.last_io.store(now, Ordering::Relaxed);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Raises this process's soft limit on open files to its hard limit, and
/// says so when that is still too low for `max_connections`.
pub fn check_fd_limit(max_connections: usize) {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(hard)) = (limit.current, limit.maximum) {
            if current < hard {
                limit.current = Some(hard);
                if setrlimit(Resource::Nofile, limit).is_err() {
                    limit.current = Some(current);
                }
            }
        }
        // Files, listeners and database connections need some too.
        let needed = max_connections as u64 + 256;
        match limit.current {
            Some(available) if available < needed => tracing::warn!(
                open_files_limit = available,
                max_connections,
                "the open-files limit (ulimit -n) is lower than server.max_connections plus \
                 a margin of 256: raise it, or lower max_connections"
            ),
            Some(available) => tracing::debug!(open_files_limit = available, "open-files limit"),
            None => {}
        }
    }
}
