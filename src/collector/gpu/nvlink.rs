//! NVLink: the per-link fields of the field-value call and what is served of
//! them at the detail `--collector.gpu.nvlink` chooses. An HGX node's GPUs
//! have 18 links each, and per link that is 5 series (state and 4 error
//! counters; crc_data exists for links 0–11 only), almost all of them 0
//! forever, so the default serves per GPU the errors summed over its links
//! and the links counted by state: at most 6 series, whatever the link count.

use nvml_wrapper::sys_exports::field_id::*;

use super::samples::GpuSamples;
use super::sys::Field;
use crate::metrics::catalogue::{Metric, NVLINK_ERRORS, NVLINK_LINK_ERRORS, NVLINK_UP, NVLINKS};
use crate::metrics::exposition::bool_value;
use crate::metrics::labels::{NvlinkErrorType, NvlinkState};

/// The families this module serves, at one detail or another.
pub(super) const METRICS: &[&Metric] = &[&NVLINKS, &NVLINK_ERRORS, &NVLINK_LINK_ERRORS, &NVLINK_UP];

/// How much of NVLink the GPU collector reads and serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum NvlinkDetail {
    /// Nothing: no link fields are requested, no link series served.
    Off,
    /// Per GPU: errors summed over its links, links counted by state.
    #[default]
    Totals,
    /// Per link: its state and errors, plus the links counted by state.
    Links,
}

/// Per-link NVLink CRC data error counters exist for links 0–11 only.
const CRC_DATA_FIELDS: [u32; 12] = [
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L0,
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L1,
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L2,
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L3,
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L4,
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L5,
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L6,
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L7,
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L8,
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L9,
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L10,
    NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L11,
];

/// What a link's field reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reading {
    State,
    Errors(NvlinkErrorType),
}

/// The field id of `reading` for `link`, if the field exists for that link.
fn field_id(reading: Reading, link: u32) -> Option<u32> {
    match reading {
        Reading::State => Some(NVML_FI_DEV_NVLINK_GET_STATE),
        Reading::Errors(NvlinkErrorType::CrcFlit) => Some(NVML_FI_DEV_NVLINK_ERROR_DL_CRC),
        Reading::Errors(NvlinkErrorType::CrcData) => CRC_DATA_FIELDS.get(link as usize).copied(),
        Reading::Errors(NvlinkErrorType::Replay) => Some(NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY),
        Reading::Errors(NvlinkErrorType::Recovery) => Some(NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY),
    }
}

/// The fields to request for `count` links: link, reading, field id.
fn fields(detail: NvlinkDetail, count: u32) -> impl Iterator<Item = (u32, Reading, u32)> {
    let links = match detail {
        NvlinkDetail::Off => 0,
        NvlinkDetail::Totals | NvlinkDetail::Links => count,
    };
    let readings = std::iter::once(Reading::State)
        .chain(NvlinkErrorType::ALL.iter().copied().map(Reading::Errors));
    (0..links).flat_map(move |link| {
        readings
            .clone()
            .filter_map(move |reading| Some((link, reading, field_id(reading, link)?)))
    })
}

/// `nvmlEnableState_t`'s NVML_FEATURE_ENABLED: the link is active.
const ACTIVE: f64 = 1.0;

/// The NVLink links of one GPU during one NVML initialisation.
pub(super) struct Links {
    detail: NvlinkDetail,
    count: u32,
    /// Each link's last error counts read, by type: a link whose read fails
    /// counts in the totals with its last value, so that a total never goes
    /// down (Prometheus would take that for a counter reset and count the
    /// whole value again as new errors when the link answers again). They
    /// live as long as the session: a driver reload resets the counters anyway.
    last: Vec<[Option<f64>; NvlinkErrorType::COUNT]>,
}

impl Links {
    /// `count` links, from discovery.
    pub(super) fn new(detail: NvlinkDetail, count: u32) -> Self {
        Self {
            detail,
            count,
            last: vec![[None; NvlinkErrorType::COUNT]; count as usize],
        }
    }

    /// Appends the link fields to a field-value request.
    pub(super) fn request(&self, requests: &mut Vec<Field>) {
        let fields = fields(self.detail, self.count);
        requests.extend(fields.map(|(link, _, id)| Field { id, scope: link }));
    }

    /// Adds the samples of the values NVML returned for the fields
    /// `request` appended, in their order (`None` where a field failed).
    pub(super) fn add_samples(&mut self, values: &[Option<f64>], gpu: &mut GpuSamples) {
        let per_link = self.detail == NvlinkDetail::Links;
        let mut states = [0u32; NvlinkState::COUNT];
        let mut any_state = false;
        for ((link, reading, _), value) in fields(self.detail, self.count).zip(values) {
            let link_label = || link.to_string();
            match reading {
                Reading::State => {
                    let Some(value) = value else { continue };
                    let active = *value == ACTIVE;
                    let state = if active {
                        NvlinkState::Active
                    } else {
                        NvlinkState::Inactive
                    };
                    states[state as usize] += 1;
                    any_state = true;
                    if per_link {
                        gpu.add(&NVLINK_UP, &[&link_label()], Some(bool_value(active)));
                    }
                }
                Reading::Errors(kind) => {
                    if per_link {
                        gpu.add(&NVLINK_LINK_ERRORS, &[&link_label(), kind.name()], *value);
                    }
                    if value.is_some() {
                        self.last[link as usize][kind as usize] = *value;
                    }
                }
            }
        }
        if any_state {
            for &state in NvlinkState::ALL {
                let count = f64::from(states[state as usize]);
                gpu.add(&NVLINKS, &[state.name()], Some(count));
            }
        }
        if self.detail == NvlinkDetail::Totals {
            for &kind in NvlinkErrorType::ALL {
                let mut read = self.last.iter().filter_map(|link| link[kind as usize]);
                // Omitted, never zeroed, while no link has answered for this type.
                let total = read.next().map(|first| first + read.sum::<f64>());
                gpu.add(&NVLINK_ERRORS, &[kind.name()], total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exposition::Samples;

    fn samples(links: &mut Links, values: &[Option<f64>]) -> String {
        let mut out = Samples::default();
        let mut gpu = GpuSamples::new(&mut out, 0, "GPU-0");
        links.add_samples(values, &mut gpu);
        out.encode()
    }

    fn requested(links: &Links) -> Vec<(u32, u32)> {
        let mut requests = Vec::new();
        links.request(&mut requests);
        requests.iter().map(|f| (f.id, f.scope)).collect()
    }

    #[test]
    fn fields_are_requested_per_link_except_when_off() {
        assert!(requested(&Links::new(NvlinkDetail::Off, 18)).is_empty());
        let totals = requested(&Links::new(NvlinkDetail::Totals, 18));
        // 18 links × (state, crc_flit, replay, recovery) + crc_data on 0–11.
        assert_eq!(totals.len(), 18 * 4 + 12);
        assert_eq!(totals, requested(&Links::new(NvlinkDetail::Links, 18)));
        assert!(totals.contains(&(NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_L11, 11)));
        assert!(totals.contains(&(NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY, 17)));
        assert!(requested(&Links::new(NvlinkDetail::Totals, 0)).is_empty());
    }

    /// Values for 2 links: state, crc_flit, crc_data, replay, recovery each.
    fn two_links(link1_replay: Option<f64>) -> Vec<Option<f64>> {
        vec![
            Some(1.0),
            Some(3.0),
            Some(0.0),
            Some(5.0),
            Some(0.0),
            Some(0.0),
            Some(0.0),
            Some(4.0),
            link1_replay,
            Some(6.0),
        ]
    }

    #[test]
    fn totals_sum_the_links_and_keep_a_failed_links_last_value() {
        let mut links = Links::new(NvlinkDetail::Totals, 2);
        let text = samples(&mut links, &two_links(Some(2.0)));
        assert!(
            !text.contains("link=") && !text.contains("nvidia_gpu_nvlink_up"),
            "{text}"
        );
        for line in [
            r#"nvidia_gpu_nvlink_errors_total{gpu="0",uuid="GPU-0",type="crc_flit"} 3"#,
            r#"nvidia_gpu_nvlink_errors_total{gpu="0",uuid="GPU-0",type="crc_data"} 4"#,
            r#"nvidia_gpu_nvlink_errors_total{gpu="0",uuid="GPU-0",type="replay"} 7"#,
            r#"nvidia_gpu_nvlink_errors_total{gpu="0",uuid="GPU-0",type="recovery"} 6"#,
            r#"nvidia_gpu_nvlinks{gpu="0",uuid="GPU-0",state="active"} 1"#,
            r#"nvidia_gpu_nvlinks{gpu="0",uuid="GPU-0",state="inactive"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Link 1's replay count fails: it counts with its last value, 2.
        let text = samples(&mut links, &two_links(None));
        let replay = r#"nvidia_gpu_nvlink_errors_total{gpu="0",uuid="GPU-0",type="replay"} 7"#;
        assert!(text.contains(replay), "{text}");
        // A type no link ever answered for is omitted, not zeroed.
        let mut links = Links::new(NvlinkDetail::Totals, 2);
        let mut values = two_links(None);
        values[3] = None;
        let text = samples(&mut links, &values);
        assert!(!text.contains(r#"type="replay""#), "{text}");
    }

    #[test]
    fn links_serve_each_link_and_no_totals() {
        let mut links = Links::new(NvlinkDetail::Links, 2);
        let text = samples(&mut links, &two_links(Some(2.0)));
        for line in [
            r#"nvidia_gpu_nvlink_up{gpu="0",uuid="GPU-0",link="1"} 0"#,
            r#"nvidia_gpu_nvlink_errors_total{gpu="0",uuid="GPU-0",link="1",type="replay"} 2"#,
            r#"nvidia_gpu_nvlinks{gpu="0",uuid="GPU-0",state="active"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let families = text
            .matches("# TYPE nvidia_gpu_nvlink_errors_total")
            .count();
        assert_eq!(families, 1);
        let errors = text
            .lines()
            .filter(|l| l.starts_with("nvidia_gpu_nvlink_errors_total"));
        assert!(errors.clone().all(|l| l.contains("link=")), "{text}");
        assert_eq!(errors.count(), 8);
    }
}
