//! The `host_*` metrics: the host's identity, CPU, memory, filesystems and network.

use super::*;

catalogue! { Host:
    HOST_INFO = Gauge "host_info"
        [free("hostname"), free("os"), free("os_version"), free("kernel_version")] unit "always 1",
        "Host name, operating system and kernel; always 1.",
        "kernel and `/etc/os-release`; `--host.name` replaces `hostname`";
    HOST_BOOT_TIME = Gauge "host_boot_time_seconds" [] unit "Unix seconds",
        "Unix time at which the host booted.",
        "`/proc/stat` `btime`";
    HOST_CPUS = Gauge "host_cpus" [] unit "CPUs",
        "Number of logical CPUs.",
        "logical CPUs";
    HOST_CPU_USAGE = Gauge "host_cpu_usage_ratio" [] unit "0–1",
        "Fraction of CPU time in use across all CPUs since the previous collection.",
        "busy share of all CPUs since the previous collection";
    HOST_LOAD1 = Gauge "host_load1" [] unit "",
        "1-minute load average.",
        "`/proc/loadavg`";
    HOST_LOAD5 = Gauge "host_load5" [] unit "",
        "5-minute load average.",
        "`/proc/loadavg`";
    HOST_LOAD15 = Gauge "host_load15" [] unit "",
        "15-minute load average.",
        "`/proc/loadavg`";
    HOST_MEMORY_TOTAL = Gauge "host_memory_total_bytes" [] unit "bytes",
        "Total physical memory.",
        "`/proc/meminfo` `MemTotal`";
    HOST_MEMORY_AVAILABLE = Gauge "host_memory_available_bytes" [] unit "bytes",
        "Memory available for new allocations without swapping.",
        "`/proc/meminfo` `MemAvailable`";
    HOST_MEMORY_USED = Gauge "host_memory_used_bytes" [] unit "bytes",
        "Memory in use.",
        "total − available";
    HOST_SWAP_TOTAL = Gauge "host_swap_total_bytes" [] unit "bytes",
        "Total swap space.",
        "`/proc/meminfo` `SwapTotal`";
    HOST_SWAP_USED = Gauge "host_swap_used_bytes" [] unit "bytes",
        "Swap space in use.",
        "`SwapTotal` − `SwapFree`";
    HOST_FILESYSTEM_SIZE = Gauge "host_filesystem_size_bytes"
        [free("mountpoint"), free("device"), free("fstype")] unit "bytes",
        "Size of the filesystem.",
        "`statvfs`; pseudo filesystems (tmpfs, overlay, proc, sysfs, …) skipped";
    HOST_FILESYSTEM_AVAIL = Gauge "host_filesystem_avail_bytes"
        [free("mountpoint"), free("device"), free("fstype")] unit "bytes",
        "Space available to unprivileged users.",
        "`statvfs` space available to unprivileged users";
    HOST_NETWORK_RECEIVE = Counter "host_network_receive_bytes_total" [free("interface")] unit "bytes",
        "Bytes received on the interface.",
        "`/proc/net/dev`";
    HOST_NETWORK_TRANSMIT = Counter "host_network_transmit_bytes_total" [free("interface")] unit "bytes",
        "Bytes transmitted on the interface.",
        "`/proc/net/dev`";
}
