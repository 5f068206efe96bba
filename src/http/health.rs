//! What `/health` and `/ready` answer, decided from the published snapshots.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::collector::status::{DraStatus, GpuState, GpuStatus};
use crate::metrics::filter::MetricFilter;
use crate::publish::{self, Outcome};

#[derive(Debug, Serialize)]
pub(crate) struct Health {
    /// "ok", or "stale" when a collector has stopped finishing collections.
    pub(crate) status: &'static str,
    pub(crate) version: &'static str,
    pub(crate) nvml: NvmlHealth,
    pub(crate) gpu_count: usize,
    pub(crate) gpus_lost: usize,
    /// Each GPU: index, uuid, whether it answers, whether its XID and ECC
    /// events are watched, and its NVLink fabric where it has one.
    pub(crate) gpus: Vec<GpuState>,
    pub(crate) collectors: Vec<CollectorHealth>,
    /// Fields of the `--dcgm.counters` file that this exporter does not
    /// provide, skipped; left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) dcgm_skipped_fields: Vec<String>,
    /// How DRA devices are resolved to UUIDs; left out without the pods collector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kubernetes_dra: Option<DraStatus>,
    /// `--metrics.include` and `--metrics.exclude`; left out when neither is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metric_filters: Option<MetricFilters>,
}

#[derive(Debug, Serialize)]
pub(crate) struct MetricFilters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) include: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) exclude: Option<String>,
}

impl MetricFilters {
    pub(crate) fn of(filter: &MetricFilter) -> Option<Self> {
        (!filter.is_empty()).then(|| Self {
            include: filter.include.as_ref().map(ToString::to_string),
            exclude: filter.exclude.as_ref().map(ToString::to_string),
        })
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct NvmlHealth {
    pub(crate) up: bool,
    pub(crate) driver_version: Option<String>,
    pub(crate) error: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CollectorHealth {
    pub(crate) name: &'static str,
    pub(crate) success: Option<bool>,
    /// Whether no collection finished for more than 3 intervals.
    #[serde(skip)]
    pub(crate) stale: bool,
    /// Seconds since the last collection finished (since start, before the first).
    pub(crate) last_collection_age_seconds: f64,
    /// Seconds since the last successful collection; null if none succeeded yet.
    pub(crate) last_success_age_seconds: Option<f64>,
}

impl Health {
    pub(crate) fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// The age and outcome of a collector, for `Health`.
pub(crate) fn collector_health(
    name: &'static str,
    outcome: Option<&Outcome>,
    started: SystemTime,
    now: SystemTime,
    interval: Duration,
) -> CollectorHealth {
    let age = |at: SystemTime| now.duration_since(at).unwrap_or_default().as_secs_f64();
    let collection_age = publish::age(outcome, started, now);
    CollectorHealth {
        name,
        success: outcome.map(|o| o.success),
        stale: publish::is_stale(collection_age, interval),
        last_collection_age_seconds: collection_age.as_secs_f64(),
        last_success_age_seconds: outcome.and_then(|o| o.last_success).map(age),
    }
}

pub(crate) fn health(gpu: Option<&GpuStatus>, collectors: Vec<CollectorHealth>) -> Health {
    let stale = collectors.iter().any(|c| c.stale);
    Health {
        status: if stale { "stale" } else { "ok" },
        version: env!("CARGO_PKG_VERSION"),
        nvml: NvmlHealth {
            up: gpu.is_some_and(|g| g.nvml_up),
            driver_version: gpu.and_then(|g| g.driver_version.clone()),
            error: gpu.and_then(|g| g.nvml_error.clone()),
        },
        gpu_count: gpu.map_or(0, |g| g.gpus.len()),
        gpus_lost: gpu.map_or(0, GpuStatus::gpus_lost),
        gpus: gpu.map(|g| g.gpus.clone()).unwrap_or_default(),
        collectors,
        dcgm_skipped_fields: Vec::new(),
        kubernetes_dra: None,
        metric_filters: None,
    }
}

/// Why the exporter is not ready, or `None` when it is.
pub(crate) fn not_ready_reason(
    gpu: Option<&GpuStatus>,
    all_collected: bool,
    require_gpu: bool,
) -> Option<String> {
    if !all_collected {
        return Some("the first collection has not finished yet".to_owned());
    }
    if !require_gpu {
        return None;
    }
    let Some(gpu) = gpu else {
        return Some("NVML is unavailable: not initialised yet".to_owned());
    };
    if !gpu.nvml_up {
        let error = gpu.nvml_error.as_deref().unwrap_or("not initialised yet");
        return Some(format!("NVML is unavailable: {error}"));
    }
    if gpu.gpus.is_empty() {
        return Some("NVML reports no GPU".to_owned());
    }
    let lost = gpu.gpus_lost();
    if lost > 0 {
        return Some(format!("{lost} GPU(s) lost"));
    }
    // Registration runs for minutes after boot; until it completes the
    // GPUs cannot reach their NVLink peers.
    let unregistered = gpu.fabric_unregistered();
    if !unregistered.is_empty() {
        let gpus = unregistered.join(", ");
        return Some(format!("NVLink fabric not registered ({gpus})"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::status::FabricHealth;

    #[test]
    fn goes_stale_after_three_intervals_without_a_collection() {
        let start = SystemTime::UNIX_EPOCH;
        let interval = Duration::from_secs(5);
        let outcome = Outcome {
            success: true,
            duration: Duration::ZERO,
            finished_at: start,
            last_success: None,
            errors_total: 0,
        };
        let at = |secs| {
            let now = start + Duration::from_secs(secs);
            let collectors = vec![collector_health(
                "gpu",
                Some(&outcome),
                start,
                now,
                interval,
            )];
            health(None, collectors).status
        };
        assert_eq!(at(15), "ok");
        assert_eq!(at(16), "stale");
    }

    #[test]
    fn readiness_follows_require_gpu() {
        let no_nvml = GpuStatus::default();
        assert_eq!(not_ready_reason(None, true, false), None);
        assert!(not_ready_reason(None, true, true).is_some());
        assert!(not_ready_reason(Some(&no_nvml), false, false).is_some());
        assert_eq!(not_ready_reason(Some(&no_nvml), true, false), None);
        assert!(
            not_ready_reason(Some(&no_nvml), true, true)
                .unwrap()
                .contains("NVML")
        );

        let with_lost = GpuStatus {
            nvml_up: true,
            gpus: vec![GpuState::default()],
            ..GpuStatus::default()
        };
        assert_eq!(
            not_ready_reason(Some(&with_lost), true, true).as_deref(),
            Some("1 GPU(s) lost")
        );
        assert_eq!(not_ready_reason(Some(&with_lost), true, false), None);

        let none = GpuStatus {
            nvml_up: true,
            ..GpuStatus::default()
        };
        assert_eq!(
            not_ready_reason(Some(&none), true, true).as_deref(),
            Some("NVML reports no GPU")
        );
        assert_eq!(not_ready_reason(Some(&none), true, false), None);
    }

    #[test]
    fn readiness_waits_for_every_fabric_to_register() {
        let fabric = |state: &str, status| FabricHealth {
            state: state.to_owned(),
            status,
            ..FabricHealth::default()
        };
        let gpu = |index, fabric| GpuState {
            index,
            up: true,
            fabric,
            ..GpuState::default()
        };
        let mut status = GpuStatus {
            nvml_up: true,
            gpus: vec![
                gpu(0, Some(fabric("completed", Some(0)))),
                gpu(1, Some(fabric("in_progress", None))),
                gpu(2, None),
                gpu(3, Some(fabric("completed", Some(23)))),
            ],
            ..GpuStatus::default()
        };
        assert_eq!(
            not_ready_reason(Some(&status), true, true).as_deref(),
            Some(
                "NVLink fabric not registered (GPU 1: in_progress, GPU 3: failed with NVML return code 23)"
            )
        );
        assert_eq!(not_ready_reason(Some(&status), true, false), None);
        status.gpus[1] = gpu(1, Some(fabric("completed", Some(0))));
        status.gpus[3] = gpu(3, Some(fabric("completed", Some(0))));
        assert_eq!(not_ready_reason(Some(&status), true, true), None);
    }
}
