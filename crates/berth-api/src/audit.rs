//! Login and repository events, correlation ids, and
//! Prometheus metrics — everything recorded about a request once it is
//! answered.
//!
//! The audit middleware wraps every request: it assigns a correlation id
//! (returned in `X-Correlation-Id`), puts an [`AuditSlot`] in the request
//! for the inner layers to fill (who the caller was, whether a login was
//! attempted, the network decision), and after the response builds the
//! events from the slot, the route and the response. Events go through a
//! bounded queue to a writer task that stores them in batches, so the
//! request path never waits for the database; if the queue is full, events
//! are counted as dropped rather than slowing requests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use berth_metadata::{EventStore, LoginEvent, RepositoryEvent};
use berth_util::now_ms;
use http::{HeaderValue, Method};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::route::{Endpoint, Route};
use crate::AppState;

const QUEUE: usize = 10_000;
const BATCH: usize = 500;

/// What inner layers learned about the request.
#[derive(Debug, Default, Clone)]
pub struct AuditInfo {
    pub identity: Option<String>,
    pub jwt_id: Option<String>,
    /// Credentials were verified (not served from cache) or refused.
    pub login_attempt: bool,
    /// The network rules refused the request.
    pub network_denied: bool,
    /// The credentials were accepted: the login succeeded whatever the
    /// request's own outcome (a 404 after a good login is not a failed login).
    pub login_succeeded: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AuditSlot(pub Arc<Mutex<AuditInfo>>);

impl AuditSlot {
    pub fn update(&self, f: impl FnOnce(&mut AuditInfo)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn take(&self) -> AuditInfo {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The message of an error response, for the events' ResultDescription.
#[derive(Debug, Clone)]
pub struct ErrorMessage(pub String);

#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

tokio::task_local! {
    /// The correlation id of the request this task is answering.
    static CORRELATION: String;
}

/// The current request's correlation id, where one is being answered (error
/// responses carry it, and the log line with the details has it).
pub fn current_correlation_id() -> Option<String> {
    CORRELATION.try_with(|c| c.clone()).ok()
}

pub enum Event {
    Login(LoginEvent),
    Repository(RepositoryEvent),
}

/// Where events go: a bounded queue to the writer task.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Event>,
    stop: tokio::sync::watch::Sender<bool>,
    writer: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// Waits between attempts to store a batch the database refused.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

impl EventSink {
    /// Starts the writer task; `jsonl` additionally appends every event as
    /// a JSON line to that file (for shipping elsewhere).
    pub fn start(store: Arc<dyn EventStore>, jsonl: Option<std::path::PathBuf>) -> EventSink {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(write_events(store, rx, jsonl, stopped));
        EventSink {
            tx,
            stop,
            writer: Arc::new(tokio::sync::Mutex::new(Some(writer))),
        }
    }

    pub fn emit(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            metrics::counter!("berth_audit_events_dropped_total").increment(1);
        }
    }

    /// Writes every event accepted so far and stops the writer (at
    /// shutdown, after the listeners have drained). Gives up after
    /// `deadline` if the database does not take them; `true` if all were
    /// written.
    pub async fn close(&self, deadline: Duration) -> bool {
        let _ = self.stop.send(true);
        let Some(writer) = self.writer.lock().await.take() else {
            return true;
        };
        match tokio::time::timeout(deadline, writer).await {
            Ok(_) => true,
            Err(_) => {
                tracing::error!(
                    queued = QUEUE - self.tx.capacity(),
                    "audit events could not be stored before shutdown; they are lost"
                );
                false
            }
        }
    }
}

async fn write_events(
    store: Arc<dyn EventStore>,
    mut rx: mpsc::Receiver<Event>,
    jsonl: Option<std::path::PathBuf>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut file = match &jsonl {
        Some(path) => match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
        {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot open the event log file");
                None
            }
        },
        None => None,
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut stopping = false;
    loop {
        if stopping {
            // Take what is queued without waiting; done when nothing is.
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
        } else {
            tokio::select! {
                received = rx.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        return;
                    }
                }
                // A dropped sender (every sink gone) also means stop.
                changed = stopped.changed() => {
                    stopping = changed.is_err() || *stopped.borrow();
                    continue;
                }
            }
        }
        let mut logins = Vec::new();
        let mut repositories = Vec::new();
        let mut lines = String::new();
        for event in batch.drain(..) {
            match event {
                Event::Login(e) => {
                    if file.is_some() {
                        lines.push_str(&serde_json::json!({"category": "ContainerRegistryLoginEvents", "event": e}).to_string());
                        lines.push('\n');
                    }
                    logins.push(e);
                }
                Event::Repository(e) => {
                    if file.is_some() {
                        lines.push_str(&serde_json::json!({"category": "ContainerRegistryRepositoryEvents", "event": e}).to_string());
                        lines.push('\n');
                    }
                    repositories.push(e);
                }
            }
        }
        if let Some(f) = file.as_mut() {
            if let Err(e) = f.write_all(lines.as_bytes()).await {
                tracing::warn!(error = %e, "writing the event log file failed");
            }
        }
        // A database that is briefly away (restart, full disk) gets the
        // batch again until it takes it; meanwhile new events queue up.
        let mut wait = RETRY_FIRST;
        let mut attempts = 0u32;
        while let Err(e) = store.insert_events(&logins, &repositories).await {
            attempts += 1;
            if attempts == 1 || attempts.is_multiple_of(30) {
                tracing::warn!(error = %e, events = logins.len() + repositories.len(), attempts, "storing audit events failed; retrying");
            }
            metrics::counter!("berth_audit_event_write_retries_total").increment(1);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
        if attempts > 0 {
            tracing::info!(attempts, "audit events stored after retrying");
        }
    }
}

fn header(request: &Request, name: http::header::HeaderName) -> String {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(512)
        .collect()
}

/// A label for metrics that does not explode in cardinality.
fn route_label(path: &str, route: Option<&Route>) -> &'static str {
    match route.map(|r| &r.endpoint) {
        Some(Endpoint::Base) => "base",
        Some(Endpoint::Catalog) => "catalog",
        Some(Endpoint::Manifest { .. }) => "manifest",
        Some(Endpoint::Blob { .. }) => "blob",
        Some(Endpoint::UploadStart) | Some(Endpoint::Upload { .. }) => "upload",
        Some(Endpoint::Tags) => "tags",
        Some(Endpoint::Referrers { .. }) => "referrers",
        None if path.starts_with("/oauth2/") => "token",
        None if path.starts_with("/api/") => "management",
        None if path.starts_with("/data/") => "data",
        // Refused before routing (network rules, bad names).
        None if path.starts_with("/v2") => "v2",
        None => "other",
    }
}

/// The audit middleware (outermost).
pub async fn record(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let arrived_ms = now_ms();
    // HTTP/2 carries the host in `:authority`; downstream code (token realm,
    // data-host routing, events) reads `Host`.
    if !request.headers().contains_key(http::header::HOST) {
        if let Some(authority) = request.uri().authority().cloned() {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                request.headers_mut().insert(http::header::HOST, v);
            }
        }
    }
    let correlation = uuid::Uuid::new_v4().to_string();
    let slot = AuditSlot::default();
    request.extensions_mut().insert(slot.clone());
    request
        .extensions_mut()
        .insert(CorrelationId(correlation.clone()));
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let logged_path = state
        .access_log
        .is_some()
        .then(|| crate::access_log::loggable_path(request.uri()));
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let user_agent = header(&request, http::header::USER_AGENT);
    let login_server = header(&request, http::header::HOST);
    let request_type = header(&request, http::header::CONTENT_TYPE);
    let request_length: u64 = header(&request, http::header::CONTENT_LENGTH)
        .parse()
        .unwrap_or(0);
    let has_body = request_length > 0
        || request
            .headers()
            .contains_key(http::header::TRANSFER_ENCODING);

    let mut response = CORRELATION
        .scope(correlation.clone(), next.run(request))
        .await;

    let elapsed = started.elapsed();
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        response.headers_mut().insert("x-correlation-id", v);
    }
    let status = response.status().as_u16();
    // A refusal may come before the body was read; the connection then
    // cannot carry another request, and the client must be told so.
    if has_body && status >= 400 {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let route = response.extensions().get::<Route>().cloned();
    let label = route_label(&path, route.as_ref());
    let response_length: u64 = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or_else(|| http_body::Body::size_hint(response.body()).exact())
        .unwrap_or(0);
    metrics::counter!("berth_http_requests_total", "route" => label, "method" => method.to_string(), "status" => status.to_string()).increment(1);
    metrics::histogram!("berth_http_request_duration_seconds", "route" => label)
        .record(elapsed.as_secs_f64());
    metrics::counter!("berth_http_bytes_received_total", "route" => label)
        .increment(request_length);
    metrics::counter!("berth_http_bytes_sent_total", "route" => label).increment(response_length);

    let info = slot.take();
    let description = if status < 400 {
        "success".to_string()
    } else {
        response
            .extensions()
            .get::<ErrorMessage>()
            .map(|m| m.0.clone())
            .unwrap_or_else(|| format!("HTTP {status}"))
    };
    if status == 401 || status == 429 {
        metrics::counter!("berth_auth_failures_total", "status" => status.to_string()).increment(1);
    }
    if info.network_denied {
        metrics::counter!("berth_network_denials_total").increment(1);
    }
    let caller_ip = response
        .extensions()
        .get::<crate::network::ClientAddress>()
        .map(|a| a.0.to_string())
        .unwrap_or_default();
    let identity = info.identity.clone().unwrap_or_else(|| "anonymous".into());
    if let (Some(log), Some(logged_path)) = (&state.access_log, logged_path) {
        let entry = crate::access_log::AccessEntry {
            time: berth_util::rfc3339_ms(arrived_ms),
            method: method.to_string(),
            path: logged_path,
            status,
            bytes: 0,
            bytes_received: request_length,
            duration_ms: 0.0,
            identity: identity.clone(),
            client_address: if caller_ip.is_empty() {
                peer.map(|ip| ip.to_string()).unwrap_or_default()
            } else {
                caller_ip.clone()
            },
            correlation_id: correlation.clone(),
            user_agent: user_agent.clone(),
            incomplete: false,
        };
        response = response.map(|body| crate::access_log::wrap(body, log.clone(), entry, started));
    }
    let is_token = label == "token";
    if is_token || info.login_attempt || info.network_denied {
        let operation = if info.network_denied {
            "NetworkAccess"
        } else if is_token {
            "Token"
        } else {
            "Login"
        };
        let (login_status, login_description) =
            if info.login_succeeded && !info.network_denied && !is_token {
                (200, "success".to_string())
            } else {
                (status, description.clone())
            };
        state.events.emit(Event::Login(LoginEvent {
            time_generated: now_ms(),
            login_server: login_server.clone(),
            identity: identity.clone(),
            caller_ip_address: caller_ip.clone(),
            user_agent: user_agent.clone(),
            operation_name: operation.into(),
            result_type: login_status,
            result_description: login_description,
            duration_ms: elapsed.as_millis() as u64,
            correlation_id: correlation.clone(),
            jwt_id: info.jwt_id.clone(),
        }));
    }
    if let Some(Route {
        repository: Some(repository),
        endpoint: Endpoint::Manifest { reference },
        ..
    }) = &route
    {
        let operation = match (&method, reference.contains(':')) {
            (&Method::GET, _) | (&Method::HEAD, _) => "Pull",
            (&Method::PUT, _) => "Push",
            (&Method::DELETE, true) => "Delete",
            (&Method::DELETE, false) => "Untag",
            _ => return response,
        };
        // HEAD is how clients check for a manifest; only GETs are pulls.
        if method == Method::HEAD {
            return response;
        }
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| reference.contains(':').then(|| reference.clone()));
        let media_type = if method == Method::PUT {
            Some(request_type).filter(|t| !t.is_empty())
        } else {
            response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .filter(|_| status < 400)
                .map(str::to_string)
        };
        let size = if method == Method::PUT {
            Some(request_length)
        } else {
            Some(response_length).filter(|_| status < 400)
        };
        state.events.emit(Event::Repository(RepositoryEvent {
            time_generated: now_ms(),
            login_server,
            operation_name: operation.into(),
            repository: repository.to_string(),
            tag: (!reference.contains(':')).then(|| reference.clone()),
            digest,
            media_type,
            artifact_type: None,
            size,
            identity,
            caller_ip_address: caller_ip,
            user_agent,
            result_type: status,
            result_description: description,
            duration_ms: elapsed.as_millis() as u64,
            correlation_id: correlation,
        }));
    }
    response
}

/// How long audit events are kept.
pub fn purge_before(retention: Duration) -> i64 {
    now_ms() - retention.as_millis() as i64
}

/// Fills and stale serves become repository events (`CacheFill`,
/// `CacheStale`), beside the pulls that caused them.
pub fn cache_observer(events: EventSink) -> berth_cache::Observer {
    std::sync::Arc::new(move |e: berth_cache::CacheEvent| {
        events.emit(Event::Repository(RepositoryEvent {
            time_generated: berth_util::now_ms(),
            login_server: String::new(),
            operation_name: e.operation.into(),
            repository: e.repository,
            tag: e.tag,
            digest: e.digest,
            media_type: None,
            artifact_type: None,
            size: e.size,
            identity: "cache".into(),
            caller_ip_address: String::new(),
            user_agent: String::new(),
            result_type: 200,
            result_description: e.description,
            duration_ms: 0,
            correlation_id: current_correlation_id().unwrap_or_default(),
        }));
    })
}
