//! dcgm-exporter's counters file for the dcgm view (`--dcgm.counters`), end
//! to end: the real binary against the NVML test double, scraped over HTTP.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{DoubleConfig, Driver, Exporter, Scrape, nvml_double};

/// Two GPUs; GPU 0 has GPM, so its PCIe traffic is read.
const CONFIG: &str = "\
gpu_count = 2
gpu.0.gpm = 1
gpu.0.gpm_value.2 = 45
gpu.0.gpm_value.5 = 12
gpu.0.gpm_value.20 = 100
gpu.0.xid = 13
";

fn counters_file(test: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dcgm-counters");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{test}.csv"));
    std::fs::write(&path, text).unwrap();
    path
}

fn start(test: &str, counters: Option<&Path>) -> (Exporter, DoubleConfig) {
    let config = DoubleConfig::new(test, CONFIG);
    let mut args = vec![
        format!("--nvml.library={}", nvml_double(Driver::Current).display()),
        "--collect.interval=200ms".to_owned(),
        "--host.name=gpu-node-7".to_owned(),
        "--metrics.format=dcgm".to_owned(),
    ];
    if let Some(path) = counters {
        args.push(format!("--dcgm.counters={}", path.display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Exporter::start(&args, Some(&config)), config)
}

/// The `# HELP` lines of the DCGM fields, in the order served.
fn helps(s: &Scrape) -> Vec<(String, String)> {
    s.text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP DCGM_"))
        .map(|l| {
            let (name, help) = l.split_once(' ').unwrap_or((l, ""));
            (format!("DCGM_{name}"), help.to_owned())
        })
        .collect()
}

fn dcgm_series(s: &Scrape) -> Vec<&common::Sample> {
    s.samples
        .iter()
        .filter(|s| s.name.starts_with("DCGM_"))
        .collect()
}

/// Lines of the log that name `text`.
fn log_lines(exporter: &Exporter, text: &str) -> usize {
    exporter.log().lines().filter(|l| l.contains(text)).count()
}

#[test]
fn the_file_chooses_the_fields_their_order_help_and_type() {
    let file = counters_file(
        "chosen",
        "# Format\n\
         # DCGM FIELD, Prometheus metric type, help message\n\
         \n\
         DCGM_FI_DEV_GPU_TEMP,    gauge, GPU temperature (in C).\n\
         DCGM_FI_DEV_SM_CLOCK,  gauge, SM clock frequency (in MHz).\n\
         DCGM_FI_DEV_NVSWITCH_LINK_THROUGHPUT_TX, counter, NVSwitch traffic\n\
         DCGM_FI_PROF_PCIE_TX_BYTES, counter, PCIe bytes transmitted\n\
         # DCGM_FI_DEV_GPU_UTIL, gauge, commented out\n\
         DCGM_EXP_XID_ERRORS_COUNT, counter, reported XIDs during last window\n\
         DCGM_FI_DEV_FB_USED, gauge,\"Framebuffer memory used, in MiB.\"\n\
         DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL, counter, Total number of NVLink bandwidth counters for all lanes.\n\
         DCGM_FI_PROF_SM_ACTIVE, gauge, SM activity (no GPM on GPU 1)\n",
    );
    let (exporter, _config) = start("dcgm-counters-chosen", Some(&file));
    let s = exporter.scrape_until("the listed fields and the PCIe rate", |s| {
        s.has("DCGM_FI_PROF_PCIE_TX_BYTES") && s.has("DCGM_FI_PROF_SM_ACTIVE")
    });

    // Exactly the listed fields with series, in the file's order and with
    // its help texts (NVLink has no traffic on these GPUs: no series).
    let served: Vec<(String, String)> = helps(&s)
        .into_iter()
        .filter(|(name, _)| name != "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL")
        .collect();
    let expected = [
        ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C)."),
        ("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz)."),
        ("DCGM_FI_PROF_PCIE_TX_BYTES", "PCIe bytes transmitted"),
        ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used, in MiB."),
        ("DCGM_FI_PROF_SM_ACTIVE", "SM activity (no GPM on GPU 1)"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(n, h)| (n.to_string(), h.to_string()))
        .collect();
    assert_eq!(served, expected, "{}", s.text);
    let names: BTreeSet<&str> = dcgm_series(&s).iter().map(|x| x.name.as_str()).collect();
    let listed: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.is_subset(&listed) && listed.is_subset(&names),
        "{names:?}"
    );
    // The profiling field is there for the GPU with GPM only.
    assert_eq!(s.find("DCGM_FI_PROF_SM_ACTIVE", &[]).len(), 1);
    assert!(s.has("system_info_exporter_build_info"));

    // A rate stays a gauge whatever the file says, and the log says so once.
    assert_eq!(s.types["DCGM_FI_PROF_PCIE_TX_BYTES"], "gauge");
    assert_eq!(s.types["DCGM_FI_DEV_GPU_TEMP"], "gauge");
    for rate in [
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    ] {
        assert_eq!(log_lines(&exporter, rate), 1, "{}", exporter.log());
    }
    assert!(
        exporter
            .log()
            .contains("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL is served as a gauge, not a counter"),
        "{}",
        exporter.log()
    );

    // Without its label row, no driver-version label.
    assert!(
        dcgm_series(&s)
            .iter()
            .all(|x| !x.labels.contains_key("DCGM_FI_DRIVER_VERSION")
                && x.labels["Hostname"] == "gpu-node-7"),
        "{}",
        s.text
    );

    // Fields this exporter never provides: one warning each, and /health.
    let skipped = [
        "DCGM_FI_DEV_NVSWITCH_LINK_THROUGHPUT_TX",
        "DCGM_EXP_XID_ERRORS_COUNT",
    ];
    let log = exporter.log();
    for field in skipped {
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains(field)).collect();
        assert_eq!(warnings.len(), 1, "{}", exporter.log());
        assert!(
            warnings[0].contains("WARN") && warnings[0].contains(&format!("{}", file.display()))
        );
    }
    assert_eq!(log_lines(&exporter, "DCGM_FI_DEV_GPU_UTIL"), 0);
    let health: serde_json::Value =
        serde_json::from_str(&exporter.get("/health").unwrap().body).unwrap();
    assert_eq!(health["dcgm_skipped_fields"], serde_json::json!(skipped));
}

#[test]
fn a_label_row_adds_the_driver_version() {
    let file = counters_file(
        "label",
        "DCGM_FI_DEV_GPU_TEMP, gauge, GPU temperature (in C).\n\
         DCGM_FI_DRIVER_VERSION, label, Driver Version\n",
    );
    let (exporter, _config) = start("dcgm-counters-label", Some(&file));
    let s = exporter.scrape_until("both GPUs", |s| {
        s.find("DCGM_FI_DEV_GPU_TEMP", &[]).len() == 2
    });
    let series = dcgm_series(&s);
    assert_eq!(series.len(), 2, "{}", s.text);
    // After Hostname, as dcgm-exporter places its label rows.
    for x in series {
        assert_eq!(x.labels["DCGM_FI_DRIVER_VERSION"], "550.54.15");
    }
    assert!(
        s.text
            .contains("Hostname=\"gpu-node-7\",DCGM_FI_DRIVER_VERSION=\"550.54.15\"} 40"),
        "{}",
        s.text
    );
    // Nothing skipped: /health has no list.
    let health: serde_json::Value =
        serde_json::from_str(&exporter.get("/health").unwrap().body).unwrap();
    assert!(health.get("dcgm_skipped_fields").is_none(), "{health}");
}

/// Series as (name, labels), and the values of the fields that are not rates.
fn substance(s: &Scrape) -> (BTreeSet<String>, Vec<String>) {
    let rates = [
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        "DCGM_FI_PROF_PCIE_RX_BYTES",
    ];
    let series = dcgm_series(s)
        .iter()
        .map(|x| format!("{}{:?}", x.name, x.labels))
        .collect();
    let values = dcgm_series(s)
        .iter()
        .filter(|x| !rates.contains(&x.name.as_str()))
        .map(|x| format!("{}{:?} {}", x.name, x.labels, x.value))
        .collect();
    (series, values)
}

#[test]
fn the_shipped_default_file_gives_exactly_the_built_in_output() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/dcgm/default-counters.csv");
    let (builtin, _a) = start("dcgm-counters-builtin", None);
    let (shipped, _b) = start("dcgm-counters-shipped", Some(&file));
    let ready = |s: &Scrape| s.has("DCGM_FI_PROF_PCIE_TX_BYTES") && s.has("DCGM_FI_DEV_XID_ERRORS");
    let builtin = builtin.scrape_until("every field", ready);
    let ours = shipped.scrape_until("every field", ready);
    assert!(helps(&builtin).len() >= 18, "{}", builtin.text);
    assert_eq!(helps(&ours), helps(&builtin));
    let types = |s: &Scrape| -> Vec<(String, String)> {
        let dcgm = s.types.iter().filter(|(n, _)| n.starts_with("DCGM_"));
        dcgm.map(|(n, t)| (n.clone(), t.clone())).collect()
    };
    assert_eq!(types(&ours), types(&builtin));
    assert_eq!(substance(&ours), substance(&builtin));
    assert!(
        dcgm_series(&ours)
            .iter()
            .all(|x| x.labels.contains_key("DCGM_FI_DRIVER_VERSION"))
    );
    // The shipped file skips nothing and retypes nothing.
    assert_eq!(log_lines(&shipped, "dcgm counters"), 0, "{}", shipped.log());
}

/// Runs the exporter, which must refuse `args`; returns its log.
fn refused(args: &[String], env: &[(&str, &str)]) -> String {
    let output = Command::new(common::BIN)
        .arg(format!(
            "--nvml.library={}",
            nvml_double(Driver::Current).display()
        ))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    stderr
}

#[test]
fn a_malformed_line_exits_2_naming_the_file_and_the_line() {
    let file = counters_file(
        "malformed",
        "# DCGM FIELD, Prometheus metric type, help message\n\
         DCGM_FI_DEV_GPU_TEMP, gauge, GPU temperature (in C).\n\
         DCGM_FI_DEV_SM_CLOCK, gauge, SM clock frequency, in MHz\n",
    );
    let dcgm = "--metrics.format=dcgm".to_owned();
    let stderr = refused(
        &[dcgm.clone(), format!("--dcgm.counters={}", file.display())],
        &[],
    );
    assert!(
        stderr.contains(&format!("{}, line 3", file.display())) && stderr.contains("found 4"),
        "{stderr}"
    );

    // Through the environment, an unknown type.
    let file = counters_file("bad-type", "\n\nDCGM_FI_DEV_GPU_TEMP, gaueg, t\n");
    let path = file.display().to_string();
    let stderr = refused(
        std::slice::from_ref(&dcgm),
        &[("SIE_DCGM_COUNTERS", path.as_str())],
    );
    assert!(
        stderr.contains(&format!("{path}, line 3")) && stderr.contains("\"gaueg\""),
        "{stderr}"
    );

    let missing = file.with_extension("missing");
    let stderr = refused(
        &[dcgm, format!("--dcgm.counters={}", missing.display())],
        &[],
    );
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("cannot read"),
        "{stderr}"
    );
}
