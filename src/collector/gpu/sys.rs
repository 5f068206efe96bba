//! The one place that calls nvml-wrapper-sys directly, for what nvml-wrapper
//! does not wrap:
//! - field values with scope ids: many readings of one GPU in a single
//!   `nvmlDeviceGetFieldValues` call (how the collector stays within its
//!   budget of NVML calls per GPU); nvml-wrapper's `field_values_for` cannot
//!   set the scope id that per-link NVLink fields need. Only field ids below
//!   251 are used, so nvml-wrapper's renumbering of ids 251–273 for newer
//!   drivers does not apply;
//! - the GPU and compute instance ids of a MIG device.

use std::mem;

use nvml_wrapper::Device;
use nvml_wrapper::error::{NvmlError, nvml_sym, nvml_try};
use nvml_wrapper_sys::bindings::nvmlFieldValue_t;

#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub(super) id: u32,
    /// The link of an NVLink field; 0 otherwise.
    pub(super) scope: u32,
}

/// The value of each field, `None` where the driver answered that field with
/// an error (e.g. not supported). The call as a whole fails when the symbol is
/// missing (older drivers) or the GPU cannot be queried.
pub(super) fn field_values(
    device: &Device,
    fields: &[Field],
) -> Result<Vec<Option<f64>>, NvmlError> {
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
    Ok(values.iter().map(value).collect())
}

fn value(field: &nvmlFieldValue_t) -> Option<f64> {
    if field.nvmlReturn != 0 {
        return None;
    }
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
pub(super) fn gpu_instance_id(mig: &Device) -> Result<u32, NvmlError> {
    let get = nvml_sym(mig.nvml().lib().nvmlDeviceGetGpuInstanceId.as_ref())?;
    let mut id = 0;
    // SAFETY: a valid MIG handle and a pointer to a u32 NVML writes.
    nvml_try(unsafe { get(mig.handle(), &mut id) })?;
    Ok(id)
}

/// The compute instance id of a MIG device (`nvmlDeviceGetComputeInstanceId`).
pub(super) fn compute_instance_id(mig: &Device) -> Result<u32, NvmlError> {
    let get = nvml_sym(mig.nvml().lib().nvmlDeviceGetComputeInstanceId.as_ref())?;
    let mut id = 0;
    // SAFETY: a valid MIG handle and a pointer to a u32 NVML writes.
    nvml_try(unsafe { get(mig.handle(), &mut id) })?;
    Ok(id)
}
