//! Wires the collectors, the store and the HTTP server together.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::cli::Options;
use crate::collector::{self, Setup, Shared};
use crate::process::ProcessMetrics;
use crate::render::BuildInfo;
use crate::server::{self, AppState, ServerOptions};
use crate::web::Web;
use crate::web::conn::Limits;
use crate::web::stats::HttpStats;

/// How long shutdown waits for a collector that is inside a driver call.
const COLLECTOR_STOP_GRACE: Duration = Duration::from_secs(5);

/// Why the exporter stopped with an error.
#[derive(Debug)]
pub enum Failure {
    /// An invalid configuration file: exit code 2, like an invalid flag.
    Config(String),
    /// Something failed to start or run.
    Runtime(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Runtime(message)
    }
}

/// Runs the exporter until SIGTERM or SIGINT. The error says what failed to start.
pub fn run(options: Options) -> Result<(), Failure> {
    crate::web::conn::limit_malloc_arenas();
    let http = Arc::new(HttpStats::default());
    let web = match &options.web_config_file {
        Some(path) => Web::load(path, http.clone()).map_err(Failure::Config)?,
        None => Web::plain(http.clone()),
    };
    let web = Arc::new(web);
    let tls = web.current().tls.is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let address = options.listen_address;
    let listener = runtime.block_on(TcpListener::bind(address)).map_err(|e| {
        format!("cannot listen on {address}: {e}; is another process using the port? Pick another with --web.listen-address")
    })?;

    let interval = options.collect_interval;
    let shared = Arc::new(Shared::default());
    let setup = Setup {
        options: &options,
        shared: &shared,
    };
    let (slots, collectors) = collector::start_all(&setup, interval)?;

    let state = Arc::new(AppState {
        slots,
        shared,
        process: ProcessMetrics::new(),
        interval,
        require_gpu: options.require_gpu,
        disable_exporter_metrics: options.disable_exporter_metrics,
        started: SystemTime::now(),
        telemetry_path: options.telemetry_path.clone(),
        http,
    });
    web.watch()
        .map_err(|e| format!("cannot start watching the web config file: {e}"))?;
    let server_options = ServerOptions {
        limits: Limits {
            header_timeout: options.read_header_timeout,
            idle_timeout: options.idle_timeout,
            max_connections: options.max_connections as usize,
        },
        max_requests: options.max_requests as usize,
        probes_without_auth: options.probes_without_auth,
    };
    info!(%address, ?interval, tls, version = BuildInfo::CURRENT.version, "serving metrics");
    let served = runtime.block_on(server::serve(
        listener,
        state,
        web,
        server_options,
        shutdown_signal(),
    ));
    runtime.shutdown_timeout(Duration::from_secs(1));

    for running in collectors {
        if !running.stop(COLLECTOR_STOP_GRACE) {
            warn!("a collector did not stop in time (hung driver call?); exiting without it");
        }
    }
    served.map_err(|e| Failure::Runtime(format!("HTTP server failed: {e}")))?;
    info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the exporter");
            let _ = interrupt.await;
            return;
        }
    };
    tokio::select! {
        _ = interrupt => info!("SIGINT received, shutting down"),
        _ = terminate.recv() => info!("SIGTERM received, shutting down"),
    }
}
