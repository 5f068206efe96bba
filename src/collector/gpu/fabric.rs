//! A GPU's NVLink fabric (`nvmlDeviceGetGpuFabricInfoV`): its registration
//! with the fabric manager and its health, on NVSwitch systems (HGX
//! H100/H200/B200, GB200 NVL72).
//!
//! Probed once per NVML initialisation. A GPU without a fabric stays without
//! one until the driver is loaded again (which initialises NVML again): the
//! call is missing before R550, answers `NOT_SUPPORTED` before Hopper, and
//! reports state "not supported" where the GPU has no fabric probe (PCIe
//! boards, single GPUs). Such a GPU is never asked again and has no fabric
//! series. A GPU with a fabric is read every collection, one call: its
//! registration runs for minutes after boot and its health changes at any
//! time.

use nvml_wrapper::error::{NvmlError, nvml_try};
use nvml_wrapper_sys::bindings::{
    NVML_GPU_FABRIC_HEALTH_MASK_INCORRECT_CONFIGURATION_NONE,
    NVML_GPU_FABRIC_HEALTH_SUMMARY_NOT_SUPPORTED, NVML_GPU_FABRIC_STATE_NOT_SUPPORTED,
};
use tracing::{info, warn};

use super::nvml_values::{fabric_issue_field, fabric_state, fabric_summary};
use super::reader::Reader;
use super::samples::GpuSamples;
use super::sys::{self, ARGUMENT_VERSION_MISMATCH, FabricInfo, FabricVersion};
use crate::collector::status::FabricHealth;
use crate::metrics::catalogue::{
    FABRIC_HEALTH, FABRIC_INFO, FABRIC_OVERALL_HEALTH, FABRIC_STATE, FABRIC_STATUS,
};
use crate::metrics::exposition::bool_value;
use crate::metrics::labels::{FabricIssue, FabricState, FabricSummary};
use crate::units::uuid_text;

/// A GPU that has a fabric, and the struct version its driver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fabric {
    version: FabricVersion,
}

/// Whether the GPU has a fabric: v3 first, v2 where the driver knows only
/// that (R550–R575). Any error means no fabric; a GPU failure also marks
/// the GPU down, through the reader.
pub(super) fn probe(reader: &mut Reader) -> Option<Fabric> {
    for version in [FabricVersion::V3, FabricVersion::V2] {
        let answer = reader.read("gpu_fabric_info", |device| {
            match sys::gpu_fabric_info(device, version) {
                Err(NvmlError::UnexpectedVariant(ARGUMENT_VERSION_MISMATCH)) => Ok(None),
                other => other.map(Some),
            }
        })?;
        if let Some(info) = answer {
            let has_fabric = u32::from(info.state) != NVML_GPU_FABRIC_STATE_NOT_SUPPORTED;
            return has_fabric.then_some(Fabric { version });
        }
    }
    None
}

/// Reads the fabric of a GPU that has one and adds its samples; what
/// `/health` shows of it. `None` if it now reports state "not supported".
pub(super) fn read(
    reader: &mut Reader,
    fabric: Fabric,
    gpu: &mut GpuSamples,
) -> Option<FabricHealth> {
    let mut error = None;
    let info = reader.read("gpu_fabric_info", |device| {
        sys::gpu_fabric_info(device, fabric.version).inspect_err(|e| error = Some(e.to_string()))
    });
    let Some(info) = info else {
        return Some(FabricHealth {
            state: "unknown".to_owned(),
            error,
            ..FabricHealth::default()
        });
    };
    if u32::from(info.state) == NVML_GPU_FABRIC_STATE_NOT_SUPPORTED {
        return None;
    }
    let decoded = Decoded::new(&info);
    decoded.add_samples(&info, gpu);
    Some(decoded.health(&info))
}

/// Logs what changed in a GPU's fabric since the last collection: a
/// registration that is pending (normal after boot) or completes, and, as
/// warnings, a failed registration, a fabric that cannot be read, and health
/// issues. A fabric that is fine when first seen is not logged.
pub(super) fn log_change(gpu: u32, before: Option<&FabricHealth>, now: &FabricHealth) {
    if before == Some(now) || (before.is_none() && now.ok) {
        return;
    }
    let state = now.state.as_str();
    if let Some(error) = &now.error {
        warn!(gpu, state, %error, "NVLink fabric not usable");
    } else if !now.registered() {
        info!(gpu, state, "NVLink fabric not registered yet");
    } else if !now.ok {
        let (issues, summary) = (&now.issues, now.summary.as_deref().unwrap_or(""));
        let cause = now.incorrect_configuration.as_deref().unwrap_or("");
        warn!(
            gpu,
            ?issues,
            summary,
            cause,
            "NVLink fabric reports a health issue"
        );
    } else {
        info!(gpu, "NVLink fabric registered and healthy");
    }
}

/// What a health-mask field says of its issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The driver does not report it (0), or gave a value nvml.h does not define.
    NotSupported,
    Clear,
    Reported,
}

/// One reading, decoded with nvml.h's values.
#[derive(Debug, PartialEq)]
struct Decoded {
    state: Option<FabricState>,
    checks: Vec<(FabricIssue, Check)>,
    /// The cause of an incorrect configuration, while one is reported.
    cause: Option<String>,
    /// `Some(None)` for a summary value nvml.h does not define.
    summary: Option<Option<FabricSummary>>,
}

impl Decoded {
    fn new(info: &FabricInfo) -> Self {
        let state = FabricState::ALL
            .iter()
            .copied()
            .find(|s| fabric_state(*s) == u32::from(info.state));
        let (checks, cause) = decode_mask(info.health_mask);
        let summary = info
            .health_summary
            .map(u32::from)
            .filter(|s| *s != NVML_GPU_FABRIC_HEALTH_SUMMARY_NOT_SUPPORTED)
            .map(|s| {
                FabricSummary::ALL
                    .iter()
                    .copied()
                    .find(|candidate| fabric_summary(*candidate) == s)
            });
        Self {
            state,
            checks,
            cause,
            summary,
        }
    }

    /// A state or summary nvml.h does not define gives 0 for every value:
    /// not completed, not healthy.
    fn add_samples(&self, info: &FabricInfo, gpu: &mut GpuSamples) {
        for &state in FabricState::ALL {
            let value = bool_value(self.state == Some(state));
            gpu.add(&FABRIC_STATE, &[state.name()], Some(value));
        }
        if self.state == Some(FabricState::Completed) {
            gpu.add(&FABRIC_STATUS, &[], Some(f64::from(info.status)));
        }
        let uuid = uuid_text(&info.cluster_uuid);
        let clique = info.clique_id.to_string();
        gpu.add(&FABRIC_INFO, &[&uuid, &clique], Some(1.0));
        for (issue, check) in &self.checks {
            let value = bool_value(*check == Check::Reported);
            gpu.add(&FABRIC_HEALTH, &[issue.name()], Some(value));
        }
        if let Some(summary) = self.summary {
            for &candidate in FabricSummary::ALL {
                let value = bool_value(summary == Some(candidate));
                gpu.add(&FABRIC_OVERALL_HEALTH, &[candidate.name()], Some(value));
            }
        }
    }

    fn health(&self, info: &FabricInfo) -> FabricHealth {
        let completed = self.state == Some(FabricState::Completed);
        let status = completed.then_some(info.status);
        let issues: Vec<&'static str> = self.issues(Check::Reported);
        let summary = self.summary.map(|summary| match summary {
            Some(summary) => summary.name().to_owned(),
            None => format!("unknown ({})", info.health_summary.unwrap_or_default()),
        });
        let healthy = self.summary.is_none() || self.summary == Some(Some(FabricSummary::Healthy));
        FabricHealth {
            ok: completed && info.status == 0 && issues.is_empty() && healthy,
            state: match self.state {
                Some(state) => state.name().to_owned(),
                None => format!("unknown ({})", info.state),
            },
            status,
            error: status.and_then(registration_error),
            cluster_uuid: uuid_text(&info.cluster_uuid),
            clique_id: info.clique_id,
            issues,
            incorrect_configuration: self.cause.clone(),
            unsupported_checks: self.issues(Check::NotSupported),
            summary,
        }
    }

    fn issues(&self, wanted: Check) -> Vec<&'static str> {
        let with = self.checks.iter().filter(|(_, check)| *check == wanted);
        with.map(|(issue, _)| issue.name()).collect()
    }
}

/// What a failed registration's status says, in nvml-wrapper's words where
/// it knows the code.
fn registration_error(status: u32) -> Option<String> {
    let known = match nvml_try(status).err()? {
        NvmlError::UnexpectedVariant(_) => String::new(),
        error => format!(" ({error})"),
    };
    Some(format!(
        "registration completed with NVML return code {status}{known}"
    ))
}

/// The causes of an incorrect configuration by value, from nvml.h's
/// `NVML_GPU_FABRIC_HEALTH_MASK_INCORRECT_CONFIGURATION_*` (values 0, not
/// supported, and 1, none, are no cause). 6 and 7 are from R590, 8 from R595.
const CAUSES: [&str; 9] = [
    "",
    "",
    "incorrect_sysguid",
    "incorrect_chassis_sn",
    "no_partition",
    "insufficient_nvlinks",
    "incompatible_gpu_fw",
    "invalid_location",
    "gpu_state_invalid",
];

/// Each issue of the mask, and the cause of an incorrect configuration. The
/// two-bit fields are 0 not supported, 1 true (the issue), 2 false; the
/// configuration is 0 not supported, 1 none, 2 and up a cause.
fn decode_mask(mask: u32) -> (Vec<(FabricIssue, Check)>, Option<String>) {
    let mut cause = None;
    let checks = FabricIssue::ALL
        .iter()
        .map(|&issue| {
            let (shift, width) = fabric_issue_field(issue);
            let value = (mask >> shift) & width;
            let check = match (issue, value) {
                (_, 0) => Check::NotSupported,
                (FabricIssue::IncorrectConfiguration, value) => {
                    if value == NVML_GPU_FABRIC_HEALTH_MASK_INCORRECT_CONFIGURATION_NONE {
                        Check::Clear
                    } else {
                        cause = Some(match CAUSES.get(value as usize) {
                            Some(name) => (*name).to_owned(),
                            None => format!("unknown ({value})"),
                        });
                        Check::Reported
                    }
                }
                (_, 1) => Check::Reported,
                (_, 2) => Check::Clear,
                _ => Check::NotSupported,
            };
            (issue, check)
        })
        .collect();
    (checks, cause)
}

#[cfg(test)]
mod tests;
