//! Which Slurm jobs use which GPUs (collector `hpc`), from dcgm-exporter's
//! HPC job mapping directory (`--collector.hpc.job-mapping-dir`), re-read at
//! every collection: `nvidia_gpu_job_info` per job, the join target for
//! every GPU series, and the jobs as typed facts for the dcgm view, which
//! copies each field series of a GPU once per job with an `hpc_job` label,
//! as dcgm-exporter does. The files name GPUs by NVML index; the UUIDs come
//! from the GPU collector's latest collection.
//!
//! The collector is on by default but starts only where the directory flag
//! is set, so that setting the flag is all it takes; `--no-collector.hpc`
//! keeps it off even then.

mod mapping;
mod problems;

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{debug, warn};

use super::facts::JobAssignment;
use super::{CollectError, Collection, Collector, Config, Shared, Started};
use crate::metrics::catalogue::JOB_INFO;
use problems::Problems;

pub(super) fn start(config: &Config, shared: &Arc<Shared>) -> Started {
    let Some(dir) = config.job_mapping_dir.clone() else {
        debug!("Slurm job attribution is off: no --collector.hpc.job-mapping-dir");
        return Ok(None);
    };
    if !config.enabled.contains(&"gpu") {
        warn!(
            collector = "hpc",
            "the hpc collector names GPUs through the gpu collector, which is not running: no GPU is attributed to a job"
        );
    }
    Ok(Some(Box::new(HpcCollector {
        shared: shared.clone(),
        dir,
        problems: Problems::default(),
    })))
}

struct HpcCollector {
    shared: Arc<Shared>,
    dir: PathBuf,
    /// Each unusable entry is logged once, when it becomes so.
    problems: Problems,
}

impl Collector for HpcCollector {
    fn collect(&mut self, out: &mut Collection) -> Result<(), CollectError> {
        // Whatever happens below, jobs no longer found are no longer served.
        out.jobs = Some(Vec::new());
        let Some(status) = self.shared.gpu.get() else {
            // The files name GPUs by index; without the GPU collector's
            // first collection there is no UUID to give them.
            return Err(CollectError::Waiting);
        };
        // A directory that cannot be read is a failed collection, which the
        // collection loop logs once and counts.
        let mapping = mapping::read(&self.dir).map_err(CollectError::Failed)?;
        let mut problems = mapping.problems;
        let mut jobs = Vec::new();
        for (target, (path, ids)) in mapping.jobs {
            let gpu = status.gpus.iter().find(|gpu| gpu.index == target.gpu);
            let uuid = match gpu {
                Some(gpu) if !gpu.uuid.is_empty() => gpu.uuid.as_str(),
                // Its identity was never read: nothing to join on.
                Some(_) => continue,
                // While NVML is down no GPU is known, and that is reported
                // by the GPU collector.
                None if !status.nvml_up => continue,
                None => {
                    let problem = format!(
                        "the job mapping file {} names GPU {}, which NVML does not list; skipped",
                        path.display(),
                        target.gpu
                    );
                    problems.push((path, problem));
                    continue;
                }
            };
            let index = target.gpu.to_string();
            let instance = target
                .gpu_instance
                .map(|gi| gi.to_string())
                .unwrap_or_default();
            for job in ids {
                out.samples
                    .add(&JOB_INFO, &[&index, uuid, &instance, &job], 1.0);
                jobs.push(JobAssignment {
                    uuid: uuid.to_owned(),
                    gpu_instance: instance.clone(),
                    job,
                });
            }
        }
        self.problems.note(problems);
        out.jobs = Some(jobs);
        Ok(())
    }
}
