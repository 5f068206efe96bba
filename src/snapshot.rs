//! Plain data produced by the collectors and read by the renderer and the
//! HTTP handlers. Nothing here talks to NVML or the OS.

use std::time::{Duration, SystemTime};

/// One collector's latest result.
#[derive(Debug, Clone)]
pub struct Collected<T> {
    pub data: T,
    pub outcome: Outcome,
}

/// How a collection went: what the self-metrics and `/health` report.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// False when the source could not be read at all (e.g. NVML unavailable).
    pub success: bool,
    pub duration: Duration,
    pub finished_at: SystemTime,
    /// When a collection last succeeded, this one or an earlier one.
    pub last_success: Option<SystemTime>,
}

/// A collection together with its encoded metrics, as scrapes read it.
#[derive(Debug)]
pub struct Published<T> {
    pub collected: Collected<T>,
    /// The collector's metric families in the Prometheus text format.
    pub exposition: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuSnapshot {
    pub nvml_up: bool,
    /// Last NVML initialisation or enumeration error, for `/health`.
    pub nvml_error: Option<String>,
    pub driver: Option<DriverInfo>,
    pub gpus: Vec<GpuStats>,
}

impl GpuSnapshot {
    pub fn gpus_lost(&self) -> usize {
        self.gpus.iter().filter(|gpu| !gpu.up).count()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriverInfo {
    pub driver_version: String,
    pub nvml_version: String,
    /// CUDA driver API version as "major.minor", e.g. "12.4".
    pub cuda_driver_version: String,
}

/// Identity of a GPU: read once per NVML session, it never changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuIdentity {
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub serial: String,
}

/// Readings of one GPU, already in base units. `None` means the GPU or the
/// driver does not offer the reading; such series are omitted, never zeroed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuStats {
    pub index: u32,
    pub identity: GpuIdentity,
    /// False when the GPU is lost or answered with an unexpected error.
    pub up: bool,
    pub temperature_celsius: Option<f64>,
    pub power_usage_watts: Option<f64>,
    pub power_limit_watts: Option<f64>,
    pub energy_joules: Option<f64>,
    pub memory: Option<GpuMemory>,
    pub utilization_ratio: Option<f64>,
    pub memory_utilization_ratio: Option<f64>,
    pub encoder_utilization_ratio: Option<f64>,
    pub decoder_utilization_ratio: Option<f64>,
    pub clocks: Vec<ClockReading>,
    pub fan_speed_ratios: Vec<(u32, f64)>,
    pub performance_state: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuMemory {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub reserved_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockReading {
    pub clock: &'static str,
    pub hertz: Option<f64>,
    pub max_hertz: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSnapshot {
    pub hostname: String,
    pub os: String,
    pub os_version: String,
    pub kernel_version: String,
    pub boot_time_seconds: u64,
    pub cpus: usize,
    pub cpu_usage_ratio: f64,
    pub load: [f64; 3],
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub memory_used_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
    pub filesystems: Vec<Filesystem>,
    pub networks: Vec<NetworkInterface>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filesystem {
    pub mountpoint: String,
    pub device: String,
    pub fstype: String,
    pub size_bytes: u64,
    pub avail_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkInterface {
    pub interface: String,
    pub receive_bytes_total: u64,
    pub transmit_bytes_total: u64,
}

/// GPUs held by pods, from the kubelet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodAllocations {
    pub allocations: Vec<GpuAllocation>,
    /// Failed or timed-out calls to the kubelet since start.
    pub errors_total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuAllocation {
    /// GPU or MIG device UUID.
    pub uuid: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
}
