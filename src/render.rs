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

use std::fmt::Write as _;

use crate::catalogue::{
    BUILD_INFO, COLLECT_DURATION, COLLECT_SUCCESS, Kind, LAST_COLLECT_TIMESTAMP, Metric,
};
use crate::collector::{COLLECTORS, Slot};
use crate::compress;
use crate::exposition::bool_value;
use crate::process::ProcessMetrics;
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
    pub process: &'a ProcessMetrics,
    pub http: &'a HttpStats,
}

/// The whole `/metrics` body, as chunks to send one after another: the
/// prepared text of each collector in `slots` (or its deflated form), then
/// the part made per scrape: the exporter's own metrics, and the process and
/// HTTP metrics unless left out.
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
        return compress::gzip(&segments, dynamic.as_bytes());
    }
    let mut chunks: Vec<Bytes> = published
        .iter()
        .map(|(_, p)| p.exposition.clone())
        .collect();
    chunks.push(dynamic.into());
    chunks
}

/// The text format written directly, for the few metrics made per scrape:
/// building the prometheus crate's protobuf messages for them cost more
/// than the rest of a scrape. Callers write each family's samples together.
#[derive(Default)]
pub struct Text {
    out: String,
    family: &'static str,
}

impl Text {
    /// A sample of a catalogue metric; `labels` in the catalogue's order.
    pub fn sample(&mut self, metric: &'static Metric, labels: &[&str], value: f64) {
        debug_assert_eq!(labels.len(), metric.labels.len(), "{}", metric.name);
        if self.family != metric.name {
            let kind = match metric.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
            };
            self.header(metric.name, kind, metric.help);
        }
        self.out.push_str(metric.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in metric.labels.iter().zip(labels).enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label.name);
                self.out.push_str("=\"");
                escape_label_value(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.value(value);
    }

    /// A family of one sample without labels, outside the catalogue (the
    /// standard `process_*` metrics).
    pub fn untyped_family(&mut self, name: &'static str, kind: &str, help: &str, value: f64) {
        self.header(name, kind, help);
        self.out.push_str(name);
        self.value(value);
    }

    fn header(&mut self, name: &'static str, kind: &str, help: &str) {
        self.family = name;
        let _ = write!(self.out, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {name} {kind}");
    }

    fn value(&mut self, value: f64) {
        self.out.push(' ');
        if value.is_infinite() {
            self.out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(self.out, "{value}");
        }
        self.out.push('\n');
    }

    /// Text written by another `Text`: whole families.
    pub fn append(&mut self, families: &str) {
        self.family = "";
        self.out.push_str(families);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::GPU_INFO;
    use crate::exposition::Samples;

    /// The direct writer writes what the prometheus crate's encoder writes.
    #[test]
    fn text_matches_the_prometheus_encoder() {
        let labels = [
            "0",
            "GPU-a",
            "name \"quoted\" back\\slash\nline",
            "0000:01:00.0",
            "s",
        ];
        for value in [1.0, 0.5, 1796081500.0, 1e-7, 123456.789] {
            let mut text = Text::default();
            text.sample(&GPU_INFO, &labels, value);
            text.sample(&GPU_INFO, &labels, value);
            let mut samples = Samples::default();
            samples.add(&GPU_INFO, &labels, value);
            samples.add(&GPU_INFO, &labels, value);
            assert_eq!(text.finish(), samples.encode());
        }
        let mut text = Text::default();
        text.untyped_family("process_x", "gauge", "Help.", f64::INFINITY);
        assert_eq!(
            text.finish(),
            "# HELP process_x Help.\n# TYPE process_x gauge\nprocess_x +Inf\n"
        );
    }
}
