//! The GPU fabric probe (`gpu.N.fabric_*`): the NVLink fabric of NVSwitch
//! systems, as `nvmlDeviceGetGpuFabricInfoV` answers.

use nvml_wrapper::Device;
use nvml_wrapper::error::NvmlError;

use super::codes;
use super::placeholders::Placeholders;
use super::profile::GpuProfile;
use crate::collector::gpu::{ARGUMENT_VERSION_MISMATCH, FabricVersion, gpu_fabric_info};

/// Records the probe, in the newest struct the driver takes; returns that
/// version (3, or 2 for a driver that refuses v3), `None` when the query
/// failed.
pub(super) fn record(
    device: &Device,
    placeholders: &mut Placeholders,
    gpu: &mut GpuProfile,
) -> Option<u32> {
    let answer = match gpu_fabric_info(device, FabricVersion::V3) {
        Err(NvmlError::UnexpectedVariant(ARGUMENT_VERSION_MISMATCH)) => {
            gpu_fabric_info(device, FabricVersion::V2).map(|info| (2, info))
        }
        answer => answer.map(|info| (3, info)),
    };
    let (version, info) = gpu.answer("fabric", None, answer)?;
    gpu.set("fabric_state", info.state);
    gpu.set("fabric_status", codes::name(info.status));
    gpu.set("fabric_clique_id", info.clique_id);
    gpu.set(
        "fabric_cluster_uuid",
        placeholders.cluster_uuid(info.cluster_uuid),
    );
    gpu.set("fabric_health_mask", format!("{:#x}", info.health_mask));
    if let Some(summary) = info.health_summary {
        gpu.set("fabric_health_summary", summary);
    }
    Some(version)
}
