//! What the exporter reports about itself beyond its collectors: its build,
//! and the standard `process_*` metrics of the Prometheus clients.

pub(crate) mod process;

/// Version and revision for `system_info_exporter_build_info`.
#[derive(Debug, Clone)]
pub(crate) struct BuildInfo {
    pub(crate) version: &'static str,
    pub(crate) revision: &'static str,
}

impl BuildInfo {
    /// The revision comes from `build.rs` (git) or `SIE_REVISION` at build time.
    pub(crate) const CURRENT: BuildInfo = BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        revision: match option_env!("SIE_REVISION") {
            Some(revision) => revision,
            None => "unknown",
        },
    };
}
