//! The field values the exporter reads (`nvmlDeviceGetFieldValues`), each
//! with its own return code, mapped to the test double's keys: one row per
//! field.

use nvml_wrapper::Device;
use nvml_wrapper::sys_exports::field_id::*;

use super::profile::GpuProfile;
use crate::collector::gpu::{Field, field_results};

/// `NVML_FI_DEV_GET_GPU_RECOVERY_ACTION` (drivers from R570), newer than the
/// header nvml-wrapper-sys binds.
const NVML_FI_DEV_GET_GPU_RECOVERY_ACTION: u32 = 230;

/// GPU-wide fields: field id, the double's key (also its name in the
/// `unsupported` list).
const GPU_FIELDS: &[(u32, &str)] = &[
    (NVML_FI_DEV_ECC_SBE_VOL_TOTAL, "ecc_sbe_volatile"),
    (NVML_FI_DEV_ECC_DBE_VOL_TOTAL, "ecc_dbe_volatile"),
    (NVML_FI_DEV_ECC_SBE_AGG_TOTAL, "ecc_sbe_aggregate"),
    (NVML_FI_DEV_ECC_DBE_AGG_TOTAL, "ecc_dbe_aggregate"),
    (NVML_FI_DEV_RETIRED_SBE, "retired_sbe"),
    (NVML_FI_DEV_RETIRED_DBE, "retired_dbe"),
    (NVML_FI_DEV_RETIRED_PENDING, "retired_pending"),
    (NVML_FI_DEV_MEMORY_TEMP, "memory_temperature"),
    (NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, "energy"),
    (NVML_FI_DEV_PCIE_REPLAY_COUNTER, "pcie_replay"),
    (NVML_FI_DEV_REMAPPED_COR, "remapped_cor"),
    (NVML_FI_DEV_REMAPPED_UNC, "remapped_unc"),
    (NVML_FI_DEV_REMAPPED_PENDING, "remap_pending"),
    (NVML_FI_DEV_REMAPPED_FAILURE, "remap_failure"),
    (NVML_FI_DEV_GET_GPU_RECOVERY_ACTION, "recovery_action"),
];

/// The throttle-time counters: `violation.K` is field
/// `NVML_FI_DEV_PERF_POLICY_POWER + K` (power ... base clocks).
const VIOLATIONS: std::ops::RangeInclusive<u32> =
    NVML_FI_DEV_PERF_POLICY_POWER..=NVML_FI_DEV_PERF_POLICY_TOTAL_BASE_CLOCKS;

/// The field id of a per-link reading for a link, where it exists for it.
type LinkField = fn(u32) -> Option<u32>;

/// Per-link fields (scope id: the link): the double's key (`KEY.K` for link
/// K) and the field id for a link, where the field exists for it.
const LINK_FIELDS: &[(&str, LinkField)] = &[
    ("nvlink_state", |_| Some(NVML_FI_DEV_NVLINK_GET_STATE)),
    ("nvlink_crc_flit", |_| Some(NVML_FI_DEV_NVLINK_ERROR_DL_CRC)),
    ("nvlink_crc_data", crc_data_field),
    ("nvlink_replay", |_| {
        Some(NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY)
    }),
    ("nvlink_recovery", |_| {
        Some(NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY)
    }),
];

/// The CRC data error counters exist for links 0–11: ids 39–44 and 102–107.
fn crc_data_field(link: u32) -> Option<u32> {
    match link {
        0..=5 => Some(NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L0 + link),
        6..=11 => Some(NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L6 + link - 6),
        _ => None,
    }
}

/// One requested field: its key's name, its element (`None` for a
/// GPU-wide field), and the request.
type Request = (&'static str, Option<u32>, Field);

/// Reads the link count, then every other field in one call (as the
/// collector does); returns the link count.
pub(super) fn record(device: &Device, gpu: &mut GpuProfile) -> u32 {
    let count = Field {
        id: NVML_FI_DEV_NVLINK_LINK_COUNT,
        scope: 0,
    };
    let nvlinks = match read(device, gpu, &[("nvlinks", None, count)]).as_deref() {
        Some([Some(links)]) => *links as u32,
        _ => 0,
    };
    let mut requests: Vec<Request> = GPU_FIELDS
        .iter()
        .map(|(id, key)| (*key, None, Field { id: *id, scope: 0 }))
        .collect();
    requests.extend(
        VIOLATIONS
            .zip(0..)
            .map(|(id, k)| ("violation", Some(k), Field { id, scope: 0 })),
    );
    for link in 0..nvlinks {
        for (key, id) in LINK_FIELDS {
            if let Some(id) = id(link) {
                requests.push((key, Some(link), Field { id, scope: link }));
            }
        }
    }
    read(device, gpu, &requests);
    nvlinks
}

/// Asks for `requests` in one call and records each answer: the value, or
/// the field's code. `None` when the call as a whole failed.
fn read(device: &Device, gpu: &mut GpuProfile, requests: &[Request]) -> Option<Vec<Option<f64>>> {
    let fields: Vec<Field> = requests.iter().map(|(_, _, field)| *field).collect();
    let results = gpu.answer("field_values", None, field_results(device, &fields))?;
    let mut values = Vec::with_capacity(results.len());
    for ((key, element, _), result) in requests.iter().zip(results) {
        let name = match element {
            Some(k) => format!("{key}.{k}"),
            None => (*key).to_owned(),
        };
        match result {
            Ok(value) if value >= 0.0 && value.fract() == 0.0 => {
                gpu.set(name, value as u64);
                values.push(Some(value));
            }
            Ok(value) => {
                // The double's numbers are whole and unsigned, as the
                // counters and states the exporter reads are.
                gpu.note(format!(
                    "{name}: the driver answered {value}, which the double cannot hold"
                ));
                values.push(None);
            }
            Err(code) => {
                gpu.fail_code(key, *element, code);
                values.push(None);
            }
        }
    }
    Some(values)
}
