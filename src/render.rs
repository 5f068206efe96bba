//! The `/metrics` body. Collectors encode (and gzip) their samples once per
//! collection; a scrape sends that prepared text as it is and renders only
//! the exporter's own metrics and the process metrics, so its cost does not
//! grow with the number of GPUs. Nothing here calls NVML.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use prometheus::core::Collector as _;
use prometheus::process_collector::ProcessCollector;

use crate::catalogue::{BUILD_INFO, COLLECT_DURATION, COLLECT_SUCCESS, LAST_COLLECT_TIMESTAMP};
use crate::collector::{COLLECTORS, Slot};
use crate::compress;
use crate::exposition::{Samples, bool_value, encode_families};
use crate::web::stats::HttpStats;

/// Version and revision for `system_info_exporter_build_info`.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
}

impl BuildInfo {
    /// The revision comes from `build.rs` (git) or `SIE_REVISION` at build time.
    pub const CURRENT: BuildInfo = BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        revision: match option_env!("SIE_REVISION") {
            Some(revision) => revision,
            None => "unknown",
        },
    };
}

/// What the exporter reports about itself besides its collectors, unless
/// `--web.disable-exporter-metrics`.
pub struct ExporterMetrics<'a> {
    pub process: &'a ProcessCollector,
    pub http: &'a HttpStats,
}

/// The whole `/metrics` body, as chunks to send one after another: the
/// prepared text of each collector in `slots` (or its gzip member), then the
/// part made per scrape: the exporter's own metrics, and the process and HTTP
/// metrics unless left out.
pub fn scrape(
    slots: &[&Slot],
    exporter: Option<&ExporterMetrics>,
    build: &BuildInfo,
    gzip: bool,
) -> Vec<Bytes> {
    let published: Vec<_> = slots
        .iter()
        .filter_map(|slot| Some((slot.name, slot.latest.get()?)))
        .collect();
    let mut own = Samples::default();
    own.add(&BUILD_INFO, &[build.version, build.revision], 1.0);
    for (name, published) in &published {
        let outcome = &published.outcome;
        let finished = outcome
            .finished_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        own.add(&COLLECT_DURATION, &[name], outcome.duration.as_secs_f64());
        own.add(&COLLECT_SUCCESS, &[name], bool_value(outcome.success));
        own.add(&LAST_COLLECT_TIMESTAMP, &[name], finished.as_secs_f64());
    }
    let mut process = String::new();
    if let Some(exporter) = exporter {
        exporter.http.add_samples(&mut own);
        let mut families = exporter.process.collect();
        families.retain(|family| !family.get_metric().is_empty());
        process = encode_families(&families);
    }
    let mut dynamic = own.encode();
    dynamic.push_str(&process);
    if gzip {
        let segments: Vec<_> = published.iter().map(|(_, p)| &p.gzip).collect();
        return compress::gzip(&segments, dynamic.as_bytes());
    }
    let mut chunks: Vec<Bytes> = published
        .iter()
        .map(|(_, p)| p.exposition.clone())
        .collect();
    chunks.push(dynamic.into());
    chunks
}

/// A response body of prepared chunks, sent without copying them into one
/// buffer; its exact length becomes the `Content-Length`.
pub struct Chunks(VecDeque<Bytes>);

impl Chunks {
    pub fn new(chunks: Vec<Bytes>) -> Self {
        Self(chunks.into())
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.iter().map(|c| c.len() as u64).sum())
    }
}

/// The collectors a scrape asks for with node_exporter's `collect[]` and
/// `exclude[]` query parameters; all running ones without them.
pub fn select<'a>(slots: &'a [Slot], query: Option<&str>) -> Result<Vec<&'a Slot>, String> {
    let mut collect = Vec::new();
    let mut exclude = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let list = match key.as_ref() {
            "collect[]" => &mut collect,
            "exclude[]" => &mut exclude,
            _ => continue,
        };
        if !COLLECTORS.iter().any(|r| r.name == value) {
            let known: Vec<&str> = COLLECTORS.iter().map(|r| r.name).collect();
            return Err(format!(
                "unknown collector {value:?} in {key}; known collectors: {}",
                known.join(", ")
            ));
        }
        list.push(value.into_owned());
    }
    if !collect.is_empty() && !exclude.is_empty() {
        return Err("use collect[] or exclude[], not both".to_owned());
    }
    Ok(slots
        .iter()
        .filter(|slot| collect.is_empty() || collect.iter().any(|c| c == slot.name))
        .filter(|slot| !exclude.iter().any(|e| e == slot.name))
        .collect())
}
