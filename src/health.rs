//! What `/health` and `/ready` answer, decided from the published snapshots.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::snapshot::{Collected, GpuSnapshot, Outcome};

/// A collector that has not finished a collection for this many intervals
/// is considered stuck, and `/health` fails so that it gets restarted.
pub const STALE_AFTER_INTERVALS: u32 = 3;

#[derive(Debug, Serialize)]
pub struct Health {
    /// "ok", or "stale" when a collector has stopped finishing collections.
    pub status: &'static str,
    pub version: &'static str,
    pub nvml: NvmlHealth,
    pub gpu_count: usize,
    pub gpus_lost: usize,
    pub collectors: Vec<CollectorHealth>,
}

#[derive(Debug, Serialize)]
pub struct NvmlHealth {
    pub up: bool,
    pub driver_version: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CollectorHealth {
    pub name: &'static str,
    pub success: Option<bool>,
    /// Seconds since the last collection finished (since start, before the first).
    pub last_collection_age_seconds: f64,
    /// Seconds since the last successful collection; null if none succeeded yet.
    pub last_success_age_seconds: Option<f64>,
}

impl Health {
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// The age and outcome of a collector, for `Health`.
pub fn collector_health(
    name: &'static str,
    outcome: Option<&Outcome>,
    started: SystemTime,
    now: SystemTime,
) -> CollectorHealth {
    let age = |at: SystemTime| now.duration_since(at).unwrap_or_default().as_secs_f64();
    CollectorHealth {
        name,
        success: outcome.map(|o| o.success),
        last_collection_age_seconds: age(outcome.map_or(started, |o| o.finished_at)),
        last_success_age_seconds: outcome.and_then(|o| o.last_success).map(age),
    }
}

pub fn health(
    gpu: Option<&Collected<GpuSnapshot>>,
    collectors: Vec<CollectorHealth>,
    interval: Duration,
) -> Health {
    let limit = (interval * STALE_AFTER_INTERVALS).as_secs_f64();
    let stale = collectors
        .iter()
        .any(|c| c.last_collection_age_seconds > limit);
    let gpu = gpu.map(|c| &c.data);
    Health {
        status: if stale { "stale" } else { "ok" },
        version: env!("CARGO_PKG_VERSION"),
        nvml: NvmlHealth {
            up: gpu.is_some_and(|g| g.nvml_up),
            driver_version: gpu
                .and_then(|g| g.driver.as_ref())
                .map(|d| d.driver_version.clone()),
            error: gpu.and_then(|g| g.nvml_error.clone()),
        },
        gpu_count: gpu.map_or(0, |g| g.gpus.len()),
        gpus_lost: gpu.map_or(0, GpuSnapshot::gpus_lost),
        collectors,
    }
}

/// Why the exporter is not ready, or `None` when it is.
pub fn not_ready_reason(
    gpu: Option<&Collected<GpuSnapshot>>,
    host_collected: bool,
    require_gpu: bool,
) -> Option<String> {
    let Some(gpu) = gpu.filter(|_| host_collected) else {
        return Some("the first collection has not finished yet".to_owned());
    };
    if !require_gpu {
        return None;
    }
    let gpu = &gpu.data;
    if !gpu.nvml_up {
        let error = gpu.nvml_error.as_deref().unwrap_or("not initialised yet");
        return Some(format!("NVML is unavailable: {error}"));
    }
    match gpu.gpus_lost() {
        0 => None,
        lost => Some(format!("{lost} GPU(s) lost")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::GpuStats;

    fn collected(data: GpuSnapshot, finished_at: SystemTime) -> Collected<GpuSnapshot> {
        let outcome = Outcome {
            success: data.nvml_up,
            duration: Duration::ZERO,
            finished_at,
            last_success: None,
        };
        Collected { data, outcome }
    }

    #[test]
    fn goes_stale_after_three_intervals_without_a_collection() {
        let start = SystemTime::UNIX_EPOCH;
        let interval = Duration::from_secs(5);
        let gpu = collected(GpuSnapshot::default(), start);
        let at = |secs| {
            let now = start + Duration::from_secs(secs);
            let collectors = vec![collector_health("gpu", Some(&gpu.outcome), start, now)];
            health(Some(&gpu), collectors, interval).status
        };
        assert_eq!(at(15), "ok");
        assert_eq!(at(16), "stale");
    }

    #[test]
    fn readiness_follows_require_gpu() {
        let now = SystemTime::now();
        let no_nvml = collected(GpuSnapshot::default(), now);
        assert!(not_ready_reason(None, true, false).is_some());
        assert!(not_ready_reason(Some(&no_nvml), false, false).is_some());
        assert_eq!(not_ready_reason(Some(&no_nvml), true, false), None);
        assert!(
            not_ready_reason(Some(&no_nvml), true, true)
                .unwrap()
                .contains("NVML")
        );

        let lost = GpuStats {
            up: false,
            ..GpuStats::default()
        };
        let with_lost = GpuSnapshot {
            nvml_up: true,
            gpus: vec![lost],
            ..GpuSnapshot::default()
        };
        let with_lost = collected(with_lost, now);
        assert_eq!(
            not_ready_reason(Some(&with_lost), true, true).as_deref(),
            Some("1 GPU(s) lost")
        );
        assert_eq!(not_ready_reason(Some(&with_lost), true, false), None);
    }
}
