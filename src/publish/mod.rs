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

use crate::collector::{Collection, Latest, Wanted};
use crate::metrics::catalogue;
use crate::metrics::filter::MetricFilter;
use crate::metrics::gzip::{self, Segment};

/// How a collection is written into `/metrics`.
pub(crate) trait Format: Send + Sync {
    /// The text one collection contributes; it started at `taken`, the time
    /// rates are computed for.
    fn render(&self, collection: &Collection, taken: Instant) -> String;
}

/// The native metrics, as the catalogue defines them, less the families
/// the filter leaves out.
pub(crate) struct Native(pub(crate) MetricFilter);

impl Format for Native {
    fn render(&self, collection: &Collection, _: Instant) -> String {
        collection.samples.encode_kept(|m| self.0.keeps_metric(m))
    }
}

impl Native {
    /// The native metrics the filter keeps, for the collectors.
    pub(crate) fn wanted(&self) -> Wanted {
        if self.0.is_empty() {
            return Wanted::all();
        }
        Wanted::only(
            catalogue::all()
                .filter(|m| self.0.keeps_metric(m))
                .map(|m| m.name),
        )
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
