//! NVML's return codes by the names the test double's config takes, and how
//! a failed query is written into a profile.

use nvml_wrapper::error::NvmlError;
use nvml_wrapper_sys::bindings::nvmlReturn_t;

/// Every return code of nvml.h, by its name without `NVML_ERROR_`.
const NAMES: &[(nvmlReturn_t, &str)] = &[
    (0, "SUCCESS"),
    (1, "UNINITIALIZED"),
    (2, "INVALID_ARGUMENT"),
    (3, "NOT_SUPPORTED"),
    (4, "NO_PERMISSION"),
    (5, "ALREADY_INITIALIZED"),
    (6, "NOT_FOUND"),
    (7, "INSUFFICIENT_SIZE"),
    (8, "INSUFFICIENT_POWER"),
    (9, "DRIVER_NOT_LOADED"),
    (10, "TIMEOUT"),
    (11, "IRQ_ISSUE"),
    (12, "LIBRARY_NOT_FOUND"),
    (13, "FUNCTION_NOT_FOUND"),
    (14, "CORRUPTED_INFOROM"),
    (15, "GPU_IS_LOST"),
    (16, "RESET_REQUIRED"),
    (17, "OPERATING_SYSTEM"),
    (18, "LIB_RM_VERSION_MISMATCH"),
    (19, "IN_USE"),
    (20, "MEMORY"),
    (21, "NO_DATA"),
    (22, "VGPU_ECC_NOT_SUPPORTED"),
    (23, "INSUFFICIENT_RESOURCES"),
    (24, "FREQ_NOT_SUPPORTED"),
    (25, "ARGUMENT_VERSION_MISMATCH"),
    (26, "DEPRECATED"),
    (27, "NOT_READY"),
    (28, "GPU_NOT_FOUND"),
    (29, "INVALID_STATE"),
    (999, "UNKNOWN"),
];

pub(super) const NOT_SUPPORTED: nvmlReturn_t = 3;

/// The code's name, or its number where nvml.h has no name for it.
pub(super) fn name(code: nvmlReturn_t) -> String {
    NAMES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or_else(|| code.to_string(), |(_, name)| (*name).to_owned())
}

/// How a failed query goes into a profile.
#[derive(Debug, PartialEq)]
pub(super) enum Failure {
    /// NVML's return code.
    Code(nvmlReturn_t),
    /// The entry point is missing from this driver: what the exporter then
    /// does is what it does for NOT_SUPPORTED, so it is replayed as that.
    Absent(String),
}

impl From<NvmlError> for Failure {
    fn from(error: NvmlError) -> Self {
        match error {
            NvmlError::FailedToLoadSymbol(symbol) => Failure::Absent(symbol),
            // Errors of nvml-wrapper itself (a string that is not UTF-8, ...)
            // come out as UNKNOWN, the code NVML uses for the unexpected.
            error => Failure::Code(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_nvml_names_and_unknown_ones_their_number() {
        assert_eq!(name(3), "NOT_SUPPORTED");
        assert_eq!(name(25), "ARGUMENT_VERSION_MISMATCH");
        assert_eq!(name(999), "UNKNOWN");
        assert_eq!(name(77), "77");
    }

    #[test]
    fn wrapper_errors_map_to_their_nvml_code() {
        assert_eq!(Failure::from(NvmlError::NoPermission), Failure::Code(4));
        assert_eq!(Failure::from(NvmlError::GpuLost), Failure::Code(15));
        assert_eq!(
            Failure::from(NvmlError::UnexpectedVariant(25)),
            Failure::Code(25)
        );
        let absent = NvmlError::FailedToLoadSymbol("nvmlDeviceGetNumFans".into());
        assert!(matches!(Failure::from(absent), Failure::Absent(s) if s.contains("NumFans")));
    }
}
