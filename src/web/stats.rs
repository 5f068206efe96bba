//! Counters of the HTTP side, for the `system_info_exporter_http_*`
//! self-metrics: what an operator looks at to see an attack (connections
//! refused or closed by a timeout, handshake and authentication failures).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::catalogue::{
    HTTP_AUTH_FAILURES, HTTP_CLOSE_REASONS, HTTP_CONNECTIONS_CLOSED, HTTP_CONNECTIONS_OPEN,
    HTTP_CONNECTIONS_REFUSED, HTTP_ENCODINGS, HTTP_HANDLERS, HTTP_METRICS_RESPONSE_BYTES,
    HTTP_REQUESTS, HTTP_REQUESTS_IN_FLIGHT, HTTP_TLS_HANDSHAKE_FAILURES, WEB_CONFIG_RELOAD_SUCCESS,
};
use crate::exposition::bool_value;
use crate::render::Text;

/// Why a connection ended, the `reason` label of
/// `system_info_exporter_http_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The client closed it, or the exchange ended normally.
    Client = 0,
    /// The request header did not arrive within `--web.read-header-timeout`.
    HeaderTimeout,
    /// No request within `--web.idle-timeout` on a kept-alive connection.
    IdleTimeout,
    /// The client did not read the response within the header timeout.
    WriteTimeout,
    /// Closed to make room for a new connection at `--web.max-connections`.
    Evicted,
    /// Not HTTP/1 (garbage, an HTTP/2 preface, TLS to the plain port), or a
    /// failed TLS handshake.
    Error,
    /// The exporter is shutting down.
    Shutdown,
}

/// What a request was for, the `handler` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Handler {
    Metrics = 0,
    Health,
    Ready,
    Landing,
    Other,
}

impl Handler {
    pub fn name(self) -> &'static str {
        HTTP_HANDLERS[self as usize]
    }
}

#[derive(Default)]
pub struct HttpStats {
    requests: Mutex<BTreeMap<(Handler, u16), u64>>,
    in_flight: AtomicI64,
    open: AtomicI64,
    refused: AtomicU64,
    closed: [AtomicU64; HTTP_CLOSE_REASONS.len()],
    handshake_failures: AtomicU64,
    auth_failures: AtomicU64,
    /// `/metrics` body bytes sent, identity and gzip.
    body_bytes: [AtomicU64; 2],
    /// Whether the web config file was read successfully the last time it
    /// changed; true without `--web.config.file`.
    reload_failed: AtomicBool,
    limit_logged: AtomicBool,
}

impl HttpStats {
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn request_finished(&self, handler: Handler, status: u16) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((handler, status)).or_default() += 1;
    }

    /// Returns the number of connections open now.
    pub fn connection_opened(&self) -> i64 {
        self.open.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Returns the number of connections still open.
    pub fn connection_closed(&self, reason: Closed) -> i64 {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
        self.open.fetch_sub(1, Ordering::Relaxed) - 1
    }

    pub fn open_connections(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn connection_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// True the first time the connection limit is reached, to log it once.
    pub fn first_time_at_limit(&self) -> bool {
        !self.limit_logged.swap(true, Ordering::Relaxed)
    }

    pub fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn metrics_body_sent(&self, gzip: bool, bytes: u64) {
        self.body_bytes[usize::from(!gzip)].fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn config_reloaded(&self, success: bool) {
        self.reload_failed.store(!success, Ordering::Relaxed);
    }

    /// The self-metrics of the HTTP side.
    pub fn write(&self, out: &mut Text) {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((handler, status), count) in requests.iter() {
            let code = status.to_string();
            out.sample(&HTTP_REQUESTS, &[handler.name(), &code], *count as f64);
        }
        drop(requests);
        for (encoding, bytes) in HTTP_ENCODINGS.iter().zip(&self.body_bytes) {
            let bytes = bytes.load(Ordering::Relaxed) as f64;
            out.sample(&HTTP_METRICS_RESPONSE_BYTES, &[encoding], bytes);
        }
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        out.sample(&HTTP_REQUESTS_IN_FLIGHT, &[], in_flight as f64);
        out.sample(&HTTP_CONNECTIONS_OPEN, &[], self.open_connections() as f64);
        let refused = self.refused.load(Ordering::Relaxed);
        out.sample(&HTTP_CONNECTIONS_REFUSED, &[], refused as f64);
        for (reason, count) in HTTP_CLOSE_REASONS.iter().zip(&self.closed) {
            let count = count.load(Ordering::Relaxed) as f64;
            out.sample(&HTTP_CONNECTIONS_CLOSED, &[reason], count);
        }
        let failures = self.handshake_failures.load(Ordering::Relaxed) as f64;
        out.sample(&HTTP_TLS_HANDSHAKE_FAILURES, &[], failures);
        let failures = self.auth_failures.load(Ordering::Relaxed) as f64;
        out.sample(&HTTP_AUTH_FAILURES, &[], failures);
        let success = !self.reload_failed.load(Ordering::Relaxed);
        out.sample(&WEB_CONFIG_RELOAD_SUCCESS, &[], bool_value(success));
    }
}
