//! The fields of the dcgm view, as one table like dcgm-exporter's
//! `default-counters.csv`, plus where each value comes from and how it is
//! converted.

use crate::metrics::catalogue::*;
use crate::metrics::labels::{ClockDomain, RemapType};

/// How a field's value is computed from the native value (the sum of its
/// source samples for one GPU or GPU instance).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Conversion {
    /// × factor, rounded: DCGM holds the field as an integer.
    Integer(f64),
    /// ÷ divisor, rounded down like DCGM's integer division (bytes to MiB).
    Floor(f64),
    /// × factor: DCGM holds the field as a floating-point number.
    Scale(f64),
    /// A native counter's increase per second between two consecutive
    /// collections, × factor: DCGM reports these fields as rates.
    Rate(f64),
    /// The XID whose count increased last, with `err_code` and `err_msg`.
    LastXid,
}

/// One DCGM field and where its value comes from.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    /// The type dcgm-exporter declares, except where noted in the docs.
    pub(crate) kind: Kind,
    /// For the docs, which a test checks.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) unit: &'static str,
    pub(crate) help: &'static str,
    /// Native metrics whose samples are summed per GPU and GPU instance.
    pub(crate) sources: &'static [&'static Metric],
    /// Only source samples whose label has this value.
    pub(crate) filter: Option<(&'static str, &'static str)>,
    pub(crate) conversion: Conversion,
    /// Also served for each MIG GPU instance, from its memory.
    pub(crate) mig_memory: Option<MigMemory>,
}

/// A framebuffer field of a MIG GPU instance, as dcgm-exporter serves it
/// with `GPU_I_ID` and `GPU_I_PROFILE`: from the instance's MIG devices'
/// memory (its compute instances share it, so one device's value counts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum MigMemory {
    Used,
    /// Total less used.
    Free,
}

const fn field(
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    help: &'static str,
    sources: &'static [&'static Metric],
    filter: Option<(&'static str, &'static str)>,
    conversion: Conversion,
) -> Field {
    Field {
        name,
        kind,
        unit,
        help,
        sources,
        filter,
        conversion,
        mig_memory: None,
    }
}

/// `field` served per MIG GPU instance too.
const fn per_mig_instance(field: Field, memory: MigMemory) -> Field {
    Field {
        mig_memory: Some(memory),
        ..field
    }
}

use Conversion::{Floor, Integer, LastXid, Rate, Scale};
use Kind::{Counter as C, Gauge as G};

const MIB: f64 = 1024.0 * 1024.0;

/// DCGM derives NVLink bandwidth from NVML's KiB counters and divides the
/// KiB/s by 1000, so its unit is roughly MB/s, not bytes/s.
const NVLINK_BANDWIDTH_UNIT: f64 = 1.0 / 1024.0 / 1000.0;

/// dcgm-exporter's default counter set plus the profiling fields it
/// documents, in the order of its `default-counters.csv`.
#[rustfmt::skip] // a table: one field per entry
pub(crate) const FIELDS: &[Field] = &[
    field("DCGM_FI_DEV_SM_CLOCK", G, "MHz", "SM clock frequency in MHz.",
        &[&CLOCK], Some(("clock", ClockDomain::Sm.name())), Integer(1e-6)),
    field("DCGM_FI_DEV_MEM_CLOCK", G, "MHz", "Memory clock frequency in MHz.",
        &[&CLOCK], Some(("clock", ClockDomain::Memory.name())), Integer(1e-6)),
    field("DCGM_FI_DEV_MEMORY_TEMP", G, "°C", "Memory temperature in degrees Celsius.",
        &[&MEMORY_TEMPERATURE], None, Integer(1.0)),
    field("DCGM_FI_DEV_GPU_TEMP", G, "°C", "GPU temperature in degrees Celsius.",
        &[&TEMPERATURE], None, Integer(1.0)),
    field("DCGM_FI_DEV_POWER_USAGE", G, "W", "Power draw in watts.",
        &[&POWER_USAGE], None, Scale(1.0)),
    field("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", C, "mJ", "Energy consumed since the driver was loaded, in millijoules.",
        &[&ENERGY], None, Integer(1000.0)),
    field("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", C, "replays", "PCIe retries since the driver was loaded.",
        &[&PCIE_REPLAY_ERRORS], None, Integer(1.0)),
    field("DCGM_FI_DEV_GPU_UTIL", G, "%", "GPU utilization in percent.",
        &[&UTILIZATION], None, Integer(100.0)),
    field("DCGM_FI_DEV_MEM_COPY_UTIL", G, "%", "Memory utilization in percent.",
        &[&MEMORY_UTILIZATION], None, Integer(100.0)),
    field("DCGM_FI_DEV_ENC_UTIL", G, "%", "Encoder utilization in percent.",
        &[&ENCODER_UTILIZATION], None, Integer(100.0)),
    field("DCGM_FI_DEV_DEC_UTIL", G, "%", "Decoder utilization in percent.",
        &[&DECODER_UTILIZATION], None, Integer(100.0)),
    field("DCGM_FI_DEV_XID_ERRORS", G, "XID code", "Code of the last XID error (0: none since the exporter started).",
        &[&XID_ERRORS], None, LastXid),
    per_mig_instance(field("DCGM_FI_DEV_FB_FREE", G, "MiB", "Frame buffer memory free in MiB.",
        &[&MEMORY_FREE], None, Floor(MIB)), MigMemory::Free),
    per_mig_instance(field("DCGM_FI_DEV_FB_USED", G, "MiB", "Frame buffer memory used in MiB.",
        &[&MEMORY_USED], None, Floor(MIB)), MigMemory::Used),
    field("DCGM_FI_DEV_FB_RESERVED", G, "MiB", "Frame buffer memory reserved in MiB.",
        &[&MEMORY_RESERVED], None, Floor(MIB)),
    field("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", G, "KiB/s ÷ 1000",
        "NVLink traffic of all links, transmitted and received, in KiB/s divided by 1000 (as DCGM computes it).",
        &[&NVLINK_TRANSMIT, &NVLINK_RECEIVE], None,
        Rate(NVLINK_BANDWIDTH_UNIT)),
    field("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", C, "rows", "Rows remapped because of uncorrectable errors.",
        &[&REMAPPED_ROWS], Some(("type", RemapType::Uncorrectable.name())), Integer(1.0)),
    field("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", C, "rows", "Rows remapped because of correctable errors.",
        &[&REMAPPED_ROWS], Some(("type", RemapType::Correctable.name())), Integer(1.0)),
    field("DCGM_FI_DEV_ROW_REMAP_FAILURE", G, "1/0", "Whether a row remapping failed.",
        &[&ROW_REMAP_FAILED], None, Integer(1.0)),
    field("DCGM_FI_PROF_GR_ENGINE_ACTIVE", G, "0–1", "Fraction of time the graphics engine was active.",
        &[&GRAPHICS_ENGINE_ACTIVE], None, Scale(1.0)),
    field("DCGM_FI_PROF_SM_ACTIVE", G, "0–1", "Fraction of cycles an SM had at least one warp assigned.",
        &[&SM_ACTIVE], None, Scale(1.0)),
    field("DCGM_FI_PROF_SM_OCCUPANCY", G, "0–1", "Resident warps on the SMs as a fraction of the maximum.",
        &[&SM_OCCUPANCY], None, Scale(1.0)),
    field("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", G, "0–1", "Fraction of cycles the tensor pipes were active.",
        &[&TENSOR_ACTIVE], None, Scale(1.0)),
    field("DCGM_FI_PROF_DRAM_ACTIVE", G, "0–1", "Fraction of cycles the memory interface was sending or receiving.",
        &[&DRAM_ACTIVE], None, Scale(1.0)),
    field("DCGM_FI_PROF_PIPE_FP64_ACTIVE", G, "0–1", "Fraction of cycles the FP64 pipes were active.",
        &[&FP64_ACTIVE], None, Scale(1.0)),
    field("DCGM_FI_PROF_PIPE_FP32_ACTIVE", G, "0–1", "Fraction of cycles the FP32 pipes were active.",
        &[&FP32_ACTIVE], None, Scale(1.0)),
    field("DCGM_FI_PROF_PIPE_FP16_ACTIVE", G, "0–1", "Fraction of cycles the FP16 pipes were active.",
        &[&FP16_ACTIVE], None, Scale(1.0)),
    field("DCGM_FI_PROF_PCIE_TX_BYTES", G, "bytes/s", "PCIe data transmitted, headers included, in bytes per second.",
        &[&PCIE_TRANSMIT], None, Rate(1.0)),
    field("DCGM_FI_PROF_PCIE_RX_BYTES", G, "bytes/s", "PCIe data received, headers included, in bytes per second.",
        &[&PCIE_RECEIVE], None, Rate(1.0)),
];

/// The label that carries the driver version on every series, as
/// dcgm-exporter names a field it reads as a label.
pub(crate) const DRIVER_VERSION_LABEL: &str = "DCGM_FI_DRIVER_VERSION";

/// Names of common XIDs for `err_msg`, after NVIDIA's XID catalogue; other
/// codes are "Unknown Error". `err_code` is what to query; `err_msg` is for
/// people.
const XID_NAMES: &[(u64, &str)] = &[
    (0, "No Error"),
    (13, "Graphics Engine Exception"),
    (31, "GPU memory page fault"),
    (43, "GPU stopped processing"),
    (45, "Preemptive cleanup, due to previous errors"),
    (48, "Double Bit ECC Error"),
    (61, "Internal micro-controller breakpoint/warning"),
    (62, "Internal micro-controller halt"),
    (63, "ECC page retirement or row remapping recording event"),
    (64, "ECC page retirement or row remapper recording failure"),
    (68, "NVDEC0 Exception"),
    (69, "Graphics Engine class error"),
    (74, "NVLINK Error"),
    (79, "GPU has fallen off the bus"),
    (92, "High single-bit ECC error rate"),
    (94, "Contained ECC error"),
    (95, "Uncontained ECC error"),
    (109, "Context Switch Timeout Error"),
    (119, "GSP RPC Timeout"),
    (120, "GSP Error"),
    (121, "C2C Link Error"),
    (140, "Unrecovered ECC Error"),
    (154, "GPU Recovery Action Changed"),
];

pub(super) fn xid_name(code: u64) -> &'static str {
    XID_NAMES
        .iter()
        .find(|(xid, _)| *xid == code)
        .map_or("Unknown Error", |(_, name)| name)
}
