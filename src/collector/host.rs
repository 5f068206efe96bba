//! Host statistics through sysinfo.

use sysinfo::{Disks, Networks, System};

use super::{Collector, Setup, Started};
use crate::catalogue::*;
use crate::exposition::Samples;

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

pub struct HostCollector {
    identity: HostIdentity,
    system: System,
    disks: Disks,
    networks: Networks,
}

pub fn start(setup: &Setup) -> Started {
    let host = HostCollector::new(setup.options.host_name.clone())
        .map_err(|e| format!("cannot read host statistics: {e}"))?;
    Ok(Some(Box::new(host)))
}

impl HostCollector {
    /// `hostname` replaces the kernel's host name in `host_info`, e.g. with
    /// the Kubernetes node name inside a pod.
    pub fn new(hostname: Option<String>) -> Result<Self, sysinfo::Error> {
        let identity = HostIdentity {
            hostname: hostname
                .or_else(|| System::host_name().ok())
                .unwrap_or_default(),
            os: System::name().unwrap_or_default(),
            os_version: System::os_version().unwrap_or_default(),
            kernel_version: System::kernel_version().unwrap_or_default(),
        };
        Ok(Self {
            identity,
            system: System::new()?,
            disks: Disks::new()?,
            networks: Networks::new()?,
        })
    }
}

impl Collector for HostCollector {
    fn collect(&mut self, out: &mut Samples) -> bool {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);

        let id = &self.identity;
        out.add(
            &HOST_INFO,
            &[&id.hostname, &id.os, &id.os_version, &id.kernel_version],
            1.0,
        );
        // A value that cannot be read is omitted, as the GPU collector does.
        let load = System::load_average().ok();
        let boot_time = System::boot_time().ok();
        out.add_some(&HOST_BOOT_TIME, &[], boot_time.map(|t| t as f64));
        out.add_some(&HOST_LOAD1, &[], load.as_ref().map(|l| l.one));
        out.add_some(&HOST_LOAD5, &[], load.as_ref().map(|l| l.five));
        out.add_some(&HOST_LOAD15, &[], load.as_ref().map(|l| l.fifteen));
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
        for (name, data) in self.networks.iter() {
            let interface = name.to_string_lossy();
            out.add(
                &HOST_NETWORK_RECEIVE,
                &[&interface],
                data.total_received() as f64,
            );
            out.add(
                &HOST_NETWORK_TRANSMIT,
                &[&interface],
                data.total_transmitted() as f64,
            );
        }
        load.is_some() && boot_time.is_some()
    }
}
