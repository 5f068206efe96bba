//! From collections to what scrapes send: each collection is encoded in the
//! output format and gzipped once, when it is published, so that a scrape
//! only hands prepared bytes to the connection. The format is chosen by the
//! caller (`app`); the collection loop runs each collector on its own
//! thread ([`collection_loop`]).

pub(crate) mod collection_loop;
pub(crate) mod dcgm;
mod watchdog;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use flate2::Compress;

use crate::collector::{Collection, Latest};
use crate::metrics::gzip::{self, Segment};

/// How a collection is written into `/metrics`.
pub(crate) trait Format: Send + Sync {
    /// The text one collection contributes; it started at `taken`, the time
    /// rates are computed for.
    fn render(&self, collection: &Collection, taken: Instant) -> String;
}

/// The native metrics, as the catalogue defines them.
pub(crate) struct Native;

impl Format for Native {
    fn render(&self, collection: &Collection, _: Instant) -> String {
        collection.samples.encode()
    }
}

/// How a collection went: what the self-metrics and `/health` report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// False when the source could not be read (e.g. NVML unavailable).
    pub(crate) success: bool,
    pub(crate) duration: Duration,
    pub(crate) finished_at: SystemTime,
    /// When a collection last succeeded, this one or an earlier one.
    pub(crate) last_success: Option<SystemTime>,
    /// Collections that failed since the exporter started.
    pub(crate) errors_total: u64,
}

/// A collector's latest collection, as scrapes read it: prepared once, so
/// that a scrape only copies it.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) outcome: Outcome,
    /// The collection in the Prometheus text format.
    pub(crate) exposition: Bytes,
    /// The same text deflated, for clients that accept gzip.
    pub(crate) gzip: Segment,
}

/// Encodes `collection`, taken at `taken`, in `format` and compresses it:
/// the publish step.
pub(crate) fn publish(
    format: &dyn Format,
    collection: &Collection,
    taken: Instant,
    outcome: Outcome,
) -> Published {
    let exposition = format.render(collection, taken);
    // A compressor is a few hundred KiB; made for each collection, it is
    // not resident between them.
    let mut compress: Compress = gzip::best();
    let gzip = gzip::segment(exposition.as_bytes(), &mut compress);
    Published {
        outcome,
        exposition: exposition.into(),
        gzip,
    }
}

/// A running collector's name and latest result.
#[derive(Clone)]
pub(crate) struct Slot {
    pub(crate) name: &'static str,
    pub(crate) latest: Arc<Latest<Published>>,
}

/// A collector that has not finished a collection for this many intervals
/// is stuck (e.g. in a hung driver call): `/health` fails, so that it gets
/// restarted.
pub(crate) const STALE_AFTER_INTERVALS: u32 = 3;

/// Whether a collector whose last collection finished `age` ago is stale.
pub(crate) fn is_stale(age: Duration, interval: Duration) -> bool {
    age > interval * STALE_AFTER_INTERVALS
}

/// Time since `outcome`'s collection finished, or since `started` before the first.
pub(crate) fn age(outcome: Option<&Outcome>, started: SystemTime, now: SystemTime) -> Duration {
    let at = outcome.map_or(started, |o| o.finished_at);
    now.duration_since(at).unwrap_or_default()
}
