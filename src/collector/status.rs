//! What the GPU collector knows of NVML's and each GPU's state, for
//! `/health`, `/ready` and the collectors that work on the GPUs it found.

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GpuStatus {
    pub(crate) nvml_up: bool,
    /// Last NVML initialisation or enumeration error.
    pub(crate) nvml_error: Option<String>,
    pub(crate) driver_version: Option<String>,
    pub(crate) gpus: Vec<GpuState>,
    /// UUIDs of the MIG devices NVML reports.
    pub(crate) mig_uuids: Vec<String>,
}

impl GpuStatus {
    pub(crate) fn gpus_lost(&self) -> usize {
        self.gpus.iter().filter(|gpu| !gpu.up).count()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct GpuState {
    pub(crate) index: u32,
    /// Empty when the GPU failed before its identity could be read.
    pub(crate) uuid: String,
    pub(crate) up: bool,
    /// Why the GPU counts as down, while it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) down_reason: Option<String>,
    /// Which NVML events of this GPU are being watched.
    pub(crate) events: EventWatch,
}

/// In `/health` an object whose `state` says which: `{"state": "watching",
/// "types": ["xid"]}`, `{"state": "not_watched"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum EventWatch {
    /// Not (yet) registered, e.g. the GPU was down when events were set up.
    #[default]
    NotWatched,
    /// The GPU supports none of the watched event types.
    Unsupported,
    /// Watched types, e.g. `["xid", "single_bit"]`.
    Watching { types: Vec<&'static str> },
    /// Registration failed with this NVML error.
    Failed { error: String },
}

/// How the pods collector resolves devices of DRA claims to UUIDs, in `/health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct DraStatus {
    /// `resolving`, `failing` (the last request failed), `no_token` (no
    /// service-account token to ask the API with), `no_node_name`, or `off`
    /// (`--collector.pods.dra=false`).
    pub(crate) state: &'static str,
    /// The Kubernetes API asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) api: Option<String>,
    /// Devices of DRA claims the kubelet reports, and how many have a UUID.
    pub(crate) devices: usize,
    pub(crate) resolved: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}
