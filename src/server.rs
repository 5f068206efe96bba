//! The HTTP side: routes, handlers and graceful shutdown. Handlers read the
//! published snapshots only; they never call NVML.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::process_collector::ProcessCollector;
use tokio::net::TcpListener;

use crate::collector::{
    Collector, Store, gpu::GpuCollector, host::HostCollector, pods::PodCollector,
};
use crate::health::{self, Health};
use crate::render::{self, BuildInfo};

pub struct AppState {
    pub store: Arc<Store>,
    pub process: ProcessCollector,
    pub interval: Duration,
    pub require_gpu: bool,
    /// Whether the pod-resources collector runs.
    pub pod_attribution: bool,
    pub started: SystemTime,
    pub telemetry_path: String,
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(landing))
        .route(&state.telemetry_path, get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found)
        .with_state(state)
}

/// Serves until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let (gpu, host, pods) = (
        state.store.gpu.get(),
        state.store.host.get(),
        state.store.pods.get(),
    );
    let snapshots = render::Snapshots {
        gpu: gpu.as_deref(),
        host: host.as_deref(),
        pods: pods.as_deref(),
    };
    let body = render::scrape(snapshots, &state.process, &BuildInfo::CURRENT);
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body)
}

fn current_health(state: &AppState) -> Health {
    let now = SystemTime::now();
    let (gpu, host, pods) = (
        state.store.gpu.get(),
        state.store.host.get(),
        state.store.pods.get(),
    );
    let mut collectors = vec![
        (
            GpuCollector::NAME,
            gpu.as_ref().map(|p| &p.collected.outcome),
        ),
        (
            HostCollector::NAME,
            host.as_ref().map(|p| &p.collected.outcome),
        ),
    ];
    if state.pod_attribution {
        collectors.push((
            PodCollector::NAME,
            pods.as_ref().map(|p| &p.collected.outcome),
        ));
    }
    let collectors = collectors
        .into_iter()
        .map(|(name, outcome)| health::collector_health(name, outcome, state.started, now))
        .collect();
    health::health(
        gpu.as_ref().map(|p| &p.collected),
        collectors,
        state.interval,
    )
}

async fn health(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
    let health = current_health(&state);
    let status = if health.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}

async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, String) {
    let gpu = state.store.gpu.get();
    let host_collected = state.store.host.get().is_some();
    match health::not_ready_reason(
        gpu.as_ref().map(|p| &p.collected),
        host_collected,
        state.require_gpu,
    ) {
        None => (StatusCode::OK, "ready\n".to_owned()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn landing(State(state): State<Arc<AppState>>) -> Html<String> {
    let path = &state.telemetry_path;
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>system-info-exporter</title></head><body>\n\
         <h1>system-info-exporter {}</h1>\n<ul>\n\
         <li><a href=\"{path}\">{path}</a>: metrics</li>\n\
         <li><a href=\"/health\">/health</a>: liveness and collector status (JSON)</li>\n\
         <li><a href=\"/ready\">/ready</a>: readiness</li>\n\
         </ul>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    ))
}

async fn not_found() -> (StatusCode, &'static str) {
    (
        StatusCode::NOT_FOUND,
        "not found; try /metrics, /health or /ready\n",
    )
}
