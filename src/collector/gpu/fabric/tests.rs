//! The health-mask decoding against nvml.h's bit layout, and what a
//! reading becomes: samples and the `/health` entry.

use super::*;
use crate::metrics::exposition::Samples;

// The layout of nvml.h (13.x), written out bit by bit rather than taken
// from `nvml_values`: a two-bit field at 0 (degraded bandwidth), 2
// (route recovery), 4 (route unhealthy), 6 (access timeout recovery),
// each 0 not supported, 1 true, 2 false; the four-bit incorrect
// configuration at 8; partition assigned (not an issue) at 12.
const ALL_FALSE: u32 = 0b10 | 0b10 << 2 | 0b10 << 4 | 0b10 << 6;
const CONFIGURATION_NONE: u32 = 1 << 8;
const HEALTHY: u32 = ALL_FALSE | CONFIGURATION_NONE;

fn checks(mask: u32) -> Vec<(&'static str, Check)> {
    let (checks, _) = decode_mask(mask);
    checks.into_iter().map(|(i, c)| (i.name(), c)).collect()
}

fn reported(mask: u32) -> Vec<&'static str> {
    let (checks, _) = decode_mask(mask);
    let reported = checks.into_iter().filter(|(_, c)| *c == Check::Reported);
    reported.map(|(i, _)| i.name()).collect()
}

#[test]
fn a_healthy_mask_reports_nothing_and_a_zero_mask_supports_nothing() {
    assert_eq!(HEALTHY, 0x1aa, "the healthy mask of nvml.h's comments");
    assert!(checks(HEALTHY).iter().all(|(_, c)| *c == Check::Clear));
    assert!(checks(0).iter().all(|(_, c)| *c == Check::NotSupported));
    assert_eq!(decode_mask(0x1aa).1, None);
    // Partition assigned (bit 12, drivers from R595) is no issue.
    assert_eq!(reported(HEALTHY | 1 << 12), Vec::<&str>::new());
    assert_eq!(reported(HEALTHY | 2 << 12), Vec::<&str>::new());
}

#[test]
fn each_two_bit_field_is_read_at_its_shift() {
    for (shift, issue) in [
        (0, "degraded_bandwidth"),
        (2, "route_recovery"),
        (4, "route_unhealthy"),
        (6, "access_timeout_recovery"),
    ] {
        let field = 0b11 << shift;
        let mask = (HEALTHY & !field) | 1 << shift;
        assert_eq!(reported(mask), [issue], "{mask:#x}");
        // Not supported: 0 in that field only.
        let unsupported = HEALTHY & !field;
        let checks = checks(unsupported);
        let not_supported: Vec<_> = checks
            .iter()
            .filter(|(_, c)| *c == Check::NotSupported)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(not_supported, [issue], "{unsupported:#x}");
        // 3 is not a value nvml.h defines: not counted as the issue.
        assert!(reported(HEALTHY | field).is_empty());
    }
    // R550 reports degraded bandwidth only, R570 the four two-bit fields.
    assert_eq!(reported(0b01), ["degraded_bandwidth"]);
    let r570 = checks(ALL_FALSE);
    assert_eq!(r570[4], ("incorrect_configuration", Check::NotSupported));
    assert!(r570[..4].iter().all(|(_, c)| *c == Check::Clear));
}

#[test]
fn incorrect_configuration_is_four_bits_at_8_with_nvml_h_cause_names() {
    let with = |value: u32| ALL_FALSE | value << 8;
    assert_eq!(checks(with(0))[4].1, Check::NotSupported);
    assert_eq!(checks(with(1))[4].1, Check::Clear);
    let causes = [
        (2, "incorrect_sysguid"),
        (3, "incorrect_chassis_sn"),
        (4, "no_partition"),
        (5, "insufficient_nvlinks"),
        (6, "incompatible_gpu_fw"),
        (7, "invalid_location"),
        (8, "gpu_state_invalid"),
        (15, "unknown (15)"),
    ];
    for (value, name) in causes {
        assert_eq!(reported(with(value)), ["incorrect_configuration"]);
        assert_eq!(decode_mask(with(value)).1.as_deref(), Some(name));
    }
    // Four bits, not two: 5 is a cause, not "true" plus a stray bit,
    // and the field does not reach into partition assigned at 12.
    assert_eq!(
        decode_mask(with(5) | 1 << 12).1.as_deref(),
        Some("insufficient_nvlinks")
    );
}

fn info(state: u8, status: u32, mask: u32, summary: Option<u8>) -> FabricInfo {
    let mut cluster_uuid = [0; 16];
    cluster_uuid[0] = 0x9c;
    cluster_uuid[15] = 0xc3;
    FabricInfo {
        cluster_uuid,
        status,
        clique_id: 32766,
        state,
        health_mask: mask,
        health_summary: summary,
    }
}

fn samples(info: &FabricInfo) -> Samples {
    let mut out = Samples::default();
    let mut gpu = GpuSamples::new(&mut out, 3, "GPU-3");
    Decoded::new(info).add_samples(info, &mut gpu);
    out
}

fn value(out: &Samples, metric: &str, label: &str) -> Option<f64> {
    out.iter()
        .find(|s| s.metric.name == metric && s.labels.iter().any(|l| l == label))
        .map(|s| s.value)
}

#[test]
fn a_completed_v3_fabric_has_13_series() {
    let healthy = info(3, 0, HEALTHY, Some(1));
    let out = samples(&healthy);
    assert_eq!(out.iter().count(), 13);
    assert_eq!(
        value(&out, "nvidia_gpu_fabric_state", "completed"),
        Some(1.0)
    );
    assert_eq!(
        value(&out, "nvidia_gpu_fabric_state", "in_progress"),
        Some(0.0)
    );
    assert_eq!(value(&out, "nvidia_gpu_fabric_status", "GPU-3"), Some(0.0));
    let uuid = "9c000000-0000-0000-0000-0000000000c3";
    assert_eq!(value(&out, "nvidia_gpu_fabric_info", uuid), Some(1.0));
    assert_eq!(value(&out, "nvidia_gpu_fabric_info", "32766"), Some(1.0));
    assert_eq!(
        value(&out, "nvidia_gpu_fabric_overall_health", "healthy"),
        Some(1.0)
    );
    assert_eq!(
        value(&out, "nvidia_gpu_fabric_overall_health", "unhealthy"),
        Some(0.0)
    );
    let health = Decoded::new(&healthy).health(&healthy);
    assert!(health.ok && health.registered(), "{health:?}");
    assert_eq!(health.summary.as_deref(), Some("healthy"));
    assert!(health.issues.is_empty() && health.unsupported_checks.is_empty());
}

#[test]
fn status_is_served_once_completed_and_a_failed_one_is_not_ok() {
    let in_progress = info(2, 0, 0, Some(0));
    let out = samples(&in_progress);
    // No status, no summary (not supported); five issues at 0.
    assert_eq!(out.iter().count(), 3 + 1 + 5);
    assert_eq!(value(&out, "nvidia_gpu_fabric_status", "GPU-3"), None);
    let health = Decoded::new(&in_progress).health(&in_progress);
    assert_eq!(
        (health.state.as_str(), health.status),
        ("in_progress", None)
    );
    assert!(!health.ok && !health.registered());
    assert_eq!(health.unsupported_checks.len(), 5);

    // Completed with INSUFFICIENT_RESOURCES (23), as seen on real nodes.
    let failed = info(3, 23, HEALTHY, Some(1));
    assert_eq!(
        value(&samples(&failed), "nvidia_gpu_fabric_status", "GPU-3"),
        Some(23.0)
    );
    let health = Decoded::new(&failed).health(&failed);
    assert!(!health.ok && !health.registered());
    assert!(
        health.error.as_deref().unwrap().contains("code 23"),
        "{health:?}"
    );
}

#[test]
fn issues_and_summaries_make_the_fabric_not_ok() {
    let unhealthy_route = info(3, 0, (HEALTHY & !0x30) | 0x10, Some(2));
    let health = Decoded::new(&unhealthy_route).health(&unhealthy_route);
    assert!(!health.ok && health.registered());
    assert_eq!(health.issues, ["route_unhealthy"]);
    assert_eq!(health.summary.as_deref(), Some("unhealthy"));

    let limited = info(3, 0, HEALTHY, Some(3));
    let health = Decoded::new(&limited).health(&limited);
    assert!(!health.ok);
    assert_eq!(health.summary.as_deref(), Some("limited_capacity"));

    let misconfigured = info(3, 0, ALL_FALSE | 4 << 8, None);
    let health = Decoded::new(&misconfigured).health(&misconfigured);
    assert_eq!(health.issues, ["incorrect_configuration"]);
    assert_eq!(
        health.incorrect_configuration.as_deref(),
        Some("no_partition")
    );

    // v2 (no summary) with a healthy mask is ok: 10 series.
    let v2 = info(3, 0, HEALTHY, None);
    assert!(Decoded::new(&v2).health(&v2).ok);
    assert_eq!(samples(&v2).iter().count(), 10);
}

#[test]
fn undocumented_values_are_neither_completed_nor_healthy() {
    let odd = info(7, 0, HEALTHY, Some(9));
    let out = samples(&odd);
    assert!(
        out.iter()
            .all(|s| s.metric.name != "nvidia_gpu_fabric_state" || s.value == 0.0)
    );
    assert!(
        out.iter()
            .all(|s| s.metric.name != "nvidia_gpu_fabric_overall_health" || s.value == 0.0)
    );
    let health = Decoded::new(&odd).health(&odd);
    assert_eq!(health.state, "unknown (7)");
    assert_eq!(health.summary.as_deref(), Some("unknown (9)"));
    assert!(!health.ok);
}
