//! Plain data that collectors publish for scrapes, `/health` and `/ready`.
//! Nothing here talks to NVML or the OS.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use flate2::Compress;
use serde::Serialize;

use crate::compress::{Segment, segment};

/// How a collection went: what the self-metrics and `/health` report.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// False when the source could not be read at all (e.g. NVML unavailable).
    pub success: bool,
    pub duration: Duration,
    pub finished_at: SystemTime,
    /// When a collection last succeeded, this one or an earlier one.
    pub last_success: Option<SystemTime>,
}

/// A collector's latest collection, as scrapes read it: prepared once, so
/// that a scrape only copies it.
#[derive(Debug)]
pub struct Published {
    pub outcome: Outcome,
    /// The collection's samples in the Prometheus text format.
    pub exposition: Bytes,
    /// The same text deflated, for clients that accept gzip.
    pub gzip: Segment,
}

impl Published {
    pub fn new(outcome: Outcome, exposition: String, compress: &mut Compress) -> Self {
        let gzip = segment(exposition.as_bytes(), compress);
        Self {
            outcome,
            exposition: exposition.into(),
            gzip,
        }
    }
}

/// What the GPU collector knows beyond its samples: NVML's state and each
/// GPU's, for `/health`, `/ready` and pod attribution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuStatus {
    pub nvml_up: bool,
    /// Last NVML initialisation or enumeration error.
    pub nvml_error: Option<String>,
    pub driver_version: Option<String>,
    pub gpus: Vec<GpuState>,
}

impl GpuStatus {
    pub fn gpus_lost(&self) -> usize {
        self.gpus.iter().filter(|gpu| !gpu.up).count()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GpuState {
    pub index: u32,
    /// Empty when the GPU failed before its identity could be read.
    pub uuid: String,
    pub up: bool,
    /// Which NVML events of this GPU are being watched.
    pub events: EventWatch,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventWatch {
    /// Not (yet) registered, e.g. the GPU was down when events were set up.
    #[default]
    NotWatched,
    /// The GPU supports none of the watched event types.
    Unsupported,
    /// Watched types, e.g. `["xid", "single_bit_ecc"]`.
    Watching(Vec<&'static str>),
    /// Registration failed with this NVML error.
    Failed(String),
}

/// GPUs held by pods, from the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuAllocation {
    /// GPU or MIG device UUID.
    pub uuid: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
}
