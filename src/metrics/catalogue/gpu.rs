//! The `nvidia_*` metrics: NVML's state and every GPU reading.

use super::*;
use crate::metrics::labels::{
    ClockDomain, ClockEventReason, EccErrorType, EccEventType, FabricIssue, FabricState,
    FabricSummary, NvlinkErrorType, NvlinkState, ProcessType, RecoveryAction, RemapType,
    RetirementCause, Threshold, ThrottleReason,
};

const PID: Label = free("pid");
const PROCESS: Label = free("process");
const NAMESPACE: Label = free("namespace");
const POD: Label = free("pod");
const CONTAINER: Label = free("container");
const HPC_JOB: Label = free("hpc_job");

catalogue! { Gpu:
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
        [GPU, UUID, values("threshold", Threshold::NAMES)] unit "°C",
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
    CLOCK = Gauge "nvidia_gpu_clock_hertz" [GPU, UUID, values("clock", ClockDomain::NAMES)] unit "Hz",
        "Current clock frequency of a clock domain.",
        "`nvmlDeviceGetClockInfo` (MHz × 10⁶)";
    CLOCK_MAX = Gauge "nvidia_gpu_clock_max_hertz" [GPU, UUID, values("clock", ClockDomain::NAMES)] unit "Hz",
        "Maximum clock frequency of a clock domain.",
        "`nvmlDeviceGetMaxClockInfo` (MHz × 10⁶), once per NVML initialisation";
    CLOCK_EVENT_ACTIVE = Gauge "nvidia_gpu_clock_event_active"
        [GPU, UUID, values("reason", ClockEventReason::NAMES)] unit "1/0",
        "Whether a reason currently holds the GPU's clocks down (1) or not (0).",
        "`nvmlDeviceGetCurrentClocksThrottleReasons`";
    THROTTLED = Counter "nvidia_gpu_throttled_seconds_total"
        [GPU, UUID, values("reason", ThrottleReason::NAMES)] unit "s",
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
        [GPU, UUID, values("type", EccEventType::NAMES)] unit "events",
        "ECC error events the driver reported since the exporter started.",
        "NVML events `nvmlEventTypeSingleBitEccError`, `nvmlEventTypeDoubleBitEccError`, where the GPU supports them";
    ECC_ENABLED = Gauge "nvidia_gpu_ecc_enabled" [GPU, UUID] unit "1/0",
        "Whether ECC is currently enabled on the GPU's memory.",
        "`nvmlDeviceGetEccMode` current mode, once per NVML initialisation";
    ECC_ERRORS = Counter "nvidia_gpu_ecc_errors_total"
        [GPU, UUID, values("type", EccErrorType::NAMES)] unit "errors",
        "Memory ECC errors since the driver was loaded.",
        "fields `NVML_FI_DEV_ECC_SBE_VOL_TOTAL`, `NVML_FI_DEV_ECC_DBE_VOL_TOTAL`";
    ECC_ERRORS_AGGREGATE = Counter "nvidia_gpu_ecc_errors_aggregate_total"
        [GPU, UUID, values("type", EccErrorType::NAMES)] unit "errors",
        "Memory ECC errors over the GPU's lifetime.",
        "fields `NVML_FI_DEV_ECC_SBE_AGG_TOTAL`, `NVML_FI_DEV_ECC_DBE_AGG_TOTAL`";
    RETIRED_PAGES = Gauge "nvidia_gpu_retired_pages"
        [GPU, UUID, values("cause", RetirementCause::NAMES)] unit "pages",
        "Memory pages retired because of ECC errors (GPUs before Ampere).",
        "fields `NVML_FI_DEV_RETIRED_SBE`, `NVML_FI_DEV_RETIRED_DBE`";
    RETIRED_PAGES_PENDING = Gauge "nvidia_gpu_retired_pages_pending" [GPU, UUID] unit "1/0",
        "Whether pages wait to be retired at the next driver reload (GPUs before Ampere).",
        "field `NVML_FI_DEV_RETIRED_PENDING`";
    REMAPPED_ROWS = Counter "nvidia_gpu_remapped_rows_total"
        [GPU, UUID, values("type", RemapType::NAMES)] unit "rows",
        "Memory rows remapped because of correctable or uncorrectable errors (Ampere and later).",
        "fields `NVML_FI_DEV_REMAPPED_COR`, `NVML_FI_DEV_REMAPPED_UNC`";
    ROW_REMAP_PENDING = Gauge "nvidia_gpu_row_remap_pending" [GPU, UUID] unit "1/0",
        "Whether a row remap waits for a GPU reset (Ampere and later).",
        "field `NVML_FI_DEV_REMAPPED_PENDING`";
    ROW_REMAP_FAILED = Gauge "nvidia_gpu_row_remap_failed" [GPU, UUID] unit "1/0",
        "Whether a row remap failed; the GPU needs service (Ampere and later).",
        "field `NVML_FI_DEV_REMAPPED_FAILURE`";
    // NVLink at the detail `--collector.gpu.nvlink` chooses: `totals` (the
    // default) serves NVLINKS and NVLINK_ERRORS, `links` NVLINKS, NVLINK_UP
    // and NVLINK_LINK_ERRORS, `off` none of them.
    NVLINKS = Gauge "nvidia_gpu_nvlinks"
        [GPU, UUID, values("state", NvlinkState::NAMES)] unit "links",
        "NVLink links of the GPU in each state: active (up) or inactive (down).",
        "field `NVML_FI_DEV_NVLINK_GET_STATE` per link, counted; links counted by `NVML_FI_DEV_NVLINK_LINK_COUNT` once per NVML initialisation; a link whose state cannot be read counts in neither; GPUs without links have none; with `--collector.gpu.nvlink=totals` (default) or `links`";
    NVLINK_UP = Gauge "nvidia_gpu_nvlink_up" [GPU, UUID, free("link")] unit "1/0",
        "Whether an NVLink link is active (1) or down (0).",
        "field `NVML_FI_DEV_NVLINK_GET_STATE` per link; with `--collector.gpu.nvlink=links` only";
    // One family, two label sets: the `totals` form (errors summed over the
    // GPU's links, the default) and the `links` form (one series per link).
    // Two entries share the name so that each keeps a fixed label list; the
    // detail level serves exactly one of them, so a scrape never mixes them
    // (the exposition asserts it), and the docs table shows both rows.
    NVLINK_ERRORS = Counter "nvidia_gpu_nvlink_errors_total"
        [GPU, UUID, values("type", NvlinkErrorType::NAMES)] unit "errors",
        "NVLink errors of all the GPU's links since the driver was loaded.",
        "`totals` form (default): the fields of the `links` form, summed over the GPU's links; a link whose read fails counts with its last value, so that the total never goes down";
    NVLINK_LINK_ERRORS = Counter "nvidia_gpu_nvlink_errors_total"
        [GPU, UUID, free("link"), values("type", NvlinkErrorType::NAMES)] unit "errors",
        "NVLink errors of a link since the driver was loaded.",
        "`links` form (`--collector.gpu.nvlink=links`): fields per link: `NVML_FI_DEV_NVLINK_ERROR_DL_CRC` (`crc_flit`), `NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L0…L11` (`crc_data`, links 0–11), `NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY`, `NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY`";
    // The NVLink fabric (NVSwitch systems: HGX H100/H200/B200, GB200 NVL72),
    // from one call per GPU and collection. GPUs without a fabric (PCIe
    // boards, GPUs before Hopper, drivers before R550) have none of these.
    FABRIC_STATE = Gauge "nvidia_gpu_fabric_state"
        [GPU, UUID, values("state", FabricState::NAMES)] unit "1/0",
        "The GPU's NVLink fabric registration state: exactly one state is 1.",
        "`nvmlDeviceGetGpuFabricInfoV` (struct v3, else v2) `state`, every collection; only on GPUs with a fabric: absent where the call is missing, answers `NOT_SUPPORTED`, or reports state not supported";
    FABRIC_STATUS = Gauge "nvidia_gpu_fabric_status" [GPU, UUID] unit "NVML return code",
        "NVML's return code of the completed fabric registration: 0 succeeded, any other code failed.",
        "`nvmlDeviceGetGpuFabricInfoV` `status`; only once `state` is completed (nvml.h: valid only then)";
    FABRIC_INFO = Gauge "nvidia_gpu_fabric_info"
        [GPU, UUID, free("cluster_uuid"), free("clique_id")] unit "always 1",
        "The NVLink fabric the GPU belongs to; always 1. GPUs with the same cluster_uuid and clique_id reach each other over NVLink.",
        "`nvmlDeviceGetGpuFabricInfoV` `clusterUuid` (all zeroes until registered, and on a fabric within one node), `cliqueId`";
    FABRIC_HEALTH = Gauge "nvidia_gpu_fabric_health"
        [GPU, UUID, values("issue", FabricIssue::NAMES)] unit "1/0",
        "Whether the GPU's NVLink fabric reports a health issue (1) or not (0).",
        "`nvmlDeviceGetGpuFabricInfoV` `healthMask`: its 2-bit fields (degraded bandwidth from R550; route recovery, route unhealthy, access timeout recovery from R570) and the 4-bit incorrect configuration (R580; 1 for any cause, named in `/health`); 0 also where the driver does not report the field (`/health` lists those as `unsupported_checks`)";
    FABRIC_OVERALL_HEALTH = Gauge "nvidia_gpu_fabric_overall_health"
        [GPU, UUID, values("summary", FabricSummary::NAMES)] unit "1/0",
        "The driver's summary of the GPU's NVLink fabric health: exactly one summary is 1.",
        "`nvmlDeviceGetGpuFabricInfoV` struct v3 `healthSummary` (drivers from R580); absent where the driver does not summarise";
    RECOVERY_ACTION = Gauge "nvidia_gpu_recovery_action"
        [GPU, UUID, values("action", RecoveryAction::NAMES)] unit "1/0",
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
        [GPU, UUID, PID, PROCESS, values("type", ProcessType::NAMES), GPU_INSTANCE, NAMESPACE, POD, CONTAINER, HPC_JOB] unit "bytes",
        "Frame buffer memory a process uses on the GPU.",
        "collector `processes` (off by default): `nvmlDeviceGetComputeRunningProcesses_v3`, `nvmlDeviceGetGraphicsRunningProcesses_v3`; `process` from `/proc/<pid>/comm`; `gpu_instance_id` set in a MIG instance; `namespace`, `pod`, `container` from the process's cgroup where the container runtime names the pod; `hpc_job` from the process's Slurm job cgroup (`job_<id>`), empty outside a Slurm job";
    PROCESS_SM_UTILIZATION = Gauge "nvidia_gpu_process_sm_utilization_ratio"
        [GPU, UUID, PID, PROCESS, GPU_INSTANCE, NAMESPACE, POD, CONTAINER, HPC_JOB] unit "0–1",
        "Fraction of the last sample period in which the process ran kernels on the GPU's multiprocessors.",
        "collector `processes`: `nvmlDeviceGetProcessUtilization` since the previous collection (% / 100; 0 for a running process without a sample)";
    PROCESS_MEMORY_UTILIZATION = Gauge "nvidia_gpu_process_memory_utilization_ratio"
        [GPU, UUID, PID, PROCESS, GPU_INSTANCE, NAMESPACE, POD, CONTAINER, HPC_JOB] unit "0–1",
        "Fraction of the last sample period in which the process read or wrote device memory.",
        "collector `processes`: `nvmlDeviceGetProcessUtilization` (% / 100)";
    PROCESS_ENCODER_UTILIZATION = Gauge "nvidia_gpu_process_encoder_utilization_ratio"
        [GPU, UUID, PID, PROCESS, GPU_INSTANCE, NAMESPACE, POD, CONTAINER, HPC_JOB] unit "0–1",
        "The process's share of the video encoder.",
        "collector `processes`: `nvmlDeviceGetProcessUtilization` (% / 100)";
    PROCESS_DECODER_UTILIZATION = Gauge "nvidia_gpu_process_decoder_utilization_ratio"
        [GPU, UUID, PID, PROCESS, GPU_INSTANCE, NAMESPACE, POD, CONTAINER, HPC_JOB] unit "0–1",
        "The process's share of the video decoder.",
        "collector `processes`: `nvmlDeviceGetProcessUtilization` (% / 100)";
    ALLOCATION_INFO = Gauge "nvidia_gpu_allocation_info"
        [GPU, UUID, free("namespace"), free("pod"), free("container"),
         free("claim"), free("claim_namespace"), free("claim_device")] unit "always 1",
        "A GPU or MIG device allocated to a container by the kubelet; always 1. Join on uuid.",
        "kubelet pod-resources API (`v1.PodResourcesLister/List`): devices of `nvidia.com/gpu` and `nvidia.com/mig-*`, and devices of DRA claims (`dynamic_resources`) of the `--kubernetes.dra-drivers`, resolved to UUIDs through the node's ResourceSlices (`claim`, `claim_namespace`, `claim_device` set; `uuid` empty while unresolved); `gpu` is empty for a MIG device. Only where the kubelet socket exists";
    JOB_INFO = Gauge "nvidia_gpu_job_info" [GPU, UUID, GPU_INSTANCE, HPC_JOB] unit "always 1",
        "A Slurm (HPC) job that uses the GPU, or its MIG GPU instance; always 1. Join on uuid.",
        "collector `hpc`: the files of `--collector.hpc.job-mapping-dir` (dcgm-exporter's HPC job mapping: file `<gpu>` or `<gpu>.<gpu_instance_id>`, one job id per line, written by a Slurm prolog), re-read at every collection; `gpu_instance_id` empty for the whole GPU. Only with that flag";
}
