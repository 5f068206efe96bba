//! Every metric the exporter serves, defined once: name, type, unit, labels
//! (with their values where the set is fixed), help and source. Collectors
//! add samples of these definitions, the renderer turns them into text, and
//! `docs/metrics.md` is generated from this table (a test keeps it in step).
//! Adding a reading is one entry here, one read in a collector, one test.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// A label; `values` lists every value it can take, or is empty when free.
#[derive(Debug)]
pub struct Label {
    pub name: &'static str,
    pub values: &'static [&'static str],
}

#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: &'static str,
    pub labels: &'static [Label],
    pub help: &'static str,
    /// Where the value comes from, for the docs.
    pub source: &'static str,
}

const fn free(name: &'static str) -> Label {
    Label { name, values: &[] }
}

pub const GPU: Label = free("gpu");
pub const UUID: Label = free("uuid");
const COLLECTOR: Label = free("collector");

/// Serious XIDs: every watched GPU exports these at 0 from the start, so that
/// `increase()` sees their first occurrence. Others appear when they occur.
pub const SERIOUS_XIDS: &[u64] = &[48, 62, 64, 74, 79, 92, 94, 95, 119, 120];

/// The XID of a GPU that has fallen off the bus.
pub const XID_FELL_OFF_THE_BUS: u64 = 79;

pub const CLOCKS: &[&str] = &["graphics", "sm", "memory", "video"];
pub const ECC_EVENT_TYPES: &[&str] = &["single_bit", "double_bit"];
pub const ECC_ERROR_TYPES: &[&str] = &["corrected", "uncorrected"];
pub const RETIREMENT_CAUSES: &[&str] = &["single_bit_ecc", "double_bit_ecc"];
pub const REMAP_TYPES: &[&str] = &["correctable", "uncorrectable"];
pub const CLOCK_EVENT_REASONS: &[&str] = &[
    "gpu_idle",
    "applications_clocks_setting",
    "sw_power_cap",
    "hw_slowdown",
    "sync_boost",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "display_clock_setting",
];
pub const THROTTLE_REASONS: &[&str] = &[
    "power",
    "thermal",
    "sync_boost",
    "board_limit",
    "low_utilization",
    "reliability",
    "application_clocks",
    "base_clocks",
];
pub const THRESHOLDS: &[&str] = &["shutdown", "slowdown", "gpu_max", "memory_max"];
pub const NVLINK_ERROR_TYPES: &[&str] = &["crc_flit", "crc_data", "replay", "recovery"];
/// In the order of NVML's `nvmlDeviceGpuRecoveryAction_t`.
pub const RECOVERY_ACTIONS: &[&str] = &[
    "none",
    "gpu_reset",
    "node_reboot",
    "drain_p2p",
    "drain_and_reset",
];
pub const NVML_CALL_PHASES: &[&str] = &["init", "discovery", "collection", "events", "processes"];
pub const PROCESS_TYPES: &[&str] = &["compute", "graphics"];

const GPU_INSTANCE: Label = free("gpu_instance_id");
const PID: Label = free("pid");
const PROCESS: Label = free("process");
const NAMESPACE: Label = free("namespace");
const POD: Label = free("pod");
const CONTAINER: Label = free("container");

/// Defines each metric as a constant and lists them all in [`ALL`].
macro_rules! catalogue {
    ($($id:ident = $kind:ident $name:literal [$($label:expr),*] unit $unit:literal,
        $help:literal, $source:literal;)*) => {
        $(pub const $id: Metric = Metric {
            name: $name,
            kind: Kind::$kind,
            unit: $unit,
            labels: &[$($label),*],
            help: $help,
            source: $source,
        };)*
        /// Every metric, in the order of the docs.
        pub const ALL: &[&Metric] = &[$(&$id),*];
    };
}

const fn values(name: &'static str, values: &'static [&'static str]) -> Label {
    Label { name, values }
}

catalogue! {
    NVML_UP = Gauge "nvidia_nvml_up" [] unit "1/0",
        "Whether NVML is initialised and answering (1) or not (0).",
        "`nvmlInit_v2`, `nvmlDeviceGetCount_v2` succeed";
    DRIVER_INFO = Gauge "nvidia_driver_info"
        [free("driver_version"), free("nvml_version"), free("cuda_driver_version")] unit "always 1",
        "Versions of the NVIDIA driver, NVML and the CUDA driver API; always 1.",
        "`nvmlSystemGetDriverVersion`, `nvmlSystemGetNVMLVersion`, `nvmlSystemGetCudaDriverVersion_v2`";
    GPUS = Gauge "nvidia_gpus" [] unit "GPUs",
        "Number of GPUs NVML reports.",
        "`nvmlDeviceGetCount_v2`";
    GPU_INFO = Gauge "nvidia_gpu_info"
        [GPU, UUID, free("name"), free("pci_bus_id"), free("serial")] unit "always 1",
        "Identity of a GPU; always 1. Join on uuid for the name, PCI bus ID and serial.",
        "`nvmlDeviceGetUUID`, `nvmlDeviceGetName`, `nvmlDeviceGetPciInfo_v3`, `nvmlDeviceGetSerial`, once per NVML initialisation; also for a lost GPU whose identity was read before";
    GPU_UP = Gauge "nvidia_gpu_up" [GPU, UUID] unit "1/0",
        "Whether the GPU answers (1) or is lost or failing (0).",
        "0 after `GPU_IS_LOST`, `UNKNOWN`, `RESET_REQUIRED` or similar, or after XID 79 (fell off the bus); a GPU that is down reports only this, `nvidia_gpu_info` and its event counters";
    TEMPERATURE = Gauge "nvidia_gpu_temperature_celsius" [GPU, UUID] unit "°C",
        "GPU core temperature in degrees Celsius.",
        "`nvmlDeviceGetTemperature(NVML_TEMPERATURE_GPU)`";
    MEMORY_TEMPERATURE = Gauge "nvidia_gpu_memory_temperature_celsius" [GPU, UUID] unit "°C",
        "Temperature of the GPU's memory (HBM) in degrees Celsius.",
        "field `NVML_FI_DEV_MEMORY_TEMP`";
    TEMPERATURE_THRESHOLD = Gauge "nvidia_gpu_temperature_threshold_celsius"
        [GPU, UUID, values("threshold", THRESHOLDS)] unit "°C",
        "Temperature at which the GPU shuts down, slows down, or which the GPU core or memory should stay below.",
        "`nvmlDeviceGetTemperatureThreshold`, once per NVML initialisation";
    POWER_USAGE = Gauge "nvidia_gpu_power_usage_watts" [GPU, UUID] unit "W",
        "Power drawn by the GPU and its memory.",
        "`nvmlDeviceGetPowerUsage` (mW / 1000)";
    POWER_LIMIT = Gauge "nvidia_gpu_power_limit_watts" [GPU, UUID] unit "W",
        "Power limit the driver currently enforces.",
        "`nvmlDeviceGetEnforcedPowerLimit` (mW / 1000)";
    ENERGY = Counter "nvidia_gpu_energy_consumption_joules_total" [GPU, UUID] unit "J",
        "Energy the GPU consumed since the driver was last loaded.",
        "field `NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION` (mJ / 1000)";
    MEMORY_TOTAL = Gauge "nvidia_gpu_memory_total_bytes" [GPU, UUID] unit "bytes",
        "Installed frame buffer memory.",
        "`nvmlDeviceGetMemoryInfo_v2` `total`";
    MEMORY_USED = Gauge "nvidia_gpu_memory_used_bytes" [GPU, UUID] unit "bytes",
        "Frame buffer memory allocated by processes.",
        "`nvmlDeviceGetMemoryInfo_v2` `used`";
    MEMORY_FREE = Gauge "nvidia_gpu_memory_free_bytes" [GPU, UUID] unit "bytes",
        "Frame buffer memory not allocated.",
        "`nvmlDeviceGetMemoryInfo_v2` `free`";
    MEMORY_RESERVED = Gauge "nvidia_gpu_memory_reserved_bytes" [GPU, UUID] unit "bytes",
        "Frame buffer memory reserved by the driver and firmware.",
        "`nvmlDeviceGetMemoryInfo_v2` `reserved`";
    UTILIZATION = Gauge "nvidia_gpu_utilization_ratio" [GPU, UUID] unit "0–1",
        "Fraction of the last sample period in which a kernel ran on the GPU.",
        "`nvmlDeviceGetUtilizationRates` `gpu` (% / 100)";
    MEMORY_UTILIZATION = Gauge "nvidia_gpu_memory_utilization_ratio" [GPU, UUID] unit "0–1",
        "Fraction of the last sample period in which device memory was read or written.",
        "`nvmlDeviceGetUtilizationRates` `memory` (% / 100)";
    ENCODER_UTILIZATION = Gauge "nvidia_gpu_encoder_utilization_ratio" [GPU, UUID] unit "0–1",
        "Utilization of the video encoder, 0 to 1.",
        "`nvmlDeviceGetEncoderUtilization` (% / 100)";
    DECODER_UTILIZATION = Gauge "nvidia_gpu_decoder_utilization_ratio" [GPU, UUID] unit "0–1",
        "Utilization of the video decoder, 0 to 1.",
        "`nvmlDeviceGetDecoderUtilization` (% / 100)";
    CLOCK = Gauge "nvidia_gpu_clock_hertz" [GPU, UUID, values("clock", CLOCKS)] unit "Hz",
        "Current clock frequency of a clock domain.",
        "`nvmlDeviceGetClockInfo` (MHz × 10⁶)";
    CLOCK_MAX = Gauge "nvidia_gpu_clock_max_hertz" [GPU, UUID, values("clock", CLOCKS)] unit "Hz",
        "Maximum clock frequency of a clock domain.",
        "`nvmlDeviceGetMaxClockInfo` (MHz × 10⁶), once per NVML initialisation";
    CLOCK_EVENT_ACTIVE = Gauge "nvidia_gpu_clock_event_active"
        [GPU, UUID, values("reason", CLOCK_EVENT_REASONS)] unit "1/0",
        "Whether a reason currently holds the GPU's clocks down (1) or not (0).",
        "`nvmlDeviceGetCurrentClocksThrottleReasons`";
    THROTTLED = Counter "nvidia_gpu_throttled_seconds_total"
        [GPU, UUID, values("reason", THROTTLE_REASONS)] unit "s",
        "Time the GPU's clocks were held below the requested clocks for a reason, since the driver was loaded.",
        "fields `NVML_FI_DEV_PERF_POLICY_*` (the violation counters, ns / 10⁹)";
    FAN_SPEED = Gauge "nvidia_gpu_fan_speed_ratio" [GPU, UUID, free("fan")] unit "0–1",
        "Intended fan speed as a fraction of its maximum, 0 to 1.",
        "`nvmlDeviceGetNumFans` (once per NVML initialisation), `nvmlDeviceGetFanSpeed_v2` (% / 100)";
    PERFORMANCE_STATE = Gauge "nvidia_gpu_performance_state" [GPU, UUID] unit "0 (P0) … 15 (P15)",
        "Performance state, from 0 (P0, fastest) to 15 (P15, slowest).",
        "`nvmlDeviceGetPerformanceState`; omitted while unknown";
    PCIE_LINK_GENERATION = Gauge "nvidia_gpu_pcie_link_generation" [GPU, UUID] unit "generation",
        "Current PCIe link generation; GPUs lower it when idle to save power.",
        "`nvmlDeviceGetCurrPcieLinkGeneration`";
    PCIE_LINK_MAX_GENERATION = Gauge "nvidia_gpu_pcie_link_max_generation" [GPU, UUID] unit "generation",
        "Highest PCIe link generation the GPU and its slot support.",
        "`nvmlDeviceGetMaxPcieLinkGeneration`, once per NVML initialisation";
    PCIE_LINK_WIDTH = Gauge "nvidia_gpu_pcie_link_width" [GPU, UUID] unit "lanes",
        "Current PCIe link width.",
        "`nvmlDeviceGetCurrPcieLinkWidth`";
    PCIE_LINK_MAX_WIDTH = Gauge "nvidia_gpu_pcie_link_max_width" [GPU, UUID] unit "lanes",
        "Widest PCIe link the GPU and its slot support.",
        "`nvmlDeviceGetMaxPcieLinkWidth`, once per NVML initialisation";
    PCIE_REPLAY_ERRORS = Counter "nvidia_gpu_pcie_replay_errors_total" [GPU, UUID] unit "replays",
        "PCIe replays (retransmissions after link errors) since the driver was loaded.",
        "field `NVML_FI_DEV_PCIE_REPLAY_COUNTER`";
    XID_ERRORS = Counter "nvidia_gpu_xid_errors_total" [GPU, UUID, free("xid")] unit "events",
        "Critical XID errors the driver reported since the exporter started, by XID.",
        "NVML events `nvmlEventTypeXidCriticalError` (`nvmlEventSetWait_v2`); 48, 62, 64, 74, 79, 92, 94, 95, 119 and 120 are exported at 0 from the start for GPUs whose events are watched";
    LAST_XID_TIMESTAMP = Gauge "nvidia_gpu_last_xid_timestamp_seconds" [GPU, UUID] unit "Unix seconds",
        "When the exporter received the GPU's last critical XID error.",
        "NVML events; absent until the first XID";
    ECC_EVENTS = Counter "nvidia_gpu_ecc_events_total"
        [GPU, UUID, values("type", ECC_EVENT_TYPES)] unit "events",
        "ECC error events the driver reported since the exporter started.",
        "NVML events `nvmlEventTypeSingleBitEccError`, `nvmlEventTypeDoubleBitEccError`, where the GPU supports them";
    ECC_ENABLED = Gauge "nvidia_gpu_ecc_enabled" [GPU, UUID] unit "1/0",
        "Whether ECC is currently enabled on the GPU's memory.",
        "`nvmlDeviceGetEccMode` current mode, once per NVML initialisation";
    ECC_ERRORS = Counter "nvidia_gpu_ecc_errors_total"
        [GPU, UUID, values("type", ECC_ERROR_TYPES)] unit "errors",
        "Memory ECC errors since the driver was loaded.",
        "fields `NVML_FI_DEV_ECC_SBE_VOL_TOTAL`, `NVML_FI_DEV_ECC_DBE_VOL_TOTAL`";
    ECC_ERRORS_AGGREGATE = Counter "nvidia_gpu_ecc_errors_aggregate_total"
        [GPU, UUID, values("type", ECC_ERROR_TYPES)] unit "errors",
        "Memory ECC errors over the GPU's lifetime.",
        "fields `NVML_FI_DEV_ECC_SBE_AGG_TOTAL`, `NVML_FI_DEV_ECC_DBE_AGG_TOTAL`";
    RETIRED_PAGES = Gauge "nvidia_gpu_retired_pages"
        [GPU, UUID, values("cause", RETIREMENT_CAUSES)] unit "pages",
        "Memory pages retired because of ECC errors (GPUs before Ampere).",
        "fields `NVML_FI_DEV_RETIRED_SBE`, `NVML_FI_DEV_RETIRED_DBE`";
    RETIRED_PAGES_PENDING = Gauge "nvidia_gpu_retired_pages_pending" [GPU, UUID] unit "1/0",
        "Whether pages wait to be retired at the next driver reload (GPUs before Ampere).",
        "field `NVML_FI_DEV_RETIRED_PENDING`";
    REMAPPED_ROWS = Counter "nvidia_gpu_remapped_rows_total"
        [GPU, UUID, values("type", REMAP_TYPES)] unit "rows",
        "Memory rows remapped because of correctable or uncorrectable errors (Ampere and later).",
        "fields `NVML_FI_DEV_REMAPPED_COR`, `NVML_FI_DEV_REMAPPED_UNC`";
    ROW_REMAP_PENDING = Gauge "nvidia_gpu_row_remap_pending" [GPU, UUID] unit "1/0",
        "Whether a row remap waits for a GPU reset (Ampere and later).",
        "field `NVML_FI_DEV_REMAPPED_PENDING`";
    ROW_REMAP_FAILED = Gauge "nvidia_gpu_row_remap_failed" [GPU, UUID] unit "1/0",
        "Whether a row remap failed; the GPU needs service (Ampere and later).",
        "field `NVML_FI_DEV_REMAPPED_FAILURE`";
    NVLINK_UP = Gauge "nvidia_gpu_nvlink_up" [GPU, UUID, free("link")] unit "1/0",
        "Whether an NVLink link is active (1) or down (0).",
        "field `NVML_FI_DEV_NVLINK_GET_STATE` per link; links counted by `NVML_FI_DEV_NVLINK_LINK_COUNT` once per NVML initialisation; GPUs without links have none";
    NVLINK_ERRORS = Counter "nvidia_gpu_nvlink_errors_total"
        [GPU, UUID, free("link"), values("type", NVLINK_ERROR_TYPES)] unit "errors",
        "NVLink errors of a link since the driver was loaded.",
        "fields per link: `NVML_FI_DEV_NVLINK_ERROR_DL_CRC` (`crc_flit`), `NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L0…L11` (`crc_data`, links 0–11), `NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY`, `NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY`";
    RECOVERY_ACTION = Gauge "nvidia_gpu_recovery_action"
        [GPU, UUID, values("action", RECOVERY_ACTIONS)] unit "1/0",
        "The recovery the driver asks for: exactly one action is 1.",
        "field `NVML_FI_DEV_GET_GPU_RECOVERY_ACTION` (drivers from R570)";
    MIG_MODE_ENABLED = Gauge "nvidia_gpu_mig_mode_enabled" [GPU, UUID] unit "1/0",
        "Whether the GPU is in MIG mode (partitioned into MIG devices).",
        "`nvmlDeviceGetMigMode` current mode";
    MIG_INFO = Gauge "nvidia_gpu_mig_info"
        [GPU, UUID, free("mig_uuid"), GPU_INSTANCE, free("compute_instance_id"), free("profile")] unit "always 1",
        "A MIG device of the GPU; always 1. Join on mig_uuid with nvidia_gpu_allocation_info.",
        "`nvmlDeviceGetMigDeviceHandleByIndex` (empty slots skipped), `nvmlDeviceGetUUID`, `nvmlDeviceGetGpuInstanceId`, `nvmlDeviceGetComputeInstanceId`; `profile` from the MIG device's name (e.g. `1g.10gb`)";
    MIG_MEMORY_USED = Gauge "nvidia_gpu_mig_memory_used_bytes"
        [GPU, UUID, GPU_INSTANCE, free("compute_instance_id")] unit "bytes",
        "Frame buffer memory used in a MIG device.",
        "`nvmlDeviceGetMemoryInfo_v2` of the MIG device";
    MIG_MEMORY_TOTAL = Gauge "nvidia_gpu_mig_memory_total_bytes"
        [GPU, UUID, GPU_INSTANCE, free("compute_instance_id")] unit "bytes",
        "Frame buffer memory of a MIG device.",
        "`nvmlDeviceGetMemoryInfo_v2` of the MIG device";
    SM_ACTIVE = Gauge "nvidia_gpu_sm_active_ratio" [GPU, UUID, GPU_INSTANCE] unit "0–1",
        "Fraction of time at least one warp was active on a multiprocessor, averaged over all multiprocessors, between two collections.",
        "GPM `NVML_GPM_METRIC_SM_UTIL` (% / 100), Hopper and later; `gpu_instance_id` empty for the whole GPU, set per MIG GPU instance";
    SM_OCCUPANCY = Gauge "nvidia_gpu_sm_occupancy_ratio" [GPU, UUID, GPU_INSTANCE] unit "0–1",
        "Resident warps as a fraction of the maximum, averaged over all multiprocessors.",
        "GPM `NVML_GPM_METRIC_SM_OCCUPANCY` (% / 100)";
    TENSOR_ACTIVE = Gauge "nvidia_gpu_tensor_active_ratio" [GPU, UUID, GPU_INSTANCE] unit "0–1",
        "Fraction of time any tensor pipe was active.",
        "GPM `NVML_GPM_METRIC_ANY_TENSOR_UTIL` (% / 100)";
    DRAM_ACTIVE = Gauge "nvidia_gpu_dram_active_ratio" [GPU, UUID, GPU_INSTANCE] unit "0–1",
        "Fraction of the device memory bandwidth used.",
        "GPM `NVML_GPM_METRIC_DRAM_BW_UTIL` (% / 100)";
    FP64_ACTIVE = Gauge "nvidia_gpu_fp64_active_ratio" [GPU, UUID, GPU_INSTANCE] unit "0–1",
        "Fraction of time the FP64 pipe was active.",
        "GPM `NVML_GPM_METRIC_FP64_UTIL` (% / 100)";
    FP32_ACTIVE = Gauge "nvidia_gpu_fp32_active_ratio" [GPU, UUID, GPU_INSTANCE] unit "0–1",
        "Fraction of time the FP32 pipe was active.",
        "GPM `NVML_GPM_METRIC_FP32_UTIL` (% / 100)";
    FP16_ACTIVE = Gauge "nvidia_gpu_fp16_active_ratio" [GPU, UUID, GPU_INSTANCE] unit "0–1",
        "Fraction of time the FP16 pipe was active.",
        "GPM `NVML_GPM_METRIC_FP16_UTIL` (% / 100)";
    GRAPHICS_ENGINE_ACTIVE = Gauge "nvidia_gpu_graphics_engine_active_ratio" [GPU, UUID, GPU_INSTANCE] unit "0–1",
        "Fraction of time the graphics or compute engine was active.",
        "GPM `NVML_GPM_METRIC_GRAPHICS_UTIL` (% / 100)";
    PCIE_TRANSMIT = Counter "nvidia_gpu_pcie_transmit_bytes_total" [GPU, UUID, GPU_INSTANCE] unit "bytes",
        "Bytes the GPU sent over PCIe since the exporter started.",
        "GPM `NVML_GPM_METRIC_PCIE_TX_PER_SEC` (MiB/s) × the time between two collections";
    PCIE_RECEIVE = Counter "nvidia_gpu_pcie_receive_bytes_total" [GPU, UUID, GPU_INSTANCE] unit "bytes",
        "Bytes the GPU received over PCIe since the exporter started.",
        "GPM `NVML_GPM_METRIC_PCIE_RX_PER_SEC` (MiB/s) × the time between two collections";
    NVLINK_TRANSMIT = Counter "nvidia_gpu_nvlink_transmit_bytes_total" [GPU, UUID, GPU_INSTANCE] unit "bytes",
        "Bytes the GPU sent over all its NVLink links since the exporter started.",
        "GPM `NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC` (MiB/s) × the time between two collections";
    NVLINK_RECEIVE = Counter "nvidia_gpu_nvlink_receive_bytes_total" [GPU, UUID, GPU_INSTANCE] unit "bytes",
        "Bytes the GPU received over all its NVLink links since the exporter started.",
        "GPM `NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC` (MiB/s) × the time between two collections";
    PROCESS_MEMORY_USED = Gauge "nvidia_gpu_process_memory_used_bytes"
        [GPU, UUID, PID, PROCESS, values("type", PROCESS_TYPES), GPU_INSTANCE, NAMESPACE, POD, CONTAINER] unit "bytes",
        "Frame buffer memory a process uses on the GPU.",
        "collector `processes` (off by default): `nvmlDeviceGetComputeRunningProcesses_v3`, `nvmlDeviceGetGraphicsRunningProcesses_v3`; `process` from `/proc/<pid>/comm`; `gpu_instance_id` set in a MIG instance; `namespace`, `pod`, `container` from the process's cgroup where the container runtime names the pod";
    PROCESS_SM_UTILIZATION = Gauge "nvidia_gpu_process_sm_utilization_ratio"
        [GPU, UUID, PID, PROCESS, GPU_INSTANCE, NAMESPACE, POD, CONTAINER] unit "0–1",
        "Fraction of the last sample period in which the process ran kernels on the GPU's multiprocessors.",
        "collector `processes`: `nvmlDeviceGetProcessUtilization` since the previous collection (% / 100; 0 for a running process without a sample)";
    PROCESS_MEMORY_UTILIZATION = Gauge "nvidia_gpu_process_memory_utilization_ratio"
        [GPU, UUID, PID, PROCESS, GPU_INSTANCE, NAMESPACE, POD, CONTAINER] unit "0–1",
        "Fraction of the last sample period in which the process read or wrote device memory.",
        "collector `processes`: `nvmlDeviceGetProcessUtilization` (% / 100)";
    PROCESS_ENCODER_UTILIZATION = Gauge "nvidia_gpu_process_encoder_utilization_ratio"
        [GPU, UUID, PID, PROCESS, GPU_INSTANCE, NAMESPACE, POD, CONTAINER] unit "0–1",
        "The process's share of the video encoder.",
        "collector `processes`: `nvmlDeviceGetProcessUtilization` (% / 100)";
    PROCESS_DECODER_UTILIZATION = Gauge "nvidia_gpu_process_decoder_utilization_ratio"
        [GPU, UUID, PID, PROCESS, GPU_INSTANCE, NAMESPACE, POD, CONTAINER] unit "0–1",
        "The process's share of the video decoder.",
        "collector `processes`: `nvmlDeviceGetProcessUtilization` (% / 100)";
    ALLOCATION_INFO = Gauge "nvidia_gpu_allocation_info"
        [GPU, UUID, free("namespace"), free("pod"), free("container")] unit "always 1",
        "A GPU or MIG device allocated to a container by the kubelet; always 1. Join on uuid.",
        "kubelet pod-resources API (`v1.PodResourcesLister/List`): devices of `nvidia.com/gpu` and `nvidia.com/mig-*`; `gpu` is empty for a MIG device. Only where the kubelet socket exists";

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

    BUILD_INFO = Gauge "system_info_exporter_build_info" [free("version"), free("revision")] unit "always 1",
        "Version and revision of the exporter; always 1.",
        "build (`git rev-parse --short HEAD` at build time, or `SIE_REVISION`)";
    COLLECT_DURATION = Gauge "system_info_exporter_collect_duration_seconds" [COLLECTOR] unit "s",
        "How long the collector's last collection took.",
        "duration of the collector's last collection; `collector` is `gpu`, `host` or `pods`";
    COLLECT_SUCCESS = Gauge "system_info_exporter_collect_success" [COLLECTOR] unit "1/0",
        "Whether the collector's last collection read its source (1) or not (0).",
        "0 when the source could not be read (for `gpu`: NVML unavailable)";
    LAST_COLLECT_TIMESTAMP = Gauge "system_info_exporter_last_collect_timestamp_seconds"
        [COLLECTOR] unit "Unix seconds",
        "Unix time at which the collector's last collection finished.",
        "end of the collector's last collection";
    NVML_CALLS = Counter "system_info_exporter_nvml_calls_total"
        [values("phase", NVML_CALL_PHASES)] unit "calls",
        "NVML calls the exporter made since it started: initialisation, discovery of each GPU once per initialisation, periodic collections, and the event thread.",
        "counted by the GPU collector";
    POD_RESOURCES_ERRORS = Counter "system_info_exporter_pod_resources_errors_total" [] unit "calls",
        "Calls to the kubelet pod-resources API that failed or timed out.",
        "only with pod attribution";

    HTTP_REQUESTS = Counter "system_info_exporter_http_requests_total"
        [values("handler", HTTP_HANDLERS), free("code")] unit "requests",
        "HTTP requests answered, by handler and status code.",
        "counted by the HTTP server; `code` is the status code sent (e.g. 503 beyond `--web.max-requests`, 401 without valid credentials); requests hyper rejects before routing (malformed, oversized headers) are not requests here but connections closed with `reason=\"error\"`";
    HTTP_METRICS_RESPONSE_BYTES = Counter "system_info_exporter_http_metrics_response_bytes_total"
        [values("encoding", HTTP_ENCODINGS)] unit "bytes",
        "Bytes of `/metrics` bodies sent, by content encoding: what scraping costs the network.",
        "counted by the HTTP server; `gzip` when the scraper accepts it (Prometheus does)";
    HTTP_REQUESTS_IN_FLIGHT = Gauge "system_info_exporter_http_requests_in_flight" [] unit "requests",
        "HTTP requests being answered now.",
        "counted by the HTTP server";
    HTTP_CONNECTIONS_OPEN = Gauge "system_info_exporter_http_connections_open" [] unit "connections",
        "Open client connections.",
        "counted by the HTTP server; at most `--web.max-connections`";
    HTTP_CONNECTIONS_REFUSED = Counter "system_info_exporter_http_connections_refused_total" [] unit "connections",
        "Connections closed at once because `--web.max-connections` were open and none of them was waiting for a request.",
        "counted by the HTTP server";
    HTTP_CONNECTIONS_CLOSED = Counter "system_info_exporter_http_connections_closed_total"
        [values("reason", HTTP_CLOSE_REASONS)] unit "connections",
        "Connections closed, by reason: the client, a header, idle or write timeout, eviction at the connection limit, a protocol or TLS error, shutdown.",
        "counted by the HTTP server";
    HTTP_TLS_HANDSHAKE_FAILURES = Counter "system_info_exporter_http_tls_handshake_failures_total" [] unit "handshakes",
        "TLS handshakes that failed or timed out (plain HTTP to the TLS port, refused client certificates, unsupported versions).",
        "only with `tls_server_config` in `--web.config.file`";
    HTTP_AUTH_FAILURES = Counter "system_info_exporter_http_auth_failures_total" [] unit "requests",
        "Requests refused with 401: no, malformed or wrong basic-auth credentials.",
        "only with `basic_auth_users` in `--web.config.file`";
    WEB_CONFIG_RELOAD_SUCCESS = Gauge "system_info_exporter_web_config_last_reload_successful" [] unit "1/0",
        "Whether the web config file was valid (1) or not (0, the previous configuration stays in force) when it was last read.",
        "`--web.config.file`, read at start and whenever it or a file it names changes; 1 without one";
}

/// The `handler` label of the HTTP self-metrics.
pub const HTTP_HANDLERS: &[&str] = &["metrics", "health", "ready", "landing", "other"];
/// The `encoding` label of `system_info_exporter_http_metrics_response_bytes_total`.
pub const HTTP_ENCODINGS: &[&str] = &["gzip", "identity"];
/// The `reason` label of `system_info_exporter_http_connections_closed_total`.
pub const HTTP_CLOSE_REASONS: &[&str] = &[
    "client",
    "header_timeout",
    "idle_timeout",
    "write_timeout",
    "evicted",
    "error",
    "shutdown",
];

/// The Markdown table of the metrics whose names start with `prefix`, as in
/// `docs/metrics.md`.
pub fn markdown_table(prefix: &str) -> String {
    let mut table = String::from(
        "| Metric | Type | Unit | Labels | Source |\n| --- | --- | --- | --- | --- |\n",
    );
    for metric in ALL.iter().filter(|m| m.name.starts_with(prefix)) {
        let kind = match metric.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let labels: Vec<String> = metric
            .labels
            .iter()
            .map(|label| {
                let quoted = |s: &str| format!("`{s}`");
                match label.values {
                    [] => quoted(label.name),
                    values => {
                        let values: Vec<_> = values.iter().map(|v| quoted(v)).collect();
                        format!("{} = {}", quoted(label.name), values.join(", "))
                    }
                }
            })
            .collect();
        table.push_str(&format!(
            "| `{}` | {kind} | {} | {} | {} |\n",
            metric.name,
            metric.unit,
            labels.join(", "),
            metric.source
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    const SECTIONS: &[&str] = &["nvidia_", "host_", "system_info_exporter_"];

    fn markers(prefix: &str) -> (String, String) {
        (
            format!("<!-- generated from src/catalogue.rs: {prefix} -->\n"),
            format!("<!-- end of generated {prefix} -->\n"),
        )
    }

    /// The docs' tables are generated from the catalogue. To regenerate:
    /// `UPDATE_METRICS_DOC=1 cargo test --lib catalogue`.
    #[test]
    fn metrics_doc_tables_are_generated_from_the_catalogue() {
        let mut doc = std::fs::read_to_string(DOC).unwrap();
        let original = doc.clone();
        for prefix in SECTIONS {
            let (begin, end) = markers(prefix);
            let start = doc
                .find(&begin)
                .unwrap_or_else(|| panic!("{begin} missing"));
            let start = start + begin.len();
            let stop = start + doc[start..].find(&end).expect("end marker");
            doc.replace_range(start..stop, &markdown_table(prefix));
        }
        if std::env::var_os("UPDATE_METRICS_DOC").is_some() {
            std::fs::write(DOC, &doc).unwrap();
        } else {
            assert!(
                doc == original,
                "docs/metrics.md is out of date; run UPDATE_METRICS_DOC=1 cargo test --lib catalogue"
            );
        }
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut names: Vec<&str> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a metric is defined twice");
        for metric in ALL {
            let counter = metric.kind == Kind::Counter;
            assert_eq!(
                counter,
                metric.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                metric.name
            );
            assert!(
                SECTIONS.iter().any(|p| metric.name.starts_with(p)),
                "{} has no docs section",
                metric.name
            );
        }
    }
}
