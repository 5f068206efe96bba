//! End-to-end tests: the real binary against the NVML test double, over HTTP.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{
    DoubleConfig, Driver, Exporter, double_args, http, kubelet, require_tool,
    start_on_double as start, wait_for,
};

const GPU0: [(&str, &str); 2] = [
    ("gpu", "0"),
    ("uuid", "GPU-00000000-0000-4000-8000-000000000000"),
];
const GPU1: [(&str, &str); 2] = [
    ("gpu", "1"),
    ("uuid", "GPU-aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"),
];

const TWO_GPUS: &str = "
gpu_count = 2
driver_version = 535.129.03
nvml_version = 12.535.129.03
cuda_driver_version = 12020
gpu.1.uuid = GPU-aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee
gpu.1.name = NVIDIA H100 80GB HBM3
gpu.1.serial = 1654923000001
gpu.1.pci_bus = 0x9a
gpu.1.temperature = 71
gpu.1.power_usage = 250500
gpu.1.power_limit = 700000
gpu.1.energy = 987654321
gpu.1.memory_total = 85520809984
gpu.1.memory_reserved = 565182464
gpu.1.memory_used = 42949672960
gpu.1.utilization_gpu = 87
gpu.1.utilization_memory = 43
gpu.1.encoder = 12
gpu.1.decoder = 3
gpu.1.clock.0 = 1980
gpu.1.clock.1 = 1980
gpu.1.clock.2 = 2619
gpu.1.clock.3 = 1545
gpu.1.max_clock.0 = 1980
gpu.1.max_clock.1 = 1980
gpu.1.max_clock.2 = 2619
gpu.1.max_clock.3 = 1755
gpu.1.fans = 1
gpu.1.fan_speed.0 = 64
gpu.1.pstate = 2
gpu.1.memory_temperature = 58
gpu.1.threshold.0 = 97
gpu.1.threshold.1 = 94
gpu.1.threshold.2 = 100
gpu.1.threshold.3 = 91
gpu.1.pcie_generation = 3
gpu.1.pcie_max_generation = 5
gpu.1.pcie_width = 8
gpu.1.pcie_max_width = 16
gpu.1.pcie_replay = 7
gpu.1.ecc_sbe_volatile = 11
gpu.1.ecc_dbe_volatile = 2
gpu.1.ecc_sbe_aggregate = 1234
gpu.1.ecc_dbe_aggregate = 5
gpu.1.retired_sbe = 3
gpu.1.retired_dbe = 1
gpu.1.retired_pending = 1
gpu.1.remapped_cor = 4
gpu.1.remapped_unc = 1
gpu.1.remap_pending = 1
gpu.1.remap_failure = 1
gpu.1.recovery_action = 4
gpu.1.clock_event_reasons = 0x44
gpu.1.supported_clock_event_reasons = 0xff
gpu.1.violation.0 = 2500000000
gpu.1.violation.1 = 1000000000
gpu.1.violation.7 = 30000000000
gpu.1.nvlinks = 2
gpu.1.nvlink_state.1 = 0
gpu.1.nvlink_crc_flit.0 = 3
gpu.1.nvlink_crc_data.1 = 4
gpu.1.nvlink_replay.0 = 5
gpu.1.nvlink_recovery.1 = 6
";

#[test]
fn reports_every_gpu_reading_in_base_units() {
    let config = DoubleConfig::new("values", TWO_GPUS);
    let exporter = start(Driver::Current, &config, &[]);
    let s = exporter.scrape_until("GPU metrics", |s| s.has("nvidia_gpu_up"));

    assert_eq!(s.value("nvidia_nvml_up", &[]), Some(1.0));
    assert_eq!(s.value("nvidia_gpus", &[]), Some(2.0));
    let driver = &s.find("nvidia_driver_info", &[])[0];
    assert_eq!(driver.labels["driver_version"], "535.129.03");
    assert_eq!(driver.labels["nvml_version"], "12.535.129.03");
    assert_eq!(driver.labels["cuda_driver_version"], "12.2");

    let info = &s.find("nvidia_gpu_info", &GPU1)[0];
    assert_eq!(info.labels["name"], "NVIDIA H100 80GB HBM3");
    assert_eq!(info.labels["pci_bus_id"], "00000000:9A:00.0");
    assert_eq!(info.labels["serial"], "1654923000001");
    assert_eq!(info.value, 1.0);

    let expected = [
        ("nvidia_gpu_up", 1.0),
        ("nvidia_gpu_temperature_celsius", 71.0),
        ("nvidia_gpu_power_usage_watts", 250.5),
        ("nvidia_gpu_power_limit_watts", 700.0),
        ("nvidia_gpu_energy_consumption_joules_total", 987_654.321),
        ("nvidia_gpu_memory_total_bytes", 85_520_809_984.0),
        ("nvidia_gpu_memory_reserved_bytes", 565_182_464.0),
        ("nvidia_gpu_memory_used_bytes", 42_949_672_960.0),
        (
            "nvidia_gpu_memory_free_bytes",
            (85_520_809_984u64 - 565_182_464 - 42_949_672_960) as f64,
        ),
        ("nvidia_gpu_utilization_ratio", 0.87),
        ("nvidia_gpu_memory_utilization_ratio", 0.43),
        ("nvidia_gpu_encoder_utilization_ratio", 0.12),
        ("nvidia_gpu_decoder_utilization_ratio", 0.03),
        ("nvidia_gpu_performance_state", 2.0),
        ("nvidia_gpu_memory_temperature_celsius", 58.0),
        ("nvidia_gpu_pcie_link_generation", 3.0),
        ("nvidia_gpu_pcie_link_max_generation", 5.0),
        ("nvidia_gpu_pcie_link_width", 8.0),
        ("nvidia_gpu_pcie_link_max_width", 16.0),
        ("nvidia_gpu_pcie_replay_errors_total", 7.0),
        ("nvidia_gpu_ecc_enabled", 1.0),
        ("nvidia_gpu_retired_pages_pending", 1.0),
        ("nvidia_gpu_row_remap_pending", 1.0),
        ("nvidia_gpu_row_remap_failed", 1.0),
    ];
    for (name, value) in expected {
        assert_eq!(s.value(name, &GPU1), Some(value), "{name}");
    }
    let labelled = [
        (
            "nvidia_gpu_temperature_threshold_celsius",
            "threshold",
            "shutdown",
            97.0,
        ),
        (
            "nvidia_gpu_temperature_threshold_celsius",
            "threshold",
            "slowdown",
            94.0,
        ),
        (
            "nvidia_gpu_temperature_threshold_celsius",
            "threshold",
            "memory_max",
            100.0,
        ),
        (
            "nvidia_gpu_temperature_threshold_celsius",
            "threshold",
            "gpu_max",
            91.0,
        ),
        ("nvidia_gpu_ecc_errors_total", "type", "corrected", 11.0),
        ("nvidia_gpu_ecc_errors_total", "type", "uncorrected", 2.0),
        (
            "nvidia_gpu_ecc_errors_aggregate_total",
            "type",
            "corrected",
            1234.0,
        ),
        (
            "nvidia_gpu_ecc_errors_aggregate_total",
            "type",
            "uncorrected",
            5.0,
        ),
        ("nvidia_gpu_retired_pages", "cause", "single_bit_ecc", 3.0),
        ("nvidia_gpu_retired_pages", "cause", "double_bit_ecc", 1.0),
        ("nvidia_gpu_remapped_rows_total", "type", "correctable", 4.0),
        (
            "nvidia_gpu_remapped_rows_total",
            "type",
            "uncorrectable",
            1.0,
        ),
        ("nvidia_gpu_clock_event_active", "reason", "gpu_idle", 0.0),
        (
            "nvidia_gpu_clock_event_active",
            "reason",
            "sw_power_cap",
            1.0,
        ),
        (
            "nvidia_gpu_clock_event_active",
            "reason",
            "hw_thermal_slowdown",
            1.0,
        ),
        (
            "nvidia_gpu_clock_event_active",
            "reason",
            "hw_slowdown",
            0.0,
        ),
        ("nvidia_gpu_throttled_seconds_total", "reason", "power", 2.5),
        (
            "nvidia_gpu_throttled_seconds_total",
            "reason",
            "thermal",
            1.0,
        ),
        (
            "nvidia_gpu_throttled_seconds_total",
            "reason",
            "sync_boost",
            0.0,
        ),
        (
            "nvidia_gpu_throttled_seconds_total",
            "reason",
            "base_clocks",
            30.0,
        ),
        ("nvidia_gpu_recovery_action", "action", "none", 0.0),
        (
            "nvidia_gpu_recovery_action",
            "action",
            "drain_and_reset",
            1.0,
        ),
        ("nvidia_gpu_recovery_action", "action", "gpu_reset", 0.0),
    ];
    for (name, label, value, expected) in labelled {
        let labels = [GPU1[0], GPU1[1], (label, value)];
        assert_eq!(
            s.value(name, &labels),
            Some(expected),
            "{name}{{{label}={value}}}"
        );
    }
    // Only the clock-event reasons the GPU supports are exported.
    assert_eq!(s.find("nvidia_gpu_clock_event_active", &GPU1).len(), 8);
    assert_eq!(s.find("nvidia_gpu_clock_event_active", &GPU0).len(), 9);
    assert_eq!(s.find("nvidia_gpu_throttled_seconds_total", &GPU1).len(), 8);
    assert_eq!(s.find("nvidia_gpu_recovery_action", &GPU1).len(), 5);
    // NVLink by default: errors summed over the links, links counted by
    // state (per link: tests/nvlink.rs).
    for (kind, value) in [
        ("crc_flit", 3.0),
        ("crc_data", 4.0),
        ("replay", 5.0),
        ("recovery", 6.0),
    ] {
        let labels = [GPU1[0], GPU1[1], ("type", kind)];
        assert_eq!(
            s.value("nvidia_gpu_nvlink_errors_total", &labels),
            Some(value),
            "{kind}"
        );
    }
    for (state, links) in [("active", 1.0), ("inactive", 1.0)] {
        let labels = [GPU1[0], GPU1[1], ("state", state)];
        assert_eq!(s.value("nvidia_gpu_nvlinks", &labels), Some(links));
    }
    assert!(!s.has("nvidia_gpu_nvlink_up"));
    // A GPU without NVLink has no link series.
    assert!(s.find("nvidia_gpu_nvlinks", &GPU0).is_empty());
    assert!(s.find("nvidia_gpu_nvlink_errors_total", &GPU0).is_empty());
    for (clock, current, max) in [
        ("graphics", 1980e6, 1980e6),
        ("sm", 1980e6, 1980e6),
        ("memory", 2619e6, 2619e6),
        ("video", 1545e6, 1755e6),
    ] {
        let labels = [GPU1[0], GPU1[1], ("clock", clock)];
        assert_eq!(
            s.value("nvidia_gpu_clock_hertz", &labels),
            Some(current),
            "{clock}"
        );
        assert_eq!(
            s.value("nvidia_gpu_clock_max_hertz", &labels),
            Some(max),
            "{clock}"
        );
    }
    assert_eq!(
        s.value(
            "nvidia_gpu_fan_speed_ratio",
            &[GPU1[0], GPU1[1], ("fan", "0")]
        ),
        Some(0.64)
    );
    assert_eq!(s.find("nvidia_gpu_fan_speed_ratio", &GPU1).len(), 1);

    // GPU 0 keeps the double's defaults: readings are per GPU, not shared.
    assert_eq!(s.value("nvidia_gpu_temperature_celsius", &GPU0), Some(40.0));
    assert_eq!(s.value("nvidia_gpu_power_usage_watts", &GPU0), Some(100.0));

    // Per-GPU series carry gpu and uuid, plus only their own labels.
    for sample in s.samples.iter().filter(|s| {
        s.name.starts_with("nvidia_gpu_") && s.name != "nvidia_gpu_info" && s.name != "nvidia_gpus"
    }) {
        let mut keys: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
        let own = [
            "clock",
            "fan",
            "threshold",
            "type",
            "cause",
            "reason",
            "action",
            "state",
            "xid",
        ];
        keys.retain(|k| !own.contains(k));
        assert_eq!(keys, ["gpu", "uuid"], "{}", sample.name);
    }
    assert_eq!(
        s.types["nvidia_gpu_energy_consumption_joules_total"],
        "counter"
    );
    assert_eq!(s.types["host_network_receive_bytes_total"], "counter");
    assert_eq!(s.types["nvidia_gpu_temperature_celsius"], "gauge");
}

#[test]
fn readings_follow_the_driver_between_collections() {
    let config = DoubleConfig::new("changing", "gpu.0.temperature = 50\n");
    let exporter = start(Driver::Current, &config, &[]);
    exporter.scrape_until("50 °C", |s| {
        s.value("nvidia_gpu_temperature_celsius", &GPU0) == Some(50.0)
    });
    config.write("gpu.0.temperature = 83\n");
    exporter.scrape_until("83 °C", |s| {
        s.value("nvidia_gpu_temperature_celsius", &GPU0) == Some(83.0)
    });
}

#[test]
fn a_failing_gpu_is_down_while_the_others_keep_reporting() {
    let config = DoubleConfig::new(
        "lost",
        "gpu_count = 3\ngpu.1.fail = GPU_IS_LOST\ngpu.2.fail = UNKNOWN\n",
    );
    let exporter = start(Driver::Current, &config, &["--require-gpu"]);
    let s = exporter.scrape_until("GPU metrics", |s| s.has("nvidia_gpu_up"));
    assert_eq!(s.value("nvidia_gpu_up", &[("gpu", "0")]), Some(1.0));
    assert_eq!(s.value("nvidia_gpu_up", &[("gpu", "1")]), Some(0.0));
    assert_eq!(s.value("nvidia_gpu_up", &[("gpu", "2")]), Some(0.0));
    assert_eq!(
        s.value("nvidia_gpu_temperature_celsius", &[("gpu", "0")]),
        Some(40.0)
    );
    assert_eq!(
        s.find("nvidia_gpu_temperature_celsius", &[("gpu", "1")])
            .len(),
        0
    );
    assert_eq!(s.value("nvidia_gpus", &[]), Some(3.0));
    assert_eq!(
        s.value(
            "system_info_exporter_collect_success",
            &[("collector", "gpu")]
        ),
        Some(1.0)
    );

    let health = exporter.get("/health").unwrap();
    assert_eq!(health.status, 200);
    let health: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(health["gpus_lost"], 2);
    assert_eq!(health["gpu_count"], 3);
    let ready = exporter.get("/ready").unwrap();
    assert_eq!(
        (ready.status, ready.body.trim()),
        (503, "not ready: 2 GPU(s) lost")
    );

    // A GPU that recovers keeps its identity from before it was lost.
    config.write("gpu_count = 3\ngpu.2.fail = UNKNOWN\n");
    let s = exporter.scrape_until("GPU 1 back", |s| {
        s.value("nvidia_gpu_up", &[("gpu", "1")]) == Some(1.0)
    });
    assert_eq!(s.find("nvidia_gpu_info", &[("gpu", "1")]).len(), 1);
}

#[test]
fn a_gpu_lost_after_start_keeps_its_uuid() {
    let config = DoubleConfig::new("lost-later", "gpu_count = 2\n");
    let exporter = start(Driver::Current, &config, &[]);
    exporter.scrape_until("GPU metrics", |s| s.has("nvidia_gpu_up"));
    config.write("gpu_count = 2\ngpu.1.fail = GPU_IS_LOST\n");
    let s = exporter.scrape_until("GPU 1 lost", |s| {
        s.value("nvidia_gpu_up", &[("gpu", "1")]) == Some(0.0)
    });
    let uuid = &s.find("nvidia_gpu_up", &[("gpu", "1")])[0].labels["uuid"];
    assert_eq!(uuid, "GPU-00000000-0000-4000-8000-000000000001");
    assert!(exporter.log().contains("GPU stopped answering"));
}

#[test]
fn an_unsupported_field_is_omitted_not_zeroed() {
    let config = DoubleConfig::new(
        "unsupported",
        "gpu_count = 2\ngpu.0.unsupported = power_usage fans encoder pcie ecc_mode \
         temperature_threshold clock_event_reasons memory_temperature recovery_action \
         violation remapped_cor\n",
    );
    let exporter = start(Driver::Current, &config, &[]);
    let s = exporter.scrape_until("GPU metrics", |s| s.has("nvidia_gpu_up"));
    assert_eq!(s.value("nvidia_gpu_up", &[("gpu", "0")]), Some(1.0));
    for name in [
        "nvidia_gpu_power_usage_watts",
        "nvidia_gpu_fan_speed_ratio",
        "nvidia_gpu_encoder_utilization_ratio",
        "nvidia_gpu_pcie_link_generation",
        "nvidia_gpu_pcie_link_max_width",
        "nvidia_gpu_ecc_enabled",
        "nvidia_gpu_temperature_threshold_celsius",
        "nvidia_gpu_clock_event_active",
        "nvidia_gpu_memory_temperature_celsius",
        "nvidia_gpu_recovery_action",
        "nvidia_gpu_throttled_seconds_total",
    ] {
        assert!(
            s.find(name, &[("gpu", "0")]).is_empty(),
            "{name} should be omitted for GPU 0"
        );
        assert!(
            !s.find(name, &[("gpu", "1")]).is_empty(),
            "{name} should be there for GPU 1"
        );
    }
    assert_eq!(
        s.value("nvidia_gpu_power_limit_watts", &[("gpu", "0")]),
        Some(400.0)
    );
    // One unsupported field of a batch leaves the others of that batch.
    let remapped = |kind| [("gpu", "0"), ("type", kind)];
    assert_eq!(
        s.find("nvidia_gpu_remapped_rows_total", &remapped("correctable"))
            .len(),
        0
    );
    assert_eq!(
        s.value("nvidia_gpu_remapped_rows_total", &remapped("uncorrectable")),
        Some(0.0)
    );
}

#[test]
fn symbols_missing_from_an_older_driver_are_omitted() {
    let config = DoubleConfig::new("legacy", "gpu_count = 1\n");
    let exporter = start(Driver::Legacy, &config, &["--require-gpu"]);
    let s = exporter.scrape_until("GPU metrics", |s| s.has("nvidia_gpu_up"));
    assert_eq!(s.value("nvidia_gpu_up", &GPU0), Some(1.0));
    // No nvmlDeviceGetFieldValues: every field-value reading is omitted.
    for name in [
        "nvidia_gpu_energy_consumption_joules_total",
        "nvidia_gpu_fan_speed_ratio",
        "nvidia_gpu_ecc_errors_total",
        "nvidia_gpu_throttled_seconds_total",
        "nvidia_gpu_memory_temperature_celsius",
    ] {
        assert!(!s.has(name), "{name}");
    }
    assert_eq!(s.value("nvidia_gpu_temperature_celsius", &GPU0), Some(40.0));
    assert_eq!(exporter.get("/ready").unwrap().status, 200);
}

#[test]
fn without_nvml_host_metrics_are_served_and_readiness_depends_on_require_gpu() {
    let missing = "--nvml.library=/nonexistent/libnvidia-ml.so.1";
    let plain = Exporter::start(&[missing, "--collect.interval=200ms"], None);
    let s = plain.scrape_until("first collection", |s| s.has("host_info"));
    assert_eq!(s.value("nvidia_nvml_up", &[]), Some(0.0));
    assert!(!s.has("nvidia_gpu_up"));
    assert_eq!(
        s.value(
            "system_info_exporter_collect_success",
            &[("collector", "gpu")]
        ),
        Some(0.0)
    );
    assert_eq!(
        s.value(
            "system_info_exporter_collect_success",
            &[("collector", "host")]
        ),
        Some(1.0)
    );
    for name in [
        "host_cpus",
        "host_memory_total_bytes",
        "host_boot_time_seconds",
        "host_load1",
    ] {
        assert!(
            s.value(name, &[])
                .is_some_and(|v| v > 0.0 || name == "host_load1"),
            "{name}"
        );
    }
    assert!(s.has("process_resident_memory_bytes"));
    assert_eq!(plain.get("/ready").unwrap().status, 200);
    let health = plain.get("/health").unwrap();
    assert_eq!(health.status, 200);
    let health: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(health["nvml"]["up"], false);
    assert!(
        health["nvml"]["error"]
            .as_str()
            .unwrap()
            .contains("libnvidia-ml.so.1")
    );

    // The error is logged once, not once per retry.
    plain.scrape_until("three attempts to initialise NVML", |s| {
        s.value(
            "system_info_exporter_nvml_calls_total",
            &[("phase", "init")],
        ) >= Some(3.0)
    });
    assert_eq!(
        plain.log().matches("NVML is unavailable").count(),
        1,
        "{}",
        plain.log()
    );

    let strict = Exporter::start(&[missing, "--require-gpu"], None);
    let ready = wait_for("first collection", Duration::from_secs(10), || {
        strict
            .get("/ready")
            .ok()
            .filter(|r| !r.body.contains("first collection"))
    });
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("NVML is unavailable"), "{}", ready.body);
}

#[test]
fn nvml_that_appears_after_start_is_picked_up_without_a_restart() {
    let config = DoubleConfig::new("late-driver", "init_error = DRIVER_NOT_LOADED\n");
    let calls = config.sibling("calls");
    let calls_line = format!("call_log = {}\n", calls.display());
    config.write(&format!("init_error = DRIVER_NOT_LOADED\n{calls_line}"));
    let exporter = start(Driver::Current, &config, &["--require-gpu"]);
    let s = exporter.scrape_until("first collection", |s| s.has("nvidia_nvml_up"));
    assert_eq!(s.value("nvidia_nvml_up", &[]), Some(0.0));
    assert_eq!(exporter.get("/ready").unwrap().status, 503);

    config.write(&calls_line);
    let s = exporter.scrape_until("NVML up", |s| s.value("nvidia_nvml_up", &[]) == Some(1.0));
    assert_eq!(s.value("nvidia_gpu_up", &GPU0), Some(1.0));
    assert_eq!(exporter.get("/ready").unwrap().status, 200);
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(log.starts_with("nvmlInit_v2 9\n"), "{log}");
    assert!(log.lines().any(|l| l == "nvmlInit_v2 0"), "{log}");
}

#[test]
fn sigterm_shuts_nvml_down_and_exits_zero() {
    let config = DoubleConfig::new("sigterm", "");
    let calls = config.sibling("calls");
    config.write(&format!("call_log = {}\n", calls.display()));
    let exporter = start(Driver::Current, &config, &[]);
    exporter.scrape_until("GPU metrics", |s| s.has("nvidia_gpu_up"));
    let status = exporter.terminate();
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(log, "nvmlInit_v2 0\nnvmlShutdown\n");
}

#[test]
fn a_hung_driver_call_never_blocks_a_scrape() {
    let config = DoubleConfig::new("hung", "");
    let exporter = start(Driver::Current, &config, &[]);
    exporter.scrape_until("GPU metrics", |s| s.has("nvidia_gpu_up"));
    config.write("delay_ms = 600000\n");
    // The collector is now stuck inside NVML; scrapes keep answering with
    // the last snapshot, and /health reports the stuck collector.
    let stale = wait_for("/health to fail", Duration::from_secs(30), || {
        exporter.get("/health").ok().filter(|r| r.status == 503)
    });
    assert!(
        stale.body.contains("\"status\":\"stale\""),
        "{}",
        stale.body
    );
    let s = exporter.scrape();
    assert_eq!(s.value("nvidia_gpu_up", &GPU0), Some(1.0));
    assert_eq!(
        s.value("host_cpus", &[]),
        Some(std::thread::available_parallelism().unwrap().get() as f64)
    );
    // Shutdown does not wait forever for the stuck collector.
    assert_eq!(exporter.terminate().code(), Some(0));
}

#[test]
fn http_routes_and_methods() {
    let exporter = Exporter::start(&["--nvml.library=/nonexistent/libnvidia-ml.so.1"], None);
    let landing = exporter.get("/").unwrap();
    assert_eq!(landing.status, 200);
    assert!(landing.body.contains("href=\"/metrics\""));
    assert_eq!(exporter.get("/nope").unwrap().status, 404);
    assert_eq!(http("POST", &exporter.url("/metrics")).unwrap().status, 405);
    assert_eq!(http("POST", &exporter.url("/health")).unwrap().status, 405);
    assert_eq!(http("HEAD", &exporter.url("/metrics")).unwrap().status, 200);
    let metrics = exporter.get("/metrics").unwrap();
    let version = format!(
        "system_info_exporter_build_info{{version=\"{}\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(metrics.body.contains(&version), "{}", metrics.body);
}

#[test]
fn flags_can_come_from_the_environment() {
    let exporter = Exporter::start_with_env(
        &["--nvml.library=/nonexistent/libnvidia-ml.so.1"],
        None,
        &[
            ("SIE_WEB_TELEMETRY_PATH", "/prom"),
            ("SIE_HOST_NAME", "gpu-node-7"),
            ("SIE_LOG_FORMAT", "json"),
        ],
    );
    assert_eq!(exporter.get("/metrics").unwrap().status, 404);
    let s = wait_for("host_info", Duration::from_secs(10), || {
        Some(exporter.scrape_at("/prom")).filter(|s| s.has("host_info"))
    });
    assert_eq!(s.find("host_info", &[])[0].labels["hostname"], "gpu-node-7");
    let log = exporter.log();
    let first = log.lines().next().expect("a log line");
    let line: serde_json::Value = serde_json::from_str(first).expect("JSON log lines");
    assert!(line["level"].is_string());
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(common::BIN).args(args).output().unwrap()
}

#[test]
fn invalid_flags_exit_2_with_a_message_naming_the_flag() {
    for (args, named) in [
        (&["--collect.interval=five"][..], "--collect.interval"),
        (&["--web.listen-address=localhost"], "--web.listen-address"),
        (&["--web.telemetry-path=metrics"], "--web.telemetry-path"),
        (&["--log.level=loud"], "--log.level"),
        (&["--no-such-flag"], "--no-such-flag"),
        (&["--collector.disk"], "--collector.disk"),
        (&["--collector.gpu=maybe"], "--collector.gpu"),
        (
            &["--collector.gpu.nvlink=per-link"],
            "--collector.gpu.nvlink",
        ),
    ] {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    let version = run(&["--version"]);
    let version = String::from_utf8_lossy(&version.stdout);
    let expected = format!(
        "system-info-exporter {} (revision ",
        env!("CARGO_PKG_VERSION")
    );
    assert!(version.starts_with(&expected), "{version}");
}

#[test]
fn healthcheck_subcommand_reports_the_local_listener() {
    let exporter = Exporter::start(&["--nvml.library=/nonexistent/libnvidia-ml.so.1"], None);
    let ok = run(&[
        &format!("--web.listen-address=0.0.0.0:{}", exporter.port),
        "healthcheck",
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("\"status\":\"ok\""));

    let port = exporter.port;
    drop(exporter);
    let closed = run(&[
        "healthcheck",
        "--url",
        &format!("http://127.0.0.1:{port}/health"),
    ]);
    assert_eq!(closed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&closed.stderr).contains(&format!("127.0.0.1:{port}")));
}

#[test]
fn output_passes_promtool_check_metrics() {
    if !require_tool("promtool", "apt-get install prometheus") {
        return;
    }
    let config = DoubleConfig::new("promtool", TWO_GPUS);
    let exporter = start(Driver::Current, &config, &[]);
    let s = exporter.scrape_until("GPU metrics", |s| s.has("nvidia_gpu_up"));
    common::promtool_check_metrics(&s.text);
}

#[test]
fn metrics_doc_lists_exactly_the_exported_metrics() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let documented: std::collections::BTreeSet<&str> = doc
        .lines()
        .filter_map(|line| {
            line.strip_prefix("| `")?
                .split_once('`')
                .map(|(name, _)| name)
        })
        .collect();

    // Every reading offered, a lost GPU, a kubelet and a Slurm job, so every
    // family is present.
    let config = DoubleConfig::new(
        "doc",
        &format!(
            "{TWO_GPUS}{}gpu_count = 3\ngpu.2.fail = GPU_IS_LOST\n",
            common::EVERY_GPU_FAMILY
        ),
    );
    let (_kubelet, socket_arg) = kubelet::holding("doc", GPU1[1].1);
    // A Slurm job on GPU 0.
    let jobs = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("doc-jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    std::fs::write(jobs.join("0"), "1234\n").unwrap();
    let jobs_arg = format!("--collector.hpc.job-mapping-dir={}", jobs.display());
    // Per NVLink link, which also serves the links' state counts.
    let exporter = start(
        Driver::Current,
        &config,
        &[
            &socket_arg,
            &jobs_arg,
            "--collector.processes",
            "--collector.gpu.nvlink=links",
            // DRA resolution on, against an API that is not there: its error counter.
            "--collector.pods.dra",
            "--kubernetes.api-url=http://127.0.0.1:9",
            "--kubernetes.node-name=doc",
        ],
    );
    let s = exporter.scrape_until("every family", |s| {
        s.has("host_info")
            && s.has("nvidia_gpu_allocation_info")
            && s.has("nvidia_gpu_job_info")
            && common::has_every_gpu_family(s)
    });
    let exported: std::collections::BTreeSet<&str> = s
        .types
        .keys()
        .map(|name| {
            if name.starts_with("process_") {
                "process_*"
            } else {
                name.as_str()
            }
        })
        .collect();
    assert_eq!(
        documented, exported,
        "docs/metrics.md and the exporter disagree"
    );
}

fn health(exporter: &Exporter) -> serde_json::Value {
    serde_json::from_str(&exporter.get("/health").unwrap().body).unwrap()
}

#[test]
fn xid_and_ecc_events_are_counted_and_xid_79_takes_the_gpu_down() {
    let base = "gpu_count = 3\ngpu.1.supported_events = 8\ngpu.2.supported_events = 0\n";
    let config = DoubleConfig::new("events", base);
    let exporter = start(Driver::Current, &config, &[]);
    let xid = |gpu: &'static str, xid: &'static str| [("gpu", gpu), ("xid", xid)];
    let ecc = |gpu: &'static str, kind: &'static str| [("gpu", gpu), ("type", kind)];
    let s = exporter.scrape_until("events watched", |s| {
        s.value("nvidia_gpu_xid_errors_total", &xid("0", "79"))
            .is_some()
    });
    // Watched GPUs start their serious XIDs and supported ECC types at 0.
    assert_eq!(
        s.find("nvidia_gpu_xid_errors_total", &[("gpu", "0")]).len(),
        10
    );
    assert_eq!(
        s.value("nvidia_gpu_ecc_events_total", &ecc("0", "double_bit")),
        Some(0.0)
    );
    assert_eq!(
        s.find("nvidia_gpu_xid_errors_total", &[("gpu", "1")]).len(),
        10
    );
    assert!(
        s.find("nvidia_gpu_ecc_events_total", &[("gpu", "1")])
            .is_empty()
    );
    assert!(
        s.find("nvidia_gpu_xid_errors_total", &[("gpu", "2")])
            .is_empty()
    );
    assert!(!s.has("nvidia_gpu_last_xid_timestamp_seconds"));
    let gpus = &health(&exporter)["gpus"];
    assert_eq!(
        gpus[0]["events"],
        serde_json::json!({"state": "watching", "types": ["xid", "single_bit", "double_bit"]})
    );
    assert_eq!(
        gpus[1]["events"],
        serde_json::json!({"state": "watching", "types": ["xid"]})
    );
    assert_eq!(
        gpus[2]["events"],
        serde_json::json!({"state": "unsupported"})
    );

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    config.write(&format!(
        "{base}gpu.0.xid = 48 13 48\ngpu.0.ecc_events = double_bit single_bit double_bit\n"
    ));
    let s = exporter.scrape_until("events counted", |s| {
        s.value("nvidia_gpu_ecc_events_total", &ecc("0", "double_bit")) == Some(2.0)
            && s.value("nvidia_gpu_xid_errors_total", &xid("0", "48")) == Some(2.0)
    });
    assert_eq!(
        s.value("nvidia_gpu_xid_errors_total", &xid("0", "13")),
        Some(1.0)
    );
    assert_eq!(
        s.value("nvidia_gpu_ecc_events_total", &ecc("0", "single_bit")),
        Some(1.0)
    );
    let last = s
        .value("nvidia_gpu_last_xid_timestamp_seconds", &[("gpu", "0")])
        .unwrap();
    assert!(last >= before.floor(), "{last} < {before}");
    assert_eq!(s.value("nvidia_gpu_up", &[("gpu", "0")]), Some(1.0));

    // Counters never go back: a later file without events keeps them.
    config.write(&format!("{base}gpu.1.xid = 79\n"));
    let s = exporter.scrape_until("GPU 1 fell off the bus", |s| {
        s.value("nvidia_gpu_up", &[("gpu", "1")]) == Some(0.0)
    });
    assert_eq!(
        s.value("nvidia_gpu_xid_errors_total", &xid("1", "79")),
        Some(1.0)
    );
    assert_eq!(
        s.value("nvidia_gpu_xid_errors_total", &xid("0", "48")),
        Some(2.0)
    );
    // The lost GPU keeps its identity and its event counters, nothing else.
    assert_eq!(s.find("nvidia_gpu_info", &[("gpu", "1")]).len(), 1);
    assert!(
        s.find("nvidia_gpu_temperature_celsius", &[("gpu", "1")])
            .is_empty()
    );
    assert_eq!(s.value("nvidia_gpu_up", &[("gpu", "0")]), Some(1.0));
    assert_eq!(health(&exporter)["gpus_lost"], 1);
}

#[test]
fn a_driver_reload_is_followed_by_a_new_nvml_initialisation() {
    let config = DoubleConfig::new("reload", "");
    let calls = config.sibling("calls");
    let base = format!("gpu_count = 2\ncall_log = {}\n", calls.display());
    config.write(&format!("{base}gpu.1.xid = 62\n"));
    let exporter = start(Driver::Current, &config, &[]);
    exporter.scrape_until("XID 62 counted", |s| {
        s.value(
            "nvidia_gpu_xid_errors_total",
            &[("gpu", "1"), ("xid", "62")],
        ) == Some(1.0)
    });

    // The driver is reloaded: the old session's handles answer UNKNOWN.
    config.write(&format!("{base}driver_generation = 1\n"));
    let s = exporter.scrape_until("NVML initialised again", |s| {
        std::fs::read_to_string(&calls)
            .unwrap()
            .matches("nvmlInit_v2 0")
            .count()
            == 2
            && s.value("nvidia_gpu_up", &[("gpu", "1")]) == Some(1.0)
    });
    let log = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(log, "nvmlInit_v2 0\nnvmlShutdown\nnvmlInit_v2 0\n");
    assert_eq!(s.value("nvidia_gpu_up", &[("gpu", "0")]), Some(1.0));
    // Counts since the exporter started survive the new initialisation, and
    // the event thread follows it.
    assert_eq!(
        s.value(
            "nvidia_gpu_xid_errors_total",
            &[("gpu", "1"), ("xid", "62")]
        ),
        Some(1.0)
    );
    config.write(&format!("{base}driver_generation = 1\ngpu.0.xid = 94\n"));
    exporter.scrape_until("events after the reload", |s| {
        s.value(
            "nvidia_gpu_xid_errors_total",
            &[("gpu", "0"), ("xid", "94")],
        ) == Some(1.0)
    });
    assert!(
        exporter.log().contains("initialising it again"),
        "{}",
        exporter.log()
    );
}

#[test]
fn a_collection_stays_within_25_nvml_calls_per_gpu() {
    // GPU 2 has GPM profiling, GPU 3 18 NVLink links.
    let config = DoubleConfig::new(
        "budget",
        "gpu_count = 4\ngpu.2.gpm = 1\ngpu.2.gpm_value.2 = 50\ngpu.3.nvlinks = 18\n",
    );
    let mut args = double_args(Driver::Current);
    args[1] = "--collect.interval=1s".to_owned();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::start(&args, Some(&config));
    let finished = |s: &common::Scrape| {
        s.value(
            "system_info_exporter_last_collect_timestamp_seconds",
            &[("collector", "gpu")],
        )
    };
    let calls = |s: &common::Scrape, phase| {
        s.value("system_info_exporter_nvml_calls_total", &[("phase", phase)])
            .unwrap()
    };
    let first = exporter.scrape_until("the first collection", |s| s.has("nvidia_gpu_up"));
    // Per GPU: handle, temperature, power, limit, memory, utilization,
    // encoder, decoder, 4 clocks, 2 fans, P-state, clock-event reasons, PCIe
    // generation and width, field values (NVLink included), MIG mode = 20;
    // GPM takes a sample (2 calls) in the first collection; plus one device
    // count per collection.
    assert_eq!(calls(&first, "collection"), 1.0 + 4.0 * 20.0 + 2.0);
    // Identity and limits are read once per initialisation: 4 identity reads,
    // 4 maximum clocks, 4 thresholds, 2 PCIe maxima, ECC mode, NVLink count,
    // fans, clock-event reasons, event types, MIG slots, GPM support, the
    // fabric probe. GPUs without a fabric (all four) are not asked again.
    assert_eq!(calls(&first, "discovery"), 4.0 * 22.0);
    assert_eq!(calls(&first, "init"), 4.0);

    // Later collections: GPM adds a sample, the metrics and freeing the
    // previous sample, 24 calls for that GPU.
    let second =
        exporter.scrape_until("the second collection", |s| finished(s) != finished(&first));
    let one_collection = calls(&second, "collection") - calls(&first, "collection");
    assert_eq!(one_collection, 1.0 + 3.0 * 20.0 + 24.0);
    assert!(second.has("nvidia_gpu_sm_active_ratio"));
}

#[test]
fn build_info_names_the_git_revision() {
    let Ok(output) = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    else {
        panic!("git is needed to check the revision");
    };
    let revision = String::from_utf8(output.stdout).unwrap();
    let exporter = Exporter::start(&["--nvml.library=/nonexistent/libnvidia-ml.so.1"], None);
    let s = exporter.scrape();
    let info = &s.find("system_info_exporter_build_info", &[])[0];
    assert_eq!(info.labels["revision"], revision.trim());
}

#[test]
fn collectors_are_chosen_by_flags_and_by_scrape() {
    let config = DoubleConfig::new("selection", "");
    let exporter = start(
        Driver::Current,
        &config,
        &["--no-collector.host", "--web.disable-exporter-metrics"],
    );
    let s = exporter.scrape_until("GPU metrics", |s| s.has("nvidia_gpu_up"));
    assert!(!s.has("host_info"));
    assert!(!s.has("process_resident_memory_bytes"));
    let collectors = &health(&exporter)["collectors"];
    assert_eq!(collectors.as_array().unwrap().len(), 1, "{collectors}");
    assert_eq!(collectors[0]["name"], "gpu");

    let both = start(Driver::Current, &config, &[]);
    both.scrape_until("both collectors", |s| {
        s.has("nvidia_gpu_up") && s.has("host_info")
    });
    let only_host = both.scrape_at("/metrics?collect%5B%5D=host");
    assert!(only_host.has("host_info") && !only_host.has("nvidia_gpu_up"));
    assert_eq!(
        only_host
            .find("system_info_exporter_collect_success", &[])
            .len(),
        1
    );
    let no_host = both.scrape_at("/metrics?exclude[]=host");
    assert!(!no_host.has("host_info") && no_host.has("nvidia_gpu_up"));
    let unknown = both.get("/metrics?collect[]=disk").unwrap();
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.body.contains("unknown collector \"disk\""),
        "{}",
        unknown.body
    );
}
