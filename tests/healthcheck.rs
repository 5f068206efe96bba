//! The `healthcheck` subcommand finds the address the running exporter was
//! given, as a container HEALTHCHECK must: it runs as a separate process that
//! does not see the exporter's flags.
//!
//! One test on purpose: the health check looks for processes running the same
//! executable, and tests in one binary run in parallel.

mod common;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{BIN, Exporter, http, wait_for};

fn healthcheck(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .arg("healthcheck")
        .args(args)
        .env_remove("SIE_WEB_LISTEN_ADDRESS");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("cannot run the health check")
}

fn assert_healthy(output: &Output, port: u16, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("\"status\":\"ok\""),
        "{what}: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let checked = format!("http://127.0.0.1:{port}/health");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&checked),
        "{what}: did not check {checked}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn healthcheck_follows_the_port_the_exporter_was_given() {
    const NO_NVML: &str = "--nvml.library=/nonexistent/libnvidia-ml.so.1";

    // 1. The port moved on the exporter's command line; the check is given nothing.
    let exporter = Exporter::start(&[NO_NVML], None);
    assert_healthy(
        &healthcheck(&[], &[]),
        exporter.port,
        "port on the command line",
    );

    // --url and the check's own flag still override what it finds.
    let closed = free_port();
    let url = format!("http://127.0.0.1:{closed}/health");
    let out = healthcheck(&["--url", &url], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&url) && stderr.contains("--url"),
        "{stderr}"
    );
    let out = healthcheck(&[&format!("--web.listen-address=127.0.0.1:{closed}")], &[]);
    assert_eq!(out.status.code(), Some(1));
    // So does a variable set for the check alone (the exporter has none).
    let out = healthcheck(
        &[],
        &[("SIE_WEB_LISTEN_ADDRESS", &format!("127.0.0.1:{closed}"))],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SIE_WEB_LISTEN_ADDRESS of the health check")
    );
    assert_eq!(exporter.terminate().code(), Some(0));

    // 2. The port moved through the variable, which the check does not have
    //    (as with `docker exec` into a container started with -e).
    let port = free_port();
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join("healthcheck-env.log");
    let mut child = Command::new(BIN)
        .arg(NO_NVML)
        .env("SIE_WEB_LISTEN_ADDRESS", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .expect("cannot start the exporter");
    wait_for("the exporter to listen", Duration::from_secs(30), || {
        http("GET", &format!("http://127.0.0.1:{port}/health")).ok()
    });
    assert_healthy(
        &healthcheck(&[], &[]),
        port,
        "port in the exporter's variable",
    );
    // And with the same variable in both, as in a container.
    assert_healthy(
        &healthcheck(
            &[],
            &[("SIE_WEB_LISTEN_ADDRESS", &format!("127.0.0.1:{port}"))],
        ),
        port,
        "port in both variables",
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // 3. The issue's own example: `--web.listen-address=:PORT`, every address.
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([NO_NVML, &format!("--web.listen-address=:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start the exporter");
    wait_for("the exporter to listen", Duration::from_secs(30), || {
        http("GET", &format!("http://127.0.0.1:{port}/health")).ok()
    });
    assert_healthy(&healthcheck(&[], &[]), port, "port as :PORT");
    child.kill().unwrap();
    child.wait().unwrap();
}
