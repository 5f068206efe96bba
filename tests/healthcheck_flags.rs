//! The health check finds the running exporter whatever collector flags it
//! was started with: it parses the exporter's command line with the same
//! flags, the generated `--collector.*` ones included. One test on purpose
//! (see `tests/healthcheck.rs`).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, free_port, http, wait_for};
use system_info_exporter::testing::collector_flag_forms;

const NO_NVML: &str = "--nvml.library=/nonexistent/libnvidia-ml.so.1";

/// Starts the exporter with `flag`, its port given by flag or by variable,
/// and runs the health check beside it.
fn check(flag: &str, by_variable: bool) {
    eprintln!("checking {flag} (port by variable: {by_variable})");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut exporter = Command::new(BIN);
    exporter
        .args([NO_NVML, flag])
        .env_remove("SIE_WEB_LISTEN_ADDRESS")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if by_variable {
        exporter.env("SIE_WEB_LISTEN_ADDRESS", &listen);
    } else {
        exporter.arg(format!("--web.listen-address={listen}"));
    }
    let mut exporter = exporter.spawn().expect("cannot start the exporter");
    wait_for("the exporter to listen", Duration::from_secs(30), || {
        http("GET", &format!("http://{listen}/health")).ok()
    });
    let output = Command::new(BIN)
        .arg("healthcheck")
        .env_remove("SIE_WEB_LISTEN_ADDRESS")
        .output()
        .expect("cannot run the health check");
    exporter.kill().unwrap();
    exporter.wait().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let how = if by_variable { "variable" } else { "flag" };
    assert_eq!(
        output.status.code(),
        Some(0),
        "{flag} with the port by {how}: {stderr}"
    );
    assert!(
        stderr.contains(&format!("http://{listen}/health")),
        "{flag}, port by {how}: {stderr}"
    );
}

#[test]
fn the_health_check_follows_an_exporter_started_with_any_collector_flag() {
    let forms = collector_flag_forms();
    assert!(
        forms.contains(&"--collector.processes".to_owned())
            && forms.contains(&"--no-collector.gpu".to_owned())
            && forms.contains(&"--collector.gpu=false".to_owned())
            && forms.contains(&"--collector.disable-defaults".to_owned()),
        "{forms:?}"
    );
    for flag in &forms {
        check(flag, false);
        check(flag, true);
    }
}
