//! NVML's constant for each label value the GPU collector exports. Each is
//! an exhaustive match, so a value added to a label's enum cannot be
//! forgotten here.

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureThreshold};
use nvml_wrapper_sys::bindings::{
    NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_ACCESS_TIMEOUT_RECOVERY,
    NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_DEGRADED_BW,
    NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_INCORRECT_CONFIGURATION,
    NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_ROUTE_RECOVERY,
    NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_ROUTE_UNHEALTHY, NVML_GPU_FABRIC_HEALTH_SUMMARY_HEALTHY,
    NVML_GPU_FABRIC_HEALTH_SUMMARY_LIMITED_CAPACITY, NVML_GPU_FABRIC_HEALTH_SUMMARY_UNHEALTHY,
    NVML_GPU_FABRIC_STATE_COMPLETED, NVML_GPU_FABRIC_STATE_IN_PROGRESS,
    NVML_GPU_FABRIC_STATE_NOT_STARTED,
};

use crate::metrics::labels::{
    ClockDomain, ClockEventReason, EccEventType, FabricIssue, FabricState, FabricSummary, Threshold,
};

pub(super) fn clock(domain: ClockDomain) -> Clock {
    match domain {
        ClockDomain::Graphics => Clock::Graphics,
        ClockDomain::Sm => Clock::SM,
        ClockDomain::Memory => Clock::Memory,
        ClockDomain::Video => Clock::Video,
    }
}

pub(super) fn threshold(threshold: Threshold) -> TemperatureThreshold {
    match threshold {
        Threshold::Shutdown => TemperatureThreshold::Shutdown,
        Threshold::Slowdown => TemperatureThreshold::Slowdown,
        Threshold::GpuMax => TemperatureThreshold::GpuMax,
        Threshold::MemoryMax => TemperatureThreshold::MemoryMax,
    }
}

pub(super) fn clock_event(reason: ClockEventReason) -> ThrottleReasons {
    match reason {
        ClockEventReason::GpuIdle => ThrottleReasons::GPU_IDLE,
        ClockEventReason::ApplicationsClocksSetting => ThrottleReasons::APPLICATIONS_CLOCKS_SETTING,
        ClockEventReason::SwPowerCap => ThrottleReasons::SW_POWER_CAP,
        ClockEventReason::HwSlowdown => ThrottleReasons::HW_SLOWDOWN,
        ClockEventReason::SyncBoost => ThrottleReasons::SYNC_BOOST,
        ClockEventReason::SwThermalSlowdown => ThrottleReasons::SW_THERMAL_SLOWDOWN,
        ClockEventReason::HwThermalSlowdown => ThrottleReasons::HW_THERMAL_SLOWDOWN,
        ClockEventReason::HwPowerBrakeSlowdown => ThrottleReasons::HW_POWER_BRAKE_SLOWDOWN,
        ClockEventReason::DisplayClockSetting => ThrottleReasons::DISPLAY_CLOCK_SETTING,
    }
}

pub(super) fn ecc_event(kind: EccEventType) -> EventTypes {
    match kind {
        EccEventType::SingleBit => EventTypes::SINGLE_BIT_ECC_ERROR,
        EccEventType::DoubleBit => EventTypes::DOUBLE_BIT_ECC_ERROR,
    }
}

/// `nvmlGpuFabricState_t`.
pub(super) fn fabric_state(state: FabricState) -> u32 {
    match state {
        FabricState::NotStarted => NVML_GPU_FABRIC_STATE_NOT_STARTED,
        FabricState::InProgress => NVML_GPU_FABRIC_STATE_IN_PROGRESS,
        FabricState::Completed => NVML_GPU_FABRIC_STATE_COMPLETED,
    }
}

/// `NVML_GPU_FABRIC_HEALTH_SUMMARY_*`.
pub(super) fn fabric_summary(summary: FabricSummary) -> u32 {
    match summary {
        FabricSummary::Healthy => NVML_GPU_FABRIC_HEALTH_SUMMARY_HEALTHY,
        FabricSummary::Unhealthy => NVML_GPU_FABRIC_HEALTH_SUMMARY_UNHEALTHY,
        FabricSummary::LimitedCapacity => NVML_GPU_FABRIC_HEALTH_SUMMARY_LIMITED_CAPACITY,
    }
}

/// Where an issue sits in the fabric health mask: nvml.h's
/// `NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_*` and `_WIDTH_*` (a mask, not a bit
/// count: 0x3 for the two-bit fields, 0xf for the configuration). The
/// widths are written out: R550's header had 0x11 for degraded bandwidth.
pub(super) fn fabric_issue_field(issue: FabricIssue) -> (u32, u32) {
    match issue {
        FabricIssue::DegradedBandwidth => (NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_DEGRADED_BW, 0x3),
        FabricIssue::RouteRecovery => (NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_ROUTE_RECOVERY, 0x3),
        FabricIssue::RouteUnhealthy => (NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_ROUTE_UNHEALTHY, 0x3),
        FabricIssue::AccessTimeoutRecovery => (
            NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_ACCESS_TIMEOUT_RECOVERY,
            0x3,
        ),
        FabricIssue::IncorrectConfiguration => (
            NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_INCORRECT_CONFIGURATION,
            0xf,
        ),
    }
}
