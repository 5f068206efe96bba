//! Workload metrics end to end: GPU processes (with names and pods from a
//! proc filesystem and container runtime state laid out by the test), MIG
//! devices and GPM profiling metrics, from the NVML test double over HTTP.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{DoubleConfig, Driver, start_on_double};

const GPU0: (&str, &str) = ("gpu", "0");
const GPU1: (&str, &str) = ("gpu", "1");
const CONTAINER_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("workload")
        .join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `/proc/<pid>` with a command name and a cgroup.
fn fake_process(procfs: &Path, pid: u32, comm: &[u8], cgroup: &str) {
    let dir = procfs.join(pid.to_string());
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("comm"), [comm, b"\n"].concat()).unwrap();
    fs::write(dir.join("cgroup"), cgroup).unwrap();
}

/// containerd's bundle of a container, with the annotations the CRI plugin writes.
fn fake_container(state: &Path, id: &str, namespace: &str, pod: &str, container: &str) {
    let dir = state.join(id);
    fs::create_dir_all(&dir).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.1.0",
        "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-namespace": namespace,
            "io.kubernetes.cri.sandbox-name": pod,
            "io.kubernetes.cri.container-name": container,
        }
    });
    fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

#[test]
fn processes_carry_their_name_pod_memory_and_utilisation() {
    let dir = scratch("processes");
    let (procfs, state) = (dir.join("proc"), dir.join("state"));
    let cgroup = format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podab12.slice/cri-containerd-{CONTAINER_ID}.scope\n"
    );
    fake_process(&procfs, 4242, b"python3", &cgroup);
    fake_process(&procfs, 5151, b"Xorg", "0::/system.slice/display.service\n");
    fake_container(&state, CONTAINER_ID, "ml", "train-0", "worker");
    let base = "gpu_count = 2
gpu.1.mig = 1
gpu.1.mig_slots = 7
gpu.1.mig_device.0 = MIG-aaaaaaaa-0000-5000-8000-000000000001 gi=1 ci=0 profile=3g.40gb memory_total=42949672960 memory_used=4294967296
process.0 = gpu=0 pid=4242 type=compute memory=2147483648 sm=50 mem=20 enc=3 dec=4
process.1 = gpu=0 pid=5151 type=graphics memory=104857600
process.2 = gpu=1 pid=4242 type=compute memory=1073741824 gi=1 ci=0 sm=7
";
    let config = DoubleConfig::new("processes", base);
    let exporter = start_on_double(
        Driver::Current,
        &config,
        &[
            "--collector.processes",
            &format!("--path.procfs={}", procfs.display()),
            &format!("--path.container-state={}", state.display()),
        ],
    );
    let s = exporter.scrape_until("processes", |s| {
        s.has("nvidia_gpu_process_memory_used_bytes") && s.has("nvidia_gpu_up")
    });
    let pod = [
        ("namespace", "ml"),
        ("pod", "train-0"),
        ("container", "worker"),
    ];
    let python = [
        GPU0,
        ("pid", "4242"),
        ("process", "python3"),
        pod[0],
        pod[1],
        pod[2],
    ];
    let memory = |labels: &[(&str, &str)]| s.value("nvidia_gpu_process_memory_used_bytes", labels);
    assert_eq!(
        memory(&[&python[..], &[("type", "compute"), ("gpu_instance_id", "")]].concat()),
        Some(2147483648.0)
    );
    for (name, value) in [
        ("nvidia_gpu_process_sm_utilization_ratio", 0.5),
        ("nvidia_gpu_process_memory_utilization_ratio", 0.2),
        ("nvidia_gpu_process_encoder_utilization_ratio", 0.03),
        ("nvidia_gpu_process_decoder_utilization_ratio", 0.04),
    ] {
        assert_eq!(s.value(name, &python), Some(value), "{name}");
    }
    // Outside a pod: empty pod labels; without utilisation samples: 0.
    let xorg = [
        GPU0,
        ("pid", "5151"),
        ("process", "Xorg"),
        ("pod", ""),
        ("namespace", ""),
    ];
    assert_eq!(
        memory(&[&xorg[..], &[("type", "graphics")]].concat()),
        Some(104857600.0)
    );
    assert_eq!(
        s.value("nvidia_gpu_process_sm_utilization_ratio", &xorg),
        Some(0.0)
    );
    // In a MIG instance, with its GPU instance id.
    let mig = [GPU1, ("pid", "4242"), ("gpu_instance_id", "1"), pod[1]];
    assert_eq!(memory(&mig), Some(1073741824.0));
    assert_eq!(
        s.value("nvidia_gpu_process_sm_utilization_ratio", &mig),
        Some(0.07)
    );
    assert_eq!(s.find("nvidia_gpu_process_memory_used_bytes", &[]).len(), 3);

    // An exited process disappears at the next collection.
    config.write(&base.replace(
        "process.1 = gpu=0 pid=5151 type=graphics memory=104857600\n",
        "",
    ));
    let s = exporter.scrape_until("Xorg gone", |s| {
        s.find("nvidia_gpu_process_memory_used_bytes", &[("pid", "5151")])
            .is_empty()
    });
    assert!(
        s.find(
            "nvidia_gpu_process_sm_utilization_ratio",
            &[("pid", "5151")]
        )
        .is_empty()
    );
    assert_eq!(s.find("nvidia_gpu_process_memory_used_bytes", &[]).len(), 2);
}

#[test]
fn the_processes_collector_is_off_by_default() {
    let config = DoubleConfig::new("processes-off", "process.0 = gpu=0 pid=1 memory=1048576\n");
    let exporter = start_on_double(Driver::Current, &config, &[]);
    let s = exporter.scrape_until("GPU metrics", |s| s.has("nvidia_gpu_up"));
    assert!(!s.has("nvidia_gpu_process_memory_used_bytes"));
    assert!(
        s.find(
            "system_info_exporter_collect_success",
            &[("collector", "processes")]
        )
        .is_empty()
    );
}

#[test]
fn mig_devices_are_listed_and_empty_slots_skipped() {
    let config = DoubleConfig::new(
        "mig",
        "gpu_count = 2
gpu.1.mig = 1
gpu.1.mig_slots = 7
gpu.1.mig_device.0 = MIG-aaaaaaaa-0000-5000-8000-000000000001 gi=1 ci=0 profile=3g.40gb memory_total=42949672960 memory_used=4294967296
gpu.1.mig_device.3 = MIG-aaaaaaaa-0000-5000-8000-000000000002 gi=5 ci=1 profile=1g.10gb memory_total=10737418240 memory_used=0
",
    );
    let exporter = start_on_double(Driver::Current, &config, &[]);
    let s = exporter.scrape_until("MIG devices", |s| s.has("nvidia_gpu_mig_info"));
    assert_eq!(s.value("nvidia_gpu_mig_mode_enabled", &[GPU0]), Some(0.0));
    assert_eq!(s.value("nvidia_gpu_mig_mode_enabled", &[GPU1]), Some(1.0));
    let infos = s.find("nvidia_gpu_mig_info", &[GPU1]);
    assert_eq!(infos.len(), 2, "empty slots are skipped");
    let second = &s.find(
        "nvidia_gpu_mig_info",
        &[("mig_uuid", "MIG-aaaaaaaa-0000-5000-8000-000000000002")],
    )[0];
    assert_eq!(second.labels["gpu_instance_id"], "5");
    assert_eq!(second.labels["compute_instance_id"], "1");
    assert_eq!(second.labels["profile"], "1g.10gb");
    let instance = |gi| [GPU1, ("gpu_instance_id", gi)];
    assert_eq!(
        s.value("nvidia_gpu_mig_memory_used_bytes", &instance("1")),
        Some(4294967296.0)
    );
    assert_eq!(
        s.value("nvidia_gpu_mig_memory_total_bytes", &instance("1")),
        Some(42949672960.0)
    );
    assert_eq!(
        s.value("nvidia_gpu_mig_memory_used_bytes", &instance("5")),
        Some(0.0)
    );
    assert!(s.find("nvidia_gpu_mig_info", &[GPU0]).is_empty());
}

#[test]
fn gpm_profiling_metrics_are_ratios_and_traffic_counts_bytes() {
    let config = DoubleConfig::new(
        "gpm",
        "gpu_count = 2
gpu.0.gpm = 1
gpu.0.gpm_mig = 1
gpu.0.mig = 1
gpu.0.mig_slots = 7
gpu.0.mig_device.0 = MIG-bbbbbbbb-0000-5000-8000-000000000001 gi=2 ci=0 profile=3g.40gb memory_total=1 memory_used=0
gpu.0.gpm_value.1 = 70
gpu.0.gpm_value.2 = 45.5
gpu.0.gpm_value.3 = 30
gpu.0.gpm_value.5 = 12
gpu.0.gpm_value.10 = 60
gpu.0.gpm_value.11 = 0
gpu.0.gpm_value.12 = 25
gpu.0.gpm_value.13 = 5
gpu.0.gpm_value.20 = 100
gpu.0.gpm_value.21 = 50
gpu.0.gpm_value.60 = 1000
gpu.0.gpm_value.61 = 2000
",
    );
    let exporter = start_on_double(Driver::Current, &config, &[]);
    let s = exporter.scrape_until("GPM metrics", |s| s.has("nvidia_gpu_sm_active_ratio"));
    let whole = [GPU0, ("gpu_instance_id", "")];
    for (name, value) in [
        ("nvidia_gpu_graphics_engine_active_ratio", 0.7),
        ("nvidia_gpu_sm_active_ratio", 0.455),
        ("nvidia_gpu_sm_occupancy_ratio", 0.3),
        ("nvidia_gpu_tensor_active_ratio", 0.12),
        ("nvidia_gpu_dram_active_ratio", 0.6),
        ("nvidia_gpu_fp64_active_ratio", 0.0),
        ("nvidia_gpu_fp32_active_ratio", 0.25),
        ("nvidia_gpu_fp16_active_ratio", 0.05),
    ] {
        assert_eq!(s.value(name, &whole), Some(value), "{name}");
        // Per MIG GPU instance too.
        assert_eq!(
            s.value(name, &[GPU0, ("gpu_instance_id", "2")]),
            Some(value),
            "{name}"
        );
    }
    // A GPU without GPM simply lacks them.
    assert!(s.find("nvidia_gpu_sm_active_ratio", &[GPU1]).is_empty());

    // Rates integrate over the time between collections (200 ms here):
    // 100 MiB/s for at least 0.1 s is more than 10 MiB, and it only grows.
    let transmit = |s: &common::Scrape| {
        s.value("nvidia_gpu_pcie_transmit_bytes_total", &whole)
            .unwrap()
    };
    let first = transmit(&s);
    assert!(first >= 10.0 * 1048576.0, "{first}");
    let later = exporter.scrape_until("more traffic", |s| transmit(s) > first);
    // NVLink transmit is 20 times PCIe transmit in every interval.
    let nvlink = later
        .value("nvidia_gpu_nvlink_transmit_bytes_total", &whole)
        .unwrap();
    let ratio = nvlink / transmit(&later);
    assert!((ratio - 20.0).abs() < 1e-6, "{ratio}");
    assert!(
        later
            .value("nvidia_gpu_pcie_receive_bytes_total", &whole)
            .unwrap()
            > 0.0
    );
    assert_eq!(
        later.types["nvidia_gpu_pcie_transmit_bytes_total"],
        "counter"
    );
}

#[test]
fn a_hostile_process_table_yields_valid_exposition() {
    let dir = scratch("hostile");
    let procfs = dir.join("proc");
    let names: [&[u8]; 4] = [b"quo\"te", b"new\nline", b"bad\xff\xfeutf8", b"back\\slash"];
    let mut config = String::from("gpu_count = 1\nsynthetic_processes = 0 10000 100000\n");
    for (i, name) in names.iter().enumerate() {
        let pid = 1000 + i as u32;
        fake_process(&procfs, pid, name, "0::/\n");
        config.push_str(&format!(
            "process.{i} = gpu=0 pid={pid} memory=1048576 sm=9\n"
        ));
    }
    let config = DoubleConfig::new("hostile", &config);
    let exporter = start_on_double(
        Driver::Current,
        &config,
        &[
            "--collector.processes",
            &format!("--path.procfs={}", procfs.display()),
        ],
    );
    let s = exporter.scrape_until("10,004 processes", |s| {
        s.find("nvidia_gpu_process_memory_used_bytes", &[]).len() == 10_004
    });
    // Every name survives escaping, invalid UTF-8 replaced.
    for (i, expected) in [
        "quo\"te",
        "new\nline",
        "bad\u{fffd}\u{fffd}utf8",
        "back\\slash",
    ]
    .iter()
    .enumerate()
    {
        let pid = (1000 + i).to_string();
        let sample = &s.find("nvidia_gpu_process_memory_used_bytes", &[("pid", &pid)])[0];
        assert_eq!(sample.labels["process"], *expected);
    }
    let duration = s
        .value(
            "system_info_exporter_collect_duration_seconds",
            &[("collector", "processes")],
        )
        .unwrap();
    assert!(
        duration < 10.0,
        "a collection of 10,004 processes took {duration} s"
    );
    if common::require_tool("promtool", "apt-get install prometheus") {
        common::promtool_check_metrics(&s.text);
    }
}
