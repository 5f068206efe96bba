//! Wires the collectors, the store and the HTTP server together.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::process_collector::ProcessCollector;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::cli::Options;
use crate::collector::{
    self, Collector, Latest, Running, Store, gpu::GpuCollector, host::HostCollector,
    pods::PodCollector,
};
use crate::render::{self, BuildInfo, Families};
use crate::server::{self, AppState};

/// How long shutdown waits for a collector that is inside a driver call.
const COLLECTOR_STOP_GRACE: Duration = Duration::from_secs(5);

/// Longest wait for the kubelet's answer; a slow kubelet never delays other collectors.
const POD_RESOURCES_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the exporter until SIGTERM or SIGINT. The error says what failed to start.
pub fn run(options: Options) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let address = options.listen_address;
    let listener = runtime.block_on(TcpListener::bind(address)).map_err(|e| {
        format!("cannot listen on {address}: {e}; is another process using the port? Pick another with --web.listen-address")
    })?;

    let store = Arc::new(Store::default());
    let interval = options.collect_interval;
    let gpu = GpuCollector::new(options.nvml_library.map(Into::into), interval);
    let host = HostCollector::new(options.host_name)
        .map_err(|e| format!("cannot read host statistics: {e}"))?;
    let pods = PodCollector::new(
        options.pod_resources_socket,
        interval.min(POD_RESOURCES_TIMEOUT),
    )
    .map_err(|e| format!("cannot start pod attribution: {e}"))?;
    let pod_attribution = pods.is_some();

    let mut collectors = vec![
        start(gpu, interval, &store, |s| &s.gpu),
        start(host, interval, &store, |s| &s.host),
    ];
    if let Some(pods) = pods {
        collectors.push(start(pods, interval, &store, |s| &s.pods));
    }
    let collectors = collectors
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot start a collector thread: {e}"))?;

    let state = Arc::new(AppState {
        store,
        process: ProcessCollector::for_self(),
        interval,
        require_gpu: options.require_gpu,
        pod_attribution,
        started: SystemTime::now(),
        telemetry_path: options.telemetry_path,
    });
    info!(%address, ?interval, version = BuildInfo::CURRENT.version, "serving metrics");
    let served = runtime.block_on(server::serve(listener, state, shutdown_signal()));
    runtime.shutdown_timeout(Duration::from_secs(1));

    for running in collectors {
        if !running.stop(COLLECTOR_STOP_GRACE) {
            warn!("a collector did not stop in time (hung driver call?); exiting without it");
        }
    }
    served.map_err(|e| format!("HTTP server failed: {e}"))?;
    info!("shut down");
    Ok(())
}

/// Starts `collector` on its own thread, publishing each result, rendered,
/// into its slot of the store.
fn start<C>(
    collector: C,
    interval: Duration,
    store: &Arc<Store>,
    slot: fn(&Store) -> &Latest<C::Output>,
) -> std::io::Result<Running>
where
    C: Collector,
    C::Output: Families,
{
    let store = store.clone();
    collector::spawn(collector, interval, move |collected| {
        slot(&store).set(render::prepare(collected))
    })
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
