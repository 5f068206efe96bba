//! The `/metrics` body. Collectors encode their samples once per collection;
//! a scrape concatenates that prepared text and renders only the exporter's
//! own metrics and the process metrics, so its cost does not grow with the
//! number of GPUs. Nothing here calls NVML or the OS.

use std::time::UNIX_EPOCH;

use prometheus::core::Collector as _;
use prometheus::process_collector::ProcessCollector;

use crate::catalogue::{BUILD_INFO, COLLECT_DURATION, COLLECT_SUCCESS, LAST_COLLECT_TIMESTAMP};
use crate::collector::{COLLECTORS, Slot};
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

/// The whole `/metrics` body: the exporter's own metrics, the prepared text of
/// each collector in `slots`, and the process metrics unless left out.
pub fn scrape(slots: &[&Slot], process: Option<&ProcessCollector>, build: &BuildInfo) -> String {
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
    let mut process_families = process.map(|p| p.collect()).unwrap_or_default();
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
