//! What the GPU collector knows of NVML's and each GPU's state, for
//! `/health`, `/ready` and the collectors that work on the GPUs it found.

use serde::Serialize;

use crate::metrics::labels::FabricState;

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

    /// The GPUs whose NVLink fabric is not registered, each as `GPU 3:
    /// in_progress`; empty where every fabric is (or there is none).
    pub(crate) fn fabric_unregistered(&self) -> Vec<String> {
        self.gpus
            .iter()
            .filter_map(|gpu| {
                let fabric = gpu.fabric.as_ref().filter(|f| !f.registered())?;
                let state = match fabric.status {
                    Some(code) => format!("failed with NVML return code {code}"),
                    None => fabric.state.clone(),
                };
                Some(format!("GPU {}: {state}", gpu.index))
            })
            .collect()
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
    /// The GPU's NVLink fabric; left out on GPUs without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fabric: Option<FabricHealth>,
}

/// In `/health`, a GPU's NVLink fabric: its registration and health.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct FabricHealth {
    /// Registered, with no health issue and, where the driver summarises,
    /// a `healthy` summary.
    pub(crate) ok: bool,
    /// `not_started`, `in_progress` or `completed`; `unknown` when it could
    /// not be read (then `error` says why) or NVML gave an undocumented value.
    pub(crate) state: String,
    /// The registration's NVML return code, once completed: 0 succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<u32>,
    /// Why the registration failed, or why the fabric could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) cluster_uuid: String,
    pub(crate) clique_id: u32,
    /// The issues the health mask reports, as the `issue` label names them.
    pub(crate) issues: Vec<&'static str>,
    /// The cause of `incorrect_configuration`, nvml.h's name in lower case
    /// (e.g. `insufficient_nvlinks`), while it is reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) incorrect_configuration: Option<String>,
    /// Issues this driver does not report (the mask says not supported).
    pub(crate) unsupported_checks: Vec<&'static str>,
    /// The driver's summary (`healthy`, `unhealthy`, `limited_capacity`);
    /// left out where it gives none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) summary: Option<String>,
}

impl FabricHealth {
    /// Whether registration completed and succeeded: what readiness waits for.
    pub(crate) fn registered(&self) -> bool {
        self.state == FabricState::Completed.name() && self.status == Some(0)
    }
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
