//! The real-GPU acceptance run (`make test-gpu`, `tests/gpu/acceptance.py`)
//! needs a GPU, so CI checks what it can without one: its comparison logic
//! against a published H100 `nvidia-smi -q` sample and a canned scrape
//! derived from it (the Python unit tests in `tests/gpu`), and that without a
//! GPU it skips with one line and exit status 0.

use std::path::{Path, PathBuf};
use std::process::Command;

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
