//! Turns snapshots into the Prometheus text exposition. A collector's
//! families are rendered and encoded once, when its snapshot is published, so a
//! scrape only concatenates prepared text; its cost does not grow with the
//! number of GPUs. Nothing here calls NVML or the OS.

use std::time::UNIX_EPOCH;

use prometheus::core::Collector as _;
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};

use crate::collector::{Collector, gpu::GpuCollector, host::HostCollector, pods::PodCollector};
use crate::snapshot::{
    Collected, GpuSnapshot, GpuStats, HostSnapshot, Outcome, PodAllocations, Published,
};

/// Version and revision for `system_info_exporter_build_info`.
#[derive(Debug, Clone)]
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
}

impl BuildInfo {
    pub const CURRENT: BuildInfo = BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        revision: match option_env!("SIE_REVISION") {
            Some(revision) => revision,
            None => "unknown",
        },
    };
}

/// Snapshots that know their own metric families.
pub trait Families {
    fn families(&self) -> Vec<MetricFamily>;
}

impl Families for GpuSnapshot {
    fn families(&self) -> Vec<MetricFamily> {
        gpu_families(self)
    }
}

impl Families for HostSnapshot {
    fn families(&self) -> Vec<MetricFamily> {
        host_families(self)
    }
}

impl Families for PodAllocations {
    fn families(&self) -> Vec<MetricFamily> {
        let mut errors = family(
            "system_info_exporter_pod_resources_errors_total",
            "Calls to the kubelet pod-resources API that failed or timed out.",
            MetricType::COUNTER,
        );
        add(&mut errors, &[], self.errors_total as f64);
        vec![errors]
    }
}

/// Renders and encodes a fresh collection, ready to be published.
pub fn prepare<T: Families>(collected: Collected<T>) -> Published<T> {
    let exposition = encode(collected.data.families());
    Published {
        collected,
        exposition,
    }
}

/// Encodes families in the text format, leaving out families without samples
/// (a reading no GPU offers).
fn encode(mut families: Vec<MetricFamily>) -> String {
    families.retain(|family| !family.get_metric().is_empty());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut text = Vec::with_capacity(4096);
    TextEncoder::new()
        .encode(&families, &mut text)
        .expect("families without samples were removed, and writing to a Vec cannot fail");
    String::from_utf8(text).expect("the text encoder writes UTF-8")
}

/// The latest published result of each collector; `None` before its first
/// collection, or for a collector that is not running.
#[derive(Clone, Copy, Default)]
pub struct Snapshots<'a> {
    pub gpu: Option<&'a Published<GpuSnapshot>>,
    pub host: Option<&'a Published<HostSnapshot>>,
    pub pods: Option<&'a Published<PodAllocations>>,
}

/// The whole `/metrics` body: the exporter's own metrics, each collector's
/// prepared exposition, GPU allocations and the process metrics.
pub fn scrape(snapshots: Snapshots, process: &ProcessCollector, build: &BuildInfo) -> String {
    let outcomes: Vec<(&str, &Outcome)> = [
        snapshots
            .gpu
            .map(|p| (GpuCollector::NAME, &p.collected.outcome)),
        snapshots
            .host
            .map(|p| (HostCollector::NAME, &p.collected.outcome)),
        snapshots
            .pods
            .map(|p| (PodCollector::NAME, &p.collected.outcome)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut own = self_families(&outcomes, build);
    if let Some(pods) = snapshots.pods {
        own.push(allocation_family(
            snapshots.gpu.map(|p| &p.collected.data),
            &pods.collected.data,
        ));
    }
    let own = encode(own);
    let process = encode(process.collect());
    let prepared = [
        snapshots.gpu.map(|p| p.exposition.as_str()),
        snapshots.host.map(|p| p.exposition.as_str()),
        snapshots.pods.map(|p| p.exposition.as_str()),
    ];
    let prepared_len: usize = prepared.iter().flatten().map(|t| t.len()).sum();
    let mut body = String::with_capacity(own.len() + process.len() + prepared_len);
    body.push_str(&own);
    prepared
        .into_iter()
        .flatten()
        .for_each(|text| body.push_str(text));
    body.push_str(&process);
    body
}

/// `nvidia_gpu_allocation_info`: which container holds which GPU. Rendered per
/// scrape because it joins two collectors' results (few series).
fn allocation_family(gpu: Option<&GpuSnapshot>, pods: &PodAllocations) -> MetricFamily {
    let mut family = family(
        "nvidia_gpu_allocation_info",
        "A GPU or MIG device allocated to a container by the kubelet; always 1. Join on uuid.",
        MetricType::GAUGE,
    );
    for allocation in &pods.allocations {
        let index = gpu
            .and_then(|g| g.gpus.iter().find(|s| s.identity.uuid == allocation.uuid))
            .map(|s| s.index.to_string())
            .unwrap_or_default();
        add(
            &mut family,
            &[
                ("gpu", &index),
                ("uuid", &allocation.uuid),
                ("namespace", &allocation.namespace),
                ("pod", &allocation.pod),
                ("container", &allocation.container),
            ],
            1.0,
        );
    }
    family
}

type GpuReading = fn(&GpuStats) -> Option<f64>;

/// Per-GPU gauges that carry only the `gpu` and `uuid` labels.
const GPU_GAUGES: &[(&str, &str, GpuReading)] = &[
    (
        "nvidia_gpu_temperature_celsius",
        "GPU core temperature in degrees Celsius.",
        |g| g.temperature_celsius,
    ),
    (
        "nvidia_gpu_power_usage_watts",
        "Power drawn by the GPU and its memory.",
        |g| g.power_usage_watts,
    ),
    (
        "nvidia_gpu_power_limit_watts",
        "Power limit the driver currently enforces.",
        |g| g.power_limit_watts,
    ),
    (
        "nvidia_gpu_memory_total_bytes",
        "Installed frame buffer memory.",
        |g| g.memory.map(|m| m.total_bytes as f64),
    ),
    (
        "nvidia_gpu_memory_used_bytes",
        "Frame buffer memory allocated by processes.",
        |g| g.memory.map(|m| m.used_bytes as f64),
    ),
    (
        "nvidia_gpu_memory_free_bytes",
        "Frame buffer memory not allocated.",
        |g| g.memory.map(|m| m.free_bytes as f64),
    ),
    (
        "nvidia_gpu_memory_reserved_bytes",
        "Frame buffer memory reserved by the driver and firmware.",
        |g| g.memory.map(|m| m.reserved_bytes as f64),
    ),
    (
        "nvidia_gpu_utilization_ratio",
        "Fraction of the last sample period in which a kernel ran on the GPU.",
        |g| g.utilization_ratio,
    ),
    (
        "nvidia_gpu_memory_utilization_ratio",
        "Fraction of the last sample period in which device memory was read or written.",
        |g| g.memory_utilization_ratio,
    ),
    (
        "nvidia_gpu_encoder_utilization_ratio",
        "Utilization of the video encoder, 0 to 1.",
        |g| g.encoder_utilization_ratio,
    ),
    (
        "nvidia_gpu_decoder_utilization_ratio",
        "Utilization of the video decoder, 0 to 1.",
        |g| g.decoder_utilization_ratio,
    ),
    (
        "nvidia_gpu_performance_state",
        "Performance state, from 0 (P0, fastest) to 15 (P15, slowest).",
        |g| g.performance_state.map(f64::from),
    ),
];

fn family(name: &str, help: &str, kind: MetricType) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family
}

fn add(family: &mut MetricFamily, labels: &[(&str, &str)], value: f64) {
    let mut metric = Metric::default();
    metric.set_label(
        labels
            .iter()
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect(),
    );
    if family.get_field_type() == MetricType::COUNTER {
        let mut counter = Counter::default();
        counter.set_value(value);
        metric.set_counter(counter);
    } else {
        let mut gauge = Gauge::default();
        gauge.set_value(value);
        metric.set_gauge(gauge);
    }
    family.mut_metric().push(metric);
}

fn gauge(name: &str, help: &str, labels: &[(&str, &str)], value: f64) -> MetricFamily {
    let mut family = family(name, help, MetricType::GAUGE);
    add(&mut family, labels, value);
    family
}

fn bool_value(value: bool) -> f64 {
    if value { 1.0 } else { 0.0 }
}

/// Build info and the per-collector self-metrics. They are rendered per
/// scrape because each family spans every collector.
fn self_families(outcomes: &[(&str, &Outcome)], build: &BuildInfo) -> Vec<MetricFamily> {
    let build_info = gauge(
        "system_info_exporter_build_info",
        "Version and revision of the exporter; always 1.",
        &[("version", build.version), ("revision", build.revision)],
        1.0,
    );
    let mut duration = family(
        "system_info_exporter_collect_duration_seconds",
        "How long the collector's last collection took.",
        MetricType::GAUGE,
    );
    let mut success = family(
        "system_info_exporter_collect_success",
        "Whether the collector's last collection read its source (1) or not (0).",
        MetricType::GAUGE,
    );
    let mut timestamp = family(
        "system_info_exporter_last_collect_timestamp_seconds",
        "Unix time at which the collector's last collection finished.",
        MetricType::GAUGE,
    );
    for (name, outcome) in outcomes {
        let labels = [("collector", *name)];
        let finished = outcome
            .finished_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        add(&mut duration, &labels, outcome.duration.as_secs_f64());
        add(&mut success, &labels, bool_value(outcome.success));
        add(&mut timestamp, &labels, finished.as_secs_f64());
    }
    vec![build_info, duration, success, timestamp]
}

fn gpu_families(snapshot: &GpuSnapshot) -> Vec<MetricFamily> {
    let mut families = Vec::new();
    families.push(gauge(
        "nvidia_nvml_up",
        "Whether NVML is initialised and answering (1) or not (0).",
        &[],
        bool_value(snapshot.nvml_up),
    ));
    if !snapshot.nvml_up {
        return families;
    }
    if let Some(driver) = &snapshot.driver {
        families.push(gauge(
            "nvidia_driver_info",
            "Versions of the NVIDIA driver, NVML and the CUDA driver API; always 1.",
            &[
                ("driver_version", &driver.driver_version),
                ("nvml_version", &driver.nvml_version),
                ("cuda_driver_version", &driver.cuda_driver_version),
            ],
            1.0,
        ));
    }
    families.push(gauge(
        "nvidia_gpus",
        "Number of GPUs NVML reports.",
        &[],
        snapshot.gpus.len() as f64,
    ));

    let mut info = family(
        "nvidia_gpu_info",
        "Identity of a GPU; always 1. Join on uuid for the name, PCI bus ID and serial.",
        MetricType::GAUGE,
    );
    let mut up = family(
        "nvidia_gpu_up",
        "Whether the GPU answers (1) or is lost or failing (0).",
        MetricType::GAUGE,
    );
    let mut gauges: Vec<MetricFamily> = GPU_GAUGES
        .iter()
        .map(|(name, help, _)| family(name, help, MetricType::GAUGE))
        .collect();
    let mut energy = family(
        "nvidia_gpu_energy_consumption_joules_total",
        "Energy the GPU consumed since the driver was last loaded.",
        MetricType::COUNTER,
    );
    let mut clock = family(
        "nvidia_gpu_clock_hertz",
        "Current clock frequency of a clock domain.",
        MetricType::GAUGE,
    );
    let mut clock_max = family(
        "nvidia_gpu_clock_max_hertz",
        "Maximum clock frequency of a clock domain.",
        MetricType::GAUGE,
    );
    let mut fan = family(
        "nvidia_gpu_fan_speed_ratio",
        "Intended fan speed as a fraction of its maximum, 0 to 1.",
        MetricType::GAUGE,
    );

    for gpu in &snapshot.gpus {
        let index = gpu.index.to_string();
        let id = &gpu.identity;
        let labels = [("gpu", index.as_str()), ("uuid", id.uuid.as_str())];
        add(&mut up, &labels, bool_value(gpu.up));
        if !id.uuid.is_empty() {
            add(
                &mut info,
                &[
                    ("gpu", &index),
                    ("uuid", &id.uuid),
                    ("name", &id.name),
                    ("pci_bus_id", &id.pci_bus_id),
                    ("serial", &id.serial),
                ],
                1.0,
            );
        }
        for ((_, _, read), family) in GPU_GAUGES.iter().zip(&mut gauges) {
            if let Some(value) = read(gpu) {
                add(family, &labels, value);
            }
        }
        if let Some(joules) = gpu.energy_joules {
            add(&mut energy, &labels, joules);
        }
        for reading in &gpu.clocks {
            let clock_labels = [labels[0], labels[1], ("clock", reading.clock)];
            if let Some(hertz) = reading.hertz {
                add(&mut clock, &clock_labels, hertz);
            }
            if let Some(hertz) = reading.max_hertz {
                add(&mut clock_max, &clock_labels, hertz);
            }
        }
        for (index, ratio) in &gpu.fan_speed_ratios {
            let fan_index = index.to_string();
            add(
                &mut fan,
                &[labels[0], labels[1], ("fan", &fan_index)],
                *ratio,
            );
        }
    }
    families.extend([info, up, energy, clock, clock_max, fan]);
    families.extend(gauges);
    families
}

fn host_families(host: &HostSnapshot) -> Vec<MetricFamily> {
    let mut families = vec![gauge(
        "host_info",
        "Host name, operating system and kernel; always 1.",
        &[
            ("hostname", &host.hostname),
            ("os", &host.os),
            ("os_version", &host.os_version),
            ("kernel_version", &host.kernel_version),
        ],
        1.0,
    )];
    let plain: [(&str, &str, f64); 11] = [
        (
            "host_boot_time_seconds",
            "Unix time at which the host booted.",
            host.boot_time_seconds as f64,
        ),
        ("host_cpus", "Number of logical CPUs.", host.cpus as f64),
        (
            "host_cpu_usage_ratio",
            "Fraction of CPU time in use across all CPUs since the previous collection.",
            host.cpu_usage_ratio,
        ),
        ("host_load1", "1-minute load average.", host.load[0]),
        ("host_load5", "5-minute load average.", host.load[1]),
        ("host_load15", "15-minute load average.", host.load[2]),
        (
            "host_memory_total_bytes",
            "Total physical memory.",
            host.memory_total_bytes as f64,
        ),
        (
            "host_memory_available_bytes",
            "Memory available for new allocations without swapping.",
            host.memory_available_bytes as f64,
        ),
        (
            "host_memory_used_bytes",
            "Memory in use.",
            host.memory_used_bytes as f64,
        ),
        (
            "host_swap_total_bytes",
            "Total swap space.",
            host.swap_total_bytes as f64,
        ),
        (
            "host_swap_used_bytes",
            "Swap space in use.",
            host.swap_used_bytes as f64,
        ),
    ];
    families.extend(
        plain
            .iter()
            .map(|(name, help, value)| gauge(name, help, &[], *value)),
    );

    let mut size = family(
        "host_filesystem_size_bytes",
        "Size of the filesystem.",
        MetricType::GAUGE,
    );
    let mut avail = family(
        "host_filesystem_avail_bytes",
        "Space available to unprivileged users.",
        MetricType::GAUGE,
    );
    for fs in &host.filesystems {
        let labels = [
            ("mountpoint", fs.mountpoint.as_str()),
            ("device", fs.device.as_str()),
            ("fstype", fs.fstype.as_str()),
        ];
        add(&mut size, &labels, fs.size_bytes as f64);
        add(&mut avail, &labels, fs.avail_bytes as f64);
    }
    let mut received = family(
        "host_network_receive_bytes_total",
        "Bytes received on the interface.",
        MetricType::COUNTER,
    );
    let mut transmitted = family(
        "host_network_transmit_bytes_total",
        "Bytes transmitted on the interface.",
        MetricType::COUNTER,
    );
    for net in &host.networks {
        let labels = [("interface", net.interface.as_str())];
        add(&mut received, &labels, net.receive_bytes_total as f64);
        add(&mut transmitted, &labels, net.transmit_bytes_total as f64);
    }
    families.extend([size, avail, received, transmitted]);
    families
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::snapshot::{ClockReading, DriverInfo, GpuIdentity, GpuMemory};

    fn collected<T>(data: T, success: bool) -> Collected<T> {
        let outcome = Outcome {
            success,
            duration: Duration::from_millis(3),
            finished_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            last_success: None,
        };
        Collected { data, outcome }
    }

    fn gpu(index: u32) -> GpuStats {
        GpuStats {
            index,
            identity: GpuIdentity {
                uuid: format!("GPU-{index}"),
                name: "NVIDIA A100".into(),
                pci_bus_id: "00000000:10:00.0".into(),
                serial: "123".into(),
            },
            up: true,
            temperature_celsius: Some(45.0),
            power_usage_watts: Some(250.5),
            energy_joules: Some(1234.5),
            memory: Some(GpuMemory {
                total_bytes: 100,
                used_bytes: 60,
                free_bytes: 30,
                reserved_bytes: 10,
            }),
            clocks: vec![ClockReading {
                clock: "sm",
                hertz: Some(1.41e9),
                max_hertz: None,
            }],
            fan_speed_ratios: vec![(1, 0.5)],
            ..GpuStats::default()
        }
    }

    fn scrape_text(gpu: Option<GpuSnapshot>, host: Option<HostSnapshot>) -> String {
        let success = gpu.as_ref().is_none_or(|g| g.nvml_up);
        let gpu = gpu.map(|g| prepare(collected(g, success)));
        let host = host.map(|h| prepare(collected(h, true)));
        let process = ProcessCollector::for_self();
        let snapshots = Snapshots {
            gpu: gpu.as_ref(),
            host: host.as_ref(),
            pods: None,
        };
        scrape(snapshots, &process, &BuildInfo::CURRENT)
    }

    #[test]
    fn renders_gpus_with_their_labels_and_omits_missing_readings() {
        let lost = GpuStats {
            index: 1,
            identity: GpuIdentity {
                uuid: "GPU-1".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let snapshot = GpuSnapshot {
            nvml_up: true,
            nvml_error: None,
            driver: Some(DriverInfo {
                driver_version: "550.54.15".into(),
                nvml_version: "12.550".into(),
                cuda_driver_version: "12.4".into(),
            }),
            gpus: vec![gpu(0), lost],
        };
        let out = scrape_text(Some(snapshot), None);
        for line in [
            "nvidia_nvml_up 1",
            "nvidia_gpus 2",
            "nvidia_gpu_up{gpu=\"0\",uuid=\"GPU-0\"} 1",
            "nvidia_gpu_up{gpu=\"1\",uuid=\"GPU-1\"} 0",
            "nvidia_gpu_temperature_celsius{gpu=\"0\",uuid=\"GPU-0\"} 45",
            "nvidia_gpu_power_usage_watts{gpu=\"0\",uuid=\"GPU-0\"} 250.5",
            "nvidia_gpu_energy_consumption_joules_total{gpu=\"0\",uuid=\"GPU-0\"} 1234.5",
            "# TYPE nvidia_gpu_energy_consumption_joules_total counter",
            "nvidia_gpu_memory_reserved_bytes{gpu=\"0\",uuid=\"GPU-0\"} 10",
            "nvidia_gpu_clock_hertz{gpu=\"0\",uuid=\"GPU-0\",clock=\"sm\"} 1410000000",
            "nvidia_gpu_fan_speed_ratio{gpu=\"0\",uuid=\"GPU-0\",fan=\"1\"} 0.5",
            "nvidia_gpu_info{gpu=\"1\",uuid=\"GPU-1\",name=\"\",pci_bus_id=\"\",serial=\"\"} 1",
            "nvidia_driver_info{driver_version=\"550.54.15\",nvml_version=\"12.550\",cuda_driver_version=\"12.4\"} 1",
            "system_info_exporter_collect_success{collector=\"gpu\"} 1",
            "system_info_exporter_collect_duration_seconds{collector=\"gpu\"} 0.003",
            "system_info_exporter_last_collect_timestamp_seconds{collector=\"gpu\"} 1700000000",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        // Readings a GPU does not offer are absent, not zero: no family without samples.
        for absent in [
            "nvidia_gpu_power_limit_watts",
            "nvidia_gpu_clock_max_hertz",
            "nvidia_gpu_utilization_ratio",
        ] {
            assert!(!out.contains(absent), "{absent} should be absent in\n{out}");
        }
        assert!(!out.contains("nvidia_gpu_temperature_celsius{gpu=\"1\""));
    }

    #[test]
    fn without_nvml_only_nvml_up_is_rendered() {
        let snapshot = GpuSnapshot {
            nvml_error: Some("no driver".into()),
            ..GpuSnapshot::default()
        };
        let out = scrape_text(Some(snapshot), None);
        assert!(out.contains("\nnvidia_nvml_up 0\n"));
        assert!(out.contains("system_info_exporter_collect_success{collector=\"gpu\"} 0"));
        assert!(!out.contains("nvidia_gpus"));
        assert!(!out.contains("host_"));
    }

    #[test]
    fn renders_host_statistics() {
        let host = HostSnapshot {
            hostname: "node-1".into(),
            cpus: 8,
            cpu_usage_ratio: 0.25,
            load: [1.5, 1.0, 0.5],
            filesystems: vec![crate::snapshot::Filesystem {
                mountpoint: "/".into(),
                device: "/dev/sda1".into(),
                fstype: "ext4".into(),
                size_bytes: 1000,
                avail_bytes: 400,
            }],
            networks: vec![crate::snapshot::NetworkInterface {
                interface: "eth0".into(),
                receive_bytes_total: 7,
                transmit_bytes_total: 9,
            }],
            ..HostSnapshot::default()
        };
        let out = scrape_text(None, Some(host));
        for line in [
            "host_cpus 8",
            "host_cpu_usage_ratio 0.25",
            "host_load1 1.5",
            "host_load15 0.5",
            "host_filesystem_avail_bytes{mountpoint=\"/\",device=\"/dev/sda1\",fstype=\"ext4\"} 400",
            "host_network_transmit_bytes_total{interface=\"eth0\"} 9",
            "# TYPE host_network_receive_bytes_total counter",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        assert!(out.contains("host_info{hostname=\"node-1\""));
        assert!(
            !out.contains("nvidia_nvml_up"),
            "GPU collector has not run yet"
        );
    }
}
