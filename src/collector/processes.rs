//! GPU processes: memory and utilisation per process (collector `processes`,
//! off by default: one series per process and GPU). It reads NVML through
//! the GPU collector's session, so NVML is initialised once, and only the
//! GPUs that collector last saw answering. Process names come from
//! `/proc/<pid>/comm`, which shows the host's processes only with the host's
//! PID namespace (`hostPID: true` in Kubernetes); pods from the process's
//! cgroup and the container runtime's state (see [`super::containers`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use nvml_wrapper::Device;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use tracing::{debug, warn};

use super::containers::{self, Container};
use super::gpu::Phase;
use super::{Collector, Setup, Shared, Started};
use crate::catalogue::*;
use crate::exposition::Samples;
use crate::units::percent_to_ratio;

pub fn start(setup: &Setup) -> Started {
    Ok(Some(Box::new(ProcessCollector {
        shared: setup.shared.clone(),
        procfs: setup.options.procfs.clone(),
        container_state: setup.options.container_state.clone(),
        last_seen: HashMap::new(),
        warned: false,
    })))
}

pub struct ProcessCollector {
    shared: Arc<Shared>,
    procfs: PathBuf,
    container_state: Vec<PathBuf>,
    /// Newest utilisation sample seen per GPU UUID, so that each collection
    /// asks NVML only for newer samples.
    last_seen: HashMap<String, u64>,
    warned: bool,
}

/// In the order of NVML's utilisation sample: SM, memory, encoder, decoder.
const UTILIZATION: [&Metric; 4] = [
    &PROCESS_SM_UTILIZATION,
    &PROCESS_MEMORY_UTILIZATION,
    &PROCESS_ENCODER_UTILIZATION,
    &PROCESS_DECODER_UTILIZATION,
];

/// One process on one GPU, as exported.
struct GpuProcess {
    pid: u32,
    kind: &'static str,
    memory: Option<u64>,
    gpu_instance: Option<u32>,
}

impl Collector for ProcessCollector {
    fn collect(&mut self, out: &mut Samples) -> bool {
        let (Some(nvml), Some(status)) = (self.shared.nvml.get(), self.shared.gpu.get()) else {
            // Before the gpu collector's first collection there is nothing
            // to say yet; after it, NVML is unavailable or that collector off.
            if !self.warned && self.shared.gpu.get().is_some() {
                warn!(
                    "the processes collector reads NVML through the gpu collector, which has no NVML session (see nvidia_nvml_up)"
                );
                self.warned = true;
            }
            return false;
        };
        let calls = self.shared.nvml_calls.count(Phase::Processes);
        let mut known: HashMap<u32, Known> = HashMap::new();
        for gpu in status.gpus.iter().filter(|g| g.up) {
            calls.fetch_add(1, Ordering::Relaxed);
            let Ok(device) = nvml.device_by_index(gpu.index) else {
                continue;
            };
            let mut count = |n| calls.fetch_add(n, Ordering::Relaxed);
            let processes = running(&device, &mut count);
            let last_seen = self.last_seen.get(&gpu.uuid).copied();
            let utilization = match device.process_utilization_stats(last_seen) {
                Ok(samples) => {
                    count(2);
                    samples
                }
                // No process had any utilisation since `last_seen`.
                Err(NvmlError::NotFound) => {
                    count(1);
                    Vec::new()
                }
                Err(error) => {
                    count(1);
                    debug!(gpu = gpu.index, %error, "process utilisation omitted");
                    Vec::new()
                }
            };
            if let Some(newest) = utilization.iter().map(|s| s.timestamp).max() {
                self.last_seen.insert(gpu.uuid.clone(), newest);
            }
            // The newest sample of each process; a process without one had
            // no utilisation since the previous collection.
            let mut latest: HashMap<u32, (u64, [u32; 4])> = HashMap::new();
            for sample in &utilization {
                let values = [
                    sample.sm_util,
                    sample.mem_util,
                    sample.enc_util,
                    sample.dec_util,
                ];
                let entry = latest
                    .entry(sample.pid)
                    .or_insert((sample.timestamp, values));
                if entry.0 < sample.timestamp {
                    *entry = (sample.timestamp, values);
                }
            }
            let index = gpu.index.to_string();
            // Utilisation once per process, even with compute and graphics contexts.
            let mut utilization_added = HashSet::new();
            for process in &processes {
                let known = known
                    .entry(process.pid)
                    .or_insert_with(|| self.describe(process.pid));
                let pid = process.pid.to_string();
                let instance = process
                    .gpu_instance
                    .map(|gi| gi.to_string())
                    .unwrap_or_default();
                let c = &known.container;
                let head = [index.as_str(), gpu.uuid.as_str(), &pid, &known.name];
                let tail = [instance.as_str(), &c.namespace, &c.pod, &c.container];
                let memory = process.memory.map(|m| m as f64);
                let labels = [&head[..], &[process.kind], &tail[..]].concat();
                out.add_some(&PROCESS_MEMORY_USED, &labels, memory);
                if utilization_added.insert(process.pid) {
                    let labels = [head, tail].concat();
                    let values = latest.get(&process.pid).map(|l| l.1).unwrap_or_default();
                    for (metric, value) in UTILIZATION.into_iter().zip(values) {
                        out.add(metric, &labels, percent_to_ratio(value));
                    }
                }
            }
        }
        true
    }
}

/// Compute and graphics processes of a GPU. Listing costs one NVML call for
/// the count and, when there are processes, one for the list.
fn running(device: &Device, count: &mut impl FnMut(u64) -> u64) -> Vec<GpuProcess> {
    let lists: [(&str, Result<Vec<ProcessInfo>, NvmlError>); 2] = [
        ("compute", device.running_compute_processes()),
        ("graphics", device.running_graphics_processes()),
    ];
    let mut processes = Vec::new();
    for (kind, list) in lists {
        match list {
            Ok(list) => {
                count(if list.is_empty() { 1 } else { 2 });
                processes.extend(list.into_iter().map(|p| GpuProcess {
                    pid: p.pid,
                    kind,
                    memory: match p.used_gpu_memory {
                        UsedGpuMemory::Used(bytes) => Some(bytes),
                        UsedGpuMemory::Unavailable => None,
                    },
                    gpu_instance: p.gpu_instance_id,
                }));
            }
            Err(error) => {
                count(1);
                debug!(kind, %error, "processes omitted");
            }
        }
    }
    processes
}

/// A process's name and container, read once per collection.
struct Known {
    name: String,
    container: Container,
}

impl ProcessCollector {
    /// The command name (empty when it cannot be read: another PID
    /// namespace, or the process has exited; invalid UTF-8 replaced) and the
    /// container of a process.
    fn describe(&self, pid: u32) -> Known {
        let dir = self.procfs.join(pid.to_string());
        let name = std::fs::read(dir.join("comm"))
            .map(|bytes| {
                let name = String::from_utf8_lossy(&bytes);
                name.strip_suffix('\n').unwrap_or(&name).to_owned()
            })
            .unwrap_or_default();
        let cgroup = std::fs::read_to_string(dir.join("cgroup")).unwrap_or_default();
        let container = containers::container_id(&cgroup)
            .and_then(|id| containers::lookup(&self.container_state, id))
            .unwrap_or_default();
        Known { name, container }
    }
}
