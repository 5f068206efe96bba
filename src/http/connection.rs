//! One open connection as the timer, the socket wrapper and the eviction
//! see it, and hyper's timer for it.
//!
//! hyper's own header-read timeout also runs while a kept-alive connection
//! waits for its next request, which would close Prometheus's connection
//! between two scrapes (and, with TLS, cost a handshake per scrape). So the
//! timer hyper is given is this module's: its deadline is the header timeout
//! from the first byte of a request (and from the accept for a connection's
//! first request), and the idle timeout while no byte of the next request has
//! arrived. [`Watched`] also fails a write that does not progress.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::metrics::labels::CloseReason;

/// The limits of `--web.*`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// From the first byte of a request (or the accept) to its last header
    /// line; also the TLS handshake's limit and how long a client may leave a
    /// response unread.
    pub(crate) header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// One open connection, as the timer, the I/O wrapper and the eviction see it.
pub(crate) struct Connection {
    pub(super) id: u64,
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
    pub(super) evict: Notify,
}

const NOT_CLOSED: u8 = u8::MAX;

impl Connection {
    pub(super) fn new(id: u64) -> Self {
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
    pub(super) fn request_received(&self) {
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

    pub(super) fn close_by(&self, reason: CloseReason) {
        let _ = self.closed_by.compare_exchange(
            NOT_CLOSED,
            reason as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    pub(super) fn closed_by(&self) -> Option<CloseReason> {
        CloseReason::ALL
            .get(self.closed_by.load(Ordering::Relaxed) as usize)
            .copied()
    }

    /// Whether hyper waits for a request head, i.e. whether closing the
    /// connection loses no response.
    pub(super) fn waiting_for_head(&self) -> bool {
        self.waiting_for_head.load(Ordering::Relaxed)
    }
}

/// hyper's timer for one connection: see the module's documentation.
#[derive(Clone)]
pub(super) struct ConnectionTimer {
    pub(super) connection: Arc<Connection>,
    pub(super) limits: Limits,
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
                CloseReason::HeaderTimeout
            } else {
                CloseReason::IdleTimeout
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
pub(super) struct Watched<S> {
    inner: S,
    connection: Arc<Connection>,
    write_timeout: Duration,
    write_stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Watched<S> {
    pub(super) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(super) fn new(inner: S, connection: Arc<Connection>, write_timeout: Duration) -> Self {
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
            self.connection.close_by(CloseReason::WriteTimeout);
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
