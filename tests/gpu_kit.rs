//! The real-GPU acceptance run (`make test-gpu`, `tests/gpu/acceptance.py`)
//! needs a GPU, so CI checks what it can without one: its comparison logic
//! against a published H100 `nvidia-smi -q` sample and a canned scrape
//! derived from it (the Python unit tests in `tests/gpu`), that without a
//! GPU it skips with one line and exit status 0, and the whole run against
//! the NVML test double configured with the profile drawn from the same
//! sample, with a stand-in nvidia-smi printing that sample.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BIN, Driver, nvml_double};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python interpreter itself (not a shim such as pyenv's, which needs
/// PATH), so that a child can be given a PATH without python3.
fn python3() -> PathBuf {
    let output = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("cannot run python3");
    assert!(output.status.success(), "python3 failed");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

fn output_text(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn gpu_acceptance_comparison_unit_tests_pass() {
    let output = Command::new(python3())
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "tests/gpu",
            "-p",
            "test_*.py",
        ])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(repo())
        .output()
        .expect("cannot run python3");
    let (stdout, stderr) = output_text(&output);
    assert!(
        output.status.success(),
        "the acceptance kit's unit tests failed:\n{stdout}{stderr}"
    );
    // unittest reports "Ran N tests"; zero would mean discovery found nothing.
    assert!(
        stderr.contains("Ran ") && !stderr.contains("Ran 0 tests"),
        "no tests ran:\n{stderr}"
    );
}

#[test]
fn gpu_acceptance_run_without_nvidia_smi_skips_with_one_line() {
    // An empty directory as PATH: no nvidia-smi, as on this machine and in CI.
    let empty = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gpu-kit-empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let output = Command::new(python3())
        .arg("tests/gpu/acceptance.py")
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_system-info-exporter"))
        .env("PATH", &empty)
        .env_remove("OUT")
        .current_dir(repo())
        .output()
        .expect("cannot run python3");
    let (stdout, stderr) = output_text(&output);
    assert!(
        output.status.success(),
        "exit {:?}:\n{stdout}{stderr}",
        output.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stdout}{stderr}");
    assert!(
        lines[0].starts_with("test-gpu: skipped") && lines[0].contains("nvidia-smi"),
        "{}",
        lines[0]
    );
    assert!(stderr.is_empty(), "unexpected stderr: {stderr}");
}

#[test]
fn gpu_acceptance_run_passes_on_the_double_with_the_published_h100_profile() {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gpu-kit-run");
    let _ = std::fs::remove_dir_all(&out);
    let python = python3();
    // The stand-in nvidia-smi first; python3 for its #! line.
    let path = std::env::join_paths([
        repo().join("tests/gpu/fake-bin"),
        python.parent().unwrap().to_path_buf(),
    ])
    .unwrap();
    let output = Command::new(&python)
        .args(["tests/gpu/acceptance.py", "--binary", BIN])
        .args(["--load-seconds", "0", "--collections", "3"])
        .env("PATH", path)
        .env("OUT", &out)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SIE_NVML_LIBRARY", nvml_double(Driver::Current))
        .env(
            "NVML_DOUBLE_CONFIG",
            repo().join("tests/profiles/h100-sxm-published.conf"),
        )
        .current_dir(repo())
        .output()
        .expect("cannot run python3");
    let (stdout, stderr) = output_text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["mismatches"], 0, "{stdout}");
    assert_eq!(report["passed"], true, "{stdout}");
    let rows = report["rows"].as_array().unwrap();
    let matched = rows.iter().filter(|r| r["ok"] == true).count();
    assert!(matched >= 55, "only {matched} readings matched:\n{stdout}");
    for reading in [
        "gpu0 memory.total",
        "gpu0 power_limit",
        "gpu0 max_clock.sm",
        "gpu0 serial",
    ] {
        let row = rows.iter().find(|r| r["reading"] == reading).unwrap();
        assert_eq!(row["ok"], true, "{reading}: {row}");
    }
    assert!(out.join("report.txt").is_file());
    // The machine's profile, recorded with `record-nvml --out`.
    let profile = report["profile"].as_str().unwrap();
    assert!(profile.starts_with("recorded "), "{profile}");
    let recorded = std::fs::read_to_string(out.join("profile.conf")).unwrap();
    assert!(
        recorded.contains("gpu.0.name = NVIDIA H100 80GB HBM3"),
        "{recorded}"
    );
    // The profile has no key the double does not know.
    let log = std::fs::read_to_string(out.join("exporter.log")).unwrap();
    assert!(!log.contains("nvml double: unknown"), "{log}");
}
