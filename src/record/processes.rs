//! The processes on a GPU (`process.NAME`): what the processes collector
//! reads of them. Only NVML's answers are recorded: PIDs, memory, MIG
//! instance and utilisation, never a process's name or command line.

use std::collections::HashMap;

use nvml_wrapper::Device;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;

use super::profile::{GpuProfile, Profile};

/// NVML_VALUE_NOT_AVAILABLE, what NVML reports for memory it does not know.
const NOT_AVAILABLE: u64 = u64::MAX;

/// Records the GPU's compute and graphics processes with their utilisation.
pub(super) fn record(device: &Device, gpu: &mut GpuProfile, profile: &mut Profile) {
    let compute = gpu.answer(
        "compute_processes",
        None,
        device.running_compute_processes(),
    );
    let graphics = gpu.answer(
        "graphics_processes",
        None,
        device.running_graphics_processes(),
    );
    let samples = match device.process_utilization_stats(None) {
        Ok(samples) => samples,
        // No process had any utilisation: the double answers the same when
        // none of its processes has any.
        Err(NvmlError::NotFound) => Vec::new(),
        Err(error) => {
            gpu.fail("process_utilization", None, error.into());
            Vec::new()
        }
    };
    // The newest sample of each process.
    let mut utilization: HashMap<u32, (u64, [u32; 4])> = HashMap::new();
    for s in samples {
        let values = [s.sm_util, s.mem_util, s.enc_util, s.dec_util];
        let entry = utilization.entry(s.pid).or_insert((s.timestamp, values));
        if entry.0 < s.timestamp {
            *entry = (s.timestamp, values);
        }
    }
    let processes = [("compute", compute), ("graphics", graphics)];
    for (kind, list) in processes {
        for process in list.unwrap_or_default() {
            let line = describe(gpu.index, kind, &process, utilization.get(&process.pid));
            profile.process(format!("g{}_{kind}_{}", gpu.index, process.pid), line);
        }
    }
}

/// The double's process value: "gpu=0 pid=4242 type=compute memory=NUM gi=1 ci=0 sm=50 mem=20 enc=0 dec=0".
fn describe(
    gpu: u32,
    kind: &str,
    process: &ProcessInfo,
    utilization: Option<&(u64, [u32; 4])>,
) -> String {
    let memory = match process.used_gpu_memory {
        UsedGpuMemory::Used(bytes) => bytes,
        UsedGpuMemory::Unavailable => NOT_AVAILABLE,
    };
    let mut line = format!("gpu={gpu} pid={} type={kind} memory={memory}", process.pid);
    if let Some(gi) = process.gpu_instance_id {
        line.push_str(&format!(" gi={gi}"));
    }
    if let Some(ci) = process.compute_instance_id {
        line.push_str(&format!(" ci={ci}"));
    }
    if let Some((_, [sm, mem, enc, dec])) = utilization {
        line.push_str(&format!(" sm={sm} mem={mem} enc={enc} dec={dec}"));
    }
    line
}
