//! Workload 4: manifest GET by tag on `--connections` keep-alive
//! connections for `--duration`, each connection a closed loop (the next
//! request leaves when the previous response has been read).
//!
//! This loop uses hyper's connection API directly: one task per connection,
//! no pool, no per-request URL parsing or redirect handling. On this 2-core
//! machine the client shares the CPU with the server, so every microsecond
//! it spends per request is taken from the server; reqwest's extra layers
//! cost several microseconds per request here.
//!
//! Over `https://` each connection is a tokio-rustls stream with the
//! client's TLS configuration, handshaken before the clock starts; over
//! `http://` it is the bare TCP stream, with no layer in between.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use super::{Ctx, Workload, IMAGE_REPO, IMAGE_TAG};
use crate::client::MANIFEST_ACCEPT;
use crate::stats::{Recorder, WorkloadResult};

/// Pause after a failed connect, so a dead server is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// What every connection task needs.
struct Target {
    authority: String,
    /// For an `https://` URL: the connector and the name to verify.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    path: String,
    authorization: Option<http::HeaderValue>,
    expected: Bytes,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<WorkloadResult> {
    let image = ctx.small_image().await?;
    let url = ctx.client.manifest_url(&ctx.repo(IMAGE_REPO), IMAGE_TAG)?;
    let authorization = match ctx.params.manifest_auth {
        crate::params::ManifestAuth::Basic => ctx.client.authorization().cloned(),
        crate::params::ManifestAuth::Anonymous => None,
        crate::params::ManifestAuth::Bearer => {
            Some(ctx.client.bearer_token(&ctx.repo(IMAGE_REPO)).await?)
        }
    };
    let tls = match ctx.client.tls() {
        Some(config) => Some((
            TlsConnector::from(config.clone()),
            ctx.client.server_name()?,
        )),
        None => None,
    };
    let target = Arc::new(Target {
        authority: ctx.client.authority()?,
        tls,
        path: url.path().to_string(),
        authorization,
        expected: image.manifest,
    });
    let connections = ctx.params.connections;
    let duration = ctx.params.duration;
    // Connections are opened before the clock starts.
    let barrier = Arc::new(Barrier::new(connections + 1));
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let (target, barrier) = (target.clone(), barrier.clone());
        tasks.spawn(async move {
            let sender = connect(&target).await;
            barrier.wait().await;
            let deadline = Instant::now() + duration;
            connection_loop(&target, sender, deadline).await
        });
    }
    barrier.wait().await;
    let meter = ctx.meter();
    let mut recorder = Recorder::new();
    let mut reconnects = 0u64;
    while let Some(task) = tasks.join_next().await {
        let (r, n) = task?;
        recorder.merge(&r);
        reconnects += n;
    }
    let details = BTreeMap::from([
        ("connections".to_string(), connections as f64),
        ("reconnects".to_string(), reconnects as f64),
    ]);
    Ok(ctx.finish(meter, Workload::ManifestGet, &recorder, details))
}

async fn connect(target: &Target) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let authority = &target.authority;
    let stream = TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    stream.set_nodelay(true)?;
    match &target.tls {
        None => handshake(stream).await,
        Some((connector, name)) => {
            let stream = connector
                .connect(name.clone(), stream)
                .await
                .with_context(|| format!("TLS handshake with {authority}"))?;
            handshake(stream).await
        }
    }
}

/// HTTP/1.1 on `stream`; its connection task is spawned.
async fn handshake<S>(stream: S) -> anyhow::Result<SendRequest<Empty<Bytes>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; errors
        // surface on the sender.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Requests until `deadline`; returns the recorder and how many times the
/// connection had to be reopened.
async fn connection_loop(
    target: &Target,
    first: anyhow::Result<SendRequest<Empty<Bytes>>>,
    deadline: Instant,
) -> (Recorder, u64) {
    let mut recorder = Recorder::new();
    let mut reconnects = 0;
    let mut sender = match first {
        Ok(s) => Some(s),
        Err(e) => {
            recorder.error(e);
            None
        }
    };
    while Instant::now() < deadline {
        let mut current = match sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                reconnects += 1;
                match connect(target).await {
                    Ok(s) => s,
                    Err(e) => {
                        recorder.error(e);
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        continue;
                    }
                }
            }
        };
        let start = Instant::now();
        match get(&mut current, target).await {
            Ok(keep_alive) => {
                recorder.ok(start.elapsed(), target.expected.len() as u64);
                if keep_alive {
                    sender = Some(current);
                }
            }
            Err(e) => recorder.error(e),
        }
    }
    (recorder, reconnects)
}

/// One GET; returns whether the connection may be reused.
async fn get(sender: &mut SendRequest<Empty<Bytes>>, target: &Target) -> anyhow::Result<bool> {
    sender.ready().await?;
    let mut request = http::Request::get(target.path.as_str())
        .header(http::header::HOST, target.authority.as_str())
        .header(http::header::ACCEPT, MANIFEST_ACCEPT)
        .body(Empty::<Bytes>::new())?;
    if let Some(value) = &target.authorization {
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value.clone());
    }
    let response = sender.send_request(request).await?;
    let status = response.status();
    let close = response
        .headers()
        .get(http::header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let body = response.into_body().collect().await?.to_bytes();
    ensure!(
        status == http::StatusCode::OK,
        "GET manifest: status {status}"
    );
    ensure!(
        body == target.expected,
        "GET manifest: {} bytes that differ from the pushed manifest",
        body.len()
    );
    Ok(!close)
}
