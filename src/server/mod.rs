//! The match service: axum on tokio.
//!
//! - [`api`]: the endpoints of the contract (match, lists, admin upload, health, metrics);
//! - [`auth`]: partner and admin keys (SHA-256 digests, compared in constant time),
//!   entitlements and per-partner rate limits;
//! - [`updates`]: the single writer that verifies sets and deltas and swaps snapshots;
//! - [`metrics`]: Prometheus counters and histograms; [`audit`]: the match audit log;
//! - [`problem`]: RFC 9457 error bodies.
//!
//! Lookups never lock: a request loads the current [`Snapshot`] once (`ArcSwap`) and uses it
//! from start to end, so an update never changes an answer half-way.

pub mod api;
pub mod audit;
pub mod auth;
pub mod metrics;
pub mod probing;
pub mod problem;
pub mod quarantine;
pub mod updates;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::Config;
use crate::index::{Index, ListIndex, ListPolicy};

/// All lists, each at one version, as one immutable value.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub index: Index,
    /// List name -> version served.
    pub versions: BTreeMap<String, u64>,
}

impl Snapshot {
    /// The lists under the operator's rules for each (`policies`, by list name).
    pub fn new(lists: Vec<Arc<ListIndex>>, policies: &BTreeMap<String, ListPolicy>) -> Snapshot {
        let versions = lists
            .iter()
            .map(|l| (l.name().to_owned(), l.version()))
            .collect();
        Snapshot {
            index: Index::from_lists(lists)
                .with_policies(|name| policies.get(name).cloned().unwrap_or_default()),
            versions,
        }
    }
}

/// What `/v1/lists` shows about one configured list.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ListStatus {
    pub name: String,
    pub version: Option<u64>,
    pub digest: Option<String>,
    pub counts: BTreeMap<String, usize>,
    pub created: Option<String>,
    pub expires: Option<String>,
    #[serde(skip)]
    pub expires_unix: Option<i64>,
    /// Key ids whose signatures were counted for this version (", "-separated when the
    /// list's threshold needed several).
    pub signing_key: Option<String>,
    /// How many distinct maintainer keys must sign each file (k of n).
    pub signatures_required: usize,
    /// The thresholds matching uses per perceptual kind of the list: the set's, lowered to
    /// the operator's where the config sets one.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, u32>,
    /// The videos the list holds (its `vpdq` entries are their frames), when it has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub videos: Option<usize>,
    /// The share of frames a video match needs, when the list has videos: the set's
    /// minimums, raised to the operator's where the config sets them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoRule>,
    /// An allow list: the lists whose matches its entries suppress.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suppresses: Vec<String>,
    /// The set's categories from the most severe down, when it orders them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<String>,
    /// Entries withheld by the flood quarantine (shown to admins only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<Vec<quarantine::Quarantined>>,
    pub last_update: Option<String>,
    pub last_refusal: Option<Refused>,
}

impl ListStatus {
    /// Whether the version this status describes may serve at `now`: it has not expired
    /// (a list with no version yet has nothing to expire).
    pub fn serving(&self, now: i64) -> bool {
        self.expires_unix
            .is_none_or(|e| crate::clock::serving(e, now))
    }
}

/// The minimum shares of frames of a video match, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VideoRule {
    /// Of the query's frames that count, the share that must match the listed video's.
    pub query_percent: f64,
    /// Of the listed video's frames that count, the share that must be matched.
    pub compared_percent: f64,
}

/// The last file a list refused, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Refused {
    pub at: String,
    pub reason: String,
}

/// What the updater writes and the request handlers read.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    /// Set once the updater has looked at every source once (tests wait for it; a list may
    /// serve an older version from the state dir or a source until then).
    pub first_poll_done: std::sync::atomic::AtomicBool,
    pub status: Mutex<BTreeMap<String, ListStatus>>,
    pub metrics: metrics::Metrics,
    /// Set when shutdown begins: `/readyz` answers 503 from then on, so that a load
    /// balancer stops sending requests while the ones it sent are still answered.
    pub draining: std::sync::atomic::AtomicBool,
    /// Entries whose matches jumped far above their history (see [`quarantine`]).
    pub quarantine: quarantine::Quarantine,
    /// The operator's rules per list (allow lists, thresholds), applied to every snapshot.
    pub policies: BTreeMap<String, ListPolicy>,
}

impl Shared {
    pub fn new(config: &Config) -> Shared {
        let status = config
            .lists
            .iter()
            .map(|l| {
                (
                    l.name.clone(),
                    ListStatus {
                        name: l.name.clone(),
                        signatures_required: l.threshold,
                        ..ListStatus::default()
                    },
                )
            })
            .collect();
        Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            first_poll_done: std::sync::atomic::AtomicBool::new(false),
            status: Mutex::new(status),
            metrics: metrics::Metrics::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            quarantine: quarantine::Quarantine::default(),
            policies: config
                .lists
                .iter()
                .map(|l| (l.name.clone(), l.policy()))
                .collect(),
        }
    }

    /// Runs `f` on `list`'s status (a poisoned lock is recovered: the status is plain data).
    pub fn with_status<R>(&self, list: &str, f: impl FnOnce(&mut ListStatus) -> R) -> R {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let entry = status.entry(list.to_owned()).or_insert_with(|| ListStatus {
            name: list.to_owned(),
            ..ListStatus::default()
        });
        f(entry)
    }

    /// A copy of every list's status, in name order.
    pub fn statuses(&self) -> Vec<ListStatus> {
        let status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.values().cloned().collect()
    }
}

/// Everything a request handler needs.
pub struct AppState {
    pub config: Config,
    pub shared: Arc<Shared>,
    pub auth: auth::Auth,
    pub audit: audit::AuditLog,
    updater: Mutex<std::sync::mpsc::Sender<updates::Command>>,
    updater_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Update(#[from] updates::UpdateError),
    #[error("cannot start the updater or audit thread: {0}")]
    Thread(std::io::Error),
}

impl AppState {
    /// Restores the state dir, publishes the first snapshot and starts the updater thread
    /// (which polls the sources right away).
    pub fn start(config: Config) -> Result<Arc<AppState>, StartError> {
        let shared = Arc::new(Shared::new(&config));
        let updater = updates::Updater::new(&config, Arc::clone(&shared))?;
        let audit =
            audit::AuditLog::start(config.audit_log.clone(), config.limits.audit_rotate_bytes)
                .map_err(StartError::Thread)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("hashsieve-updater".into())
            .spawn(move || updater.run(rx))
            .map_err(StartError::Thread)?;
        Ok(Arc::new(AppState {
            auth: auth::Auth::new(&config),
            audit,
            config,
            shared,
            updater: Mutex::new(tx),
            updater_thread: Mutex::new(Some(thread)),
        }))
    }

    /// Sends a command to the updater; false if it has stopped.
    pub fn send(&self, command: updates::Command) -> bool {
        let tx = self.updater.lock().unwrap_or_else(|e| e.into_inner());
        tx.send(command).is_ok()
    }

    /// Stops the updater thread and waits for it (it finishes the file in hand first).
    pub fn stop(&self) {
        self.send(updates::Command::Stop);
        let handle = self
            .updater_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Loads a certificate chain and key (PEM) for [`run_tls`]; errors name the file.
pub async fn tls_config(
    tls: &crate::config::Tls,
) -> Result<axum_server::tls_rustls::RustlsConfig, String> {
    // One crypto provider for the process (rustls is built with aws-lc-rs only); a second
    // install attempt is harmless.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    for path in [&tls.cert, &tls.key] {
        if let Err(e) = std::fs::metadata(path) {
            return Err(format!("{}: cannot read: {e}", path.display()));
        }
    }
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
        .await
        .map_err(|e| {
            format!(
                "{} / {}: not a usable PEM certificate chain and private key: {e}",
                tls.cert.display(),
                tls.key.display()
            )
        })
}

/// What [`run`] and [`run_tls`] do once `signal` resolves: mark the service as draining
/// (`/readyz` 503), keep answering for `limits.shutdown_grace_ms`, and then resolve, which
/// stops the listener and starts the drain of requests in flight.
async fn grace(state: Arc<AppState>, signal: impl Future<Output = ()>) {
    signal.await;
    state
        .shared
        .draining
        .store(true, std::sync::atomic::Ordering::Release);
    let grace = std::time::Duration::from_millis(state.config.limits.shutdown_grace_ms);
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: /readyz answers 503; still serving through the grace period"
    );
    tokio::time::sleep(grace).await;
}

/// How long requests in flight may take to finish once the listener has stopped.
fn drain_bound(state: &AppState) -> std::time::Duration {
    std::time::Duration::from_millis(state.config.limits.request_timeout_ms)
}

/// [`run`] over HTTPS (rustls).
pub async fn run_tls(
    listener: std::net::TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = api::router(Arc::clone(&state));
    let header_timeout = std::time::Duration::from_millis(state.config.limits.header_timeout_ms);
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    let drain = drain_bound(&state);
    tokio::spawn(async move {
        grace(state, shutdown).await;
        stopper.graceful_shutdown(Some(drain));
    });
    listener.set_nonblocking(true)?;
    let mut server = axum_server::from_tcp_rustls(listener, tls)?.handle(handle);
    // The same header timeout as plain HTTP (see `run`).
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    server.serve(app.into_make_service()).await
}

/// Serves `state` on `listener` until `shutdown` resolves; then, as load balancers need it,
/// answers `/readyz` with 503 while it keeps serving for `limits.shutdown_grace_ms`, stops
/// accepting, and drains requests in flight for at most `limits.request_timeout_ms`.
///
/// Each connection must send a request's headers within `limits.header_timeout_ms` of
/// being ready for one (also while idle between requests), so that slow clients
/// (slowloris) cannot hold connections forever; bodies are bounded by the request timeout.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let app = api::router(Arc::clone(&state));
    let drain = drain_bound(&state);
    let header_timeout = std::time::Duration::from_millis(state.config.limits.header_timeout_ms);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let signal = grace(state, shutdown);
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, say: wait a little rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let watcher = graceful.watcher();
                let builder = builder.clone();
                tokio::spawn(async move {
                    // The header timer starts once the protocol is known, which takes a
                    // first byte: a connection that sends none is closed as slow too.
                    let mut first = [0u8; 1];
                    let peeked = tokio::time::timeout(header_timeout, stream.peek(&mut first));
                    if !matches!(peeked.await, Ok(Ok(n)) if n > 0) {
                        return;
                    }
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut signal => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => {
            tracing::warn!(drain_ms = drain.as_millis() as u64, "requests still in flight after the drain bound; exiting");
        }
    }
    Ok(())
}
