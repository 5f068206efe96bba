//! The dcgm-exporter compatible view (`--metrics.format=dcgm`), end to end:
//! the real binary against the NVML test double and a fake kubelet, scraped
//! over HTTP, and a real Prometheus evaluating the queries of dcgm-exporter's
//! Grafana dashboard.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::prometheus::Prometheus;
use common::{
    DoubleConfig, Driver, Exporter, Scrape, kubelet, nvml_double, require_tool, wait_for,
};
use system_info_exporter::testing::dcgm_fields;

const UUID0: &str = "GPU-00000000-0000-4000-8000-000000000000";
const UUID1: &str = "GPU-00000000-0000-4000-8000-000000000001";

/// Two GPUs with readings that tell the conversions apart; GPU 0 reports
/// XID 13 and has row remapping trouble; both have GPM profiling.
const CONFIG: &str = "\
gpu_count = 2
gpu.0.gpm = 1
gpu.0.gpm_value.2 = 45
gpu.0.gpm_value.5 = 12
gpu.0.gpm_value.20 = 100
gpu.1.gpm = 1
gpu.1.gpm_value.5 = 30
gpu.0.clock.1 = 1005
gpu.0.clock.2 = 1215
gpu.0.pcie_replay = 7
gpu.0.remapped_cor = 3
gpu.0.remapped_unc = 1
gpu.0.remap_failure = 1
gpu.0.power_usage = 123456
gpu.0.xid = 13
gpu.1.utilization_gpu = 29
gpu.1.utilization_memory = 57
gpu.1.encoder = 3
gpu.1.memory_used = 3000000000
";

fn args(extra: &[String]) -> Vec<String> {
    let mut args = vec![
        format!("--nvml.library={}", nvml_double(Driver::Current).display()),
        "--collect.interval=200ms".to_owned(),
        "--host.name=gpu-node-7".to_owned(),
    ];
    args.extend_from_slice(extra);
    args
}

fn start(test: &str, extra: &[String]) -> (Exporter, DoubleConfig) {
    let config = DoubleConfig::new(test, CONFIG);
    let args = args(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Exporter::start(&args, Some(&config)), config)
}

fn dcgm_scrape_with_pods(exporter: &Exporter) -> Scrape {
    exporter.scrape_until("both GPUs, GPU 0 with its pod and XID", |s| {
        s.value("DCGM_FI_DEV_GPU_TEMP", &[("gpu", "1")]).is_some()
            && s.value("DCGM_FI_DEV_GPU_TEMP", &[("gpu", "0"), ("pod", "train")])
                .is_some()
            && s.value("DCGM_FI_DEV_XID_ERRORS", &[("gpu", "0")]) == Some(13.0)
    })
}

#[test]
fn dcgm_fields_carry_dcgm_names_units_and_labels() {
    let (kubelet, socket) = kubelet::holding("dcgm-fields", UUID0);
    let (exporter, _config) = start("dcgm-fields", &["--metrics.format=dcgm".to_owned(), socket]);
    let s = dcgm_scrape_with_pods(&exporter);
    drop(kubelet);

    // The labels of dcgm-exporter, in its order; the pod only where one
    // holds the GPU.
    let line = |name: &str, gpu: &str| {
        s.text
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{gpu=\"{gpu}\"")))
            .unwrap_or_else(|| panic!("no {name} for GPU {gpu}:\n{}", s.text))
            .to_owned()
    };
    assert_eq!(
        line("DCGM_FI_DEV_GPU_TEMP", "0"),
        format!(
            "DCGM_FI_DEV_GPU_TEMP{{gpu=\"0\",UUID=\"{UUID0}\",pci_bus_id=\"00000000:10:00.0\",\
             device=\"nvidia0\",modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"gpu-node-7\",\
             DCGM_FI_DRIVER_VERSION=\"550.54.15\",container=\"main\",namespace=\"ml\",pod=\"train\"}} 40"
        )
    );
    assert_eq!(
        line("DCGM_FI_DEV_GPU_TEMP", "1"),
        format!(
            "DCGM_FI_DEV_GPU_TEMP{{gpu=\"1\",UUID=\"{UUID1}\",pci_bus_id=\"00000000:11:00.0\",\
             device=\"nvidia1\",modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"gpu-node-7\",\
             DCGM_FI_DRIVER_VERSION=\"550.54.15\"}} 41"
        )
    );

    // Every value in DCGM's unit, from what the double reports in NVML's.
    let expected: &[(&str, f64, f64)] = &[
        ("DCGM_FI_DEV_SM_CLOCK", 1005.0, 1410.0),    // MHz
        ("DCGM_FI_DEV_MEM_CLOCK", 1215.0, 1593.0),   // MHz
        ("DCGM_FI_DEV_GPU_TEMP", 40.0, 41.0),        // °C
        ("DCGM_FI_DEV_MEMORY_TEMP", 45.0, 46.0),     // °C
        ("DCGM_FI_DEV_POWER_USAGE", 123.456, 101.0), // W from mW
        (
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            123456789.0,
            123457789.0,
        ), // mJ
        ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 7.0, 0.0),
        ("DCGM_FI_DEV_GPU_UTIL", 50.0, 29.0),      // %
        ("DCGM_FI_DEV_MEM_COPY_UTIL", 20.0, 57.0), // %
        ("DCGM_FI_DEV_ENC_UTIL", 0.0, 3.0),        // %
        ("DCGM_FI_DEV_DEC_UTIL", 5.0, 5.0),        // %
        ("DCGM_FI_DEV_FB_USED", 1024.0, 2861.0),   // MiB, rounded down
        ("DCGM_FI_DEV_FB_RESERVED", 512.0, 512.0), // MiB
        ("DCGM_FI_DEV_FB_FREE", 80384.0, 78546.0), // 81920 − 512 − used, MiB
        ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 3.0, 0.0),
        ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 1.0, 0.0),
        ("DCGM_FI_DEV_ROW_REMAP_FAILURE", 1.0, 0.0),
        ("DCGM_FI_DEV_XID_ERRORS", 13.0, 0.0),
    ];
    for (name, gpu0, gpu1) in expected {
        for (gpu, value) in [("0", gpu0), ("1", gpu1)] {
            assert_eq!(
                s.value(name, &[("gpu", gpu)]),
                Some(*value),
                "{name} of GPU {gpu}"
            );
        }
    }
    let xid = |gpu: &str| {
        let found = s.find("DCGM_FI_DEV_XID_ERRORS", &[("gpu", gpu)]);
        let labels = &found[0].labels;
        (labels["err_code"].clone(), labels["err_msg"].clone())
    };
    assert_eq!(xid("0"), ("13".into(), "Graphics Engine Exception".into()));
    assert_eq!(xid("1"), ("0".into(), "No Error".into()));

    // dcgm-exporter's types; the view serves no native GPU or host metric,
    // but keeps the exporter's own.
    for (name, kind) in [
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter"),
        ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter"),
        ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter"),
        ("DCGM_FI_DEV_GPU_TEMP", "gauge"),
        ("DCGM_FI_DEV_XID_ERRORS", "gauge"),
    ] {
        assert_eq!(s.types[name], kind, "{name}");
    }
    let names: BTreeSet<&str> = s.samples.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.iter().all(|n| n.starts_with("DCGM_FI_")
            || n.starts_with("system_info_exporter_")
            || n.starts_with("process_")),
        "{names:?}"
    );
    // The exporter's own metrics, also those its collectors report.
    for own in [
        "system_info_exporter_build_info",
        "system_info_exporter_collect_success",
        "system_info_exporter_nvml_calls_total",
        "system_info_exporter_pod_resources_errors_total",
    ] {
        assert!(names.contains(own), "{own} missing: {names:?}");
    }
}

#[test]
fn every_field_whose_native_source_is_collected_is_served() {
    // The same GPUs in both formats: a DCGM field is served exactly when one
    // of its native sources is (fields from profiling and NVLink traffic
    // appear once those native metrics are collected).
    let (native, _a) = start("dcgm-native-side", &[]);
    let (dcgm, _b) = start("dcgm-dcgm-side", &["--metrics.format=dcgm".to_owned()]);
    let native = native.scrape_until("the GPUs", |s| s.has("nvidia_gpu_temperature_celsius"));
    let fields = dcgm_fields();
    let expected: BTreeSet<&str> = fields
        .iter()
        .filter(|field| {
            native.samples.iter().any(|sample| {
                field.sources.contains(&sample.name.as_str())
                    && field
                        .filter
                        .is_none_or(|(k, v)| sample.labels.get(k).map(String::as_str) == Some(v))
            })
        })
        .map(|field| field.name)
        .collect();
    assert!(expected.len() >= 18, "{expected:?}");
    // Rates need two collections.
    let served = |s: &Scrape| -> BTreeSet<String> {
        s.samples
            .iter()
            .filter(|s| s.name.starts_with("DCGM_FI_"))
            .map(|s| s.name.clone())
            .collect()
    };
    let s = dcgm.scrape_until("every expected field", |s| {
        expected.iter().all(|name| s.has(name))
    });
    let expected: BTreeSet<String> = expected.iter().map(|n| n.to_string()).collect();
    assert_eq!(served(&s), expected);
}

#[test]
fn the_last_xid_follows_new_events() {
    let (exporter, config) = start("dcgm-xid", &["--metrics.format=dcgm".to_owned()]);
    exporter.scrape_until("XID 13", |s| {
        s.value("DCGM_FI_DEV_XID_ERRORS", &[("gpu", "0")]) == Some(13.0)
    });
    config.write(&CONFIG.replace("gpu.0.xid = 13", "gpu.0.xid = 48"));
    let s = exporter.scrape_until("XID 48", |s| {
        s.value("DCGM_FI_DEV_XID_ERRORS", &[("gpu", "0")]) == Some(48.0)
    });
    let found = s.find("DCGM_FI_DEV_XID_ERRORS", &[("gpu", "0")]);
    assert_eq!(found[0].labels["err_code"], "48");
    assert_eq!(found[0].labels["err_msg"], "Double Bit ECC Error");
}

#[test]
fn the_format_comes_from_the_environment_and_bad_values_exit_2() {
    let config = DoubleConfig::new("dcgm-env", CONFIG);
    let args = args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter =
        Exporter::start_with_env(&args, Some(&config), &[("SIE_METRICS_FORMAT", "dcgm")]);
    exporter.scrape_until("DCGM fields", |s| s.has("DCGM_FI_DEV_GPU_TEMP"));

    let output = Command::new(common::BIN)
        .arg("--metrics.format=prometheus")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--metrics.format"), "{stderr}");
    assert!(
        stderr.contains("native") && stderr.contains("dcgm"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
}

/// Grafana's `label_values(metric, label)`.
fn label_values(prometheus: &Prometheus, metric: &str, label: &str) -> Vec<String> {
    let reply = prometheus.get(
        &format!("/api/v1/label/{label}/values"),
        &[("match[]", metric)],
    );
    reply
        .and_then(|r| serde_json::from_value(r["data"].clone()).ok())
        .unwrap_or_default()
}

/// The panels of dcgm-exporter's Grafana dashboard
/// (`grafana/dcgm-exporter-dashboard.json` in NVIDIA/dcgm-exporter), by
/// title, with the query each evaluates; `$instance` and `$gpu` are the
/// dashboard's variables, both `label_values(DCGM_FI_DEV_GPU_TEMP, …)`.
const PANELS: &[(&str, &str)] = &[
    (
        "GPU Temperature",
        "DCGM_FI_DEV_GPU_TEMP{instance=~\"$instance\", gpu=~\"$gpu\"}",
    ),
    (
        "GPU Avg. Temp",
        "avg(DCGM_FI_DEV_GPU_TEMP{instance=~\"$instance\", gpu=~\"$gpu\"})",
    ),
    (
        "GPU Power Usage",
        "DCGM_FI_DEV_POWER_USAGE{instance=~\"$instance\", gpu=~\"$gpu\"}",
    ),
    (
        "GPU Power Total",
        "sum(DCGM_FI_DEV_POWER_USAGE{instance=~\"$instance\", gpu=~\"$gpu\"})",
    ),
    (
        "GPU SM Clocks",
        "DCGM_FI_DEV_SM_CLOCK{instance=~\"$instance\", gpu=~\"$gpu\"} * 1000000",
    ),
    (
        "GPU Utilization",
        "DCGM_FI_DEV_GPU_UTIL{instance=~\"$instance\", gpu=~\"$gpu\"}",
    ),
    (
        "GPU Framebuffer Mem Used",
        "DCGM_FI_DEV_FB_USED{instance=~\"$instance\", gpu=~\"$gpu\"}",
    ),
    (
        "Tensor Core Utilization",
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{instance=~\"$instance\", gpu=~\"$gpu\"}",
    ),
];

/// What each panel shows for the double's two GPUs, by `gpu` label (`""`
/// for the aggregations).
fn panel_values(title: &str) -> Vec<(&'static str, f64)> {
    match title {
        "GPU Temperature" => vec![("0", 40.0), ("1", 41.0)],
        "GPU Avg. Temp" => vec![("", 40.5)],
        "GPU Power Usage" => vec![("0", 123.456), ("1", 101.0)],
        "GPU Power Total" => vec![("", 224.456)],
        "GPU SM Clocks" => vec![("0", 1.005e9), ("1", 1.41e9)],
        "GPU Utilization" => vec![("0", 50.0), ("1", 29.0)],
        "GPU Framebuffer Mem Used" => vec![("0", 1024.0), ("1", 2861.0)],
        "Tensor Core Utilization" => vec![("0", 0.12), ("1", 0.3)],
        other => panic!("no values for {other}"),
    }
}

#[test]
fn prometheus_answers_every_panel_of_the_dcgm_exporter_dashboard() {
    if !require_tool("prometheus", "apt-get install prometheus") {
        return;
    }
    let (exporter, _config) = start("dcgm-dashboard", &["--metrics.format=dcgm".to_owned()]);
    let prometheus = Prometheus::start(
        "dcgm",
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dcgm\n    \
             static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
            exporter.port
        ),
    );

    // The dashboard's variables, as Grafana fills them with "All" selected.
    let variable = |label: &str| {
        wait_for(&format!("${label}"), Duration::from_secs(60), || {
            let values = label_values(&prometheus, "DCGM_FI_DEV_GPU_TEMP", label);
            (values.len() >= if label == "gpu" { 2 } else { 1 }).then_some(values)
        })
    };
    let instance = variable("instance");
    let gpu = variable("gpu");
    assert_eq!(instance, [format!("127.0.0.1:{}", exporter.port)]);
    assert_eq!(gpu, ["0", "1"]);
    let all = |values: &[String]| format!("({})", values.join("|"));

    for (title, query) in PANELS {
        let query = query
            .replace("$instance", &all(&instance))
            .replace("$gpu", &all(&gpu));
        let result = wait_for(
            &format!("data for {title}"),
            Duration::from_secs(30),
            || {
                let result = prometheus.query(&query);
                (!result.is_empty()).then_some(result)
            },
        );
        let mut got: Vec<(String, f64)> = result
            .into_iter()
            .map(|(labels, value)| (labels.get("gpu").cloned().unwrap_or_default(), value))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let expected: Vec<(String, f64)> = panel_values(title)
            .into_iter()
            .map(|(gpu, value)| (gpu.to_owned(), value))
            .collect();
        assert_eq!(got.len(), expected.len(), "{title}: {got:?}");
        for ((gpu, value), (want_gpu, want)) in got.iter().zip(&expected) {
            assert_eq!(gpu, want_gpu, "{title}");
            assert!(
                (value - want).abs() < 1e-9,
                "{title}, GPU {gpu}: {value} != {want}"
            );
        }
    }
}

#[test]
fn without_nvml_the_view_is_empty_but_served() {
    let config = DoubleConfig::new("dcgm-no-nvml", "init_error = DRIVER_NOT_LOADED\n");
    let args = args(&["--metrics.format=dcgm".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::start(&args, Some(&config));
    let s = exporter.scrape_until("the GPU collection", |s| {
        s.value(
            "system_info_exporter_collect_success",
            &[("collector", "gpu")],
        ) == Some(0.0)
    });
    assert!(
        !s.samples.iter().any(|s| s.name.starts_with("DCGM_FI_")),
        "{}",
        s.text
    );
}

#[test]
fn profiling_fields_come_from_gpm_per_gpu_and_per_mig_instance() {
    let config = DoubleConfig::new(
        "dcgm-profiling",
        "gpu_count = 1
gpu.0.gpm = 1
gpu.0.gpm_mig = 1
gpu.0.mig = 1
gpu.0.mig_slots = 7
gpu.0.mig_device.2 = MIG-cccccccc-0000-5000-8000-000000000001 gi=3 ci=0 profile=1g.10gb memory_total=10737418240 memory_used=0
gpu.0.gpm_value.1 = 70
gpu.0.gpm_value.2 = 45
gpu.0.gpm_value.3 = 30
gpu.0.gpm_value.5 = 12
gpu.0.gpm_value.10 = 60
gpu.0.gpm_value.11 = 1
gpu.0.gpm_value.12 = 25
gpu.0.gpm_value.13 = 5
gpu.0.gpm_value.20 = 100
",
    );
    let args = args(&["--metrics.format=dcgm".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::start(&args, Some(&config));
    let s = exporter.scrape_until("profiling fields and a PCIe rate", |s| {
        s.has("DCGM_FI_PROF_PCIE_TX_BYTES") && s.has("DCGM_FI_PROF_SM_ACTIVE")
    });
    let whole = |name: &str| {
        let found: Vec<_> = s
            .find(name, &[("gpu", "0")])
            .into_iter()
            .filter(|sample| !sample.labels.contains_key("GPU_I_ID"))
            .collect();
        assert_eq!(found.len(), 1, "{name}");
        found[0].value
    };
    for (name, value) in [
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.7),
        ("DCGM_FI_PROF_SM_ACTIVE", 0.45),
        ("DCGM_FI_PROF_SM_OCCUPANCY", 0.3),
        ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 0.12),
        ("DCGM_FI_PROF_DRAM_ACTIVE", 0.6),
        ("DCGM_FI_PROF_PIPE_FP64_ACTIVE", 0.01),
        ("DCGM_FI_PROF_PIPE_FP32_ACTIVE", 0.25),
        ("DCGM_FI_PROF_PIPE_FP16_ACTIVE", 0.05),
    ] {
        assert!(
            (whole(name) - value).abs() < 1e-9,
            "{name}: {}",
            whole(name)
        );
    }
    // 100 MiB/s from GPM, integrated and differentiated again: equal up to
    // the difference between the GPM samples' times and the collections'.
    let tx = whole("DCGM_FI_PROF_PCIE_TX_BYTES");
    assert!((tx / 104_857_600.0 - 1.0).abs() < 0.2, "{tx}");
    // The MIG GPU instance carries dcgm-exporter's MIG labels.
    let mig = s.find(
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        &[("GPU_I_ID", "3"), ("GPU_I_PROFILE", "1g.10gb")],
    );
    assert_eq!(mig.len(), 1);
    assert!((mig[0].value - 0.12).abs() < 1e-9);
}

#[test]
fn mig_instances_get_their_own_framebuffer_fields() {
    // GPU instance 1 has two compute instances, which share its memory.
    let config = DoubleConfig::new(
        "dcgm-mig-framebuffer",
        "gpu_count = 1
gpu.0.mig = 1
gpu.0.mig_slots = 7
gpu.0.mig_device.0 = MIG-aaaaaaaa-0000-5000-8000-000000000001 gi=1 ci=0 profile=3g.40gb memory_total=42949672960 memory_used=10737418240
gpu.0.mig_device.1 = MIG-aaaaaaaa-0000-5000-8000-000000000002 gi=1 ci=1 profile=3g.40gb memory_total=42949672960 memory_used=10737418240
gpu.0.mig_device.2 = MIG-aaaaaaaa-0000-5000-8000-000000000003 gi=5 ci=0 profile=1g.10gb memory_total=10737418240 memory_used=1073741824
",
    );
    let args = args(&["--metrics.format=dcgm".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::start(&args, Some(&config));
    let s = exporter.scrape_until("the MIG instances", |s| {
        !s.find("DCGM_FI_DEV_FB_USED", &[("GPU_I_ID", "5")])
            .is_empty()
    });
    for (field, instance, profile, mib) in [
        ("DCGM_FI_DEV_FB_USED", "1", "3g.40gb", 10240.0),
        ("DCGM_FI_DEV_FB_FREE", "1", "3g.40gb", 30720.0),
        ("DCGM_FI_DEV_FB_USED", "5", "1g.10gb", 1024.0),
        ("DCGM_FI_DEV_FB_FREE", "5", "1g.10gb", 9216.0),
    ] {
        let labels = [("GPU_I_ID", instance), ("GPU_I_PROFILE", profile)];
        assert_eq!(
            s.value(field, &labels),
            Some(mib),
            "{field} of instance {instance}"
        );
    }
    // The whole GPU keeps its own series too.
    let whole: Vec<_> = s
        .find("DCGM_FI_DEV_FB_USED", &[("gpu", "0")])
        .into_iter()
        .filter(|sample| !sample.labels.contains_key("GPU_I_ID"))
        .collect();
    assert_eq!(whole.len(), 1);
}
