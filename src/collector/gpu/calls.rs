//! The count of NVML calls, by what they are for: what the exporter costs
//! the driver, as `system_info_exporter_nvml_calls_total{phase}`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::catalogue::NVML_CALLS;
use crate::metrics::exposition::Samples;
use crate::metrics::labels::NvmlPhase;

/// NVML calls made since start, by phase; clones count into the same counters.
#[derive(Default, Clone)]
pub(crate) struct NvmlCalls(Arc<[AtomicU64; NvmlPhase::COUNT]>);

impl NvmlCalls {
    pub(crate) fn count(&self, phase: NvmlPhase) -> &AtomicU64 {
        &self.0[phase as usize]
    }

    pub(crate) fn add_samples(&self, out: &mut Samples) {
        for (phase, calls) in NvmlPhase::ALL.iter().zip(self.0.iter()) {
            let calls = calls.load(Ordering::Relaxed) as f64;
            out.add(&NVML_CALLS, &[phase.name()], calls);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_counted_under_their_catalogue_label() {
        let calls = NvmlCalls::default();
        for (n, phase) in NvmlPhase::ALL.iter().enumerate() {
            calls
                .count(*phase)
                .fetch_add(n as u64 + 1, Ordering::Relaxed);
        }
        let mut out = Samples::default();
        calls.add_samples(&mut out);
        let text = out.encode();
        for (n, phase) in NvmlPhase::ALL.iter().enumerate() {
            let line = format!(
                "system_info_exporter_nvml_calls_total{{phase=\"{}\"}} {}",
                phase.name(),
                n + 1
            );
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
