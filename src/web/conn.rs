//! The connection loop: accepts TCP connections up to a limit, runs TLS when
//! configured, and serves HTTP/1.1 through hyper's connection builder with
//! the timeouts axum's `serve` lacks.
//!
//! hyper's own header-read timeout also runs while a kept-alive connection
//! waits for its next request, which would close Prometheus's connection
//! between two scrapes (and, with TLS, cost a handshake per scrape). So the
//! timer hyper is given is this module's: its deadline is the header timeout
//! from the first byte of a request (and from the accept for a connection's
//! first request), and the idle timeout while no byte of the next request has
//! arrived.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::rt::{Sleep, Timer};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tracing::{debug, warn};

use super::stats::{Closed, HttpStats};

/// The limits of `--web.*`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the first byte of a request (or the accept) to its last header
    /// line; also the TLS handshake's limit and how long a client may leave a
    /// response unread.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Largest request head hyper buffers: well above any real scrape request
/// (a few hundred bytes), and small, since every open connection may hold
/// one. Larger heads are answered 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// How long shutdown waits for requests being answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One open connection, as the timer, the I/O wrapper and the eviction see it.
pub struct Connection {
    id: u64,
    accepted: Instant,
    /// Nanoseconds after `accepted` + 1 at which the first byte of the
    /// awaited request arrived; 0 while none has.
    head_started: AtomicU64,
    /// Whether hyper waits for a request head (the connection is idle or a
    /// request is arriving), i.e. whether evicting it loses no response.
    waiting_for_head: AtomicBool,
    /// Requests received on this connection.
    requests: AtomicU64,
    /// Set when a timeout or an eviction ends the connection.
    closed_by: AtomicU8,
    evict: Notify,
}

const NOT_CLOSED: u8 = u8::MAX;

impl Connection {
    fn new(id: u64) -> Self {
        Self {
            id,
            accepted: Instant::now(),
            head_started: AtomicU64::new(0),
            waiting_for_head: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            closed_by: AtomicU8::new(NOT_CLOSED),
            evict: Notify::new(),
        }
    }

    /// Counts a request that reached the handlers.
    pub fn request_received(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn head_started(&self) -> Option<Instant> {
        match self.head_started.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(self.accepted + Duration::from_nanos(nanos - 1)),
        }
    }

    fn bytes_arrived(&self) {
        if self.waiting_for_head.load(Ordering::Relaxed)
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            let nanos = self.accepted.elapsed().as_nanos() as u64 + 1;
            let _ =
                self.head_started
                    .compare_exchange(0, nanos, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn close_by(&self, reason: Closed) {
        let _ = self.closed_by.compare_exchange(
            NOT_CLOSED,
            reason as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn closed_by(&self) -> Option<Closed> {
        const REASONS: [Closed; 7] = [
            Closed::Client,
            Closed::HeaderTimeout,
            Closed::IdleTimeout,
            Closed::WriteTimeout,
            Closed::Evicted,
            Closed::Error,
            Closed::Shutdown,
        ];
        REASONS
            .get(self.closed_by.load(Ordering::Relaxed) as usize)
            .copied()
    }
}

/// The open connections by the order they came in, for eviction at the
/// limit. A connection leaves when it closes, so nothing of it stays
/// allocated afterwards.
#[derive(Default)]
pub struct Connections {
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
            let victim = *open
                .iter()
                .find(|(_, c)| c.waiting_for_head.load(Ordering::Relaxed))?
                .0;
            if let Some(victim) = open.remove(&victim) {
                victim.close_by(Closed::Evicted);
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
pub trait Handle: Send + Sync + 'static {
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
pub trait TlsSource: Send + Sync + 'static {
    fn acceptor(&self) -> Option<tokio_rustls::TlsAcceptor>;
}

/// Accepts connections until `shutdown` completes, then waits up to
/// [`SHUTDOWN_GRACE`] for responses being written.
pub async fn serve<H: Handle, T: TlsSource>(
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
            () = connection.evict.notified() => Closed::Evicted,
        };
        let reason = connection.closed_by().unwrap_or(reason);
        self.connections.remove(&connection);
        let open = self.stats.connection_closed(reason);
        self.release.closed(open);
    }

    async fn serve(&mut self, io: Watched<tokio::net::TcpStream>) -> Closed {
        match self.acceptor.take() {
            None => self.http(TokioIo::new(io)).await,
            Some(acceptor) => {
                let handshake = acceptor.accept(io);
                match tokio::time::timeout(self.limits.header_timeout, handshake).await {
                    Ok(Ok(tls)) => self.http(TokioIo::new(tls)).await,
                    Ok(Err(e)) => {
                        debug!(error = %e, "TLS handshake failed");
                        self.stats.handshake_failed();
                        Closed::Error
                    }
                    Err(_) => {
                        debug!("TLS handshake timed out");
                        self.stats.handshake_failed();
                        Closed::HeaderTimeout
                    }
                }
            }
        }
    }

    async fn http<I>(&mut self, io: I) -> Closed
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
                Ok(()) => Closed::Client,
                Err(e) if e.is_timeout() => Closed::HeaderTimeout,
                Err(e) if e.is_incomplete_message() || e.is_canceled() => Closed::Client,
                Err(e) => {
                    debug!(error = %e, "connection closed on an error");
                    Closed::Error
                }
            },
            () = stopping => {
                // Requests being answered finish; idle connections close now.
                if self.connection.waiting_for_head.load(Ordering::Relaxed) {
                    return Closed::Shutdown;
                }
                served.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, served).await;
                Closed::Shutdown
            }
        }
    }
}

/// Gives memory back to the system after a burst of connections. Each
/// connection's buffers and task come from the allocator; glibc keeps what
/// was freed in its arenas, so after 2,000 clients the resident size would
/// stay tens of MiB above its idle level for good. When the connections fall
/// back from a burst to a few, `malloc_trim` returns the free pages (about a
/// millisecond each time), now and again over the next seconds: snapshots
/// the collectors published during the burst sit among the freed memory
/// until the next collections replace them.
#[derive(Default)]
struct MemoryRelease {
    peak: AtomicU64,
    trimming: Arc<AtomicBool>,
}

impl MemoryRelease {
    /// A burst: this many connections open at once.
    const BURST: u64 = 64;
    /// Back to normal: a Prometheus or two with kept-alive connections.
    const CALM: i64 = 4;
    /// When to trim, after the burst.
    const TRIMS: [Duration; 4] = [
        Duration::ZERO,
        Duration::from_secs(1),
        Duration::from_secs(5),
        Duration::from_secs(15),
    ];

    fn opened(&self, open: i64) {
        self.peak.fetch_max(open.max(0) as u64, Ordering::Relaxed);
    }

    fn closed(&self, open: i64) {
        if open > Self::CALM || self.peak.load(Ordering::Relaxed) < Self::BURST {
            return;
        }
        if self.peak.swap(0, Ordering::Relaxed) < Self::BURST
            || self.trimming.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let trimming = self.trimming.clone();
        let spawned = std::thread::Builder::new()
            .name("memory-release".to_owned())
            .spawn(move || {
                let start = Instant::now();
                for at in Self::TRIMS {
                    std::thread::sleep(at.saturating_sub(start.elapsed()));
                    trim();
                }
                trimming.store(false, Ordering::Relaxed);
            });
        if spawned.is_err() {
            self.trimming.store(false, Ordering::Relaxed);
        }
    }
}

/// Fewer glibc arenas: by default glibc makes up to 8 per core as threads
/// contend, and each keeps its own free memory, so a burst handled on several
/// threads leaves more behind. The exporter's few threads need two.
#[cfg(target_env = "gnu")]
pub fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets a tunable of glibc's allocator; called at
    // start, before the threads.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
}

#[cfg(not(target_env = "gnu"))]
pub fn limit_malloc_arenas() {}

#[cfg(target_env = "gnu")]
fn trim() {
    // SAFETY: malloc_trim only walks glibc's own free lists.
    let released = unsafe { libc::malloc_trim(0) };
    debug!(
        released,
        "returned free memory to the system after a burst of connections"
    );
}

#[cfg(not(target_env = "gnu"))]
fn trim() {}

/// hyper's timer for one connection: see the module's documentation.
#[derive(Clone)]
struct ConnectionTimer {
    connection: Arc<Connection>,
    limits: Limits,
}

impl Timer for ConnectionTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(PlainSleep(Box::pin(tokio::time::sleep(duration))))
    }

    /// hyper asks for its header-read deadline when it starts waiting for a
    /// request head; the deadline is this module's instead.
    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let connection = &self.connection;
        connection.head_started.store(0, Ordering::Relaxed);
        connection.waiting_for_head.store(true, Ordering::Relaxed);
        let first = connection.requests.load(Ordering::Relaxed) == 0;
        let created = Instant::now();
        let idle = if first {
            self.limits.header_timeout
        } else {
            self.limits.idle_timeout
        };
        let deadline = created + idle;
        Box::pin(HeadSleep {
            connection: connection.clone(),
            header_timeout: self.limits.header_timeout,
            idle_deadline: deadline,
            first,
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
        })
    }
}

struct PlainSleep(Pin<Box<tokio::time::Sleep>>);

impl Future for PlainSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Sleep for PlainSleep {}

/// Ends when a request head takes longer than the header timeout from its
/// first byte, or when none starts within the idle deadline.
struct HeadSleep {
    connection: Arc<Connection>,
    header_timeout: Duration,
    idle_deadline: Instant,
    first: bool,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Future for HeadSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let started = self.connection.head_started();
        let deadline = match started {
            Some(started) => started + self.header_timeout,
            None => self.idle_deadline,
        };
        if self.sleep.deadline() != deadline.into() {
            self.sleep.as_mut().reset(deadline.into());
        }
        let fired = self.sleep.as_mut().poll(cx);
        if fired.is_ready() {
            let reason = if started.is_some() || self.first {
                Closed::HeaderTimeout
            } else {
                Closed::IdleTimeout
            };
            self.connection.close_by(reason);
        }
        fired
    }
}

impl Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        self.connection
            .waiting_for_head
            .store(false, Ordering::Relaxed);
    }
}

/// A socket that tells its connection when bytes arrive, and fails a write
/// the client has not let progress for the header timeout (a client that
/// never reads its response would otherwise hold the connection forever).
pub struct Watched<S> {
    inner: S,
    connection: Arc<Connection>,
    write_timeout: Duration,
    write_stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Watched<S> {
    fn new(inner: S, connection: Arc<Connection>, write_timeout: Duration) -> Self {
        Self {
            inner,
            connection,
            write_timeout,
            write_stalled: None,
        }
    }

    fn track_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.write_stalled = None;
            return polled;
        }
        let timeout = self.write_timeout;
        let stalled = self
            .write_stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            self.connection.close_by(Closed::WriteTimeout);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the response",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.connection.bytes_arrived();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track_write(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.track_write(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
