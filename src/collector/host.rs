//! Host statistics through sysinfo.

use sysinfo::{Disks, Networks, System};

use std::sync::Arc;

use super::{CollectError, Collection, Collector, Config, Shared, Started, Wanted};
use crate::metrics::catalogue::*;
use crate::metrics::exposition::Samples;

/// Filesystems that hold no user data; the same set node_exporter skips.
const PSEUDO_FILESYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
    "tmpfs",
    "ramfs",
    "nfsd",
    "shm",
];

/// Host name, OS and kernel: read once, they change only with a reboot.
struct HostIdentity {
    hostname: String,
    os: String,
    os_version: String,
    kernel_version: String,
}

pub(crate) struct HostCollector {
    identity: HostIdentity,
    system: System,
    disks: Disks,
    networks: Networks,
    /// What the output serves: sources nothing is served from are not read.
    wanted: Wanted,
}

pub(super) fn start(config: &Config, _: &Arc<Shared>) -> Started {
    let host = HostCollector::new(config.host_name.clone(), config.wanted.clone())
        .map_err(|e| format!("cannot read host statistics: {e}"))?;
    Ok(Some(Box::new(host)))
}

/// What each refresh of sysinfo is read for.
const CPU_METRICS: &[&Metric] = &[&HOST_CPU_USAGE];
const MEMORY_METRICS: &[&Metric] = &[
    &HOST_MEMORY_TOTAL,
    &HOST_MEMORY_AVAILABLE,
    &HOST_MEMORY_USED,
    &HOST_SWAP_TOTAL,
    &HOST_SWAP_USED,
];
const FILESYSTEM_METRICS: &[&Metric] = &[&HOST_FILESYSTEM_SIZE, &HOST_FILESYSTEM_AVAIL];
const NETWORK_METRICS: &[&Metric] = &[&HOST_NETWORK_RECEIVE, &HOST_NETWORK_TRANSMIT];

/// The host's name as exported: `configured` (e.g. the Kubernetes node name
/// inside a pod), else the kernel's.
pub(crate) fn hostname(configured: Option<String>) -> String {
    configured
        .or_else(|| System::host_name().ok())
        .unwrap_or_default()
}

impl HostCollector {
    /// `configured` replaces the kernel's host name in `host_info`.
    pub(crate) fn new(configured: Option<String>, wanted: Wanted) -> Result<Self, sysinfo::Error> {
        let identity = HostIdentity {
            hostname: hostname(configured),
            os: System::name().unwrap_or_default(),
            os_version: System::os_version().unwrap_or_default(),
            kernel_version: System::kernel_version().unwrap_or_default(),
        };
        Ok(Self {
            identity,
            system: System::new()?,
            disks: Disks::new()?,
            networks: Networks::new()?,
            wanted,
        })
    }
}

impl Collector for HostCollector {
    fn collect(&mut self, collection: &mut Collection) -> Result<(), CollectError> {
        let wanted = &self.wanted;
        if wanted.any(CPU_METRICS) {
            self.system.refresh_cpu_usage();
        }
        if wanted.any(MEMORY_METRICS) {
            self.system.refresh_memory();
        }
        if wanted.any(FILESYSTEM_METRICS) {
            self.disks.refresh(true);
        }
        if wanted.any(NETWORK_METRICS) {
            self.networks.refresh(true);
        }
        let out = &mut collection.samples;
        let read = self.add_system(out);
        self.add_filesystems(out);
        self.add_networks(out);
        read
    }
}

impl HostCollector {
    /// Identity, boot time, load, CPUs and memory. Fails when the load or
    /// the boot time cannot be read; that reading is then omitted, as the
    /// GPU collector omits what it cannot read.
    fn add_system(&self, out: &mut Samples) -> Result<(), CollectError> {
        let id = &self.identity;
        out.add(
            &HOST_INFO,
            &[&id.hostname, &id.os, &id.os_version, &id.kernel_version],
            1.0,
        );
        let load_average = System::load_average();
        let boot_time = System::boot_time();
        out.add_some(
            &HOST_BOOT_TIME,
            &[],
            boot_time.as_ref().ok().map(|t| *t as f64),
        );
        let load = load_average.as_ref().ok();
        out.add_some(&HOST_LOAD1, &[], load.map(|l| l.one));
        out.add_some(&HOST_LOAD5, &[], load.map(|l| l.five));
        out.add_some(&HOST_LOAD15, &[], load.map(|l| l.fifteen));
        let system = &self.system;
        for (metric, value) in [
            (&HOST_CPUS, system.cpus().len() as f64),
            (
                &HOST_CPU_USAGE,
                f64::from(system.global_cpu_usage()) / 100.0,
            ),
            (&HOST_MEMORY_TOTAL, system.total_memory() as f64),
            (&HOST_MEMORY_AVAILABLE, system.available_memory() as f64),
            (&HOST_MEMORY_USED, system.used_memory() as f64),
            (&HOST_SWAP_TOTAL, system.total_swap() as f64),
            (&HOST_SWAP_USED, system.used_swap() as f64),
        ] {
            out.add(metric, &[], value);
        }
        match (load_average, boot_time) {
            (Ok(_), Ok(_)) => Ok(()),
            (Err(e), _) | (_, Err(e)) => Err(CollectError::Failed(format!(
                "cannot read the load average or the boot time from /proc: {e}"
            ))),
        }
    }

    fn add_filesystems(&self, out: &mut Samples) {
        let mut filesystems: Vec<_> = self
            .disks
            .iter()
            .filter(|disk| {
                let fstype = disk.file_system().to_string_lossy();
                !PSEUDO_FILESYSTEMS.contains(&fstype.as_ref())
            })
            .map(|disk| {
                let labels = [
                    disk.mount_point().to_string_lossy().into_owned(),
                    disk.name().to_string_lossy().into_owned(),
                    disk.file_system().to_string_lossy().into_owned(),
                ];
                (labels, disk.total_space(), disk.available_space())
            })
            .collect();
        // The same filesystem mounted twice at one place would repeat a series.
        filesystems.sort_by(|a, b| a.0.cmp(&b.0));
        filesystems.dedup_by(|a, b| a.0 == b.0);
        for (labels, size, avail) in &filesystems {
            let labels = labels.each_ref().map(String::as_str);
            out.add(&HOST_FILESYSTEM_SIZE, &labels, *size as f64);
            out.add(&HOST_FILESYSTEM_AVAIL, &labels, *avail as f64);
        }
    }

    fn add_networks(&self, out: &mut Samples) {
        for (name, data) in self.networks.iter() {
            let interface = name.to_string_lossy();
            let received = data.total_received() as f64;
            out.add(&HOST_NETWORK_RECEIVE, &[&interface], received);
            let transmitted = data.total_transmitted() as f64;
            out.add(&HOST_NETWORK_TRANSMIT, &[&interface], transmitted);
        }
    }
}
