//! The routes and their handlers: `/metrics`, `/health`, `/ready` and the
//! landing page.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::health::{self, Health};
use super::scrape::{self, ExporterMetrics};
use super::stats::HttpStats;
use crate::collector::Latest;
use crate::collector::status::{DraStatus, GpuStatus};
use crate::metrics::filter::MetricFilter;
use crate::metrics::gzip;
use crate::metrics::labels::HttpEncoding;
use crate::publish::Slot;
use crate::selfmetrics::BuildInfo;
use crate::selfmetrics::process::ProcessMetrics;

/// The text format, as node_exporter announces it.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers read.
pub(crate) struct AppState {
    /// The running collectors' latest results.
    pub(crate) slots: Vec<Slot>,
    /// Every collector there is, running or not, for `collect[]`.
    pub(crate) known_collectors: Vec<&'static str>,
    /// The GPU collector's view of NVML and the GPUs.
    pub(crate) gpu: Arc<Latest<GpuStatus>>,
    /// The pods collector's resolution of DRA devices.
    pub(crate) dra: Arc<Latest<DraStatus>>,
    pub(crate) process: ProcessMetrics,
    pub(crate) interval: Duration,
    pub(crate) require_gpu: bool,
    /// Leave out the process and HTTP metrics (`--web.disable-exporter-metrics`).
    pub(crate) disable_exporter_metrics: bool,
    /// Counters of the HTTP side.
    pub(crate) http: Arc<HttpStats>,
    pub(crate) started: SystemTime,
    pub(crate) telemetry_path: String,
    /// Fields of the `--dcgm.counters` file this exporter does not provide.
    pub(crate) dcgm_skipped_fields: Vec<String>,
    /// `--metrics.include` and `--metrics.exclude`, for `/health`.
    pub(crate) metric_filter: MetricFilter,
}

pub(super) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(landing))
        .route(&state.telemetry_path, get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found)
        .with_state(state)
}

async fn metrics(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let slots = match scrape::select(&state.slots, &state.known_collectors, query.as_deref()) {
        Ok(slots) => slots,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(gzip::accepts_gzip);
    let exporter = ExporterMetrics {
        process: &state.process,
        http: &state.http,
    };
    let exporter = (!state.disable_exporter_metrics).then_some(&exporter);
    let chunks = scrape::scrape(&slots, exporter, &BuildInfo::CURRENT, gzip);
    let length = chunks.iter().map(|c| c.len() as u64).sum();
    let encoding = if gzip {
        HttpEncoding::Gzip
    } else {
        HttpEncoding::Identity
    };
    state.http.metrics_body_sent(encoding, length);
    let mut response = Response::new(Body::new(scrape::Chunks::new(chunks)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

fn current_health(state: &AppState) -> Health {
    let now = SystemTime::now();
    let collectors = state
        .slots
        .iter()
        .map(|slot| {
            let published = slot.latest.get();
            let outcome = published.as_ref().map(|p| &p.outcome);
            health::collector_health(slot.name, outcome, state.started, now, state.interval)
        })
        .collect();
    let gpu = state.gpu.get();
    let mut health = health::health(gpu.as_deref(), collectors);
    health
        .dcgm_skipped_fields
        .clone_from(&state.dcgm_skipped_fields);
    health.metric_filters = health::MetricFilters::of(&state.metric_filter);
    health.kubernetes_dra = state.dra.get().map(|dra| (*dra).clone());
    health
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
    let gpu = state.gpu.get();
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

async fn not_found(State(state): State<Arc<AppState>>) -> (StatusCode, String) {
    let metrics = &state.telemetry_path;
    let text = format!("not found; try {metrics}, /health or /ready\n");
    (StatusCode::NOT_FOUND, text)
}
