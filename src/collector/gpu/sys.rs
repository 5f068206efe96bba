//! The one place that calls nvml-wrapper-sys directly, for what nvml-wrapper
//! does not wrap:
//! - field values with scope ids: many readings of one GPU in a single
//!   `nvmlDeviceGetFieldValues` call (how the collector stays within its
//!   budget of NVML calls per GPU); nvml-wrapper's `field_values_for` cannot
//!   set the scope id that per-link NVLink fields need. Only field ids below
//!   251 are used, so nvml-wrapper's renumbering of ids 251–273 for newer
//!   drivers does not apply;
//! - the GPU and compute instance ids of a MIG device;
//! - the NVLink fabric probe (`nvmlDeviceGetGpuFabricInfoV`), also for
//!   `record-nvml`.
//!
//! Every call looks its symbol up first: nvml-wrapper-sys's own methods
//! panic where the driver lacks it.

use std::mem;

use nvml_wrapper::Device;
use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};
use nvml_wrapper_sys::bindings::{
    nvmlFieldValue_t, nvmlGpuFabricInfo_v2_t, nvmlGpuFabricInfo_v3_t,
    nvmlReturn_enum_NVML_ERROR_UNKNOWN, nvmlReturn_t,
};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) id: u32,
    /// The link of an NVLink field; 0 otherwise.
    pub(crate) scope: u32,
}

/// The value of each field, `None` where the driver answered that field with
/// an error (e.g. not supported). The call as a whole fails when the symbol is
/// missing (older drivers) or the GPU cannot be queried.
pub(super) fn field_values(
    device: &Device,
    fields: &[Field],
) -> Result<Vec<Option<f64>>, NvmlError> {
    let results = field_results(device, fields)?;
    Ok(results.into_iter().map(Result::ok).collect())
}

/// As [`field_values`], with NVML's return code of each field that failed.
pub(crate) fn field_results(
    device: &Device,
    fields: &[Field],
) -> Result<Vec<Result<f64, nvmlReturn_t>>, NvmlError> {
    let get = nvml_sym(device.nvml().lib().nvmlDeviceGetFieldValues.as_ref())?;
    let mut values: Vec<nvmlFieldValue_t> = fields
        .iter()
        .map(|field| {
            // SAFETY: nvmlFieldValue_t is plain old data; all zeroes is valid.
            let mut value: nvmlFieldValue_t = unsafe { mem::zeroed() };
            value.fieldId = field.id;
            value.scopeId = field.scope;
            value
        })
        .collect();
    let count = i32::try_from(values.len()).map_err(|_| NvmlError::InvalidArg)?;
    // SAFETY: `values` holds `count` initialised entries, which NVML fills in;
    // the handle is valid while `device` (and so NVML) lives.
    nvml_try(unsafe { get(device.handle(), count, values.as_mut_ptr()) })?;
    let result = |field: &nvmlFieldValue_t| match field.nvmlReturn {
        0 => value(field).ok_or(nvmlReturn_enum_NVML_ERROR_UNKNOWN),
        code => Err(code),
    };
    Ok(values.iter().map(result).collect())
}

fn value(field: &nvmlFieldValue_t) -> Option<f64> {
    // SAFETY: `valueType` names the member of the union NVML wrote
    // (nvmlValueType_t: double, uint, ulong, ulonglong, slonglong, sint, ushort).
    let value = unsafe {
        match field.valueType {
            0 => field.value.dVal,
            1 => f64::from(field.value.uiVal),
            2 => field.value.ulVal as f64,
            3 => field.value.ullVal as f64,
            4 => field.value.sllVal as f64,
            5 => f64::from(field.value.siVal),
            6 => f64::from(field.value.usVal),
            _ => return None,
        }
    };
    Some(value)
}

/// The GPU instance id of a MIG device (`nvmlDeviceGetGpuInstanceId`).
pub(crate) fn gpu_instance_id(mig: &Device) -> Result<u32, NvmlError> {
    let get = nvml_sym(mig.nvml().lib().nvmlDeviceGetGpuInstanceId.as_ref())?;
    let mut id = 0;
    // SAFETY: a valid MIG handle and a pointer to a u32 NVML writes.
    nvml_try(unsafe { get(mig.handle(), &mut id) })?;
    Ok(id)
}

/// The compute instance id of a MIG device (`nvmlDeviceGetComputeInstanceId`).
pub(crate) fn compute_instance_id(mig: &Device) -> Result<u32, NvmlError> {
    let get = nvml_sym(mig.nvml().lib().nvmlDeviceGetComputeInstanceId.as_ref())?;
    let mut id = 0;
    // SAFETY: a valid MIG handle and a pointer to a u32 NVML writes.
    nvml_try(unsafe { get(mig.handle(), &mut id) })?;
    Ok(id)
}

/// A version of `nvmlGpuFabricInfo`: v3 (drivers from R580) adds the health
/// summary to v2 (R550 on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FabricVersion {
    V2,
    V3,
}

impl FabricVersion {
    /// nvml.h's `NVML_STRUCT_VERSION(GpuFabricInfo, N)`: the struct's size
    /// with the version in the top byte (bindgen drops that macro).
    fn tag(self) -> u32 {
        match self {
            Self::V2 => mem::size_of::<nvmlGpuFabricInfo_v2_t>() as u32 | (2 << 24),
            Self::V3 => mem::size_of::<nvmlGpuFabricInfo_v3_t>() as u32 | (3 << 24),
        }
    }
}

/// What `nvmlDeviceGetGpuFabricInfoV` answered, as NVML's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FabricInfo {
    pub(crate) cluster_uuid: [u8; 16],
    /// The registration's NVML return code; valid once `state` is completed.
    pub(crate) status: u32,
    pub(crate) clique_id: u32,
    /// `nvmlGpuFabricState_t`: 0 not supported, 1 not started, 2 in
    /// progress, 3 completed.
    pub(crate) state: u8,
    pub(crate) health_mask: u32,
    /// `healthSummary`, v3 only.
    pub(crate) health_summary: Option<u8>,
}

/// NVML's code for a struct version the driver does not know.
pub(crate) const ARGUMENT_VERSION_MISMATCH: u32 = 25;

/// The GPU's NVLink fabric probe in struct `version`. A driver that knows
/// only v2 answers v3 with `NvmlError::UnexpectedVariant(25)`
/// ([`ARGUMENT_VERSION_MISMATCH`]).
pub(crate) fn gpu_fabric_info(
    device: &Device,
    version: FabricVersion,
) -> Result<FabricInfo, NvmlError> {
    let get = nvml_sym(device.nvml().lib().nvmlDeviceGetGpuFabricInfoV.as_ref())?;
    // SAFETY: plain old data; all zeroes is valid. v3 is v2 plus a trailing
    // field, so a v3-sized buffer serves either version: NVML writes as
    // much as `version` says.
    let mut info: nvmlGpuFabricInfo_v3_t = unsafe { mem::zeroed() };
    info.version = version.tag();
    // SAFETY: a valid handle and a struct as large as the version claims.
    nvml_try(unsafe { get(device.handle(), &mut info) })?;
    Ok(FabricInfo {
        cluster_uuid: info.clusterUuid,
        status: info.status,
        clique_id: info.cliqueId,
        state: info.state,
        health_mask: info.healthMask,
        health_summary: (version == FabricVersion::V3).then_some(info.healthSummary),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fabric_struct_versions_are_those_of_nvml_h() {
        // nvmlGpuFabricInfo_v2 and _v3 as a C compiler computes them from
        // nvml.h (13.x): 36 and 40 bytes.
        assert_eq!(FabricVersion::V2.tag(), 0x0200_0024);
        assert_eq!(FabricVersion::V3.tag(), 0x0300_0028);
    }
}
