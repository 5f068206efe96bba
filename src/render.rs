//! The `/metrics` body. Collectors encode their samples once per collection;
//! a scrape concatenates that prepared text and renders only the exporter's
//! own metrics and the process metrics, so its cost does not grow with the
//! number of GPUs. Nothing here calls NVML or the OS.

use std::time::UNIX_EPOCH;

use prometheus::core::Collector as _;
use prometheus::process_collector::ProcessCollector;

use crate::catalogue::{BUILD_INFO, COLLECT_DURATION, COLLECT_SUCCESS, LAST_COLLECT_TIMESTAMP};
use crate::collector::Slot;
use crate::exposition::{Samples, bool_value, encode_families};

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

/// The whole `/metrics` body: the exporter's own metrics, each running
/// collector's prepared text, and the process metrics.
pub fn scrape(slots: &[Slot], process: &ProcessCollector, build: &BuildInfo) -> String {
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
    let own = own.encode();
    let mut process_families = process.collect();
    process_families.retain(|family| !family.get_metric().is_empty());
    let process = encode_families(&process_families);
    let prepared: usize = published.iter().map(|(_, p)| p.exposition.len()).sum();
    let mut body = String::with_capacity(own.len() + prepared + process.len());
    body.push_str(&own);
    for (_, published) in &published {
        body.push_str(&published.exposition);
    }
    body.push_str(&process);
    body
}
