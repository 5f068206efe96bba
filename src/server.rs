//! The HTTP side: routes, handlers and graceful shutdown. Handlers read the
//! published snapshots only; they never call NVML.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::process_collector::ProcessCollector;
use tokio::net::TcpListener;

use crate::collector::{Shared, Slot};
use crate::health::{self, Health};
use crate::render::{self, BuildInfo};

pub struct AppState {
    /// The running collectors' latest results.
    pub slots: Vec<Slot>,
    pub shared: Arc<Shared>,
    pub process: ProcessCollector,
    pub interval: Duration,
    pub require_gpu: bool,
    /// Leave out the process metrics (`--web.disable-exporter-metrics`).
    pub disable_exporter_metrics: bool,
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

async fn metrics(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let slots = match render::select(&state.slots, query.as_deref()) {
        Ok(slots) => slots,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    let process = (!state.disable_exporter_metrics).then_some(&state.process);
    let body = render::scrape(&slots, process, &BuildInfo::CURRENT);
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response()
}

fn current_health(state: &AppState) -> Health {
    let now = SystemTime::now();
    let collectors = state
        .slots
        .iter()
        .map(|slot| {
            let published = slot.latest.get();
            let outcome = published.as_ref().map(|p| &p.outcome);
            health::collector_health(slot.name, outcome, state.started, now)
        })
        .collect();
    let gpu = state.shared.gpu.get();
    health::health(gpu.as_deref(), collectors, state.interval)
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
    let all_collected = state.slots.iter().all(|slot| slot.latest.get().is_some());
    let gpu = state.shared.gpu.get();
    match health::not_ready_reason(gpu.as_deref(), all_collected, state.require_gpu) {
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
