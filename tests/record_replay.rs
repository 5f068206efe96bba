//! `record-nvml` → replay: the NVML test double with a rich config is
//! recorded, the profile replayed on the double in strict mode, and the
//! exporter serves the same GPU readings on both, identifiers compared
//! through the recorder's placeholders (or kept with `--keep-identifiers`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{BIN, DoubleConfig, Driver, Exporter, Scrape, nvml_double, start_on_double};

/// Three GPUs with what a profile must carry: identifiers that are not the
/// double's defaults, NVLink with errors and a link that cannot be read,
/// MIG devices, GPM, the fabric (v2 only, as on R550-R575), processes, and
/// queries failing with NOT_SUPPORTED and other codes, per query and per
/// element.
const RICH: &str = "
gpu_count = 3
driver_version = 570.86.15
nvml_version = 12.570.86.15
cuda_driver_version = 12080
fabric_info_max_version = 2
gpu.0.name = NVIDIA H100 80GB HBM3
gpu.0.uuid = GPU-f7b02328-d6fe-5b1f-9683-15041689bb03
gpu.0.serial = 1650124008279
gpu.0.pci_domain = 0x2
gpu.0.pci_bus = 0xdb
gpu.0.pci_device = 0x1
gpu.0.pci_device_id = 0x233010de
gpu.0.pci_subsystem_id = 0x16c110de
gpu.0.fans = 0
gpu.0.power_limit = 700000
gpu.0.max_clock.1 = 1980
gpu.0.nvlinks = 3
gpu.0.nvlink_state.2 = 0
gpu.0.nvlink_crc_flit.0 = 7
gpu.0.nvlink_replay.1 = 2
gpu.0.nvlink_fail.1 = UNKNOWN
gpu.0.error.nvlink_recovery.0 = NO_PERMISSION
gpu.0.unsupported = retired_sbe retired_dbe retired_pending nvlink_crc_data.2
gpu.0.remapped_cor = 3
gpu.0.violation.0 = 123456789
gpu.0.gpm = 1
gpu.0.gpm_mig = 1
gpu.0.gpm_value.1 = 70
gpu.0.gpm_value.2 = 45
gpu.0.gpm_value.3 = 30
gpu.0.gpm_value.5 = 12.5
gpu.0.gpm_value.10 = 60
gpu.0.gpm_value.20 = 100
gpu.0.gpm_value.61 = 2000
gpu.0.mig = 1
gpu.0.mig_slots = 7
gpu.0.mig_device.0 = MIG-5c3d7a1b-86a7-5b3f-a1b3-2f5f0e3c8a10 gi=1 ci=0 profile=3g.40gb memory_total=42949672960 memory_used=1073741824
gpu.0.mig_device.2 = MIG-6d4e8b2c-97b8-5c40-b2c4-3a6a1f4d9b21 gi=2 ci=0 profile=3g.40gb memory_total=42949672960 memory_used=2147483648
gpu.0.fabric_state = 3
gpu.0.fabric_clique_id = 32766
gpu.0.fabric_cluster_uuid = 9c6f5af3-53bf-49b5-a436-b66766c413c3
gpu.0.fabric_health_mask = 0x1aa
gpu.1.uuid = GPU-0b5f2a44-71c2-4e0b-8f7a-6c1d2e3f4a5b
gpu.1.serial = 1650124008280
gpu.1.pci_bus = 0x1b
gpu.1.unsupported = power_usage fan_speed.1 clock.3 memory_temperature ecc_mode pcie_max_width
gpu.1.error.temperature_threshold.2 = NO_PERMISSION
gpu.1.error.energy = NO_PERMISSION
gpu.1.supported_events = 0x8
gpu.1.recovery_action = 2
gpu.1.fabric_state = 3
gpu.1.fabric_cluster_uuid = 9c6f5af3-53bf-49b5-a436-b66766c413c3
gpu.2.fail = GPU_IS_LOST
process.train = gpu=0 pid=1 type=compute memory=1073741824 gi=1 ci=0 sm=10 mem=5
process.viz = gpu=1 pid=1 type=graphics memory=268435456
";

/// Identifiers in `RICH` that must not appear in a profile recorded
/// without `--keep-identifiers`.
const IDENTIFIERS: &[&str] = &[
    "f7b02328-d6fe-5b1f-9683-15041689bb03",
    "1650124008279",
    "5c3d7a1b-86a7-5b3f-a1b3-2f5f0e3c8a10",
    "6d4e8b2c-97b8-5c40-b2c4-3a6a1f4d9b21",
    "0b5f2a44-71c2-4e0b-8f7a-6c1d2e3f4a5b",
    "1650124008280",
    "9c6f5af3",
    "0xdb",
    "0x1b",
];

/// Families that change by themselves, so two runs differ: GPM traffic is
/// integrated over the time between collections.
const MOVING: &[&str] = &[
    "nvidia_gpu_pcie_transmit_bytes_total",
    "nvidia_gpu_pcie_receive_bytes_total",
    "nvidia_gpu_nvlink_transmit_bytes_total",
    "nvidia_gpu_nvlink_receive_bytes_total",
];

fn dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("record-replay");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `record-nvml` on the double configured by `config`, with `args`.
fn record_nvml(config: &Path, args: &[&str]) -> Output {
    record_nvml_on(Driver::Current, config, args)
}

fn record_nvml_on(driver: Driver, config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("record-nvml")
        .args(args)
        .env("SIE_NVML_LIBRARY", nvml_double(driver))
        .env("NVML_DOUBLE_CONFIG", config)
        .env("NVML_DOUBLE_STRICT", "1")
        .output()
        .expect("cannot run the exporter")
}

/// Records `config` into a profile file named `name`; returns its text.
fn record(config: &Path, name: &str, args: &[&str]) -> (PathBuf, String) {
    record_on(Driver::Current, config, name, args)
}

fn record_on(driver: Driver, config: &Path, name: &str, args: &[&str]) -> (PathBuf, String) {
    let out = dir().join(name);
    let _ = std::fs::remove_file(&out);
    let mut all = vec!["--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = record_nvml_on(driver, config, &all);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "record-nvml failed: {stderr}");
    assert!(stderr.contains("3 GPU(s) recorded"), "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    (out, text)
}

/// The exporter's scrape once every GPU family of `RICH` is there, and a
/// collection later (GPM needs two samples; an older driver has none).
fn scrape(exporter: &Exporter) -> Scrape {
    let families = |s: &Scrape| {
        [
            "nvidia_gpu_mig_info",
            "nvidia_gpu_process_memory_used_bytes",
            "nvidia_gpu_clock_max_hertz",
        ]
        .iter()
        .all(|name| s.has(name))
    };
    let first = exporter.scrape_until("every GPU family", families);
    let gpu = [("collector", "gpu")];
    let last = |s: &Scrape| s.value("system_info_exporter_last_collect_timestamp_seconds", &gpu);
    exporter.scrape_until("another collection", |s| last(s) != last(&first))
}

/// The GPU samples, label values passed through `map`: name, labels, value.
fn gpu_samples(s: &Scrape, map: &BTreeMap<String, String>) -> BTreeSet<String> {
    s.samples
        .iter()
        .filter(|s| s.name.starts_with("nvidia_") && !MOVING.contains(&s.name.as_str()))
        .map(|s| {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={:?}", map.get(v).unwrap_or(v)))
                .collect();
            format!("{}{{{}}} {}", s.name, labels.join(","), s.value)
        })
        .collect()
}

/// The placeholder of each identifier label: real value → replay's value,
/// matched by GPU index (and MIG instance).
fn placeholder_map(real: &Scrape, replay: &Scrape) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut pair = |name: &str, key: &[&str], labels: &[&str]| {
        for sample in real.find(name, &[]) {
            let id: Vec<(&str, &str)> = key
                .iter()
                .map(|k| (*k, sample.labels[*k].as_str()))
                .collect();
            let twin = replay.find(name, &id);
            assert_eq!(twin.len(), 1, "{name}{id:?} in the replay");
            for label in labels {
                let (from, to) = (&sample.labels[*label], &twin[0].labels[*label]);
                assert_ne!(from, to, "{label} {from} was not replaced");
                // GPUs of one fabric cluster share its UUID, and so its placeholder.
                let before = map.insert(from.clone(), to.clone());
                assert!(before.is_none_or(|b| b == *to), "{from}: two placeholders");
            }
        }
    };
    pair(
        "nvidia_gpu_info",
        &["gpu"],
        &["uuid", "serial", "pci_bus_id"],
    );
    pair(
        "nvidia_gpu_mig_info",
        &["gpu", "gpu_instance_id", "compute_instance_id"],
        &["mig_uuid"],
    );
    pair("nvidia_gpu_fabric_info", &["gpu"], &["cluster_uuid"]);
    map
}

/// Runs the exporter on `RICH` and on the replayed `profile` with `flags`.
fn both(test: &str, profile: &Path, flags: &[&str]) -> (Scrape, Scrape) {
    both_on(Driver::Current, test, profile, flags)
}

/// As `both`, recorded from the double built as `driver`; the replay runs
/// on the current one.
fn both_on(driver: Driver, test: &str, profile: &Path, flags: &[&str]) -> (Scrape, Scrape) {
    let rich = DoubleConfig::new(test, RICH);
    let real = start_on_double(driver, &rich, flags);
    let replay_config = DoubleConfig {
        path: profile.to_owned(),
    };
    let mut args = common::double_args(Driver::Current);
    args.extend(flags.iter().map(|f| f.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let replay =
        Exporter::start_with_env(&args, Some(&replay_config), &[("NVML_DOUBLE_STRICT", "1")]);
    let (real_scrape, replay_scrape) = (scrape(&real), scrape(&replay));
    assert_eq!(replay_scrape.value("nvidia_nvml_up", &[]), Some(1.0));
    assert!(
        !replay.log().contains("nvml double:"),
        "the double complained about the profile:\n{}",
        replay.log()
    );
    (real_scrape, replay_scrape)
}

/// The same samples on both, at least `least` of them.
fn assert_same(real: &BTreeSet<String>, replay: &BTreeSet<String>, least: usize) {
    let missing: Vec<_> = real.difference(replay).collect();
    let extra: Vec<_> = replay.difference(real).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served on the recorded double only:\n{missing:#?}\nserved on the replay only:\n{extra:#?}"
    );
    assert!(real.len() >= least, "only {} GPU samples", real.len());
}

#[test]
fn a_recorded_profile_replays_the_same_readings_through_its_placeholders() {
    let rich = DoubleConfig::new("record-placeholders", RICH);
    let (profile, text) = record(&rich.path, "placeholders.conf", &[]);
    for id in IDENTIFIERS {
        assert!(!text.contains(id), "{id} is in the profile:\n{text}");
    }
    // The header says what was recorded and what failed.
    for line in [
        "# NVML test double profile: 1 x NVIDIA A100-SXM4-80GB, 1 x NVIDIA H100 80GB HBM3, 1 x not",
        "# Driver 570.86.15, NVML 12.570.86.15, CUDA 12.8.",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    for failure in [
        "power_usage NOT_SUPPORTED (GPU 1)",
        "handle GPU_IS_LOST (GPU 2)",
        "nvlink_state UNKNOWN (GPU 0)",
    ] {
        assert!(text.contains(failure), "{failure} missing from\n{text}");
    }
    let flags = ["--collector.processes", "--collector.gpu.nvlink=links"];
    let (real, replay) = both("replay-placeholders", &profile, &flags);
    let map = placeholder_map(&real, &replay);
    // Two GPUs answer (uuid, serial, bus id each), GPU 2 is lost before its
    // identity is read; two MIG devices; one fabric cluster.
    assert_eq!(map.len(), 2 * 3 + 2 + 1, "{map:#?}");
    assert_same(
        &gpu_samples(&real, &map),
        &gpu_samples(&replay, &BTreeMap::new()),
        180,
    );
}

#[test]
fn a_profile_with_kept_identifiers_replays_the_same_readings() {
    let rich = DoubleConfig::new("record-kept", RICH);
    let (profile, text) = record(&rich.path, "kept.conf", &["--keep-identifiers"]);
    assert!(
        text.contains("gpu.0.uuid = GPU-f7b02328-d6fe-5b1f-9683-15041689bb03"),
        "{text}"
    );
    assert!(
        text.contains("gpu.0.fabric_cluster_uuid = 9c6f5af3-53bf-49b5-a436-b66766c413c3"),
        "{text}"
    );
    // The default NVLink detail: totals over the links.
    let (real, replay) = both("replay-kept", &profile, &["--collector.processes"]);
    assert!(real.has("nvidia_gpu_nvlink_errors_total"));
    let none = BTreeMap::new();
    assert_same(
        &gpu_samples(&real, &none),
        &gpu_samples(&replay, &none),
        150,
    );
}

#[test]
fn an_older_drivers_missing_entry_points_replay_as_not_supported() {
    let rich = DoubleConfig::new("record-legacy", RICH);
    let (profile, text) = record_on(Driver::Legacy, &rich.path, "legacy.conf", &[]);
    for symbol in ["nvmlDeviceGetFieldValues", "nvmlDeviceGetNumFans"] {
        let line = format!("{symbol} is missing from this driver; replayed as NOT_SUPPORTED");
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    let flags = ["--collector.processes"];
    let (real, replay) = both_on(Driver::Legacy, "replay-legacy", &profile, &flags);
    assert!(
        !real.has("nvidia_gpu_energy_consumption_joules_total"),
        "{}",
        real.text
    );
    let map = placeholder_map(&real, &replay);
    assert_same(
        &gpu_samples(&real, &map),
        &gpu_samples(&replay, &BTreeMap::new()),
        100,
    );
}

/// The profile without its "Recorded <date>." line.
fn without_date(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("# Recorded "))
        .collect();
    lines.join("\n")
}

#[test]
fn recording_a_replay_gives_the_same_profile_again() {
    let rich = DoubleConfig::new("record-twice", RICH);
    for args in [&[][..], &["--keep-identifiers"][..]] {
        let (profile, first) = record(&rich.path, "first.conf", args);
        let (_, again) = record(&rich.path, "again.conf", args);
        assert_eq!(
            without_date(&first),
            without_date(&again),
            "placeholders must be stable"
        );
        // The replayed profile answers what it recorded: a fixed point.
        let (_, replayed) = record(&profile, "replayed.conf", args);
        assert_eq!(without_date(&first), without_date(&replayed));
    }
}

#[test]
fn record_nvml_reports_bad_input_and_a_failed_initialisation() {
    // A directory that does not exist: one message naming the flag, exit 2.
    let config = DoubleConfig::new("record-bad", "gpu_count = 1\n");
    let output = record_nvml(&config.path, &["--out", "/nonexistent/dir/profile.conf"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--out") && stderr.contains("/nonexistent/dir"),
        "{stderr}"
    );

    // No NVML at all: nothing to record, exit 1 saying why.
    let output = Command::new(BIN)
        .args([
            "--nvml.library=/nonexistent/libnvidia-ml.so.1",
            "record-nvml",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/libnvidia-ml.so.1"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    // NVML that does not initialise is recorded as such, to stdout.
    config.write("init_error = LIB_RM_VERSION_MISMATCH\n");
    let output = record_nvml(&config.path, &[]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("init_error = LIB_RM_VERSION_MISMATCH")),
        "{text}"
    );
    let replay = DoubleConfig::new("record-init-replay", &text);
    let exporter = start_on_double(Driver::Current, &replay, &[]);
    let s = exporter.scrape_until("NVML down", |s| s.has("nvidia_nvml_up"));
    assert_eq!(s.value("nvidia_nvml_up", &[]), Some(0.0));
}

/// The names in one of the double's X-macro tables (`#define TABLE(X)`, up
/// to the first blank line), e.g. `GPU_NUMBERS`.
fn double_table(header: &str, table: &str) -> Vec<String> {
    let start = header
        .find(&format!("#define {table}(X)"))
        .unwrap_or_else(|| panic!("no {table} in nvml_double.h"));
    let body = &header[start..];
    let body = &body[..body.find("\n\n").unwrap_or(body.len())];
    body.split("X(")
        .skip(1) // the text before the first entry
        .map(|entry| entry.split([',', ')']).next().unwrap().trim().to_owned())
        .collect()
}

#[test]
fn every_key_the_double_reads_is_recorded() {
    let header = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/nvml-double/nvml_double.h"
    ))
    .unwrap();
    let mut keys = Vec::new();
    for table in ["GPU_NUMBERS", "GPU_ARRAYS", "GPU_STRINGS"] {
        keys.extend(double_table(&header, table));
    }
    assert!(keys.len() > 60, "{keys:?}");
    keys.extend(
        [
            "mig_device",
            "gpm_value",
            "fabric_status",
            "fabric_cluster_uuid",
            "fail",
            "error",
        ]
        .map(String::from),
    );
    // The newest fabric struct, so that its health summary is recorded too.
    let every = DoubleConfig::new(
        "record-every-key",
        &RICH.replace("fabric_info_max_version = 2\n", ""),
    );
    let (_, text) = record(&every.path, "every.conf", &[]);
    let recorded: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("gpu.")?.split_once('.'))
        .map(|(_, rest)| rest.split([' ', '=', '.']).next().unwrap())
        .collect();
    // Not recorded: events happen by themselves (xid, ecc_events), and a
    // link that cannot be read is recorded field by field (error.nvlink_*).
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| !recorded.contains(key.as_str()))
        .collect();
    assert!(missing.is_empty(), "not recorded: {missing:?}\n{text}");
    assert!(text.contains("gpu.0.fabric_health_summary = "), "{text}");
}
