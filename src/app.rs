//! Wires the collectors, the metrics registry and the HTTP server together.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::Registry;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::cli::Options;
use crate::collector::{self, Store, gpu::GpuCollector, host::HostCollector};
use crate::render::{BuildInfo, SnapshotCollector};
use crate::server::{self, AppState};

/// How long shutdown waits for a collector that is inside a driver call.
const COLLECTOR_STOP_GRACE: Duration = Duration::from_secs(5);

pub fn run(options: Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let listener = match runtime.block_on(TcpListener::bind(options.listen_address)) {
        Ok(listener) => listener,
        Err(e) => {
            error!(address = %options.listen_address, error = %e, "cannot listen; is another process using the port? Pick another with --web.listen-address");
            return ExitCode::FAILURE;
        }
    };

    let store = Arc::new(Store::default());
    let interval = options.collect_interval;
    let gpu = GpuCollector::new(options.nvml_library.map(Into::into), interval);
    let host = match HostCollector::new(options.host_name) {
        Ok(host) => host,
        Err(e) => {
            error!(error = %e, "cannot read host statistics");
            return ExitCode::FAILURE;
        }
    };
    let collectors = {
        let (gpu_store, host_store) = (store.clone(), store.clone());
        collector::spawn(gpu, interval, move |c| gpu_store.publish_gpu(c)).and_then(|gpu| {
            collector::spawn(host, interval, move |c| host_store.publish_host(c))
                .map(|host| [gpu, host])
        })
    };
    let collectors = match collectors {
        Ok(collectors) => collectors,
        Err(e) => {
            error!(error = %e, "cannot start the collector threads");
            return ExitCode::FAILURE;
        }
    };

    let registry = Registry::new();
    let registered = registry
        .register(Box::new(SnapshotCollector::new(
            store.clone(),
            BuildInfo::CURRENT,
        )))
        .and_then(|()| {
            registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
        });
    if let Err(e) = registered {
        error!(error = %e, "cannot register metrics");
        return ExitCode::FAILURE;
    }

    let state = Arc::new(AppState {
        store,
        registry,
        interval,
        require_gpu: options.require_gpu,
        started: SystemTime::now(),
        telemetry_path: options.telemetry_path,
    });
    info!(address = %options.listen_address, interval = ?interval, version = BuildInfo::CURRENT.version, "serving metrics");
    let served = runtime.block_on(server::serve(listener, state, shutdown_signal()));
    runtime.shutdown_timeout(Duration::from_secs(1));

    for running in collectors {
        if !running.stop(COLLECTOR_STOP_GRACE) {
            warn!("a collector did not stop in time (hung driver call?); exiting without it");
        }
    }
    match served {
        Ok(()) => {
            info!("shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(error = %e, "HTTP server failed");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
