//! The NVLink fabric end to end: the real binary against the NVML test
//! double's `nvmlDeviceGetGpuFabricInfoV` (struct versions 2 and 3), on an
//! 8-GPU fabric node, on GPUs without a fabric and on a driver without the
//! call.

mod common;

use std::time::Duration;

use common::{DoubleConfig, Driver, Exporter, Scrape, start_on_double as start, wait_for};

const CLUSTER: &str = "9c6f5af3-53bf-49b5-a436-b66766c413c3";
/// nvml.h's healthy mask: the four two-bit fields false (2), the
/// configuration none (1).
const HEALTHY: &str = "0x1aa";
/// HEALTHY with route unhealthy (bits 4–5) true (1).
const ROUTE_UNHEALTHY: &str = "0x19a";

/// Eight GPUs registered in one clique, healthy, except GPU 5 (still
/// registering: `in_progress`) and GPU 6 (route unhealthy, summary unhealthy).
fn eight_gpus(gpu5_state: u32) -> String {
    let mut config = String::from("gpu_count = 8\n");
    for gpu in 0..8 {
        let (state, mask, summary) = match gpu {
            5 => (gpu5_state, HEALTHY, 1),
            6 => (3, ROUTE_UNHEALTHY, 2),
            _ => (3, HEALTHY, 1),
        };
        config.push_str(&format!(
            "gpu.{gpu}.name = NVIDIA H100 80GB HBM3\n\
             gpu.{gpu}.fabric_state = {state}\n\
             gpu.{gpu}.fabric_clique_id = 32766\n\
             gpu.{gpu}.fabric_cluster_uuid = {CLUSTER}\n\
             gpu.{gpu}.fabric_health_mask = {mask}\n\
             gpu.{gpu}.fabric_health_summary = {summary}\n"
        ));
    }
    config
}

fn fabric_series(s: &Scrape) -> Vec<&common::Sample> {
    let fabric = |s: &&common::Sample| s.name.starts_with("nvidia_gpu_fabric_");
    s.samples.iter().filter(fabric).collect()
}

fn of_gpu<'a>(s: &'a Scrape, name: &str, gpu: &str) -> Vec<&'a common::Sample> {
    s.find(name, &[("gpu", gpu)])
}

/// The one label value of `label` whose series of `name` is 1, for a GPU.
fn current(s: &Scrape, name: &str, gpu: &str, label: &str) -> Vec<String> {
    let on = of_gpu(s, name, gpu).into_iter().filter(|s| s.value == 1.0);
    on.map(|s| s.labels[label].clone()).collect()
}

fn health(exporter: &Exporter) -> serde_json::Value {
    let reply = exporter.get("/health").unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

/// Logged warnings and errors.
fn complaints(exporter: &Exporter) -> Vec<String> {
    let log = exporter.log();
    let bad = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains("ERROR"));
    bad.map(str::to_owned).collect()
}

#[test]
fn an_eight_gpu_fabric_node_shows_each_state_and_issue() {
    let config = DoubleConfig::new("fabric-node", &eight_gpus(2));
    let exporter = start(Driver::Current, &config, &["--require-gpu"]);
    let s = exporter.scrape_until("the fabric of 8 GPUs", |s| {
        s.find("nvidia_gpu_fabric_info", &[]).len() == 8
    });

    for gpu in (0..8).map(|g| g.to_string()) {
        let gpu = gpu.as_str();
        let state = if gpu == "5" {
            "in_progress"
        } else {
            "completed"
        };
        let states = current(&s, "nvidia_gpu_fabric_state", gpu, "state");
        assert_eq!(states, [state], "GPU {gpu}");
        assert_eq!(of_gpu(&s, "nvidia_gpu_fabric_state", gpu).len(), 3);
        let info = of_gpu(&s, "nvidia_gpu_fabric_info", gpu);
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].labels["cluster_uuid"], CLUSTER);
        assert_eq!(info[0].labels["clique_id"], "32766");
        assert_eq!(info[0].value, 1.0);
        // Each issue has a series, 1 only where reported.
        assert_eq!(of_gpu(&s, "nvidia_gpu_fabric_health", gpu).len(), 5);
        let issues = current(&s, "nvidia_gpu_fabric_health", gpu, "issue");
        let expected: &[&str] = if gpu == "6" {
            &["route_unhealthy"]
        } else {
            &[]
        };
        assert_eq!(issues, expected, "GPU {gpu}");
        let summary = current(&s, "nvidia_gpu_fabric_overall_health", gpu, "summary");
        let expected = if gpu == "6" { "unhealthy" } else { "healthy" };
        assert_eq!(summary, [expected], "GPU {gpu}");
        // The status only once registration completed (nvml.h: valid then).
        let status = s.value("nvidia_gpu_fabric_status", &[("gpu", gpu)]);
        assert_eq!(status, (gpu != "5").then_some(0.0), "GPU {gpu}");
        let series = s
            .samples
            .iter()
            .filter(|x| x.name.starts_with("nvidia_gpu_fabric_") && x.labels["gpu"] == gpu);
        assert_eq!(
            series.count(),
            if gpu == "5" { 12 } else { 13 },
            "GPU {gpu}"
        );
    }
    assert_eq!(fabric_series(&s).len(), 7 * 13 + 12);
    if common::require_tool("promtool", "apt-get install prometheus") {
        common::promtool_check_metrics(&s.text);
    }

    // /health flags GPU 5 and GPU 6; the liveness status stays ok.
    let h = health(&exporter);
    assert_eq!(h["status"], "ok");
    for gpu in 0..8 {
        let fabric = &h["gpus"][gpu]["fabric"];
        assert_eq!(fabric["ok"], gpu != 5 && gpu != 6, "GPU {gpu}: {fabric}");
        assert_eq!(fabric["clique_id"], 32766);
        assert_eq!(fabric["cluster_uuid"], CLUSTER);
        assert_eq!(fabric["unsupported_checks"], serde_json::json!([]));
    }
    let gpu5 = &h["gpus"][5]["fabric"];
    assert_eq!(gpu5["state"], "in_progress");
    assert!(gpu5.get("status").is_none(), "{gpu5}");
    let gpu6 = &h["gpus"][6]["fabric"];
    assert_eq!(gpu6["state"], "completed");
    assert_eq!(gpu6["status"], 0);
    assert_eq!(gpu6["issues"], serde_json::json!(["route_unhealthy"]));
    assert_eq!(gpu6["summary"], "unhealthy");

    // Not ready while GPU 5 registers; ready once it completed (the double
    // re-reads its config). GPU 6 is registered: its health is for alerts.
    let ready = exporter.get("/ready").unwrap();
    assert_eq!(ready.status, 503);
    assert!(
        ready
            .body
            .contains("NVLink fabric not registered (GPU 5: in_progress)"),
        "{}",
        ready.body
    );
    config.write(&eight_gpus(3));
    let ready = wait_for(
        "/ready once GPU 5 registered",
        Duration::from_secs(30),
        || exporter.get("/ready").ok().filter(|r| r.status == 200),
    );
    assert_eq!(ready.body, "ready\n");
    // /ready follows the GPU status, which is shared a moment before the
    // collection's samples are published.
    exporter.scrape_until("GPU 5 completed", |s| {
        current(s, "nvidia_gpu_fabric_state", "5", "state") == ["completed"]
    });
    assert_eq!(health(&exporter)["gpus"][5]["fabric"]["ok"], true);

    // Logged once each: GPU 5 pending, then registered; GPU 6's issue as
    // the one warning. The healthy GPUs are not logged.
    let log = exporter.log();
    let lines = |text: &str| log.lines().filter(|l| l.contains(text)).count();
    assert_eq!(lines("NVLink fabric not registered yet gpu=5"), 1, "{log}");
    assert_eq!(
        lines("NVLink fabric registered and healthy gpu=5"),
        1,
        "{log}"
    );
    assert_eq!(lines("NVLink fabric"), 3, "{log}");
    let warnings = complaints(&exporter);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("health issue gpu=6") && warnings[0].contains("route_unhealthy"),
        "{warnings:?}"
    );
}

#[test]
fn a_failed_registration_and_an_incorrect_configuration_are_named() {
    // Completed with INSUFFICIENT_RESOURCES (23), as seen on real nodes; a
    // configuration with too few NVLinks (cause 5 at bit 8).
    let config = DoubleConfig::new(
        "fabric-failed",
        "gpu_count = 2\n\
         gpu.0.fabric_state = 3\ngpu.0.fabric_status = 23\ngpu.0.fabric_health_mask = 0x1aa\n\
         gpu.1.fabric_state = 3\ngpu.1.fabric_health_mask = 0x5aa\ngpu.1.fabric_health_summary = 3\n",
    );
    let exporter = start(Driver::Current, &config, &["--require-gpu"]);
    let s = exporter.scrape_until("two fabrics", |s| {
        s.find("nvidia_gpu_fabric_info", &[]).len() == 2
    });
    assert_eq!(
        s.value("nvidia_gpu_fabric_status", &[("gpu", "0")]),
        Some(23.0)
    );
    let issues = current(&s, "nvidia_gpu_fabric_health", "1", "issue");
    assert_eq!(issues, ["incorrect_configuration"]);
    let summary = current(&s, "nvidia_gpu_fabric_overall_health", "1", "summary");
    assert_eq!(summary, ["limited_capacity"]);
    // The double's cluster UUID is unset: all zeroes, as outside a multi-node fabric.
    let info = s.find("nvidia_gpu_fabric_info", &[("gpu", "0")]);
    assert_eq!(
        info[0].labels["cluster_uuid"],
        "00000000-0000-0000-0000-000000000000"
    );

    let h = health(&exporter);
    let gpu0 = &h["gpus"][0]["fabric"];
    assert_eq!(
        (gpu0["ok"].clone(), gpu0["status"].clone()),
        (false.into(), 23.into())
    );
    assert!(
        gpu0["error"].as_str().unwrap().contains("return code 23"),
        "{gpu0}"
    );
    let gpu1 = &h["gpus"][1]["fabric"];
    assert_eq!(gpu1["ok"], false);
    assert_eq!(gpu1["incorrect_configuration"], "insufficient_nvlinks");
    assert_eq!(gpu1["summary"], "limited_capacity");
    let ready = exporter.get("/ready").unwrap();
    assert_eq!(ready.status, 503);
    assert!(
        ready
            .body
            .contains("GPU 0: failed with NVML return code 23"),
        "{}",
        ready.body
    );
}

#[test]
fn a_driver_that_knows_only_v2_has_no_summary() {
    let config = DoubleConfig::new(
        "fabric-v2",
        "fabric_info_max_version = 2\n\
         gpu.0.fabric_state = 3\ngpu.0.fabric_health_mask = 0x1aa\ngpu.0.fabric_health_summary = 1\n",
    );
    let exporter = start(Driver::Current, &config, &["--require-gpu"]);
    let s = exporter.scrape_until("the fabric", |s| s.has("nvidia_gpu_fabric_info"));
    assert!(!s.has("nvidia_gpu_fabric_overall_health"));
    assert_eq!(fabric_series(&s).len(), 10);
    assert_eq!(
        current(&s, "nvidia_gpu_fabric_state", "0", "state"),
        ["completed"]
    );
    let fabric = &health(&exporter)["gpus"][0]["fabric"];
    assert_eq!(fabric["ok"], true, "{fabric}");
    assert!(fabric.get("summary").is_none(), "{fabric}");
    assert_eq!(exporter.get("/ready").unwrap().status, 200);
    assert_eq!(complaints(&exporter), Vec::<String>::new());
}

/// No fabric series, no `fabric` in `/health`, nothing logged, ready.
fn assert_no_fabric(exporter: &Exporter, gpus: usize) {
    let s = exporter.scrape_until("the GPUs", |s| s.find("nvidia_gpu_up", &[]).len() == gpus);
    assert_eq!(fabric_series(&s), Vec::<&common::Sample>::new());
    let h = health(exporter);
    for gpu in h["gpus"].as_array().unwrap() {
        assert!(gpu.get("fabric").is_none(), "{gpu}");
    }
    assert_eq!(exporter.get("/ready").unwrap().status, 200);
    assert_eq!(complaints(exporter), Vec::<String>::new());
}

#[test]
fn gpus_without_a_fabric_and_a_driver_without_the_call_show_none() {
    // GPU 0 answers NOT_SUPPORTED (before Hopper); GPU 1 success with state
    // not supported (a PCIe board), and GPU 2 says so explicitly while its
    // other fields are set (they mean nothing then).
    let pcie = "gpu_count = 3\ngpu.0.unsupported = fabric\n\
                gpu.2.fabric_state = 0\ngpu.2.fabric_health_mask = 0x1aa\n\
                gpu.2.fabric_health_summary = 1\n";
    let config = DoubleConfig::new("fabric-none", pcie);
    let exporter = start(Driver::Current, &config, &["--require-gpu"]);
    assert_no_fabric(&exporter, 3);

    // A driver before R550 has no nvmlDeviceGetGpuFabricInfoV at all: the
    // symbol is looked up, not called.
    let legacy = DoubleConfig::new("fabric-legacy", &eight_gpus(3));
    let exporter = start(Driver::Legacy, &legacy, &["--require-gpu"]);
    assert_no_fabric(&exporter, 8);
}

/// The dashboard's queries of the row named `row`, by panel title, each
/// `(refId, expr)`.
fn dashboard_row(row: &str) -> Vec<(String, Vec<(String, String)>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let start = panels.iter().position(|p| p["title"] == row).unwrap() + 1;
    let panels = panels[start..].iter().take_while(|p| p["type"] != "row");
    panels
        .map(|panel| {
            let targets = panel["targets"].as_array().unwrap().iter();
            let targets = targets.map(|t| {
                let text = |key: &str| t[key].as_str().unwrap().to_owned();
                (text("refId"), text("expr"))
            });
            (
                panel["title"].as_str().unwrap().to_owned(),
                targets.collect(),
            )
        })
        .collect()
}

#[test]
fn the_dashboard_fabric_row_counts_fabric_gpus_and_shows_nothing_elsewhere() {
    if !common::require_tool("prometheus", "apt-get install prometheus") {
        return;
    }
    let fabric_config = DoubleConfig::new("fabric-dashboard", &eight_gpus(2));
    let fabric = start(Driver::Current, &fabric_config, &[]);
    let pcie_config = DoubleConfig::new("fabric-dashboard-pcie", "gpu_count = 2\n");
    let pcie = start(Driver::Current, &pcie_config, &[]);
    let prometheus = common::prometheus::Prometheus::start(
        "fabric",
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: system-info-exporter\n    \
             static_configs:\n      - targets: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
            fabric.port, pcie.port
        ),
    );
    let fabric_node = format!("127.0.0.1:{}", fabric.port);
    let pcie_node = format!("127.0.0.1:{}", pcie.port);
    wait_for("both nodes scraped", Duration::from_secs(60), || {
        let up = prometheus.query("nvidia_gpu_up");
        (up.len() == 10).then_some(())
    });

    // What each query shows on the fabric node: label values and value.
    let expected = |title: &str, id: &str| -> Vec<(String, f64)> {
        let one = |label: &str| vec![(label.to_owned(), 1.0)];
        match (title, id) {
            ("Fabric GPUs not registered", _) => one(""),
            ("Fabric GPUs with health issues", _) => one(""),
            ("GPUs not registered, by state", "A") => one("in_progress"),
            ("GPUs not registered, by state", "B") => vec![],
            ("Fabric health issues", "A") => one("6 route_unhealthy"),
            ("Fabric health issues", "B") => one("6 unhealthy"),
            ("Fabric cliques", _) => (0..8).map(|g| (format!("{g} 32766"), 1.0)).collect(),
            other => panic!("no expectation for {other:?}"),
        }
    };
    let shown = |labels: &std::collections::BTreeMap<String, String>| {
        let parts = ["gpu", "state", "issue", "summary", "clique_id"];
        let parts = parts.iter().filter_map(|l| labels.get(*l).cloned());
        parts.collect::<Vec<_>>().join(" ")
    };
    let row = dashboard_row("NVLink fabric");
    assert_eq!(row.len(), 5, "{row:?}");
    for (title, targets) in row {
        for (id, expr) in targets {
            let on = |node: &str| {
                let query = expr.replace("$node", node).replace("$gpu", ".*");
                let mut got: Vec<(String, f64)> = prometheus
                    .query(&query)
                    .into_iter()
                    .map(|(labels, value)| (shown(&labels), value))
                    .collect();
                got.sort_by(|a, b| a.0.cmp(&b.0));
                got
            };
            assert_eq!(on(&fabric_node), expected(&title, &id), "{title} {id}");
            assert_eq!(on(&pcie_node), vec![], "{title} {id} on a PCIe node");
        }
    }
}
