//! The HTTP side: the router and what every request passes through
//! (refused bodies, basic auth, the bound on concurrent scrapes, response
//! headers, counting), and graceful shutdown. Handlers ([`handlers`]) read
//! the published collections only; they never call NVML. Connections are
//! accepted in [`listener`] and timed in [`connection`].

mod address;
mod connection;
mod handlers;
mod health;
mod listener;
pub(crate) mod scrape;
pub(crate) mod stats;
pub(crate) mod web_config;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{self as http_body, Incoming};
use tokio::net::TcpListener;
use tower_service::Service as _;

use crate::metrics::labels::HttpHandler;
pub(crate) use address::{ListenAddress, bind};
pub(crate) use connection::Limits;
pub(crate) use handlers::AppState;
use web_config::Web;

/// What the HTTP side is configured with beyond the routes.
pub(crate) struct ServerOptions {
    pub(crate) limits: Limits,
    /// Concurrent `/metrics` requests; more are answered 503 at once. 0: no limit.
    pub(crate) max_requests: usize,
    /// Answer `/health` and `/ready` without basic auth (for probes that
    /// cannot send credentials).
    pub(crate) probes_without_auth: bool,
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
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    web: Arc<Web>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = options.limits;
    let stats = state.http.clone();
    let server = Arc::new(Server {
        router: handlers::router(state.clone()),
        state,
        web: web.clone(),
        options,
        scrapes: Arc::default(),
    });
    listener::serve(listener, server, web, limits, stats, shutdown).await
}

impl Server {
    fn handler(&self, path: &str) -> HttpHandler {
        match path {
            "/health" => HttpHandler::Health,
            "/ready" => HttpHandler::Ready,
            "/" => HttpHandler::Landing,
            path if path == self.state.telemetry_path => HttpHandler::Metrics,
            _ => HttpHandler::Other,
        }
    }

    async fn respond(&self, request: Request<Incoming>, handler: HttpHandler) -> Response {
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
        let probe = matches!(handler, HttpHandler::Health | HttpHandler::Ready);
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
            HttpHandler::Metrics => match self.start_scrape() {
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

impl listener::Handle for Server {
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
