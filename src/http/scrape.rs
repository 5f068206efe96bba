//! The `/metrics` body. Collections are encoded (and gzipped) once when they
//! are published; a scrape sends that prepared text as it is and writes only
//! the exporter's own metrics, so its cost does not grow with the number of
//! GPUs. Nothing here calls NVML.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::stats::HttpStats;
use crate::metrics::catalogue::{
    BUILD_INFO, COLLECT_DURATION, COLLECT_SUCCESS, COLLECTOR_ERRORS, LAST_COLLECT_TIMESTAMP,
};
use crate::metrics::exposition::{Text, bool_value};
use crate::metrics::gzip;
use crate::publish::Slot;
use crate::selfmetrics::BuildInfo;
use crate::selfmetrics::process::ProcessMetrics;

/// What the exporter reports about itself besides its collectors, unless
/// `--web.disable-exporter-metrics`.
pub(crate) struct ExporterMetrics<'a> {
    pub(crate) process: &'a ProcessMetrics,
    pub(crate) http: &'a HttpStats,
}

/// The whole `/metrics` body, as chunks to send one after another: the
/// prepared text of each collector in `slots` (or its deflated form), then
/// the part made per scrape: the exporter's own metrics, and the process and
/// HTTP metrics unless left out.
pub(crate) fn scrape(
    slots: &[&Slot],
    exporter: Option<&ExporterMetrics>,
    build: &BuildInfo,
    gzip: bool,
) -> Vec<Bytes> {
    let published: Vec<_> = slots
        .iter()
        .filter_map(|slot| Some((slot.name, slot.latest.get()?)))
        .collect();
    let mut own = Text::default();
    own.sample(&BUILD_INFO, &[build.version, build.revision], 1.0);
    for (name, published) in &published {
        let duration = published.outcome.duration.as_secs_f64();
        own.sample(&COLLECT_DURATION, &[name], duration);
    }
    for (name, published) in &published {
        let success = bool_value(published.outcome.success);
        own.sample(&COLLECT_SUCCESS, &[name], success);
    }
    for (name, published) in &published {
        let errors = published.outcome.errors_total as f64;
        own.sample(&COLLECTOR_ERRORS, &[name], errors);
    }
    for (name, published) in &published {
        let finished = published
            .outcome
            .finished_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        own.sample(&LAST_COLLECT_TIMESTAMP, &[name], finished.as_secs_f64());
    }
    if let Some(exporter) = exporter {
        exporter.http.write(&mut own);
        exporter.process.write(&mut own);
    }
    let dynamic = own.finish();
    if gzip {
        let segments: Vec<_> = published.iter().map(|(_, p)| &p.gzip).collect();
        return gzip::gzip(&segments, dynamic.as_bytes());
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
pub(crate) struct Chunks(VecDeque<Bytes>);

impl Chunks {
    pub(crate) fn new(chunks: Vec<Bytes>) -> Self {
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
/// `exclude[]` query parameters; all running ones without them. `known`
/// names every collector there is, running or not.
pub(crate) fn select<'a>(
    slots: &'a [Slot],
    known: &[&str],
    query: Option<&str>,
) -> Result<Vec<&'a Slot>, String> {
    let mut collect = Vec::new();
    let mut exclude = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let list = match key.as_ref() {
            "collect[]" => &mut collect,
            "exclude[]" => &mut exclude,
            _ => continue,
        };
        if !known.contains(&value.as_ref()) {
            return Err(format!(
                "unknown collector {value:?} in {key}; known collectors: {}",
                known.join(", ")
            ));
        }
        if key == "collect[]" && !slots.iter().any(|slot| slot.name == value) {
            return Err(format!(
                "the {value} collector does not run here (off, or its source is absent on this node); enable it with --collector.{value}"
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
