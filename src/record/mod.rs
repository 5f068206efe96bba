//! `record-nvml`: asks the driver every NVML query the exporter makes, on
//! every GPU and MIG device, and writes the answers as a profile for the NVML
//! test double (`tests/nvml-double`), which replays them: a user's GPU in a
//! bug report, or a real GPU in the test suite. Each value is what the driver
//! returned; a failed query is written with its return code (NOT_SUPPORTED in
//! the GPU's `unsupported` list, other codes as `error.` keys). Serial
//! numbers, UUIDs, PCI bus ids and the fabric cluster UUID are replaced by
//! stable placeholders unless `--keep-identifiers` is given.
//!
//! - [`gpu`]: one GPU, calling [`queries`] (one row per device query),
//!   [`fields`] (one row per field value), [`fabric`], [`mig_gpm`] and
//!   [`processes`];
//! - [`profile`]: the profile and its text; [`codes`]: return codes;
//! - [`placeholders`]: identifiers replaced; [`environment`]: container signs.

mod codes;
mod environment;
mod fabric;
mod fields;
mod gpu;
mod mig_gpm;
mod placeholders;
mod processes;
mod profile;
mod queries;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use nvml_wrapper::Nvml;

use crate::collector::gpu::{LoadFailure, load_nvml};
use crate::selfmetrics::BuildInfo;
use crate::units::cuda_version_string;
use placeholders::Placeholders;
use profile::Profile;

/// Records the profile into `out`, or stdout. `library` is `--nvml.library`.
pub(crate) fn main(
    library: Option<PathBuf>,
    out: Option<PathBuf>,
    keep_identifiers: bool,
) -> ExitCode {
    if let Some(problem) = out.as_deref().and_then(unusable_out) {
        eprintln!("record-nvml: {problem}");
        return ExitCode::from(2);
    }
    let recording = match record(library.as_deref(), keep_identifiers) {
        Ok(recording) => recording,
        Err(message) => {
            eprintln!("record-nvml: cannot record: {message}");
            return ExitCode::FAILURE;
        }
    };
    let written = match &out {
        Some(path) => std::fs::write(path, &recording.text)
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => std::io::stdout()
            .write_all(recording.text.as_bytes())
            .map_err(|e| format!("cannot write the profile to stdout: {e}")),
    };
    if let Err(message) = written {
        eprintln!("record-nvml: {message}");
        return ExitCode::FAILURE;
    }
    let place = out.map_or("stdout".to_owned(), |p| p.display().to_string());
    eprintln!("record-nvml: {} to {place}", recording.summary);
    ExitCode::SUCCESS
}

/// Why `--out` cannot be written, found before NVML is asked anything.
fn unusable_out(path: &Path) -> Option<String> {
    if path.is_dir() {
        return Some(format!("--out {}: is a directory", path.display()));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty())?;
    (!parent.is_dir()).then(|| {
        format!(
            "--out {}: the directory {} does not exist",
            path.display(),
            parent.display()
        )
    })
}

struct Recording {
    text: String,
    /// One line for stderr: what was recorded.
    summary: String,
}

/// What the header says of the driver.
#[derive(Default)]
struct Driver {
    version: String,
    nvml: String,
    cuda: String,
    /// GPU names, in index order (`None` where unreadable).
    gpus: Vec<Option<String>>,
}

fn record(library: Option<&Path>, keep_identifiers: bool) -> Result<Recording, String> {
    let mut profile = Profile::default();
    let mut placeholders = Placeholders::new(keep_identifiers);
    let mut driver = Driver::default();
    // The collector counts its calls; nobody reads these.
    let calls = AtomicU64::new(0);
    match load_nvml(library.map(Path::as_os_str), &calls) {
        Ok(nvml) => record_driver(&nvml, &mut placeholders, &mut profile, &mut driver),
        // The library is there but does not initialise: that is an answer too.
        Err(LoadFailure {
            message,
            init_code: Some(code),
        }) => profile.set("init_error", codes::name(code), Some(message)),
        Err(failure) => return Err(failure.message),
    }
    let failures = profile.failures();
    let header = header(&driver, &placeholders, &failures);
    let summary = format!(
        "{} GPU(s) recorded, {} failed queries (listed in the header)",
        driver.gpus.len(),
        failures.len()
    );
    Ok(Recording {
        text: profile.render(&header),
        summary,
    })
}

fn record_driver(
    nvml: &Nvml,
    placeholders: &mut Placeholders,
    profile: &mut Profile,
    driver: &mut Driver,
) {
    let count = match nvml.device_count() {
        Ok(count) => {
            profile.set("gpu_count", count, None);
            count
        }
        Err(error) => {
            let comment = format!("nvmlDeviceGetCount_v2 failed: {error}");
            profile.set("gpu_count", 0, Some(comment));
            0
        }
    };
    // The double's system queries always answer: a failure is a comment.
    let system = [
        ("driver_version", nvml.sys_driver_version()),
        ("nvml_version", nvml.sys_nvml_version()),
        (
            "cuda_driver_version",
            nvml.sys_cuda_driver_version().map(|v| v.to_string()),
        ),
    ];
    for (key, answer) in system {
        match answer {
            Ok(value) => {
                match key {
                    "driver_version" => driver.version.clone_from(&value),
                    "nvml_version" => driver.nvml.clone_from(&value),
                    _ => driver.cuda = cuda_version_string(value.parse().unwrap_or(0)),
                }
                profile.set(key, value, None);
            }
            Err(error) => {
                profile.note(format!("{key}: {error}; the double's default is served"));
            }
        }
    }
    let mut fabric_v2 = false;
    for index in 0..count {
        let recorded = gpu::record(nvml, index, placeholders, profile);
        driver.gpus.push(recorded.name);
        fabric_v2 |= recorded.fabric_version == Some(2);
    }
    if fabric_v2 {
        let comment = "the driver refuses nvmlGpuFabricInfo_v3".to_owned();
        profile.set("fabric_info_max_version", 2, Some(comment));
    }
}

/// The header: what was recorded, where, when, by what, and what failed.
fn header(driver: &Driver, placeholders: &Placeholders, failures: &[String]) -> Vec<String> {
    let build = BuildInfo::CURRENT;
    let date = humantime::format_rfc3339_seconds(SystemTime::now());
    let mut products: BTreeMap<&str, usize> = BTreeMap::new();
    for name in &driver.gpus {
        *products
            .entry(name.as_deref().unwrap_or("not answering"))
            .or_default() += 1;
    }
    let products: Vec<String> = products
        .iter()
        .map(|(name, count)| format!("{count} x {name}"))
        .collect();
    let product = if products.is_empty() {
        "no GPU".to_owned()
    } else {
        products.join(", ")
    };
    let hints =
        environment::container_hints(Path::new("/"), std::env::var("container").ok().as_deref());
    let environment = if hints.is_empty() {
        "no sign of a container or sandbox".to_owned()
    } else {
        format!("in a container or sandbox ({})", hints.join("; "))
    };
    let identifiers = if placeholders.replacing() {
        "serial numbers, UUIDs, PCI bus ids and the fabric cluster UUID are placeholders (record with --keep-identifiers to keep them)"
    } else {
        "kept as the driver reported them (--keep-identifiers)"
    };
    let failed = if failures.is_empty() {
        "none".to_owned()
    } else {
        failures.join(", ")
    };
    let mut header = vec![
        format!("NVML test double profile: {product}, driver {}.", driver.version),
        format!("Recorded {date}."),
        format!(
            "By system-info-exporter {} (revision {}) record-nvml: what the driver answered to every NVML query the exporter makes.",
            build.version, build.revision
        ),
        format!(
            "Driver {}, NVML {}, CUDA {}.",
            driver.version, driver.nvml, driver.cuda
        ),
        format!("Environment: {environment}."),
        format!("Identifiers: {identifiers}; process names and command lines are never recorded."),
        format!("Queries that failed: {failed}."),
        "Replay: NVML_DOUBLE_STRICT=1 NVML_DOUBLE_CONFIG=<this file> system-info-exporter --nvml.library=target/nvml-double/libnvidia-ml.so.1 (make nvml-double).".to_owned(),
    ];
    if driver.version.is_empty() {
        // NVML did not initialise: no driver to speak of.
        header[0] = "NVML test double profile: NVML did not initialise (init_error).".to_owned();
        header.remove(3);
    }
    header
}
