//! Conversions from NVML's units to Prometheus base units.

pub(crate) fn milliwatts_to_watts(milliwatts: u32) -> f64 {
    f64::from(milliwatts) / 1e3
}

pub(crate) fn megahertz_to_hertz(megahertz: u32) -> f64 {
    f64::from(megahertz) * 1e6
}

pub(crate) fn percent_to_ratio(percent: u32) -> f64 {
    f64::from(percent) / 100.0
}

/// NVML reports the CUDA driver version as `1000 * major + 10 * minor`.
pub(crate) fn cuda_version_string(version: i32) -> String {
    format!("{}.{}", version / 1000, (version % 1000) / 10)
}

/// 16 bytes as a UUID, as nvidia-smi writes one: 8-4-4-4-12 lowercase hex digits.
pub(crate) fn uuid_text(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_base_units() {
        assert_eq!(milliwatts_to_watts(250_500), 250.5);
        assert_eq!(megahertz_to_hertz(1410), 1.41e9);
        assert_eq!(percent_to_ratio(87), 0.87);
        assert_eq!(percent_to_ratio(0), 0.0);
    }

    #[test]
    fn formats_cuda_versions() {
        assert_eq!(cuda_version_string(12040), "12.4");
        assert_eq!(cuda_version_string(11080), "11.8");
        assert_eq!(cuda_version_string(12000), "12.0");
    }
}
