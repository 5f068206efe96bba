//! What a new user meets in the first hour: where the exporter listens, what
//! it says when it starts, when a flag or a variable is wrong, when a
//! collection runs late or the kubelet cannot be reached, and what `/ready`
//! and `/health` answer. Each against the real binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{
    BIN, DoubleConfig, Driver, Exporter, free_port, http, require_root, require_tool,
    start_on_double, wait_for,
};

const NO_NVML: &str = "--nvml.library=/nonexistent/libnvidia-ml.so.1";

fn tmp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("first-hour");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs the binary to its end with `args` and `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("SIE_WEB_LISTEN_ADDRESS");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// The exporter started without the helper's `--web.listen-address`, its
/// log in `log`.
fn spawn_listening(args: &[&str], log: &Path) -> std::process::Child {
    Command::new(BIN)
        .args(args)
        .env_remove("SIE_WEB_LISTEN_ADDRESS")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn stop(mut child: std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn every_address_means_ipv6_and_ipv4_and_host_names_resolve() {
    let port = free_port();
    let log = tmp("dual-stack.log");
    let child = spawn_listening(&[NO_NVML, &format!("--web.listen-address=:{port}")], &log);
    wait_for("IPv4", Duration::from_secs(30), || {
        http("GET", &format!("http://127.0.0.1:{port}/health")).ok()
    });
    // Where the host has IPv6 (CI has), the same listener answers on ::1.
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let reply = http("GET", &format!("http://[::1]:{port}/health")).unwrap();
        assert_eq!(reply.status, 200);
    }
    stop(child);

    let port = free_port();
    let log = tmp("host-name.log");
    let child = spawn_listening(
        &[NO_NVML, &format!("--web.listen-address=localhost:{port}")],
        &log,
    );
    wait_for("localhost", Duration::from_secs(30), || {
        http("GET", &format!("http://127.0.0.1:{port}/health")).ok()
    });
    stop(child);
}

#[test]
fn the_startup_line_names_the_bound_address_and_what_runs() {
    let config = DoubleConfig::new("first-hour-startup", "gpu_count = 2\n");
    let log = tmp("startup.log");
    let library = format!(
        "--nvml.library={}",
        common::nvml_double(Driver::Current).display()
    );
    let mut command = Command::new(BIN);
    command
        .args([
            &library,
            "--web.listen-address=127.0.0.1:0",
            "--collect.interval=200ms",
        ])
        .env("NVML_DOUBLE_CONFIG", &config.path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let child = command.spawn().unwrap();
    let text = wait_for("the GPUs to be found", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("found 2 GPU(s)").then_some(text)
    });
    stop(child);
    let line = text
        .lines()
        .find(|l| l.contains("serving metrics"))
        .unwrap();
    assert!(!line.contains("127.0.0.1:0 "), "the bound port: {line}");
    for field in [
        "address=127.0.0.1:",
        "telemetry_path=/metrics",
        "collectors=[\"gpu\", \"host\"",
        "tls=false",
        "basic_auth=false",
        "revision=",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
}

#[test]
fn require_gpu_is_not_ready_where_nvml_reports_no_gpu() {
    let config = DoubleConfig::new("first-hour-no-gpu", "gpu_count = 0\n");
    let exporter = start_on_double(Driver::Current, &config, &["--require-gpu"]);
    let ready = wait_for("the first collection", Duration::from_secs(30), || {
        exporter
            .get("/ready")
            .ok()
            .filter(|r| !r.body.contains("first collection"))
    });
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("NVML reports no GPU"), "{}", ready.body);
    exporter.scrape_until("a few collections", |s| {
        s.value(
            "system_info_exporter_nvml_calls_total",
            &[("phase", "collection")],
        ) >= Some(5.0)
    });
    assert_eq!(exporter.log().matches("NVML reports no GPU").count(), 1);
}

#[test]
fn late_and_stale_collections_are_logged_once_each_way() {
    // Each NVML call sleeps 100 ms: a collection takes seconds, more than
    // three intervals of 200 ms.
    let slow = "gpu_count = 1\ndelay_ms = 100\n";
    let config = DoubleConfig::new("first-hour-slow", slow);
    let exporter = start_on_double(Driver::Current, &config, &[]);
    wait_for("/health to turn stale", Duration::from_secs(60), || {
        (exporter.get("/health").ok()?.status == 503).then_some(())
    });
    wait_for("the late collection", Duration::from_secs(60), || {
        exporter
            .log()
            .contains("longer than the interval")
            .then_some(())
    });
    config.write("gpu_count = 1\n");
    wait_for("the recovery", Duration::from_secs(60), || {
        let log = exporter.log();
        (log.contains("fit in the interval again") && log.contains("/health is ok")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let log = exporter.log();
    for (line, what) in [
        ("longer than the interval", "a collection ran late"),
        ("fit in the interval again", "collections fit again"),
        (
            "has not finished a collection for",
            "a collector went stale",
        ),
        ("/health is ok", "it recovered"),
    ] {
        assert_eq!(log.matches(line).count(), 1, "{what}: {log}");
    }
    assert_eq!(exporter.get("/health").unwrap().status, 200);
}

/// Starts the exporter with pod attribution pointed at `socket` and waits
/// for its warning.
fn pods_warning(socket: &Path, as_user: bool) -> String {
    let port = free_port();
    let log = tmp(&format!("pods-{port}.log"));
    let flag = format!("--kubelet.pod-resources-socket={}", socket.display());
    let listen = format!("--web.listen-address=127.0.0.1:{port}");
    let args = [NO_NVML, "--collect.interval=200ms", &flag, &listen];
    let child = if as_user {
        let mut setpriv = vec!["--reuid=65532", "--regid=65532", "--clear-groups", BIN];
        setpriv.extend(args);
        Command::new("setpriv")
            .args(setpriv)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap()
    } else {
        spawn_listening(&args, &log)
    };
    let text = wait_for("the pods warning", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("cannot list pod resources").then_some(text)
    });
    std::thread::sleep(Duration::from_millis(600));
    let text = std::fs::read_to_string(&log).unwrap_or(text);
    stop(child);
    assert_eq!(
        text.matches("cannot list pod resources").count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("GPUs are not attributed to pods until it answers"),
        "there was no mapping to keep: {text}"
    );
    text
}

#[test]
fn the_pods_collector_says_why_the_kubelet_cannot_be_reached() {
    let file = tmp("kubelet-file.sock");
    std::fs::write(&file, "").unwrap();
    assert!(pods_warning(&file, false).contains("it is a regular file, not a socket"));

    let dir = tmp("kubelet-dir");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(pods_warning(&dir, false).contains("it is a directory"));

    let closed = tmp("kubelet-closed.sock");
    let _ = std::fs::remove_file(&closed);
    drop(UnixListener::bind(&closed).unwrap());
    assert!(pods_warning(&closed, false).contains("nothing listens on it"));

    if require_root() && require_tool("setpriv", "apt-get install util-linux") {
        // The kubelet's socket: root's, like the default DaemonSet's uid
        // 65532 meets it.
        let socket = tmp("kubelet-root.sock");
        let _ = std::fs::remove_file(&socket);
        let _listener = UnixListener::bind(&socket).unwrap();
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();
        let warning = pods_warning(&socket, true);
        assert!(
            warning.contains("permission denied: the exporter runs as uid 65532")
                && warning.contains("runAsUser: 0"),
            "{warning}"
        );
    }
}

#[test]
fn flags_and_variables_take_what_people_type_and_errors_name_what_was_set() {
    // Switches and levels as people write them start the exporter.
    for (args, env) in [
        (vec!["--require-gpu=true"], vec![]),
        (vec!["--require-gpu=YES", "--collector.gpu=On"], vec![]),
        (
            vec![],
            vec![("SIE_REQUIRE_GPU", "1"), ("SIE_LOG_LEVEL", "DEBUG")],
        ),
        (vec!["--log.format=JSON"], vec![("SIE_COLLECTOR_GPU", "0")]),
    ] {
        let mut args = args.clone();
        args.push(NO_NVML);
        let exporter = Exporter::start_with_env(&args, None, &env);
        assert_eq!(
            exporter.get("/health").unwrap().status,
            200,
            "{args:?} {env:?}"
        );
    }
    for (args, env, expected) in [
        (
            vec![],
            vec![("SIE_COLLECT_INTERVAL", "7")],
            "SIE_COLLECT_INTERVAL",
        ),
        (
            vec!["--collect.interval=5"],
            vec![],
            "\"5\" has no unit; write 5s, 5ms or 5m",
        ),
        (vec!["--collect.interval=-1s"], vec![], "cannot be negative"),
        (vec!["--require-gpu=maybe"], vec![], "--require-gpu"),
        (
            vec![],
            vec![("SIE_REQUIRE_GPU", "maybe")],
            "SIE_REQUIRE_GPU",
        ),
        (vec!["healthcheck", "--url", "notaurl"], vec![], "--url"),
    ] {
        let output = run(&args, &env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?} {env:?}: {stderr}");
    }
    let version = run(&["--version"], &[]);
    assert!(String::from_utf8_lossy(&version.stdout).contains("(revision "));
}

#[test]
fn bind_errors_say_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for (address, expected) in [
        (
            format!("127.0.0.1:{port}"),
            "another process is using the port",
        ),
        ("192.0.2.1:9400".to_owned(), "not one of this host's"),
    ] {
        let output = run(&[NO_NVML, &format!("--web.listen-address={address}")], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{address}: {stderr}");
    }
}

#[test]
fn answers_name_the_telemetry_path_and_the_collectors_that_run() {
    let exporter = Exporter::start(&[NO_NVML, "--web.telemetry-path=/prom"], None);
    let missing = exporter.get("/metrics").unwrap();
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("/prom"), "{}", missing.body);
    let off = exporter.get("/prom?collect[]=processes").unwrap();
    assert_eq!(off.status, 400);
    assert!(off.body.contains("--collector.processes"), "{}", off.body);
    let reply = ureq::get(&exporter.url("/prom")).call().unwrap();
    assert_eq!(
        reply.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

#[test]
fn a_missing_nvml_library_is_explained_once() {
    let exporter = Exporter::start(&[NO_NVML, "--collect.interval=200ms"], None);
    exporter.scrape_until("three attempts", |s| {
        s.value(
            "system_info_exporter_nvml_calls_total",
            &[("phase", "init")],
        ) >= Some(3.0)
    });
    let log = exporter.log();
    assert_eq!(log.matches("does not exist").count(), 1, "{log}");
    assert!(log.contains("Install the NVIDIA driver"), "{log}");
}

#[test]
fn health_says_why_a_gpu_is_down_and_debug_logs_each_collection() {
    let config = DoubleConfig::new(
        "first-hour-down",
        "gpu_count = 2\ngpu.1.fail = GPU_IS_LOST\n",
    );
    let exporter = start_on_double(Driver::Current, &config, &["--log.level=debug"]);
    let health = wait_for("the first collection", Duration::from_secs(30), || {
        let body = exporter.get("/health").ok()?.body;
        let health: serde_json::Value = serde_json::from_str(&body).ok()?;
        (health["gpus"].as_array()?.len() == 2).then_some(health)
    });
    let gpus = &health["gpus"];
    assert!(gpus[0].get("down_reason").is_none(), "{gpus}");
    let reason = gpus[1]["down_reason"].as_str().unwrap();
    assert!(reason.contains("fell off the bus"), "{reason}");
    assert!(gpus[0]["events"]["state"].is_string(), "{gpus}");
    assert!(exporter.log().contains("collection published"));
}

#[test]
fn no_collector_at_all_is_said_once() {
    let exporter = Exporter::start(&[NO_NVML, "--collector.disable-defaults"], None);
    assert!(
        exporter.log().contains("no collector runs"),
        "{}",
        exporter.log()
    );
}
