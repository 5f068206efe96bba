//! GPU processes: memory and utilisation per process (collector `processes`,
//! off by default: one series per process and GPU). It reads NVML through
//! the GPU collector's session, so NVML is initialised once, and only the
//! GPUs that collector last saw answering. Process names come from
//! `/proc/<pid>/comm`, which shows the host's processes only with the host's
//! PID namespace (`hostPID: true` in Kubernetes); pods from the process's
//! cgroup and the container runtime's state (see [`containers`]), Slurm jobs
//! from the process's cgroup too (see [`slurm`]).

pub(crate) mod containers;
mod slurm;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nvml_wrapper::Device;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use tracing::{debug, warn};

use super::status::GpuState;
use super::{CollectError, Collection, Collector, Config, Shared, Started, Wanted};
use crate::metrics::catalogue::*;
use crate::metrics::exposition::Samples;
use crate::metrics::labels::{NvmlPhase, ProcessType};
use crate::units::percent_to_ratio;
use containers::Container;

pub(super) fn start(config: &Config, shared: &Arc<Shared>) -> Started {
    Ok(Some(Box::new(ProcessCollector {
        shared: shared.clone(),
        procfs: config.procfs.clone(),
        container_state: config.container_state.clone(),
        last_seen: HashMap::new(),
        wanted: config.wanted.clone(),
        sluid_warned: false,
    })))
}

struct ProcessCollector {
    shared: Arc<Shared>,
    procfs: PathBuf,
    container_state: Vec<PathBuf>,
    /// Newest utilisation sample seen per GPU UUID, so that each collection
    /// asks NVML only for newer samples.
    last_seen: HashMap<String, u64>,
    wanted: Wanted,
    /// Whether a job cgroup named by SLUID was logged: once is enough.
    sluid_warned: bool,
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
    kind: ProcessType,
    memory: Option<u64>,
    gpu_instance: Option<u32>,
}

impl Collector for ProcessCollector {
    fn collect(&mut self, out: &mut Collection) -> Result<(), CollectError> {
        let mut metrics = vec![&PROCESS_MEMORY_USED];
        metrics.extend(UTILIZATION);
        if !self.wanted.any(&metrics) {
            return Ok(());
        }
        let Some(status) = self.shared.gpu.get() else {
            // Before the gpu collector's first collection there is nothing
            // to say yet.
            return Err(CollectError::Waiting);
        };
        let Some(nvml) = self.shared.nvml.get() else {
            return Err(CollectError::Failed(
                "the processes collector reads NVML through the gpu collector, which has no NVML session (see nvidia_nvml_up)".to_owned(),
            ));
        };
        let shared = self.shared.clone();
        let calls = shared.nvml_calls.count(NvmlPhase::Processes);
        let mut known: HashMap<u32, Known> = HashMap::new();
        for gpu in status.gpus.iter().filter(|g| g.up) {
            calls.fetch_add(1, Ordering::Relaxed);
            let Ok(device) = nvml.device_by_index(gpu.index) else {
                continue;
            };
            let processes = running(&device, calls);
            let latest = self.utilization(&device, gpu, calls);
            self.add_samples(gpu, &processes, &latest, &mut known, &mut out.samples);
        }
        Ok(())
    }
}

/// The newest utilisation sample of each process on a GPU: SM, memory,
/// encoder and decoder percentages, by PID.
type Utilization = HashMap<u32, [u32; 4]>;

impl ProcessCollector {
    /// The newest utilisation sample of each process since the previous
    /// collection; a process without one had no utilisation since then.
    fn utilization(&mut self, device: &Device, gpu: &GpuState, calls: &AtomicU64) -> Utilization {
        let last_seen = self.last_seen.get(&gpu.uuid).copied();
        let samples = match device.process_utilization_stats(last_seen) {
            Ok(samples) => {
                calls.fetch_add(2, Ordering::Relaxed);
                samples
            }
            // No process had any utilisation since `last_seen`.
            Err(NvmlError::NotFound) => {
                calls.fetch_add(1, Ordering::Relaxed);
                Vec::new()
            }
            Err(error) => {
                calls.fetch_add(1, Ordering::Relaxed);
                debug!(gpu = gpu.index, %error, "process utilisation omitted");
                Vec::new()
            }
        };
        if let Some(newest) = samples.iter().map(|s| s.timestamp).max() {
            self.last_seen.insert(gpu.uuid.clone(), newest);
        }
        let mut latest: HashMap<u32, (u64, [u32; 4])> = HashMap::new();
        for sample in &samples {
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
        latest
            .into_iter()
            .map(|(pid, (_, values))| (pid, values))
            .collect()
    }

    /// The samples of a GPU's processes; `known` describes each PID once per
    /// collection.
    fn add_samples(
        &mut self,
        gpu: &GpuState,
        processes: &[GpuProcess],
        utilization: &Utilization,
        known: &mut HashMap<u32, Known>,
        out: &mut Samples,
    ) {
        let index = gpu.index.to_string();
        // Utilisation once per process, even with compute and graphics contexts.
        let mut utilization_added = HashSet::new();
        for process in processes {
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
            let tail = [
                instance.as_str(),
                &c.namespace,
                &c.pod,
                &c.container,
                &known.hpc_job,
            ];
            let memory = process.memory.map(|m| m as f64);
            let labels = [&head[..], &[process.kind.name()], &tail[..]].concat();
            out.add_some(&PROCESS_MEMORY_USED, &labels, memory);
            if utilization_added.insert(process.pid) {
                let labels = [&head[..], &tail[..]].concat();
                let values = utilization.get(&process.pid).copied().unwrap_or_default();
                for (metric, value) in UTILIZATION.into_iter().zip(values) {
                    out.add(metric, &labels, percent_to_ratio(value));
                }
            }
        }
    }
}

/// Compute and graphics processes of a GPU. Listing costs one NVML call for
/// the count and, when there are processes, one for the list.
fn running(device: &Device, calls: &AtomicU64) -> Vec<GpuProcess> {
    let lists: [(ProcessType, Result<Vec<ProcessInfo>, NvmlError>); 2] = [
        (ProcessType::Compute, device.running_compute_processes()),
        (ProcessType::Graphics, device.running_graphics_processes()),
    ];
    let mut processes = Vec::new();
    for (kind, list) in lists {
        match list {
            Ok(list) => {
                let count = if list.is_empty() { 1 } else { 2 };
                calls.fetch_add(count, Ordering::Relaxed);
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
                calls.fetch_add(1, Ordering::Relaxed);
                debug!(kind = kind.name(), %error, "processes omitted");
            }
        }
    }
    processes
}

/// A process's name, container and Slurm job, read once per collection.
struct Known {
    name: String,
    container: Container,
    /// Empty outside a Slurm job.
    hpc_job: String,
}

impl ProcessCollector {
    /// The command name (empty when it cannot be read: another PID
    /// namespace, or the process has exited; invalid UTF-8 replaced), the
    /// container and the Slurm job of a process.
    fn describe(&mut self, pid: u32) -> Known {
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
        let hpc_job = match slurm::job(&cgroup) {
            slurm::SlurmJob::Id(id) => id.to_owned(),
            slurm::SlurmJob::None => String::new(),
            slurm::SlurmJob::Sluid(sluid) => {
                if !self.sluid_warned {
                    self.sluid_warned = true;
                    warn!(
                        collector = "processes",
                        "process {pid} is in a Slurm job cgroup named by the job's SLUID ({sluid}), not its job id (Slurm 26.05 and later): processes get an empty hpc_job; set CgroupJobIdPaths=yes in cgroup.conf for job ids"
                    );
                }
                String::new()
            }
        };
        Known {
            name,
            container,
            hpc_job,
        }
    }
}
