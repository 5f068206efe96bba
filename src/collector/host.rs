//! Host statistics through sysinfo.

use sysinfo::{Disks, Networks, System};

use super::Collector;
use crate::snapshot::{Filesystem, HostSnapshot, NetworkInterface};

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

pub struct HostCollector {
    /// Host name, OS and kernel: read once, they change only with a reboot.
    identity: HostSnapshot,
    system: System,
    disks: Disks,
    networks: Networks,
}

impl HostCollector {
    /// `hostname` replaces the kernel's host name in `host_info`, e.g. with
    /// the Kubernetes node name inside a pod.
    pub fn new(hostname: Option<String>) -> Result<Self, sysinfo::Error> {
        let identity = HostSnapshot {
            hostname: hostname
                .or_else(|| System::host_name().ok())
                .unwrap_or_default(),
            os: System::name().unwrap_or_default(),
            os_version: System::os_version().unwrap_or_default(),
            kernel_version: System::kernel_version().unwrap_or_default(),
            ..HostSnapshot::default()
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
    type Output = HostSnapshot;
    const NAME: &'static str = "host";

    fn collect(&mut self) -> (HostSnapshot, bool) {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);

        let load = System::load_average();
        let boot_time = System::boot_time();
        let success = load.is_ok() && boot_time.is_ok();
        let load = load.unwrap_or_default();

        let mut snapshot = HostSnapshot {
            boot_time_seconds: boot_time.unwrap_or_default(),
            cpus: self.system.cpus().len(),
            cpu_usage_ratio: f64::from(self.system.global_cpu_usage()) / 100.0,
            load: [load.one, load.five, load.fifteen],
            memory_total_bytes: self.system.total_memory(),
            memory_available_bytes: self.system.available_memory(),
            memory_used_bytes: self.system.used_memory(),
            swap_total_bytes: self.system.total_swap(),
            swap_used_bytes: self.system.used_swap(),
            filesystems: self
                .disks
                .iter()
                .filter(|disk| {
                    let fstype = disk.file_system().to_string_lossy();
                    !PSEUDO_FILESYSTEMS.contains(&fstype.as_ref())
                })
                .map(|disk| Filesystem {
                    mountpoint: disk.mount_point().to_string_lossy().into_owned(),
                    device: disk.name().to_string_lossy().into_owned(),
                    fstype: disk.file_system().to_string_lossy().into_owned(),
                    size_bytes: disk.total_space(),
                    avail_bytes: disk.available_space(),
                })
                .collect(),
            networks: self
                .networks
                .iter()
                .map(|(name, data)| NetworkInterface {
                    interface: name.to_string_lossy().into_owned(),
                    receive_bytes_total: data.total_received(),
                    transmit_bytes_total: data.total_transmitted(),
                })
                .collect(),
            ..self.identity.clone()
        };
        // The same filesystem mounted twice at one place would repeat a series.
        fn labels(fs: &Filesystem) -> (&str, &str, &str) {
            (&fs.mountpoint, &fs.device, &fs.fstype)
        }
        snapshot
            .filesystems
            .sort_by(|a, b| labels(a).cmp(&labels(b)));
        snapshot.filesystems.dedup_by(|a, b| labels(a) == labels(b));
        (snapshot, success)
    }
}
