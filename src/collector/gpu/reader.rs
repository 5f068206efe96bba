//! Reading one GPU: counts each NVML call and tells a GPU that failed from a
//! reading it does not offer.

use std::sync::atomic::{AtomicU64, Ordering};

use nvml_wrapper::Device;
use nvml_wrapper::error::NvmlError;
use tracing::debug;

use crate::collector::Wanted;
use crate::metrics::catalogue::Metric;

/// Errors after which nothing more is asked of a GPU in this collection.
pub(super) fn is_gpu_failure(error: &NvmlError) -> bool {
    matches!(
        error,
        NvmlError::GpuLost
            | NvmlError::Unknown
            | NvmlError::Uninitialized
            | NvmlError::DriverNotLoaded
            | NvmlError::ResetRequired
    )
}

/// Reads fields of one GPU, counting each NVML call and remembering the first
/// failure that makes the GPU count as down. Any other error (not supported,
/// a symbol missing in an older driver, no permission) only leaves that one
/// reading out. A reading none of whose metrics the output serves is not
/// read at all.
pub(crate) struct Reader<'d, 'n> {
    index: u32,
    device: &'d Device<'n>,
    calls: &'d AtomicU64,
    wanted: &'d Wanted,
    pub(super) failure: Option<NvmlError>,
}

impl<'d, 'n> Reader<'d, 'n> {
    pub(super) fn new(
        index: u32,
        device: &'d Device<'n>,
        calls: &'d AtomicU64,
        wanted: &'d Wanted,
    ) -> Self {
        Self {
            index,
            device,
            calls,
            wanted,
            failure: None,
        }
    }

    /// Whether the output serves any of `metrics`.
    pub(crate) fn wants(&self, metrics: &[&Metric]) -> bool {
        self.wanted.any(metrics)
    }

    /// As `read`, for a reading that yields `metrics`: `None`, without a
    /// call, when the output serves none of them.
    pub(crate) fn read_for<T>(
        &mut self,
        metrics: &[&Metric],
        what: &str,
        read: impl FnOnce(&'d Device<'n>) -> Result<T, NvmlError>,
    ) -> Option<T> {
        if !self.wants(metrics) {
            return None;
        }
        self.read(what, read)
    }

    pub(crate) fn read<T>(
        &mut self,
        what: &str,
        read: impl FnOnce(&'d Device<'n>) -> Result<T, NvmlError>,
    ) -> Option<T> {
        self.read_calls(what, 1, read)
    }

    /// As `read`, for a reading that takes `calls` NVML calls.
    pub(crate) fn read_calls<T>(
        &mut self,
        what: &str,
        calls: u64,
        read: impl FnOnce(&'d Device<'n>) -> Result<T, NvmlError>,
    ) -> Option<T> {
        if self.failure.is_some() {
            return None;
        }
        self.calls.fetch_add(calls, Ordering::Relaxed);
        match read(self.device) {
            Ok(value) => Some(value),
            Err(error) if is_gpu_failure(&error) => {
                self.failure = Some(error);
                None
            }
            Err(error) => {
                debug!(gpu = self.index, what, %error, "reading omitted");
                None
            }
        }
    }
}
