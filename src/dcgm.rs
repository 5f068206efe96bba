//! The dcgm-exporter compatible view (`--metrics.format=dcgm`): the fields
//! of dcgm-exporter's default counter set, under DCGM's names, units and
//! labels, computed from the same collections as the native metrics. Its
//! purpose is that dashboards and alerts written for dcgm-exporter work
//! unchanged, so it deliberately follows DCGM's conventions (MHz, MiB,
//! percent, mJ, `UUID`, `modelName`) rather than Prometheus' base units.
//!
//! Everything is one table, [`FIELDS`] (like dcgm-exporter's
//! `default-counters.csv`, plus where each value comes from), and one
//! conversion, [`View::render`]. `docs/dcgm-compatibility.md` documents it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use prometheus::proto::{
    Counter, Gauge, LabelPair, Metric as ProtoMetric, MetricFamily, MetricType,
};

use crate::catalogue::Kind;
use crate::cli::{MetricsFormat, Options};
use crate::collector::Latest;
use crate::exposition::{Sample, Samples, encode_families};
use crate::snapshot::GpuAllocation;

/// How a field's value is computed from the native value (the sum of its
/// source samples for one GPU or GPU instance).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Conversion {
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
pub struct Field {
    pub name: &'static str,
    /// The type dcgm-exporter declares, except where noted in the docs.
    pub kind: Kind,
    pub unit: &'static str,
    pub help: &'static str,
    /// Native metrics whose samples are summed per GPU and GPU instance.
    pub sources: &'static [&'static str],
    /// Only source samples whose label has this value.
    pub filter: Option<(&'static str, &'static str)>,
    pub conversion: Conversion,
}

const fn field(
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    help: &'static str,
    sources: &'static [&'static str],
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
pub const FIELDS: &[Field] = &[
    field("DCGM_FI_DEV_SM_CLOCK", G, "MHz", "SM clock frequency in MHz.",
        &["nvidia_gpu_clock_hertz"], Some(("clock", "sm")), Integer(1e-6)),
    field("DCGM_FI_DEV_MEM_CLOCK", G, "MHz", "Memory clock frequency in MHz.",
        &["nvidia_gpu_clock_hertz"], Some(("clock", "memory")), Integer(1e-6)),
    field("DCGM_FI_DEV_MEMORY_TEMP", G, "°C", "Memory temperature in degrees Celsius.",
        &["nvidia_gpu_memory_temperature_celsius"], None, Integer(1.0)),
    field("DCGM_FI_DEV_GPU_TEMP", G, "°C", "GPU temperature in degrees Celsius.",
        &["nvidia_gpu_temperature_celsius"], None, Integer(1.0)),
    field("DCGM_FI_DEV_POWER_USAGE", G, "W", "Power draw in watts.",
        &["nvidia_gpu_power_usage_watts"], None, Scale(1.0)),
    field("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", C, "mJ", "Energy consumed since the driver was loaded, in millijoules.",
        &["nvidia_gpu_energy_consumption_joules_total"], None, Integer(1000.0)),
    field("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", C, "replays", "PCIe retries since the driver was loaded.",
        &["nvidia_gpu_pcie_replay_errors_total"], None, Integer(1.0)),
    field("DCGM_FI_DEV_GPU_UTIL", G, "%", "GPU utilization in percent.",
        &["nvidia_gpu_utilization_ratio"], None, Integer(100.0)),
    field("DCGM_FI_DEV_MEM_COPY_UTIL", G, "%", "Memory utilization in percent.",
        &["nvidia_gpu_memory_utilization_ratio"], None, Integer(100.0)),
    field("DCGM_FI_DEV_ENC_UTIL", G, "%", "Encoder utilization in percent.",
        &["nvidia_gpu_encoder_utilization_ratio"], None, Integer(100.0)),
    field("DCGM_FI_DEV_DEC_UTIL", G, "%", "Decoder utilization in percent.",
        &["nvidia_gpu_decoder_utilization_ratio"], None, Integer(100.0)),
    field("DCGM_FI_DEV_XID_ERRORS", G, "XID code", "Code of the last XID error (0: none since the exporter started).",
        &["nvidia_gpu_xid_errors_total"], None, LastXid),
    field("DCGM_FI_DEV_FB_FREE", G, "MiB", "Frame buffer memory free in MiB.",
        &["nvidia_gpu_memory_free_bytes"], None, Floor(MIB)),
    field("DCGM_FI_DEV_FB_USED", G, "MiB", "Frame buffer memory used in MiB.",
        &["nvidia_gpu_memory_used_bytes"], None, Floor(MIB)),
    field("DCGM_FI_DEV_FB_RESERVED", G, "MiB", "Frame buffer memory reserved in MiB.",
        &["nvidia_gpu_memory_reserved_bytes"], None, Floor(MIB)),
    field("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", G, "KiB/s ÷ 1000",
        "NVLink traffic of all links, transmitted and received, in KiB/s divided by 1000 (as DCGM computes it).",
        &["nvidia_gpu_nvlink_transmit_bytes_total", "nvidia_gpu_nvlink_receive_bytes_total"], None,
        Rate(NVLINK_BANDWIDTH_UNIT)),
    field("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", C, "rows", "Rows remapped because of uncorrectable errors.",
        &["nvidia_gpu_remapped_rows_total"], Some(("type", "uncorrectable")), Integer(1.0)),
    field("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", C, "rows", "Rows remapped because of correctable errors.",
        &["nvidia_gpu_remapped_rows_total"], Some(("type", "correctable")), Integer(1.0)),
    field("DCGM_FI_DEV_ROW_REMAP_FAILURE", G, "1/0", "Whether a row remapping failed.",
        &["nvidia_gpu_row_remap_failed"], None, Integer(1.0)),
    field("DCGM_FI_PROF_GR_ENGINE_ACTIVE", G, "0–1", "Fraction of time the graphics engine was active.",
        &["nvidia_gpu_graphics_engine_active_ratio"], None, Scale(1.0)),
    field("DCGM_FI_PROF_SM_ACTIVE", G, "0–1", "Fraction of cycles an SM had at least one warp assigned.",
        &["nvidia_gpu_sm_active_ratio"], None, Scale(1.0)),
    field("DCGM_FI_PROF_SM_OCCUPANCY", G, "0–1", "Resident warps on the SMs as a fraction of the maximum.",
        &["nvidia_gpu_sm_occupancy_ratio"], None, Scale(1.0)),
    field("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", G, "0–1", "Fraction of cycles the tensor pipes were active.",
        &["nvidia_gpu_tensor_active_ratio"], None, Scale(1.0)),
    field("DCGM_FI_PROF_DRAM_ACTIVE", G, "0–1", "Fraction of cycles the memory interface was sending or receiving.",
        &["nvidia_gpu_dram_active_ratio"], None, Scale(1.0)),
    field("DCGM_FI_PROF_PIPE_FP64_ACTIVE", G, "0–1", "Fraction of cycles the FP64 pipes were active.",
        &["nvidia_gpu_fp64_active_ratio"], None, Scale(1.0)),
    field("DCGM_FI_PROF_PIPE_FP32_ACTIVE", G, "0–1", "Fraction of cycles the FP32 pipes were active.",
        &["nvidia_gpu_fp32_active_ratio"], None, Scale(1.0)),
    field("DCGM_FI_PROF_PIPE_FP16_ACTIVE", G, "0–1", "Fraction of cycles the FP16 pipes were active.",
        &["nvidia_gpu_fp16_active_ratio"], None, Scale(1.0)),
    field("DCGM_FI_PROF_PCIE_TX_BYTES", G, "bytes/s", "PCIe data transmitted, headers included, in bytes per second.",
        &["nvidia_gpu_pcie_transmit_bytes_total"], None, Rate(1.0)),
    field("DCGM_FI_PROF_PCIE_RX_BYTES", G, "bytes/s", "PCIe data received, headers included, in bytes per second.",
        &["nvidia_gpu_pcie_receive_bytes_total"], None, Rate(1.0)),
];

/// The label that carries the driver version on every series, as
/// dcgm-exporter names a field it reads as a label.
pub const DRIVER_VERSION_LABEL: &str = "DCGM_FI_DRIVER_VERSION";

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

fn xid_name(code: u64) -> &'static str {
    XID_NAMES
        .iter()
        .find(|(xid, _)| *xid == code)
        .map_or("Unknown Error", |(_, name)| name)
}

/// The collector whose collections carry the GPU readings.
const GPU_COLLECTOR: &str = "gpu";
/// The collector whose collections carry the pod allocations.
const PODS_COLLECTOR: &str = "pods";

/// The dcgm view of the collections: converts each collection's native
/// samples, keeping what a conversion needs from earlier collections.
pub struct View {
    hostname: String,
    /// From the pods collector's latest collection: its thread is not the GPU
    /// collector's, so the join happens when a GPU collection is converted,
    /// with the allocations at most one interval old (as in the native view,
    /// where the pods collector reads the GPU collector's latest indexes).
    allocations: Latest<Vec<GpuAllocation>>,
    state: Mutex<State>,
}

/// The value and time of each rate's counter, by field and series.
type Counters = HashMap<(&'static str, Key), (f64, Instant)>;

/// What conversions remember between GPU collections.
#[derive(Default)]
struct State {
    counters: Counters,
    /// Previous XID counts and the last XID, by GPU UUID.
    xids: HashMap<String, Xids>,
}

#[derive(Default)]
struct Xids {
    counts: BTreeMap<u64, f64>,
    last: u64,
}

/// One DCGM series before labelling: the GPU index, its UUID and the GPU
/// instance (empty for the whole GPU). Ordered so that GPU 10 follows GPU 9.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    gpu_width: usize,
    gpu: String,
    uuid: String,
    gpu_instance: String,
}

impl Key {
    fn of(sample: &Sample) -> Option<Self> {
        let gpu = label(sample, "gpu")?;
        Some(Self {
            gpu_width: gpu.len(),
            gpu: gpu.to_owned(),
            uuid: label(sample, "uuid")?.to_owned(),
            gpu_instance: label(sample, "gpu_instance_id").unwrap_or("").to_owned(),
        })
    }
}

/// Label names and values, in order.
type Labels = Vec<(&'static str, String)>;

/// A series of a field: which GPU (instance), labels beyond the common ones,
/// and the value.
type Series = (Key, Labels, f64);

fn label<'a>(sample: &'a Sample, name: &str) -> Option<&'a str> {
    let position = sample.metric.labels.iter().position(|l| l.name == name)?;
    Some(&sample.labels[position])
}

impl View {
    /// The view `--metrics.format` asks for; `None` for the native format.
    /// `Hostname` is `--host.name`, else the kernel's host name, as for
    /// `host_info`.
    pub fn for_options(options: &Options) -> Option<Self> {
        (options.metrics_format == MetricsFormat::Dcgm).then(|| {
            let hostname = options.host_name.clone();
            Self::new(
                hostname
                    .or_else(|| sysinfo::System::host_name().ok())
                    .unwrap_or_default(),
            )
        })
    }

    /// `hostname` is the `Hostname` label of every series.
    pub fn new(hostname: String) -> Self {
        Self {
            hostname,
            allocations: Latest::default(),
            state: Mutex::new(State::default()),
        }
    }

    /// The text one collection of `collector` contributes to `/metrics`,
    /// collected at `now`: the exporter's own metrics as they are, and the
    /// GPU readings as DCGM fields, labelled with the pods collector's
    /// allocations. The other native metrics (host, native GPU) are not part
    /// of dcgm-exporter's output and are left out.
    pub fn render(&self, collector: &str, samples: &Samples, now: Instant) -> String {
        let mut text = own_metrics(samples).encode();
        if collector == PODS_COLLECTOR {
            self.allocations.set(allocations(samples));
        }
        if collector == GPU_COLLECTOR {
            let allocations = self.allocations.get().unwrap_or_default();
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let families = self.convert(samples, &allocations, &mut state, now);
            text.push_str(&encode_families(&families));
        }
        text
    }

    fn convert(
        &self,
        samples: &Samples,
        allocations: &[GpuAllocation],
        state: &mut State,
        now: Instant,
    ) -> Vec<MetricFamily> {
        let labels = Labeller::new(samples, &self.hostname, allocations);
        let mut counters = Counters::new();
        let mut families = Vec::new();
        for field in FIELDS {
            let series: Vec<Series> = match field.conversion {
                LastXid => last_xids(samples, field, &mut state.xids),
                _ => sums(samples, field)
                    .into_iter()
                    .filter_map(|(key, sum)| {
                        let value =
                            converted(field, &key, sum, &state.counters, &mut counters, now)?;
                        Some((key, Labels::new(), value))
                    })
                    .collect(),
            };
            if series.is_empty() {
                continue;
            }
            let mut family = MetricFamily::default();
            family.set_name(field.name.to_owned());
            family.set_help(field.help.to_owned());
            family.set_field_type(match field.kind {
                Kind::Gauge => MetricType::GAUGE,
                Kind::Counter => MetricType::COUNTER,
            });
            for (key, extra, value) in series {
                family
                    .mut_metric()
                    .push(metric(field.kind, labels.of(&key, extra), value));
            }
            families.push(family);
        }
        // Series not in this collection start again from nothing, e.g. after
        // a GPU was down: a rate across the gap would mislead.
        state.counters = counters;
        families
    }
}

/// The sum of `field`'s sources per GPU and GPU instance.
fn sums(samples: &Samples, field: &Field) -> BTreeMap<Key, f64> {
    let mut sums = BTreeMap::new();
    for sample in sources(samples, field) {
        if let Some(key) = Key::of(sample) {
            *sums.entry(key).or_default() += sample.value;
        }
    }
    sums
}

/// The field's value for one series from the sum of its sources; `None` for
/// a rate without a usable previous value. Rates record the sum in `current`.
fn converted(
    field: &Field,
    key: &Key,
    sum: f64,
    previous: &Counters,
    current: &mut Counters,
    now: Instant,
) -> Option<f64> {
    match field.conversion {
        Integer(factor) => Some((sum * factor).round()),
        Floor(divisor) => Some((sum / divisor).floor()),
        Scale(factor) => Some(sum * factor),
        Rate(factor) => {
            let id = (field.name, key.clone());
            let before = previous.get(&id).copied();
            current.insert(id, (sum, now));
            Some(rate(before, sum, now)? * factor)
        }
        // Per XID, not per sum: see `last_xids`.
        LastXid => None,
    }
}

/// The samples of `field`'s sources that pass its filter.
fn sources<'a>(samples: &'a Samples, field: &'a Field) -> impl Iterator<Item = &'a Sample> {
    samples.iter().filter(move |sample| {
        field.sources.contains(&sample.metric.name)
            && field
                .filter
                .is_none_or(|(name, value)| label(sample, name) == Some(value))
    })
}

/// Increase per second since `previous`; none for the first collection or
/// after a counter reset (driver reload).
fn rate(previous: Option<(f64, Instant)>, value: f64, now: Instant) -> Option<f64> {
    let (before, at) = previous?;
    let seconds = now.checked_duration_since(at)?.as_secs_f64();
    (seconds > 0.0 && value >= before).then(|| (value - before) / seconds)
}

/// One series per GPU with events: the XID whose count increased last. When
/// several increase within one collection their order is unknown, and the
/// highest code is reported. The counts start at the exporter's start, so
/// "last" means since then; 0 (`No Error`) until the first.
fn last_xids(
    samples: &Samples,
    field: &Field,
    previous: &mut HashMap<String, Xids>,
) -> Vec<Series> {
    let mut gpus: BTreeMap<Key, BTreeMap<u64, f64>> = BTreeMap::new();
    for sample in sources(samples, field) {
        let (Some(key), Some(xid)) = (Key::of(sample), label(sample, "xid")) else {
            continue;
        };
        if let Ok(xid) = xid.parse::<u64>() {
            gpus.entry(key).or_default().insert(xid, sample.value);
        }
    }
    let mut current = HashMap::new();
    let mut series = Vec::new();
    for (key, counts) in gpus {
        let before = previous.remove(&key.uuid).unwrap_or_default();
        let increased = counts
            .iter()
            .filter(|(xid, count)| **count > before.counts.get(xid).copied().unwrap_or(0.0))
            .map(|(xid, _)| *xid)
            .max();
        let last = increased.unwrap_or(before.last);
        let extra = vec![
            ("err_code", last.to_string()),
            ("err_msg", xid_name(last).to_owned()),
        ];
        current.insert(key.uuid.clone(), Xids { counts, last });
        series.push((key, extra, last as f64));
    }
    *previous = current;
    series
}

/// The exporter's metrics about itself in a collection (e.g. its NVML
/// calls), which stay observable in this view.
fn own_metrics(samples: &Samples) -> Samples {
    let mut own = Samples::default();
    for sample in samples.iter() {
        if sample.metric.name.starts_with("system_info_exporter_") {
            let labels: Vec<&str> = sample.labels.iter().map(String::as_str).collect();
            own.add(sample.metric, &labels, sample.value);
        }
    }
    own
}

/// The GPU allocations a pods collection carries.
fn allocations(samples: &Samples) -> Vec<GpuAllocation> {
    samples
        .iter()
        .filter(|s| s.metric.name == "nvidia_gpu_allocation_info")
        .filter_map(|s| {
            Some(GpuAllocation {
                uuid: label(s, "uuid")?.to_owned(),
                namespace: label(s, "namespace")?.to_owned(),
                pod: label(s, "pod")?.to_owned(),
                container: label(s, "container")?.to_owned(),
            })
        })
        .collect()
}

/// What labels a series: the GPU's identity, the host, the driver, the MIG
/// instance and the pod that holds the GPU or instance.
struct Labeller<'a> {
    hostname: &'a str,
    driver_version: Option<&'a str>,
    /// By GPU UUID: PCI bus ID and model name.
    gpus: HashMap<&'a str, (&'a str, &'a str)>,
    /// By GPU UUID and GPU instance: the MIG profile.
    profiles: HashMap<(&'a str, &'a str), &'a str>,
    /// By GPU UUID and GPU instance (empty for a whole GPU): the first
    /// allocation in (namespace, pod, container) order. dcgm-exporter, by
    /// default, also labels a series with one pod, not one series per pod.
    pods: HashMap<(&'a str, &'a str), &'a GpuAllocation>,
}

impl<'a> Labeller<'a> {
    fn new(samples: &'a Samples, hostname: &'a str, allocations: &'a [GpuAllocation]) -> Self {
        let mut labeller = Self {
            hostname,
            driver_version: None,
            gpus: HashMap::new(),
            profiles: HashMap::new(),
            pods: HashMap::new(),
        };
        // MIG device UUID → its GPU and GPU instance.
        let mut mig_devices = HashMap::new();
        for sample in samples.iter() {
            let get = |name| label(sample, name).unwrap_or("");
            match sample.metric.name {
                "nvidia_driver_info" => labeller.driver_version = label(sample, "driver_version"),
                "nvidia_gpu_info" => {
                    labeller
                        .gpus
                        .insert(get("uuid"), (get("pci_bus_id"), get("name")));
                }
                "nvidia_gpu_mig_info" => {
                    let instance = (get("uuid"), get("gpu_instance_id"));
                    labeller.profiles.entry(instance).or_insert(get("profile"));
                    mig_devices.insert(get("mig_uuid"), instance);
                }
                _ => {}
            }
        }
        let mut sorted: Vec<&GpuAllocation> = allocations.iter().collect();
        sorted.sort_by(|a, b| {
            (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container))
        });
        for allocation in sorted {
            let held = mig_devices
                .get(allocation.uuid.as_str())
                .copied()
                .unwrap_or((allocation.uuid.as_str(), ""));
            labeller.pods.entry(held).or_insert(allocation);
        }
        labeller
    }

    /// Labels in dcgm-exporter's order: identity, MIG instance, host, driver,
    /// then the others by name.
    fn of(&self, key: &Key, extra: Labels) -> Labels {
        let (pci_bus_id, model) = self
            .gpus
            .get(key.uuid.as_str())
            .copied()
            .unwrap_or_default();
        let mut labels = vec![
            ("gpu", key.gpu.clone()),
            ("UUID", key.uuid.clone()),
            ("pci_bus_id", pci_bus_id.to_owned()),
            ("device", format!("nvidia{}", key.gpu)),
            ("modelName", model.to_owned()),
        ];
        let instance = (key.uuid.as_str(), key.gpu_instance.as_str());
        if !key.gpu_instance.is_empty() {
            let profile = self.profiles.get(&instance).copied().unwrap_or("");
            labels.push(("GPU_I_PROFILE", profile.to_owned()));
            labels.push(("GPU_I_ID", key.gpu_instance.clone()));
        }
        if !self.hostname.is_empty() {
            labels.push(("Hostname", self.hostname.to_owned()));
        }
        if let Some(version) = self.driver_version {
            labels.push((DRIVER_VERSION_LABEL, version.to_owned()));
        }
        let mut others = extra;
        if let Some(allocation) = self.pods.get(&instance) {
            others.push(("container", allocation.container.clone()));
            others.push(("namespace", allocation.namespace.clone()));
            others.push(("pod", allocation.pod.clone()));
        }
        others.sort();
        labels.extend(others);
        labels
    }
}

fn metric(kind: Kind, labels: Labels, value: f64) -> ProtoMetric {
    let mut metric = ProtoMetric::default();
    metric.set_label(
        labels
            .into_iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name(name.to_owned());
                pair.set_value(value);
                pair
            })
            .collect(),
    );
    match kind {
        Kind::Gauge => {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        Kind::Counter => {
            let mut counter = Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        }
    }
    metric
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::catalogue::{
        self, ALLOCATION_INFO, CLOCK, DRIVER_INFO, GPU_INFO, Label, MEMORY_USED, Metric,
        TEMPERATURE, UTILIZATION, XID_ERRORS,
    };

    /// Native metrics another part of the work adds (GPM profiling, MIG);
    /// the view converts them once they are collected.
    const AWAITED: &[&str] = &[
        "nvidia_gpu_graphics_engine_active_ratio",
        "nvidia_gpu_sm_active_ratio",
        "nvidia_gpu_sm_occupancy_ratio",
        "nvidia_gpu_tensor_active_ratio",
        "nvidia_gpu_dram_active_ratio",
        "nvidia_gpu_fp64_active_ratio",
        "nvidia_gpu_fp32_active_ratio",
        "nvidia_gpu_fp16_active_ratio",
        "nvidia_gpu_pcie_transmit_bytes_total",
        "nvidia_gpu_pcie_receive_bytes_total",
        "nvidia_gpu_nvlink_transmit_bytes_total",
        "nvidia_gpu_nvlink_receive_bytes_total",
    ];

    const fn free(name: &'static str) -> Label {
        Label { name, values: &[] }
    }
    const INSTANCE_LABELS: &[Label] = &[free("gpu"), free("uuid"), free("gpu_instance_id")];
    const fn awaited(name: &'static str, kind: Kind) -> Metric {
        Metric {
            name,
            kind,
            unit: "",
            labels: INSTANCE_LABELS,
            help: "test",
            source: "test",
        }
    }
    static TENSOR: Metric = awaited("nvidia_gpu_tensor_active_ratio", Kind::Gauge);
    static PCIE_TX: Metric = awaited("nvidia_gpu_pcie_transmit_bytes_total", Kind::Counter);
    static NVLINK_TX: Metric = awaited("nvidia_gpu_nvlink_transmit_bytes_total", Kind::Counter);
    static NVLINK_RX: Metric = awaited("nvidia_gpu_nvlink_receive_bytes_total", Kind::Counter);
    static MIG_INFO: Metric = Metric {
        name: "nvidia_gpu_mig_info",
        kind: Kind::Gauge,
        unit: "",
        labels: &[
            free("gpu"),
            free("uuid"),
            free("mig_uuid"),
            free("gpu_instance_id"),
            free("compute_instance_id"),
            free("profile"),
        ],
        help: "test",
        source: "test",
    };

    const UUID: &str = "GPU-a";

    fn identity() -> Samples {
        let mut s = Samples::default();
        s.add(&DRIVER_INFO, &["550.54.15", "12.550.54.15", "12.4"], 1.0);
        s.add(
            &GPU_INFO,
            &["0", UUID, "NVIDIA A100-SXM4-80GB", "00000000:10:00.0", "1"],
            1.0,
        );
        s
    }

    fn render(view: &View, samples: &Samples, at: Instant) -> String {
        view.render("gpu", samples, at)
    }

    #[test]
    fn gpu_readings_become_dcgm_fields_with_dcgm_labels_and_units() {
        let mut s = identity();
        s.add(&CLOCK, &["0", UUID, "sm"], 1.41e9);
        s.add(&CLOCK, &["0", UUID, "graphics"], 1.2e9);
        s.add(&TEMPERATURE, &["0", UUID], 41.0);
        s.add(&UTILIZATION, &["0", UUID], 0.29);
        s.add(&MEMORY_USED, &["0", UUID], 2.5 * MIB + 7.0);
        let text = render(&View::new("node-1".into()), &s, Instant::now());
        let labels = "gpu=\"0\",UUID=\"GPU-a\",pci_bus_id=\"00000000:10:00.0\",device=\"nvidia0\",\
                      modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"node-1\",DCGM_FI_DRIVER_VERSION=\"550.54.15\"";
        let expected = format!(
            "# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency in MHz.\n\
             # TYPE DCGM_FI_DEV_SM_CLOCK gauge\n\
             DCGM_FI_DEV_SM_CLOCK{{{labels}}} 1410\n\
             # HELP DCGM_FI_DEV_GPU_TEMP GPU temperature in degrees Celsius.\n\
             # TYPE DCGM_FI_DEV_GPU_TEMP gauge\n\
             DCGM_FI_DEV_GPU_TEMP{{{labels}}} 41\n\
             # HELP DCGM_FI_DEV_GPU_UTIL GPU utilization in percent.\n\
             # TYPE DCGM_FI_DEV_GPU_UTIL gauge\n\
             DCGM_FI_DEV_GPU_UTIL{{{labels}}} 29\n\
             # HELP DCGM_FI_DEV_FB_USED Frame buffer memory used in MiB.\n\
             # TYPE DCGM_FI_DEV_FB_USED gauge\n\
             DCGM_FI_DEV_FB_USED{{{labels}}} 2\n"
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn other_collectors_contribute_nothing_and_pods_label_the_gpu_series() {
        let view = View::new(String::new());
        let mut pods = Samples::default();
        pods.add(&ALLOCATION_INFO, &["0", UUID, "ml", "train", "worker"], 1.0);
        pods.add(&ALLOCATION_INFO, &["0", UUID, "aa", "first", "main"], 1.0);
        pods.add(&catalogue::POD_RESOURCES_ERRORS, &[], 2.0);
        assert_eq!(
            view.render("pods", &pods, Instant::now()),
            "# HELP system_info_exporter_pod_resources_errors_total Calls to the kubelet pod-resources API that failed or timed out.\n\
             # TYPE system_info_exporter_pod_resources_errors_total counter\n\
             system_info_exporter_pod_resources_errors_total 2\n"
        );
        let mut s = identity();
        s.add(&TEMPERATURE, &["0", UUID], 41.0);
        let text = render(&view, &s, Instant::now());
        // No Hostname label when there is none, and one pod per series.
        assert!(
            text.contains(
                "modelName=\"NVIDIA A100-SXM4-80GB\",DCGM_FI_DRIVER_VERSION=\"550.54.15\",\
                 container=\"main\",namespace=\"aa\",pod=\"first\"} 41"
            ),
            "{text}"
        );
        // The host collector's samples are not part of the view.
        let mut host = Samples::default();
        host.add(&catalogue::HOST_CPUS, &[], 8.0);
        assert_eq!(view.render("host", &host, Instant::now()), "");
    }

    #[test]
    fn counters_become_rates_between_consecutive_collections() {
        let view = View::new("h".into());
        let start = Instant::now();
        let collection = |tx: f64, nvlink: f64| {
            let mut s = identity();
            s.add(&PCIE_TX, &["0", UUID, ""], tx);
            s.add(&NVLINK_TX, &["0", UUID, ""], nvlink);
            s.add(&NVLINK_RX, &["0", UUID, ""], nvlink);
            s
        };
        let first = render(&view, &collection(1000.0, 0.0), start);
        assert!(
            !first.contains("PCIE_TX_BYTES"),
            "no rate from one collection: {first}"
        );
        // Other collectors' collections in between change nothing.
        view.render("host", &Samples::default(), start + Duration::from_secs(1));
        view.render("pods", &Samples::default(), start + Duration::from_secs(1));
        let second = render(
            &view,
            &collection(5000.0, 1_024_000.0),
            start + Duration::from_secs(2),
        );
        let scrape = values(&second);
        assert_eq!(scrape["DCGM_FI_PROF_PCIE_TX_BYTES"], 2000.0);
        // (2 × 1 024 000 bytes) / 2 s = 1000 KiB/s, ÷ 1000 as DCGM does.
        assert_eq!(scrape["DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"], 1.0);
        // A counter that went backwards (driver reload) gives no rate once.
        let third = render(
            &view,
            &collection(10.0, 0.0),
            start + Duration::from_secs(3),
        );
        assert!(!third.contains("PCIE_TX_BYTES"), "{third}");
        let fourth = render(
            &view,
            &collection(110.0, 0.0),
            start + Duration::from_secs(4),
        );
        assert_eq!(values(&fourth)["DCGM_FI_PROF_PCIE_TX_BYTES"], 100.0);
    }

    #[test]
    fn xid_errors_report_the_xid_whose_count_increased_last() {
        let view = View::new("h".into());
        let collection = |counts: &[(&str, f64)]| {
            let mut s = identity();
            for (xid, count) in counts {
                s.add(&XID_ERRORS, &["0", UUID, xid], *count);
            }
            render(&view, &s, Instant::now())
        };
        let series = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("DCGM_FI_DEV_XID_ERRORS{"))
                .map(|l| {
                    let at = l.find("err_code").unwrap();
                    l[at..].to_owned()
                })
        };
        let none = collection(&[("48", 0.0), ("79", 0.0)]);
        assert_eq!(
            series(&none).unwrap(),
            "err_code=\"0\",err_msg=\"No Error\"} 0"
        );
        let first = collection(&[("13", 2.0), ("48", 0.0), ("79", 0.0)]);
        assert_eq!(
            series(&first).unwrap(),
            "err_code=\"13\",err_msg=\"Graphics Engine Exception\"} 13"
        );
        // 13 stays the last XID while no count changes...
        let same = collection(&[("13", 2.0), ("48", 0.0), ("79", 0.0)]);
        assert_eq!(series(&same), series(&first));
        // ...and 48 takes over when it occurs, though 13 is counted more often.
        let later = collection(&[("13", 2.0), ("48", 1.0), ("79", 0.0)]);
        assert_eq!(
            series(&later).unwrap(),
            "err_code=\"48\",err_msg=\"Double Bit ECC Error\"} 48"
        );
        let unknown = collection(&[("13", 2.0), ("48", 1.0), ("79", 0.0), ("999", 1.0)]);
        assert_eq!(
            series(&unknown).unwrap(),
            "err_code=\"999\",err_msg=\"Unknown Error\"} 999"
        );
        // The last need not be the highest code, and another collector's
        // collection in between does not make old counts look new.
        let low = collection(&[("5", 1.0), ("13", 2.0), ("48", 1.0), ("999", 1.0)]);
        assert_eq!(
            series(&low).unwrap(),
            "err_code=\"5\",err_msg=\"Unknown Error\"} 5"
        );
        view.render("host", &Samples::default(), Instant::now());
        let again = collection(&[("5", 1.0), ("13", 2.0), ("48", 1.0), ("999", 1.0)]);
        assert_eq!(series(&again), series(&low));
        // Without watched events there is no XID field at all.
        assert!(series(&collection(&[])).is_none());
    }

    #[test]
    fn mig_instances_carry_their_profile_and_the_pod_holding_them() {
        let view = View::new("h".into());
        let mut pods = Samples::default();
        pods.add(
            &ALLOCATION_INFO,
            &["", "MIG-x", "ml", "infer", "server"],
            1.0,
        );
        view.render("pods", &pods, Instant::now());
        let mut s = identity();
        s.add(&MIG_INFO, &["0", UUID, "MIG-x", "3", "0", "1g.10gb"], 1.0);
        s.add(&TENSOR, &["0", UUID, ""], 0.25);
        s.add(&TENSOR, &["0", UUID, "3"], 0.5);
        let text = render(&view, &s, Instant::now());
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let base = "gpu=\"0\",UUID=\"GPU-a\",pci_bus_id=\"00000000:10:00.0\",device=\"nvidia0\",\
                    modelName=\"NVIDIA A100-SXM4-80GB\"";
        let after = "Hostname=\"h\",DCGM_FI_DRIVER_VERSION=\"550.54.15\"";
        assert_eq!(
            lines,
            [
                format!("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{base},{after}}} 0.25"),
                format!(
                    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{base},GPU_I_PROFILE=\"1g.10gb\",GPU_I_ID=\"3\",{after},\
                     container=\"server\",namespace=\"ml\",pod=\"infer\"}} 0.5"
                ),
            ]
        );
    }

    /// Field name → value of its only series.
    fn values(text: &str) -> HashMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap().to_owned();
                (name, value.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn every_source_is_a_native_metric_with_the_filtered_label() {
        for field in FIELDS {
            assert!(field.name.starts_with("DCGM_FI_"), "{}", field.name);
            for source in field.sources {
                match catalogue::ALL.iter().find(|m| m.name == *source) {
                    Some(metric) => {
                        if let Some((name, value)) = field.filter {
                            let label = metric.labels.iter().find(|l| l.name == name);
                            let label = label.unwrap_or_else(|| panic!("{source} has no {name}"));
                            assert!(
                                label.values.is_empty() || label.values.contains(&value),
                                "{source}: {name} is never {value}"
                            );
                        }
                    }
                    None => assert!(
                        AWAITED.contains(source),
                        "{}: {source} is not a native metric",
                        field.name
                    ),
                }
            }
        }
    }

    #[test]
    fn the_compatibility_doc_maps_every_field_with_its_type_and_unit() {
        let doc = include_str!("../docs/dcgm-compatibility.md");
        for field in FIELDS {
            let start = format!("| `{}` |", field.name);
            let row = doc.lines().find(|l| l.starts_with(&start));
            let row =
                row.unwrap_or_else(|| panic!("docs/dcgm-compatibility.md lacks {}", field.name));
            let cells: Vec<&str> = row.split(" | ").collect();
            let kind = match field.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "counter",
            };
            assert!(
                cells[1].starts_with(kind),
                "{}: type {kind} in FIELDS",
                field.name
            );
            assert_eq!(cells[2], field.unit, "{}: unit", field.name);
        }
    }
}
