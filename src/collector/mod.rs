//! Collectors read one source each into samples of the catalogue and, where
//! other parts join on it, typed facts (GPU identities, pod allocations).
//! Each runs on its own OS thread (see `publish`), so a slow or hung NVML
//! call never stalls another collector, the async runtime or a scrape.
//! Adding a collector is one module and one line in [`COLLECTORS`]; nothing
//! here knows of flags, output formats or HTTP.

pub(crate) mod facts;
pub(crate) mod gpu;
pub(crate) mod host;
pub(crate) mod hpc;
pub(crate) mod pods;
pub(crate) mod processes;
pub(crate) mod shared;
pub(crate) mod status;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::catalogue::{Metric, Section};
use crate::metrics::exposition::Samples;
use facts::{GpuAllocation, GpuInventory, JobAssignment};
pub(crate) use shared::{Failures, Latest, Shared};

/// A source of metrics.
pub(crate) trait Collector: Send {
    /// Reads the source once into `out`. Fails, saying what failed and what
    /// to do, when the source could not be read; `out` may still hold
    /// samples that say so (e.g. `nvidia_nvml_up 0`).
    fn collect(&mut self, out: &mut Collection) -> Result<(), CollectError>;
}

/// Why a collection did not read its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CollectError {
    /// The source failed; the message says what failed and what to do. The
    /// collection loop logs each distinct message once and counts it.
    Failed(String),
    /// Nothing to read yet: the collector works on what another collector
    /// found, which has not finished its first collection. Neither logged
    /// nor counted.
    Waiting,
}

/// What one collection produced.
#[derive(Debug, Default)]
pub(crate) struct Collection {
    pub(crate) samples: Samples,
    /// From the GPU collector: the driver, the GPUs and their MIG devices.
    pub(crate) gpus: Option<GpuInventory>,
    /// From the pods collector: which containers hold which GPUs.
    pub(crate) allocations: Option<Vec<GpuAllocation>>,
    /// From the hpc collector: which Slurm jobs use which GPUs.
    pub(crate) jobs: Option<Vec<JobAssignment>>,
}

/// The metrics the output serves, so that a collector can skip a read all
/// of whose metrics are left out (`--metrics.exclude`, or a format that
/// serves few). The exporter's own metrics are always wanted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Wanted(Option<Arc<HashSet<&'static str>>>);

impl Wanted {
    /// Every metric.
    pub(crate) fn all() -> Self {
        Self(None)
    }

    /// The metrics named.
    pub(crate) fn only(names: impl IntoIterator<Item = &'static str>) -> Self {
        Self(Some(Arc::new(names.into_iter().collect())))
    }

    /// Whether any of `metrics` is wanted: a read that yields them is worth its call.
    pub(crate) fn any(&self, metrics: &[&Metric]) -> bool {
        metrics.iter().any(|m| self.wants(m))
    }

    pub(crate) fn wants(&self, metric: &Metric) -> bool {
        metric.section == Section::Exporter
            || self.0.as_ref().is_none_or(|w| w.contains(metric.name))
    }
}

/// What collectors are configured with: plain values, whatever set them.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Names of the collectors to run.
    pub(crate) enabled: Vec<&'static str>,
    /// The metrics the output serves.
    pub(crate) wanted: Wanted,
    pub(crate) interval: Duration,
    /// Where `libnvidia-ml.so.1` is loaded from; the loader's search otherwise.
    pub(crate) nvml_library: Option<PathBuf>,
    /// How much of NVLink the GPU collector reads and serves.
    pub(crate) nvlink: gpu::NvlinkDetail,
    /// Replaces the kernel's host name in `host_info`.
    pub(crate) host_name: Option<String>,
    /// The kubelet's pod-resources socket.
    pub(crate) pod_resources_socket: PathBuf,
    /// How the pods collector resolves devices of DRA claims.
    pub(crate) dra: pods::DraConfig,
    /// The proc filesystem the processes collector reads.
    pub(crate) procfs: PathBuf,
    /// Container runtime state directories, to name a process's pod.
    pub(crate) container_state: Vec<PathBuf>,
    /// dcgm-exporter's HPC job mapping directory; the hpc collector runs
    /// only when it is set.
    pub(crate) job_mapping_dir: Option<PathBuf>,
}

/// A collector: its name (for `--collector.<name>`, the `collector` label and
/// `collect[]`), whether it runs unless told otherwise, and how it starts.
/// `start` returns `None` when its source is absent on this machine (e.g. no
/// kubelet socket), and an error that stops the exporter when it cannot start.
pub(crate) struct Registration {
    pub(crate) name: &'static str,
    pub(crate) enabled_by_default: bool,
    pub(crate) help: &'static str,
    pub(crate) start: fn(&Config, &Arc<Shared>) -> Started,
}

pub(crate) type Started = Result<Option<Box<dyn Collector>>, String>;

/// A started collector and its name.
pub(crate) type Named = (&'static str, Box<dyn Collector>);

/// Every collector, in the order of the exposition.
pub(crate) const COLLECTORS: &[Registration] = &[
    Registration {
        name: "gpu",
        enabled_by_default: true,
        help: "NVIDIA GPUs through NVML",
        start: gpu::start,
    },
    Registration {
        name: "host",
        enabled_by_default: true,
        help: "the host's CPU, memory, filesystems and network",
        start: host::start,
    },
    Registration {
        name: "processes",
        enabled_by_default: false,
        help: "each GPU process's memory and utilisation (many series: off by default)",
        start: processes::start,
    },
    Registration {
        name: "pods",
        enabled_by_default: true,
        help: "which pods hold which GPUs, from the kubelet (where its socket exists)",
        start: pods::start,
    },
    Registration {
        name: "hpc",
        enabled_by_default: true,
        help: "which Slurm jobs use which GPUs, from --collector.hpc.job-mapping-dir (where it is set)",
        start: hpc::start,
    },
];

/// Starts the enabled collectors whose source is present, in the order of
/// [`COLLECTORS`].
pub(crate) fn start(config: &Config, shared: &Arc<Shared>) -> Result<Vec<Named>, String> {
    let mut started = Vec::new();
    for registration in COLLECTORS {
        if !config.enabled.contains(&registration.name) {
            continue;
        }
        if let Some(collector) = (registration.start)(config, shared)? {
            started.push((registration.name, collector));
        }
    }
    Ok(started)
}
