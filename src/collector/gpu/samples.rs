//! Samples of one GPU.

use crate::metrics::catalogue::Metric;
use crate::metrics::exposition::Samples;

/// Samples of one GPU: every one carries its `gpu` and `uuid` labels.
pub(crate) struct GpuSamples<'a> {
    out: &'a mut Samples,
    gpu: String,
    uuid: &'a str,
}

impl<'a> GpuSamples<'a> {
    pub(crate) fn new(out: &'a mut Samples, index: u32, uuid: &'a str) -> Self {
        Self {
            out,
            gpu: index.to_string(),
            uuid,
        }
    }

    pub(crate) fn uuid(&self) -> &str {
        self.uuid
    }

    /// Adds a sample with `labels` after `gpu` and `uuid`, if there is a value.
    pub(crate) fn add(&mut self, metric: &'static Metric, labels: &[&str], value: Option<f64>) {
        let mut all = Vec::with_capacity(2 + labels.len());
        all.extend([self.gpu.as_str(), self.uuid]);
        all.extend_from_slice(labels);
        self.out.add_some(metric, &all, value);
    }
}
