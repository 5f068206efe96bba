//! Command-line flags, and their conversion into the plain configuration of
//! each part. Each flag can also be set through an `SIE_*` environment
//! variable, which suits containers and DaemonSets. Nothing below this
//! module sees clap's types.

mod collectors;
mod values;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::collector;
use crate::collector::pods::DEFAULT_SOCKET;
use crate::collector::processes::containers::DEFAULT_STATE_DIRS;
use crate::http::{Limits, ServerOptions};
use values::{parse_interval, parse_listen_address, parse_telemetry_path, parse_timeout};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Prometheus exporter for NVIDIA GPU metrics (NVML) and host statistics"
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) options: Options,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// The whole command: the derived flags and a pair of flags per collector.
pub(crate) fn command() -> clap::Command {
    collectors::add_flags(Cli::command())
}

/// A parsed command line.
pub(crate) struct Parsed {
    pub(crate) cli: Cli,
    /// The collectors the `--collector.*` flags enable.
    pub(crate) collectors: Vec<&'static str>,
}

/// Parses the command line; on an error, prints a message naming the flag
/// and exits with code 2.
pub(crate) fn parse() -> Parsed {
    parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Parses `args` (the program name first).
pub(crate) fn parse_from<I, T>(args: I) -> Result<Parsed, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let collectors = collectors::enabled(&matches, cli.options.disable_default_collectors);
    Ok(Parsed { cli, collectors })
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// GET /health on the local listener; exit 0 when healthy, 1 otherwise
    /// (for a container HEALTHCHECK without curl). Follows the address the
    /// running exporter was given (its command line or SIE_WEB_LISTEN_ADDRESS,
    /// read from /proc).
    Healthcheck {
        /// URL to check [default: /health on the running exporter's
        /// --web.listen-address, via loopback; this command's own
        /// --web.listen-address or SIE_WEB_LISTEN_ADDRESS override it]
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub(crate) struct Options {
    /// Address and port to serve HTTP on; ":9400" means every address, as
    /// with node_exporter.
    #[arg(
        long = "web.listen-address",
        env = "SIE_WEB_LISTEN_ADDRESS",
        default_value = "0.0.0.0:8080",
        value_parser = parse_listen_address,
        global = true
    )]
    pub(crate) listen_address: SocketAddr,

    /// Path under which metrics are served.
    #[arg(long = "web.telemetry-path", env = "SIE_WEB_TELEMETRY_PATH", default_value = "/metrics", value_parser = parse_telemetry_path)]
    pub(crate) telemetry_path: String,

    /// How often the collectors read NVML and the host (e.g. 5s, 500ms, 1m).
    #[arg(long = "collect.interval", env = "SIE_COLLECT_INTERVAL", default_value = "5s", value_parser = parse_interval)]
    pub(crate) collect_interval: Duration,

    /// Report not ready while NVML is unavailable or a GPU is lost (for GPU nodes).
    #[arg(long = "require-gpu", env = "SIE_REQUIRE_GPU")]
    pub(crate) require_gpu: bool,

    /// Path of the NVML library [default: the dynamic loader finds libnvidia-ml.so.1].
    #[arg(long = "nvml.library", env = "SIE_NVML_LIBRARY")]
    pub(crate) nvml_library: Option<PathBuf>,

    /// Host name for host_info, e.g. the Kubernetes node name [default: the kernel's host name].
    #[arg(long = "host.name", env = "SIE_HOST_NAME")]
    pub(crate) host_name: Option<String>,

    /// Socket of the kubelet pod-resources API, to label GPUs with the pods
    /// that hold them; attribution is off when it does not exist.
    #[arg(
        long = "kubelet.pod-resources-socket",
        env = "SIE_KUBELET_POD_RESOURCES_SOCKET",
        default_value = DEFAULT_SOCKET
    )]
    pub(crate) pod_resources_socket: PathBuf,

    /// Least severe log messages to print.
    #[arg(long = "log.level", env = "SIE_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub(crate) log_level: LogLevel,

    /// Log line format.
    #[arg(long = "log.format", env = "SIE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    /// The proc filesystem the processes collector reads process names and
    /// cgroups from (the host's needs the host's PID namespace).
    #[arg(long = "path.procfs", env = "SIE_PATH_PROCFS", default_value = "/proc")]
    pub(crate) procfs: PathBuf,

    /// Container runtime state directories (comma-separated) where the
    /// processes collector finds the pod of a process's container.
    #[arg(
        long = "path.container-state",
        env = "SIE_PATH_CONTAINER_STATE",
        value_delimiter = ',',
        default_value = DEFAULT_STATE_DIRS
    )]
    pub(crate) container_state: Vec<PathBuf>,

    /// NVLink detail: totals (per GPU, errors summed over its links and links
    /// counted by state: at most 6 series), links (also each link's state and
    /// errors: 5 series per link, for drill-down), or off (no link fields read).
    #[arg(long = "collector.gpu.nvlink", env = "SIE_COLLECTOR_GPU_NVLINK", value_enum, default_value_t = NvlinkDetail::Totals)]
    pub(crate) nvlink: NvlinkDetail,

    /// Metric names, units and labels to serve: native, or dcgm-exporter's
    /// (DCGM_FI_*, for its dashboards and alerts; see docs/dcgm-compatibility.md).
    #[arg(long = "metrics.format", env = "SIE_METRICS_FORMAT", value_enum, default_value_t = MetricsFormat::Native)]
    pub(crate) metrics_format: MetricsFormat,

    /// Run only the collectors enabled explicitly with --collector.<name>.
    #[arg(
        long = "collector.disable-defaults",
        env = "SIE_COLLECTOR_DISABLE_DEFAULTS"
    )]
    pub(crate) disable_default_collectors: bool,

    /// Leave out the metrics about the exporter process itself (process_*,
    /// system_info_exporter_http_*, system_info_exporter_web_config_*).
    #[arg(
        long = "web.disable-exporter-metrics",
        env = "SIE_WEB_DISABLE_EXPORTER_METRICS"
    )]
    pub(crate) disable_exporter_metrics: bool,

    /// Web configuration file (exporter-toolkit format): TLS, basic auth,
    /// response headers. Re-read when it or a file it names changes.
    #[arg(long = "web.config.file", env = "SIE_WEB_CONFIG_FILE")]
    pub(crate) web_config_file: Option<PathBuf>,

    /// Time a client has to send a request's headers (from its first byte, or
    /// from the connection for the first request) and to complete a TLS handshake.
    #[arg(long = "web.read-header-timeout", env = "SIE_WEB_READ_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub(crate) read_header_timeout: Duration,

    /// Time a kept-alive connection may wait for its next request; longer
    /// than the scrape interval, so that Prometheus keeps its connection.
    #[arg(long = "web.idle-timeout", env = "SIE_WEB_IDLE_TIMEOUT", default_value = "3m", value_parser = parse_timeout)]
    pub(crate) idle_timeout: Duration,

    /// Most open connections; at the limit the oldest connection waiting for
    /// a request is closed to admit a new one. Keep it well below the file
    /// descriptor limit (ulimit -n).
    #[arg(long = "web.max-connections", env = "SIE_WEB_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) max_connections: u32,

    /// Most concurrent /metrics requests; more are answered 503 at once. 0: no limit.
    #[arg(
        long = "web.max-requests",
        env = "SIE_WEB_MAX_REQUESTS",
        default_value_t = 40
    )]
    pub(crate) max_requests: u32,

    /// Answer /health and /ready without basic auth, for liveness and
    /// readiness probes that cannot send credentials (/metrics still needs them).
    #[arg(long = "web.probes-without-auth", env = "SIE_WEB_PROBES_WITHOUT_AUTH")]
    pub(crate) probes_without_auth: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum MetricsFormat {
    Native,
    Dcgm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum NvlinkDetail {
    Off,
    Totals,
    Links,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

impl Options {
    /// The collectors' configuration; `enabled` from the `--collector.*` flags.
    pub(crate) fn collectors(&self, enabled: Vec<&'static str>) -> collector::Config {
        collector::Config {
            enabled,
            interval: self.collect_interval,
            nvml_library: self.nvml_library.clone(),
            nvlink: match self.nvlink {
                NvlinkDetail::Off => collector::gpu::NvlinkDetail::Off,
                NvlinkDetail::Totals => collector::gpu::NvlinkDetail::Totals,
                NvlinkDetail::Links => collector::gpu::NvlinkDetail::Links,
            },
            host_name: self.host_name.clone(),
            pod_resources_socket: self.pod_resources_socket.clone(),
            procfs: self.procfs.clone(),
            container_state: self.container_state.clone(),
        }
    }

    /// The HTTP server's limits and options.
    pub(crate) fn server(&self) -> ServerOptions {
        ServerOptions {
            limits: Limits {
                header_timeout: self.read_header_timeout,
                idle_timeout: self.idle_timeout,
                max_connections: self.max_connections as usize,
            },
            max_requests: self.max_requests as usize,
            probes_without_auth: self.probes_without_auth,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        super::command().debug_assert();
    }
}
