//! Profiling metrics through GPM (GPU Performance Monitoring, Hopper and
//! later), the counters DCGM's profiling fields come from. A GPM metric needs
//! two samples at least 100 ms apart: each collection takes one and computes
//! the metrics against the previous collection's, so nothing sleeps. Traffic
//! comes as rates and is integrated into byte counters.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::gpm::{GpmSample, gpm_metrics_get};
use nvml_wrapper_sys::bindings::nvmlGpmSample_t;

use super::reader::Reader;
use super::samples::GpuSamples;
use crate::metrics::catalogue::*;

/// NVML refuses to compute metrics from samples closer than this.
const MIN_SAMPLE_DISTANCE: Duration = Duration::from_millis(100);

const BYTES_PER_MIB: f64 = 1024.0 * 1024.0;

/// Percentages, exported as ratios.
const RATIOS: [(GpmMetricId, &Metric); 8] = [
    (GpmMetricId::SmUtil, &SM_ACTIVE),
    (GpmMetricId::SmOccupancy, &SM_OCCUPANCY),
    (GpmMetricId::AnyTensorUtil, &TENSOR_ACTIVE),
    (GpmMetricId::DramBwUtil, &DRAM_ACTIVE),
    (GpmMetricId::Fp64Util, &FP64_ACTIVE),
    (GpmMetricId::Fp32Util, &FP32_ACTIVE),
    (GpmMetricId::Fp16Util, &FP16_ACTIVE),
    (GpmMetricId::GraphicsUtil, &GRAPHICS_ENGINE_ACTIVE),
];

/// Rates in MiB/s, integrated into byte counters (one total each in `Totals`).
const RATES: [(GpmMetricId, &Metric); 4] = [
    (GpmMetricId::PcieTxPerSec, &PCIE_TRANSMIT),
    (GpmMetricId::PcieRxPerSec, &PCIE_RECEIVE),
    (GpmMetricId::NvlinkTotalTxPerSec, &NVLINK_TRANSMIT),
    (GpmMetricId::NvlinkTotalRxPerSec, &NVLINK_RECEIVE),
];

/// Every GPM metric the exporter reads, in the order `read` asks for them.
pub(crate) fn metric_ids() -> Vec<GpmMetricId> {
    RATIOS.iter().chain(&RATES).map(|(id, _)| *id).collect()
}

/// Whether the output serves any GPM metric: without one, GPM is not read.
pub(super) fn served(reader: &Reader) -> bool {
    RATIOS
        .iter()
        .chain(&RATES)
        .any(|(_, metric)| reader.wants(&[metric]))
}

/// Bytes since the exporter started, by GPU UUID and GPU instance; they
/// outlive NVML sessions.
pub(super) type Totals = HashMap<(String, Option<u32>), [f64; RATES.len()]>;

/// The previous sample of each GPU (and MIG GPU instance) of one NVML session.
#[derive(Default)]
pub(super) struct Previous(HashMap<(u32, Option<u32>), (Handle, Instant)>);

/// A sample kept between collections as its raw handle (a `GpmSample`
/// borrows the `Nvml` that the session also owns).
struct Handle(nvmlGpmSample_t);

// SAFETY: NVML is thread-safe; a sample is used by one thread at a time (the
// collector's, which owns the session).
unsafe impl Send for Handle {}

impl Previous {
    /// Takes a sample of the GPU, or of one of its GPU instances, and adds
    /// the metrics since the previous sample.
    pub(super) fn read(
        &mut self,
        nvml: &Nvml,
        reader: &mut Reader,
        (index, uuid): (u32, &str),
        instance: Option<u32>,
        totals: &mut Totals,
        gpu: &mut GpuSamples,
    ) {
        // Allocating and filling a sample are two NVML calls.
        let sample = reader.read_calls("gpm_sample", 2, |d| match instance {
            None => d.gpm_sample(),
            Some(gi) => d.gpm_mig_sample(gi),
        });
        let Some(sample) = sample else {
            return;
        };
        let key = (index, instance);
        let now = Instant::now();
        let Some((previous, taken)) = self.0.remove(&key) else {
            self.0.insert(key, (Handle(sample.into_handle()), now));
            return;
        };
        // SAFETY: the handle came from `into_handle` of a sample of this NVML
        // session and is freed exactly once, when this value drops.
        let previous = unsafe { GpmSample::from_handle(nvml, previous.0) };
        if now - taken < MIN_SAMPLE_DISTANCE {
            // Too close: keep the older sample for the next collection.
            self.0.insert(key, (Handle(previous.into_handle()), taken));
            reader.read("gpm_sample_free", |_| sample.free());
            return;
        }
        let ids = metric_ids();
        let values = reader.read("gpm_metrics", |_| {
            gpm_metrics_get(nvml, &previous, &sample, &ids)
        });
        reader.read("gpm_sample_free", |_| previous.free());
        self.0.insert(key, (Handle(sample.into_handle()), now));
        let Some(values) = values else {
            return;
        };
        let label = instance.map(|gi| gi.to_string()).unwrap_or_default();
        let seconds = (now - taken).as_secs_f64();
        let total = totals.entry((uuid.to_owned(), instance)).or_default();
        for (i, value) in values.iter().enumerate() {
            let Ok(result) = value else {
                continue;
            };
            if let Some((_, metric)) = RATIOS.get(i) {
                gpu.add(metric, &[&label], Some(result.value / 100.0));
            } else {
                let slot = i - RATIOS.len();
                total[slot] += result.value * BYTES_PER_MIB * seconds;
                gpu.add(RATES[slot].1, &[&label], Some(total[slot]));
            }
        }
    }

    /// Frees the samples still held; called before NVML shuts down.
    pub(super) fn free(&mut self, nvml: &Nvml) {
        for (_, (handle, _)) in self.0.drain() {
            // SAFETY: as in `read`: a handle of this session, freed once.
            drop(unsafe { GpmSample::from_handle(nvml, handle.0) });
        }
    }
}
