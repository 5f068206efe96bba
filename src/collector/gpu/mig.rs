//! MIG devices of a GPU in MIG mode. They are listed every interval, since
//! GPU and compute instances can be created and destroyed without a GPU
//! reset; what never changes for one MIG device (its instance ids and
//! profile) is read once per MIG UUID.

use std::collections::HashMap;

use nvml_wrapper::Device;

use super::reader::Reader;
use super::samples::GpuSamples;
use super::sys;
use crate::collector::facts::MigDevice;
use crate::metrics::catalogue::{MIG_INFO, MIG_MEMORY_TOTAL, MIG_MEMORY_USED, MIG_MODE_ENABLED};
use crate::metrics::exposition::bool_value;

pub(super) struct MigIdentity {
    gpu_instance: u32,
    compute_instance: u32,
    profile: String,
}

/// Reads the GPU's MIG mode and, when it is on, its MIG devices, which it
/// returns in slot order.
pub(super) fn read(
    reader: &mut Reader,
    slots: u32,
    known: &mut HashMap<String, MigIdentity>,
    gpu: &mut GpuSamples,
) -> Vec<MigDevice> {
    let Some(mode) = reader.read("mig_mode", Device::mig_mode) else {
        return Vec::new();
    };
    let enabled = mode.current == 1;
    gpu.add(&MIG_MODE_ENABLED, &[], Some(bool_value(enabled)));
    let mut devices = Vec::new();
    if !enabled {
        return devices;
    }
    for slot in 0..slots {
        // An empty slot answers NOT_FOUND: skipped, not an error.
        let Some(mig) = reader.read("mig_device", |d| d.mig_device_by_index(slot)) else {
            continue;
        };
        let Some(uuid) = reader.read("mig_uuid", |_| mig.uuid()) else {
            continue;
        };
        if !known.contains_key(&uuid) {
            let gpu_instance = reader.read("gpu_instance_id", |_| sys::gpu_instance_id(&mig));
            let compute_instance =
                reader.read("compute_instance_id", |_| sys::compute_instance_id(&mig));
            let name = reader.read("mig_name", |_| mig.name()).unwrap_or_default();
            let (Some(gpu_instance), Some(compute_instance)) = (gpu_instance, compute_instance)
            else {
                continue;
            };
            let identity = MigIdentity {
                gpu_instance,
                compute_instance,
                profile: profile(&name).to_owned(),
            };
            known.insert(uuid.clone(), identity);
        }
        let id = &known[&uuid];
        let gpu_instance = id.gpu_instance.to_string();
        let compute_instance = id.compute_instance.to_string();
        let instance = [gpu_instance.as_str(), compute_instance.as_str()];
        gpu.add(
            &MIG_INFO,
            &[&uuid, instance[0], instance[1], &id.profile],
            Some(1.0),
        );
        if let Some(memory) = reader.read("mig_memory", |_| mig.memory_info()) {
            gpu.add(&MIG_MEMORY_USED, &instance, Some(memory.used as f64));
            gpu.add(&MIG_MEMORY_TOTAL, &instance, Some(memory.total as f64));
        }
        devices.push(MigDevice {
            gpu_uuid: gpu.uuid().to_owned(),
            uuid,
            gpu_instance: id.gpu_instance,
            compute_instance: id.compute_instance,
            profile: id.profile.clone(),
        });
    }
    devices
}

/// The profile in a MIG device's name, e.g. `1g.10gb` in
/// "NVIDIA A100-SXM4-80GB MIG 1g.10gb".
fn profile(name: &str) -> &str {
    name.rsplit_once(" MIG ").map_or("", |(_, profile)| profile)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_profile_is_the_end_of_the_name() {
        assert_eq!(
            super::profile("NVIDIA H100 80GB HBM3 MIG 3g.40gb"),
            "3g.40gb"
        );
        assert_eq!(super::profile("NVIDIA H100 80GB HBM3"), "");
    }
}
