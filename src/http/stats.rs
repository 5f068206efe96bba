//! Counters of the HTTP side, for the `system_info_exporter_http_*`
//! self-metrics: what an operator looks at to see an attack (connections
//! refused or closed by a timeout, handshake and authentication failures).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::metrics::catalogue::{
    HTTP_AUTH_FAILURES, HTTP_CONNECTIONS_CLOSED, HTTP_CONNECTIONS_OPEN, HTTP_CONNECTIONS_REFUSED,
    HTTP_METRICS_RESPONSE_BYTES, HTTP_REQUESTS, HTTP_REQUESTS_IN_FLIGHT,
    HTTP_TLS_HANDSHAKE_FAILURES, WEB_CONFIG_RELOAD_SUCCESS,
};
use crate::metrics::exposition::{Text, bool_value};
use crate::metrics::labels::{CloseReason, HttpEncoding, HttpHandler};

#[derive(Default)]
pub(crate) struct HttpStats {
    requests: Mutex<BTreeMap<(HttpHandler, u16), u64>>,
    in_flight: AtomicI64,
    open: AtomicI64,
    refused: AtomicU64,
    closed: [AtomicU64; CloseReason::COUNT],
    handshake_failures: AtomicU64,
    auth_failures: AtomicU64,
    /// `/metrics` body bytes sent, by content encoding.
    body_bytes: [AtomicU64; HttpEncoding::COUNT],
    /// Whether the web config file was invalid the last time it was read;
    /// false without `--web.config.file`.
    reload_failed: AtomicBool,
    limit_logged: AtomicBool,
}

impl HttpStats {
    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn request_finished(&self, handler: HttpHandler, status: u16) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((handler, status)).or_default() += 1;
    }

    /// Returns the number of connections open now.
    pub(crate) fn connection_opened(&self) -> i64 {
        self.open.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Returns the number of connections still open.
    pub(crate) fn connection_closed(&self, reason: CloseReason) -> i64 {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
        self.open.fetch_sub(1, Ordering::Relaxed) - 1
    }

    pub(crate) fn open_connections(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    pub(crate) fn connection_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// True the first time the connection limit is reached, to log it once.
    pub(crate) fn first_time_at_limit(&self) -> bool {
        !self.limit_logged.swap(true, Ordering::Relaxed)
    }

    pub(crate) fn handshake_failed(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn metrics_body_sent(&self, encoding: HttpEncoding, bytes: u64) {
        self.body_bytes[encoding as usize].fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn auth_failed(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn config_reloaded(&self, success: bool) {
        self.reload_failed.store(!success, Ordering::Relaxed);
    }

    /// The self-metrics of the HTTP side.
    pub(crate) fn write(&self, out: &mut Text) {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((handler, status), count) in requests.iter() {
            let code = status.to_string();
            out.sample(&HTTP_REQUESTS, &[handler.name(), &code], *count as f64);
        }
        drop(requests);
        for (encoding, bytes) in HttpEncoding::ALL.iter().zip(&self.body_bytes) {
            let bytes = bytes.load(Ordering::Relaxed) as f64;
            out.sample(&HTTP_METRICS_RESPONSE_BYTES, &[encoding.name()], bytes);
        }
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        out.sample(&HTTP_REQUESTS_IN_FLIGHT, &[], in_flight as f64);
        out.sample(&HTTP_CONNECTIONS_OPEN, &[], self.open_connections() as f64);
        let refused = self.refused.load(Ordering::Relaxed);
        out.sample(&HTTP_CONNECTIONS_REFUSED, &[], refused as f64);
        for (reason, count) in CloseReason::ALL.iter().zip(&self.closed) {
            let count = count.load(Ordering::Relaxed) as f64;
            out.sample(&HTTP_CONNECTIONS_CLOSED, &[reason.name()], count);
        }
        let failures = self.handshake_failures.load(Ordering::Relaxed) as f64;
        out.sample(&HTTP_TLS_HANDSHAKE_FAILURES, &[], failures);
        let failures = self.auth_failures.load(Ordering::Relaxed) as f64;
        out.sample(&HTTP_AUTH_FAILURES, &[], failures);
        let success = !self.reload_failed.load(Ordering::Relaxed);
        out.sample(&WEB_CONFIG_RELOAD_SUCCESS, &[], bool_value(success));
    }
}
