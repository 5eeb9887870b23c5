//! `hashsieve serve [--config FILE] [--listen ADDR] [--log-format text|json]`: the match
//! service.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::Outcome;
use crate::config::Config;
use crate::server::{self, AppState};

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The configuration (hashsieve.toml). Without one: the bundled example lists in
    /// ./hashsets-example on 127.0.0.1:8080, unauthenticated (a local demo).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen here instead of the configuration's `listen` (port 0 picks a free port; the
    /// address is logged as "listening on http://ADDR").
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// Log lines as text (coloured only when stderr is a terminal) or as one JSON object per
    /// line, for log collectors.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        env = "HASHSIEVE_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr, filtered by `HASHSIEVE_LOG` (default: `info`, with the HTTP and object
/// store clients at `warn`: their retries of an unreachable source would fill the log every
/// poll, and the refusal already says it).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("HASHSIEVE_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,object_store=warn,reqwest=warn")
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        // Colour codes only for a person at a terminal, never into a file or a collector.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<Outcome> {
    init_logging(args.log_format);
    let config = match &args.config {
        Some(path) => Config::load_listening(path, args.listen)?,
        None => {
            let here = std::env::current_dir().context("cannot read the current directory")?;
            if !here.join("hashsets-example").is_dir() {
                bail!(
                    "no --config given and no hashsets-example/ in {}: run from the repository root for the demo, or pass --config FILE",
                    here.display()
                );
            }
            Config::demo(&here, args.listen)?
        }
    };
    if config.is_open_demo() {
        tracing::warn!(
            "no partner keys configured: this is an unauthenticated local demo (loopback only); configure [[partners]] before real use"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hashsieve-http")
        .build()
        .context("cannot start the async runtime")?;
    let state = AppState::start(config).context("cannot start the service")?;
    let listen = state.config.listen;
    let tls = state.config.tls.clone();
    let served = runtime.block_on(async {
        let tls = match &tls {
            Some(t) => Some(server::tls_config(t).await.map_err(anyhow::Error::msg)?),
            None => None,
        };
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("cannot listen on {listen}"))?;
        let local = listener.local_addr()?;
        let shutdown = shutdown_signal()?;
        // SIGHUP: look at every source now instead of at the next poll (watched before the
        // address is logged, like the shutdown signals).
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
            let state = std::sync::Arc::clone(&state);
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: polling every source now");
                    state.send(crate::server::updates::Command::PollNow);
                }
            });
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!("listening on {scheme}://{local}");
        let state = std::sync::Arc::clone(&state);
        match tls {
            Some(tls) => server::run_tls(listener, tls, state, shutdown).await,
            None => {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                server::run(listener, state, shutdown).await
            }
        }
        .context("serving")
    });
    tracing::info!("shutting down: in-flight requests drained, stopping the updater");
    state.stop();
    served.map(|()| Outcome::Ok)
}

/// A future that resolves on Ctrl-C or SIGTERM. The handlers are installed here, before the
/// service says it is listening: a signal that came between the two would otherwise kill the
/// process without its drain.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
