//! MIG devices (`gpu.N.mig_device.K`) and GPM profiling metrics
//! (`gpu.N.gpm_value.ID`, `gpu.N.gpm_mig`), read as the collector reads them.

use std::time::Duration;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::gpm::gpm_metrics_get;
use nvml_wrapper::{Device, Nvml};

use super::placeholders::Placeholders;
use super::profile::GpuProfile;
use crate::collector::gpu::{compute_instance_id, gpm_metric_ids, gpu_instance_id};

/// Between the two GPM samples: NVML refuses samples closer than 100 ms.
const GPM_SAMPLE_DISTANCE: Duration = Duration::from_millis(150);

/// Records each MIG device slot of a GPU in MIG mode; returns the GPU
/// instance ids of the devices found, in slot order.
pub(super) fn record_mig(
    device: &Device,
    index: u32,
    slots: u32,
    placeholders: &Placeholders,
    gpu: &mut GpuProfile,
) -> Vec<u32> {
    let mut instances = Vec::new();
    for slot in 0..slots {
        let mig = match device.mig_device_by_index(slot) {
            Ok(mig) => mig,
            // An empty slot: the double answers NOT_FOUND for a slot without a device.
            Err(NvmlError::NotFound) => continue,
            Err(error) => {
                gpu.fail("mig_device", Some(slot), error.into());
                continue;
            }
        };
        let answers = (|| {
            let uuid = mig.uuid().map_err(|e| ("UUID", e))?;
            let gi = gpu_instance_id(&mig).map_err(|e| ("GPU instance id", e))?;
            let ci = compute_instance_id(&mig).map_err(|e| ("compute instance id", e))?;
            let name = mig.name().map_err(|e| ("name", e))?;
            let memory = mig.memory_info().map_err(|e| ("memory", e))?;
            Ok::<_, (&str, NvmlError)>((uuid, gi, ci, name, memory))
        })();
        let (uuid, gi, ci, name, memory) = match answers {
            Ok(answers) => answers,
            Err((what, error)) => {
                // The double has no key for a MIG device's own failures.
                gpu.note(format!(
                    "MIG slot {slot}: its {what} cannot be read ({error}); not recorded"
                ));
                continue;
            }
        };
        // "NVIDIA A100-SXM4-40GB MIG 1g.5gb": the double names a MIG device
        // "<GPU name> MIG <profile>".
        let profile = name.rsplit_once(" MIG ").map_or("", |(_, p)| p);
        if profile.is_empty() || profile.contains(char::is_whitespace) {
            gpu.note(format!(
                "MIG slot {slot} is named \"{name}\", not \"<GPU name> MIG <profile>\""
            ));
        }
        let uuid = placeholders.mig_uuid(index, slot, &uuid);
        gpu.set(
            format!("mig_device.{slot}"),
            format!(
                "{uuid} gi={gi} ci={ci} profile={profile} memory_total={} memory_used={}",
                memory.total, memory.used
            ),
        );
        instances.push(gi);
    }
    instances
}

/// Takes two GPM samples of the GPU and records each metric the exporter
/// reads (a metric the driver refuses stays unset: NOT_SUPPORTED on
/// replay), then whether GPU instance `instance` can be sampled.
pub(super) fn record_gpm(
    nvml: &Nvml,
    device: &Device,
    instance: Option<u32>,
    gpu: &mut GpuProfile,
) {
    let samples = (|| {
        let first = device.gpm_sample()?;
        std::thread::sleep(GPM_SAMPLE_DISTANCE);
        let second = device.gpm_sample()?;
        Ok::<_, NvmlError>((first, second))
    })();
    let ids = gpm_metric_ids();
    match samples.and_then(|(first, second)| gpm_metrics_get(nvml, &first, &second, &ids)) {
        Ok(results) => {
            for (id, result) in ids.iter().zip(results) {
                match result {
                    Ok(metric) => gpu.set(format!("gpm_value.{}", id.as_c()), metric.value),
                    Err(NvmlError::NotSupported) => {}
                    Err(error) => gpu.note(format!(
                        "GPM metric {}: {error}; unset (NOT_SUPPORTED on replay)",
                        id.as_c()
                    )),
                }
            }
        }
        // The double's `gpm` query covers sampling too.
        Err(error) => gpu.fail("gpm", None, error.into()),
    }
    let Some(instance) = instance else {
        return;
    };
    match device.gpm_mig_sample(instance) {
        Ok(_) => gpu.set("gpm_mig", 1),
        Err(NvmlError::NotSupported) => gpu.set("gpm_mig", 0),
        Err(error) => gpu.note(format!(
            "GPM sample of GPU instance {instance}: {error}; gpm_mig not recorded"
        )),
    }
}
