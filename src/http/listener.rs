//! The connection loop: accepts TCP connections up to a limit, runs TLS when
//! configured, and serves HTTP/1.1 through hyper's connection builder with
//! the timeouts axum's `serve` lacks (see [`super::connection`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::connection::{Connection, ConnectionTimer, Limits, Watched};
use super::stats::HttpStats;
use crate::allocator::MemoryRelease;
use crate::metrics::labels::CloseReason;

/// Largest request head hyper buffers: well above any real scrape request
/// (a few hundred bytes), and small, since every open connection may hold
/// one. Larger heads are answered 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// The answer to plain HTTP on the TLS port (Go's words).
const PLAIN_HTTP_TO_TLS: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Whether a connection's first byte starts an HTTP request rather than a
/// TLS record (whose first byte is a content type, 20 to 24).
async fn first_byte_is_http(stream: &tokio::net::TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

/// How long shutdown waits for requests being answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The open connections by the order they came in, for eviction at the
/// limit. A connection leaves when it closes, so nothing of it stays
/// allocated afterwards.
#[derive(Default)]
pub(super) struct Connections {
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
    next: AtomicU64,
}

impl Connections {
    /// Registers a new connection, or returns `None` when `max` are open and
    /// none of them waits for a request. At the limit, the oldest connection
    /// that waits for a request head (a slow or idle client: closing it loses
    /// no response) is closed to make room, so that a scraper that connects
    /// during a slow-header attack is served.
    fn admit(&self, max: usize, stats: &HttpStats) -> Option<Arc<Connection>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= max {
            if stats.first_time_at_limit() {
                warn!(
                    max,
                    "connection limit reached: closing the oldest idle or slow connections to admit new ones (logged once; see system_info_exporter_http_connections_closed_total)"
                );
            }
            let victim = *open.iter().find(|(_, c)| c.waiting_for_head())?.0;
            if let Some(victim) = open.remove(&victim) {
                victim.close_by(CloseReason::Evicted);
                victim.evict.notify_one();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::new(id));
        open.insert(id, connection.clone());
        Some(connection)
    }

    fn remove(&self, connection: &Connection) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(&connection.id);
    }
}

/// What answers a request.
pub(crate) trait Handle: Send + Sync + 'static {
    fn call(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<axum::body::Body>> + Send;
}

/// Configures hyper for one connection.
fn http1(connection: &Arc<Connection>, limits: Limits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(ConnectionTimer {
            connection: connection.clone(),
            limits,
        })
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    builder
}

/// Where TLS comes from; `None` serves plain HTTP.
pub(crate) trait TlsSource: Send + Sync + 'static {
    fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor>;
}

/// Accepts connections until `shutdown` completes, then waits up to
/// [`SHUTDOWN_GRACE`] for responses being written.
pub(crate) async fn serve<H: Handle, T: TlsSource>(
    listener: TcpListener,
    handler: Arc<H>,
    tls: Arc<T>,
    limits: Limits,
    stats: Arc<HttpStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let connections = Arc::new(Connections::default());
    let release = Arc::new(MemoryRelease::default());
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or memory: wait instead of spinning.
                    warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(connection) = connections.admit(limits.max_connections, &stats) else {
            stats.connection_refused();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        release.opened(stats.connection_opened());
        let io = Watched::new(stream, connection.clone(), limits.header_timeout);
        let task = ConnectionTask {
            handler: handler.clone(),
            acceptor: tls.acceptor(),
            stats: stats.clone(),
            stopped: stopped.clone(),
            connection,
            limits,
            release: release.clone(),
            connections: connections.clone(),
        };
        tokio::spawn(task.run(io));
    }
    drop(listener);
    let _ = stop.send(true);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while stats.open_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

struct ConnectionTask<H> {
    handler: Arc<H>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    stats: Arc<HttpStats>,
    stopped: watch::Receiver<bool>,
    connection: Arc<Connection>,
    limits: Limits,
    release: Arc<MemoryRelease>,
    connections: Arc<Connections>,
}

impl<H: Handle> ConnectionTask<H> {
    async fn run(mut self, io: Watched<tokio::net::TcpStream>) {
        let connection = self.connection.clone();
        let reason = tokio::select! {
            reason = self.serve(io) => reason,
            () = connection.evict.notified() => CloseReason::Evicted,
        };
        let reason = connection.closed_by().unwrap_or(reason);
        self.connections.remove(&connection);
        let open = self.stats.connection_closed(reason);
        self.release.closed(open);
    }

    async fn serve(&mut self, io: Watched<tokio::net::TcpStream>) -> CloseReason {
        match self.acceptor.take() {
            None => self.http(TokioIo::new(io)).await,
            Some(acceptor) => {
                let limit = self.limits.header_timeout;
                let started = Instant::now();
                match tokio::time::timeout(limit, first_byte_is_http(io.get_ref())).await {
                    Ok(true) => return self.refuse_plain_http(io).await,
                    Ok(false) => {}
                    Err(_) => {
                        debug!("TLS handshake timed out before its first byte");
                        self.stats.handshake_failed();
                        return CloseReason::HeaderTimeout;
                    }
                }
                let handshake = acceptor.accept(io);
                let left = limit.saturating_sub(started.elapsed());
                match tokio::time::timeout(left, handshake).await {
                    Ok(Ok(tls)) => self.http(TokioIo::new(tls)).await,
                    Ok(Err(e)) => {
                        debug!(error = %e, "TLS handshake failed");
                        self.stats.handshake_failed();
                        CloseReason::Error
                    }
                    Err(_) => {
                        debug!("TLS handshake timed out");
                        self.stats.handshake_failed();
                        CloseReason::HeaderTimeout
                    }
                }
            }
        }
    }

    /// Answers plain HTTP sent to the TLS port in plain HTTP, as Go's
    /// servers do, so that the client shows why instead of a reset.
    async fn refuse_plain_http(&mut self, mut io: Watched<tokio::net::TcpStream>) -> CloseReason {
        debug!("plain HTTP sent to the TLS port");
        self.stats.handshake_failed();
        let answer = tokio::time::timeout(self.limits.header_timeout, async {
            io.write_all(PLAIN_HTTP_TO_TLS).await?;
            io.shutdown().await
        });
        let _ = answer.await;
        CloseReason::Error
    }

    async fn http<I>(&mut self, io: I) -> CloseReason
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let handler = self.handler.clone();
        let connection = self.connection.clone();
        let service = service_fn(move |request| {
            connection.request_received();
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.call(request).await) }
        });
        let served = http1(&self.connection, self.limits).serve_connection(io, service);
        tokio::pin!(served);
        let mut stopped = self.stopped.clone();
        let stopping = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        tokio::select! {
            result = &mut served => match result {
                Ok(()) => CloseReason::Client,
                Err(e) if e.is_timeout() => CloseReason::HeaderTimeout,
                Err(e) if e.is_incomplete_message() || e.is_canceled() => CloseReason::Client,
                Err(e) => {
                    debug!(error = %e, "connection closed on an error");
                    CloseReason::Error
                }
            },
            () = stopping => {
                // Requests being answered finish; idle connections close now.
                if self.connection.waiting_for_head() {
                    return CloseReason::Shutdown;
                }
                served.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, served).await;
                CloseReason::Shutdown
            }
        }
    }
}
