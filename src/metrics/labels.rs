//! Every fixed set of label values, each defined once as an enum that
//! carries its names. The catalogue lists a label's values from `NAMES`;
//! counters that keep one number per value index an array by the variant;
//! code that maps a value to an NVML constant matches on the variant, so a
//! value added here cannot be forgotten there.

/// Defines a label-value enum: its variants in order, each with the label
/// value it is exported as.
macro_rules! label_values {
    ($($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal,)+ })+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub(crate) enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        // The same API for every label; not every label uses all of it.
        #[allow(dead_code)]
        impl $name {
            /// Every value, in the order of the docs and of arrays indexed by it.
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// The label values, in the order of `ALL`.
            pub(crate) const NAMES: &'static [&'static str] = &[$($value,)+];
            pub(crate) const COUNT: usize = Self::ALL.len();

            /// The label value.
            pub(crate) const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }
        }
    )+};
}

label_values! {
    /// `clock` of `nvidia_gpu_clock_hertz` and `nvidia_gpu_clock_max_hertz`.
    ClockDomain {
        Graphics = "graphics",
        Sm = "sm",
        Memory = "memory",
        Video = "video",
    }

    /// `threshold` of `nvidia_gpu_temperature_threshold_celsius`.
    Threshold {
        Shutdown = "shutdown",
        Slowdown = "slowdown",
        GpuMax = "gpu_max",
        MemoryMax = "memory_max",
    }

    /// `type` of `nvidia_gpu_ecc_events_total`; also how `/health` names
    /// the watched ECC event types.
    EccEventType {
        SingleBit = "single_bit",
        DoubleBit = "double_bit",
    }

    /// `type` of the ECC error counters.
    EccErrorType {
        Corrected = "corrected",
        Uncorrected = "uncorrected",
    }

    /// `cause` of `nvidia_gpu_retired_pages`.
    RetirementCause {
        SingleBitEcc = "single_bit_ecc",
        DoubleBitEcc = "double_bit_ecc",
    }

    /// `type` of `nvidia_gpu_remapped_rows_total`.
    RemapType {
        Correctable = "correctable",
        Uncorrectable = "uncorrectable",
    }

    /// `reason` of `nvidia_gpu_clock_event_active`.
    ClockEventReason {
        GpuIdle = "gpu_idle",
        ApplicationsClocksSetting = "applications_clocks_setting",
        SwPowerCap = "sw_power_cap",
        HwSlowdown = "hw_slowdown",
        SyncBoost = "sync_boost",
        SwThermalSlowdown = "sw_thermal_slowdown",
        HwThermalSlowdown = "hw_thermal_slowdown",
        HwPowerBrakeSlowdown = "hw_power_brake_slowdown",
        DisplayClockSetting = "display_clock_setting",
    }

    /// `reason` of `nvidia_gpu_throttled_seconds_total`.
    ThrottleReason {
        Power = "power",
        Thermal = "thermal",
        SyncBoost = "sync_boost",
        BoardLimit = "board_limit",
        LowUtilization = "low_utilization",
        Reliability = "reliability",
        ApplicationClocks = "application_clocks",
        BaseClocks = "base_clocks",
    }

    /// `type` of `nvidia_gpu_nvlink_errors_total`.
    NvlinkErrorType {
        CrcFlit = "crc_flit",
        CrcData = "crc_data",
        Replay = "replay",
        Recovery = "recovery",
    }

    /// `state` of `nvidia_gpu_nvlinks`.
    NvlinkState {
        Active = "active",
        Inactive = "inactive",
    }

    /// `action` of `nvidia_gpu_recovery_action`, in the order of NVML's
    /// `nvmlDeviceGpuRecoveryAction_t`: a variant's position is its code.
    RecoveryAction {
        None = "none",
        GpuReset = "gpu_reset",
        NodeReboot = "node_reboot",
        DrainP2p = "drain_p2p",
        DrainAndReset = "drain_and_reset",
    }

    /// `state` of `nvidia_gpu_fabric_state`, in the order of NVML's
    /// `nvmlGpuFabricState_t` (1, 2, 3; 0, not supported, means no fabric).
    FabricState {
        NotStarted = "not_started",
        InProgress = "in_progress",
        Completed = "completed",
    }

    /// `issue` of `nvidia_gpu_fabric_health`: the fields of NVML's fabric
    /// health mask, in the order of their bits.
    FabricIssue {
        DegradedBandwidth = "degraded_bandwidth",
        RouteRecovery = "route_recovery",
        RouteUnhealthy = "route_unhealthy",
        AccessTimeoutRecovery = "access_timeout_recovery",
        IncorrectConfiguration = "incorrect_configuration",
    }

    /// `summary` of `nvidia_gpu_fabric_overall_health`, in the order of
    /// NVML's `NVML_GPU_FABRIC_HEALTH_SUMMARY_*` (1, 2, 3; 0 is not supported).
    FabricSummary {
        Healthy = "healthy",
        Unhealthy = "unhealthy",
        LimitedCapacity = "limited_capacity",
    }

    /// `type` of `nvidia_gpu_process_memory_used_bytes`.
    ProcessType {
        Compute = "compute",
        Graphics = "graphics",
    }

    /// `reason` of `system_info_exporter_kubernetes_api_errors_total`: why a
    /// request to the Kubernetes API failed.
    KubeApiError {
        /// No valid token (401, or the token file is missing).
        Unauthorized = "unauthorized",
        /// The service account may not list ResourceSlices (403).
        Forbidden = "forbidden",
        /// No connection, or no answer in time.
        Unreachable = "unreachable",
        /// The TLS handshake failed, e.g. a certificate the CA does not sign.
        Tls = "tls",
        /// No API version serves ResourceSlices (404): DRA is not enabled.
        NotServed = "not_served",
        /// Another status, or an answer that is not a ResourceSliceList.
        Other = "other",
    }

    /// `phase` of `system_info_exporter_nvml_calls_total`: what NVML work is for.
    NvmlPhase {
        Init = "init",
        Discovery = "discovery",
        Collection = "collection",
        Events = "events",
        Processes = "processes",
    }

    /// `handler` of `system_info_exporter_http_requests_total`: what a request was for.
    HttpHandler {
        Metrics = "metrics",
        Health = "health",
        Ready = "ready",
        Landing = "landing",
        Other = "other",
    }

    /// `encoding` of `system_info_exporter_http_metrics_response_bytes_total`.
    HttpEncoding {
        Gzip = "gzip",
        Identity = "identity",
    }

    /// `reason` of `system_info_exporter_http_connections_closed_total`: why
    /// a connection ended.
    CloseReason {
        /// The client closed it, or the exchange ended normally.
        Client = "client",
        /// The request header did not arrive within `--web.read-header-timeout`.
        HeaderTimeout = "header_timeout",
        /// No request within `--web.idle-timeout` on a kept-alive connection.
        IdleTimeout = "idle_timeout",
        /// The client did not read the response within the header timeout.
        WriteTimeout = "write_timeout",
        /// Closed to make room for a new connection at `--web.max-connections`.
        Evicted = "evicted",
        /// Not HTTP/1 (garbage, an HTTP/2 preface, TLS to the plain port), or
        /// a failed TLS handshake.
        Error = "error",
        /// The exporter is shutting down.
        Shutdown = "shutdown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_order_of_the_variants() {
        for (i, phase) in NvmlPhase::ALL.iter().enumerate() {
            assert_eq!(*phase as usize, i);
            assert_eq!(phase.name(), NvmlPhase::NAMES[i]);
        }
        assert_eq!(RecoveryAction::DrainAndReset as usize, 4);
        assert_eq!(CloseReason::COUNT, 7);
    }
}
