//! `--metrics.include` and `--metrics.exclude`: families left out cost
//! neither bytes (their HELP and TYPE lines go too) nor, where the family
//! has a call of its own, NVML calls; the exporter's own metrics stay.

mod common;

use common::{DoubleConfig, Driver, Scrape, nvml_double, start_on_double};
use system_info_exporter::testing::Collector;

const CLOCKS: &str = "nvidia_gpu_(clock|throttled|clock_event).*";

fn families(s: &Scrape) -> Vec<&str> {
    let mut names: Vec<&str> = s.types.keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

#[test]
fn an_excluded_family_is_not_served_and_not_read() {
    let config = DoubleConfig::new("filters-exclude", "gpu_count = 2\n");
    let exporter = start_on_double(
        Driver::Current,
        &config,
        &[&format!("--metrics.exclude={CLOCKS}")],
    );
    let s = exporter.scrape_until("the GPUs", |s| s.has("nvidia_gpu_temperature_celsius"));
    for gone in [
        "nvidia_gpu_clock_hertz",
        "nvidia_gpu_clock_max_hertz",
        "nvidia_gpu_clock_event_active",
        "nvidia_gpu_throttled_seconds_total",
    ] {
        assert!(!s.has(gone), "{gone}");
        assert!(!s.text.contains(&format!("# HELP {gone} ")), "{gone}");
    }
    assert!(s.has("host_cpus") && s.has("nvidia_gpu_power_usage_watts"));
    assert!(s.has("system_info_exporter_nvml_calls_total"));
    let health: serde_json::Value =
        serde_json::from_str(&exporter.get("/health").unwrap().body).unwrap();
    assert_eq!(
        health["metric_filters"],
        serde_json::json!({ "exclude": CLOCKS })
    );
}

#[test]
fn include_keeps_only_what_it_matches_and_the_exporters_own_metrics() {
    let config = DoubleConfig::new("filters-include", "gpu_count = 1\n");
    let exporter = start_on_double(
        Driver::Current,
        &config,
        &["--metrics.include=nvidia_gpu_temperature_celsius|host_cpus"],
    );
    let s = exporter.scrape_until("the GPU", |s| s.has("nvidia_gpu_temperature_celsius"));
    let served: Vec<&str> = families(&s)
        .into_iter()
        .filter(|n| !n.starts_with("system_info_exporter_") && !n.starts_with("process_"))
        .collect();
    assert_eq!(served, ["host_cpus", "nvidia_gpu_temperature_celsius"]);
    assert!(s.has("system_info_exporter_collect_success"));
    assert!(s.has("process_resident_memory_bytes"));

    let everything = start_on_double(Driver::Current, &config, &["--metrics.exclude=.*"]);
    let s = everything.scrape_until("a collection", |s| {
        s.has("system_info_exporter_nvml_calls_total")
    });
    assert!(
        families(&s)
            .iter()
            .all(|n| n.starts_with("system_info_exporter_") || n.starts_with("process_")),
        "{:?}",
        families(&s)
    );
}

#[test]
fn patterns_match_the_names_of_the_dcgm_view() {
    let config = DoubleConfig::new("filters-dcgm", "gpu_count = 1\n");
    let exporter = start_on_double(
        Driver::Current,
        &config,
        &[
            "--metrics.format=dcgm",
            "--metrics.exclude=DCGM_FI_DEV_SM_CLOCK",
        ],
    );
    let s = exporter.scrape_until("the GPU", |s| s.has("DCGM_FI_DEV_GPU_TEMP"));
    assert!(!s.has("DCGM_FI_DEV_SM_CLOCK"));
    assert!(s.has("DCGM_FI_DEV_MEM_CLOCK"));
}

#[test]
fn an_invalid_pattern_exits_2_naming_the_flag_or_the_variable() {
    for (args, env, named) in [
        (
            vec!["--metrics.include=nvidia_("],
            vec![],
            "--metrics.include",
        ),
        (
            vec![],
            vec![("SIE_METRICS_EXCLUDE", "[z-a]")],
            "SIE_METRICS_EXCLUDE",
        ),
    ] {
        let mut command = std::process::Command::new(common::BIN);
        command.args(&args);
        for (key, value) in &env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(named), "{stderr}");
        assert!(stderr.contains("regex parse error"), "{stderr}");
    }
}

/// NVML calls of one collection of one GPU, with `exclude` or without.
fn calls_per_collection(exclude: Option<&str>) -> f64 {
    let config = DoubleConfig::new(
        &format!("filters-calls-{}", exclude.is_some()),
        "gpu_count = 1\n",
    );
    // SAFETY: tests of this binary read the variable only through the double,
    // each from its own config file before its first collection.
    unsafe { std::env::set_var("NVML_DOUBLE_CONFIG", &config.path) };
    let mut gpu = Collector::gpu_excluding(&nvml_double(Driver::Current), exclude);
    let calls = |text: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with("system_info_exporter_nvml_calls_total{phase=\"collection\"}"))
            .unwrap();
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    let first = calls(&gpu.collect().unwrap().encode());
    let second = calls(&gpu.collect().unwrap().encode());
    second - first
}

#[test]
fn excluding_the_clock_families_saves_their_nvml_calls() {
    let all = calls_per_collection(None);
    let fewer = calls_per_collection(Some(CLOCKS));
    // Four clock readings and the clock-event reasons each have a call.
    assert_eq!(all - fewer, 5.0, "{all} calls, {fewer} without the clocks");
}
