//! The HTTP side: routes, handlers, authentication, the bound on concurrent
//! scrapes and graceful shutdown. Handlers read the published snapshots
//! only; they never call NVML. Connections are handled in `web::conn`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper::body::{self as http_body, Incoming};
use tokio::net::TcpListener;
use tower_service::Service as _;

use crate::collector::{Shared, Slot};
use crate::compress;
use crate::health::{self, Health};
use crate::process::ProcessMetrics;
use crate::render::{self, BuildInfo, ExporterMetrics};
use crate::web::Web;
use crate::web::conn::{self, Limits};
use crate::web::stats::{Handler, HttpStats};

pub struct AppState {
    /// The running collectors' latest results.
    pub slots: Vec<Slot>,
    pub shared: Arc<Shared>,
    pub process: ProcessMetrics,
    pub interval: Duration,
    pub require_gpu: bool,
    /// Leave out the process and HTTP metrics (`--web.disable-exporter-metrics`).
    pub disable_exporter_metrics: bool,
    /// Counters of the HTTP side.
    pub http: Arc<HttpStats>,
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

/// What the HTTP side is configured with beyond the routes.
pub struct ServerOptions {
    pub limits: Limits,
    /// Concurrent `/metrics` requests; more are answered 503 at once. 0: no limit.
    pub max_requests: usize,
    /// Answer `/health` and `/ready` without basic auth (for probes that
    /// cannot send credentials).
    pub probes_without_auth: bool,
}

/// Answers requests: refuses bodies, checks basic auth, bounds concurrent
/// scrapes, counts everything, then routes.
struct Server {
    router: Router,
    state: Arc<AppState>,
    web: Arc<Web>,
    options: ServerOptions,
    /// `/metrics` requests being answered or sent.
    scrapes: Arc<AtomicUsize>,
}

/// Serves until `shutdown` completes, then lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    web: Arc<Web>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = options.limits;
    let stats = state.http.clone();
    let server = Arc::new(Server {
        router: router(state.clone()),
        state,
        web: web.clone(),
        options,
        scrapes: Arc::default(),
    });
    conn::serve(listener, server, web, limits, stats, shutdown).await
}

impl Server {
    fn handler(&self, path: &str) -> Handler {
        match path {
            "/health" => Handler::Health,
            "/ready" => Handler::Ready,
            "/" => Handler::Landing,
            path if path == self.state.telemetry_path => Handler::Metrics,
            _ => Handler::Other,
        }
    }

    async fn respond(&self, request: Request<Incoming>, handler: Handler) -> Response {
        if has_body(&request) {
            let mut response = plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request bodies are not accepted\n",
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        let active = self.web.current();
        let probe = matches!(handler, Handler::Health | Handler::Ready);
        let exempt = probe && self.options.probes_without_auth;
        if let Some(users) = active.users.as_ref().filter(|_| !exempt) {
            let authorization = request.headers().get(header::AUTHORIZATION);
            if !users.check(authorization.map(HeaderValue::as_bytes)).await {
                self.state.http.auth_failed();
                let mut response = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"system-info-exporter\""),
                );
                return response;
            }
        }
        let scrape = match handler {
            Handler::Metrics => match self.start_scrape() {
                Some(guard) => Some(guard),
                None => {
                    return plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many concurrent scrapes (--web.max-requests); try again\n",
                    );
                }
            },
            _ => None,
        };
        let mut router = self.router.clone();
        let response = match router.call(request.map(Body::new)).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        // A scrape counts until its body is sent (or the client is gone).
        match scrape {
            Some(guard) => response.map(|body| {
                Body::new(Guarded {
                    body,
                    _guard: guard,
                })
            }),
            None => response,
        }
    }

    /// Counts a scrape in, or `None` at `--web.max-requests`.
    fn start_scrape(&self) -> Option<ScrapeGuard> {
        let max = self.options.max_requests;
        let before = self.scrapes.fetch_add(1, Ordering::Relaxed);
        let guard = ScrapeGuard(self.scrapes.clone());
        (max == 0 || before < max).then_some(guard)
    }
}

struct ScrapeGuard(Arc<AtomicUsize>);

impl Drop for ScrapeGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A body that holds a guard until it is sent or dropped.
struct Guarded {
    body: Body,
    _guard: ScrapeGuard,
}

impl http_body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl conn::Handle for Server {
    async fn call(self: Arc<Self>, request: Request<Incoming>) -> Response {
        let stats = &self.state.http;
        stats.request_started();
        let handler = self.handler(request.uri().path());
        let mut response = self.respond(request, handler).await;
        for (name, value) in &self.web.current().headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        stats.request_finished(handler, response.status().as_u16());
        response
    }
}

/// Whether a request carries a body, which no endpoint takes.
fn has_body(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

async fn metrics(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let slots = match render::select(&state.slots, query.as_deref()) {
        Ok(slots) => slots,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(compress::accepts_gzip);
    let exporter = ExporterMetrics {
        process: &state.process,
        http: &state.http,
    };
    let exporter = (!state.disable_exporter_metrics).then_some(&exporter);
    let chunks = render::scrape(&slots, exporter, &BuildInfo::CURRENT, gzip);
    let length = chunks.iter().map(|c| c.len() as u64).sum();
    state.http.metrics_body_sent(gzip, length);
    let mut response = Response::new(Body::new(render::Chunks::new(chunks)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(prometheus::TEXT_FORMAT),
    );
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
