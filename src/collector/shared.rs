//! State collectors share with each other and with the HTTP side, beyond
//! their collections.

use std::sync::{Arc, Mutex};

use super::gpu::NvmlCalls;
use super::status::{DraStatus, GpuStatus};

#[derive(Default)]
pub(crate) struct Shared {
    /// Written by the GPU collector; `None` before its first collection or
    /// when it does not run. Read by `/health`, `/ready` and the collectors
    /// that work on the GPUs it found.
    pub(crate) gpu: Arc<Latest<GpuStatus>>,
    /// The GPU collector's NVML session while there is one, for collectors
    /// that read NVML too (processes): one initialisation, one backoff.
    pub(crate) nvml: Latest<Arc<nvml_wrapper::Nvml>>,
    /// Every NVML call of every collector, by phase.
    pub(crate) nvml_calls: NvmlCalls,
    /// Written by the pods collector: how DRA devices are resolved, for `/health`.
    pub(crate) dra: Arc<Latest<DraStatus>>,
}

/// The last failure of something tried again and again, so that each
/// distinct failure is logged once, and the recovery once.
#[derive(Debug, Default)]
pub(crate) struct Failures(Option<String>);

impl Failures {
    /// Records a failure; true when it is not the one before (log it).
    pub(crate) fn failed(&mut self, message: &str) -> bool {
        if self.0.as_deref() == Some(message) {
            return false;
        }
        self.0 = Some(message.to_owned());
        true
    }

    /// Records a success; true when it ends failures (log the recovery).
    pub(crate) fn succeeded(&mut self) -> bool {
        self.0.take().is_some()
    }

    pub(crate) fn current(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// The latest published value of something, shared by `Arc`: publishing
/// swaps the pointer, so readers never wait on a collection.
pub(crate) struct Latest<T>(Mutex<Option<Arc<T>>>);

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T> Latest<T> {
    pub(crate) fn get(&self) -> Option<Arc<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set(&self, value: T) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(value));
    }

    pub(crate) fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
