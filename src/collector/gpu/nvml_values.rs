//! NVML's constant for each label value the GPU collector exports. Each is
//! an exhaustive match, so a value added to a label's enum cannot be
//! forgotten here.

use nvml_wrapper::bitmasks::device::ThrottleReasons;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureThreshold};

use crate::metrics::labels::{ClockDomain, ClockEventReason, EccEventType, Threshold};

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
