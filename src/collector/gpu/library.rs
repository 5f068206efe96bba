//! Where NVML is loaded from: the path the user named, else the dynamic
//! loader's search, else the directories drivers install it in.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper_sys::bindings::nvmlReturn_t;
use tracing::info;

/// The name the dynamic loader is asked for.
pub(super) const LIBRARY: &str = "libnvidia-ml.so.1";

/// What to do when NVML cannot be loaded.
const INSTALL: &str = "Install the NVIDIA driver, run the container with the NVIDIA runtime (--gpus all), or name the library with --nvml.library";

/// Where drivers install NVML, tried when the loader's path and cache do not
/// find it (e.g. a minimal image whose linker cache was not updated, or a
/// driver container mounted under /run/nvidia/driver).
const FALLBACK_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/nvidia/lib64",
    "/run/nvidia/driver/usr/lib/x86_64-linux-gnu",
    "/run/nvidia/driver/usr/lib/aarch64-linux-gnu",
    "/run/nvidia/driver/usr/lib64",
];

/// Loads and initialises NVML: from `library` when given, otherwise through
/// the dynamic loader and then from [`FALLBACK_DIRS`]. Counts each attempt.
pub(super) fn load(library: Option<&OsStr>, calls: &AtomicU64) -> Result<Nvml, String> {
    load_nvml(library, calls).map_err(|failure| failure.message)
}

/// Why NVML cannot be used.
#[derive(Debug)]
pub(crate) struct LoadFailure {
    pub(crate) message: String,
    /// NVML's return code where the library loaded but `nvmlInit_v2` failed.
    pub(crate) init_code: Option<nvmlReturn_t>,
}

impl LoadFailure {
    fn new(error: NvmlError, message: String) -> Self {
        let init_code = match error {
            NvmlError::LibloadingError(_) | NvmlError::FailedToLoadSymbol(_) => None,
            error => Some(error.into()),
        };
        Self { message, init_code }
    }
}

/// As [`load`], telling a library that is not there from one whose
/// initialisation failed.
pub(crate) fn load_nvml(library: Option<&OsStr>, calls: &AtomicU64) -> Result<Nvml, LoadFailure> {
    let open = |path: &OsStr| {
        calls.fetch_add(1, Ordering::Relaxed);
        Nvml::builder().lib_path(path).init()
    };
    let plain = |e: NvmlError| {
        let message = e.to_string();
        LoadFailure::new(e, message)
    };
    if let Some(path) = library {
        if !Path::new(path).exists() {
            // Counted as the attempt it is, as a failed load is.
            calls.fetch_add(1, Ordering::Relaxed);
            return Err(LoadFailure {
                message: format!(
                    "{}, named by --nvml.library, does not exist. {INSTALL}",
                    Path::new(path).display()
                ),
                init_code: None,
            });
        }
        return open(path).map_err(|e| match e {
            NvmlError::LibloadingError(error) => {
                let message = format!(
                    "{error} (named by --nvml.library): is it the NVIDIA driver's {LIBRARY}? {INSTALL}"
                );
                LoadFailure::new(NvmlError::LibloadingError(error), message)
            }
            e => plain(e),
        });
    }
    let error = match open(OsStr::new(LIBRARY)) {
        Err(NvmlError::LibloadingError(error)) => error,
        other => return other.map_err(plain),
    };
    let Some(path) = fallback_path(FALLBACK_DIRS) else {
        return Err(LoadFailure {
            message: format!(
                "{error}; also looked in {}. {INSTALL}",
                FALLBACK_DIRS.join(", ")
            ),
            init_code: None,
        });
    };
    info!(path = %path.display(), "the dynamic loader did not find {LIBRARY}; loading it from a well-known directory");
    open(path.as_os_str()).map_err(plain)
}

fn fallback_path(dirs: &[&str]) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| Path::new(dir).join(LIBRARY))
        .find(|path| path.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_finds_the_library_in_the_first_directory_that_has_it() {
        let dir = std::env::temp_dir().join(format!("sie-fallback-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(LIBRARY), b"").unwrap();
        let dir = dir.to_str().unwrap();
        assert_eq!(
            fallback_path(&["/nonexistent", dir]),
            Some(Path::new(dir).join(LIBRARY))
        );
        assert_eq!(fallback_path(&["/nonexistent"]), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
