//! Command-line flags, and their conversion into the plain configuration of
//! each part. Each flag can also be set through an `SIE_*` environment
//! variable, which suits containers and DaemonSets. Nothing below this
//! module sees clap's types.

mod collectors;
mod values;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::collector;
use crate::collector::pods::{CA_FILE, DEFAULT_SOCKET, DraConfig, TOKEN_FILE};
use crate::collector::processes::containers::DEFAULT_STATE_DIRS;
use crate::http::{Limits, ListenAddress, ServerOptions};
use crate::metrics::filter::{MetricFilter, Pattern};
use crate::selfmetrics::BuildInfo;
use values::{parse_interval, parse_telemetry_path, parse_timeout, parse_url};

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
    let build = BuildInfo::CURRENT;
    let version = format!("{} (revision {})", build.version, build.revision);
    collectors::add_flags(Cli::command().version(version))
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
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = command();
    let matches = command
        .try_get_matches_from_mut(&args)
        .map_err(|e| name_the_variable(e, &command, &args))?;
    let cli = Cli::from_arg_matches(&matches)?;
    let collectors = collectors::enabled(&matches, cli.options.disable_default_collectors);
    Ok(Parsed { cli, collectors })
}

/// An invalid value that came from an `SIE_*` variable, not the command
/// line, is reported under the variable's name: that is what the user set.
fn name_the_variable(
    error: clap::Error,
    command: &clap::Command,
    args: &[OsString],
) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return error;
    }
    let Some(ContextValue::String(flag)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    // "--collect.interval <COLLECT_INTERVAL>", "--require-gpu[=<BOOL>]".
    let long = flag.split([' ', '[', '=']).next().unwrap_or_default();
    let Some(arg) = command
        .get_arguments()
        .find(|a| a.get_long().is_some_and(|l| long == format!("--{l}")))
    else {
        return error;
    };
    let on_command_line = args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == long || a.starts_with(&format!("{long}="))
    });
    let (Some(variable), false) = (arg.get_env(), on_command_line) else {
        return error;
    };
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => value.clone(),
        _ => String::new(),
    };
    let reason = error
        .render()
        .to_string()
        .lines()
        .next()
        .and_then(|line| {
            line.split_once(&format!("'{flag}': "))
                .map(|(_, r)| r.to_owned())
        })
        .unwrap_or_default();
    let mut message = format!(
        "invalid value '{value}' for {} (the variable of {long})",
        variable.to_string_lossy()
    );
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(&reason);
    }
    clap::Error::raw(error.kind(), format!("{message}\n"))
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
        #[arg(long, value_parser = parse_url)]
        url: Option<String>,
    },
    /// Record what the NVML driver answers to every query the exporter makes,
    /// on every GPU and MIG device, as a profile for the NVML test double
    /// (tests/nvml-double), e.g. to attach to a bug report. Serial numbers,
    /// UUIDs and PCI bus ids are replaced by placeholders. NVML is loaded as
    /// the exporter loads it (--nvml.library before the subcommand, or
    /// SIE_NVML_LIBRARY).
    RecordNvml {
        /// Write the profile to FILE [default: stdout]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Keep serial numbers, UUIDs, PCI bus ids and the fabric cluster UUID
        #[arg(long)]
        keep_identifiers: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub(crate) struct Options {
    /// Address and port to serve HTTP on: ":9400" means every address, IPv6
    /// and IPv4, as with node_exporter; a host name is resolved at start.
    #[arg(
        long = "web.listen-address",
        env = "SIE_WEB_LISTEN_ADDRESS",
        default_value = ":8080",
        value_parser = ListenAddress::parse,
        global = true
    )]
    pub(crate) listen_address: ListenAddress,

    /// Path under which metrics are served.
    #[arg(long = "web.telemetry-path", env = "SIE_WEB_TELEMETRY_PATH", default_value = "/metrics", value_parser = parse_telemetry_path)]
    pub(crate) telemetry_path: String,

    /// How often the collectors read NVML and the host (e.g. 5s, 500ms, 1m).
    #[arg(long = "collect.interval", env = "SIE_COLLECT_INTERVAL", default_value = "5s", value_parser = parse_interval)]
    pub(crate) collect_interval: Duration,

    /// Report not ready while NVML is unavailable or a GPU is lost (for GPU nodes).
    #[arg(
        long = "require-gpu",
        env = "SIE_REQUIRE_GPU",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value_t = false,
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = BoolishValueParser::new()
    )]
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

    /// Resolve GPUs allocated through DRA claims to their UUIDs through the
    /// Kubernetes API (the node's ResourceSlices), wherever a
    /// service-account token is mounted.
    #[arg(
        long = "collector.pods.dra",
        env = "SIE_COLLECTOR_PODS_DRA",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value_t = true,
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = BoolishValueParser::new()
    )]
    pub(crate) pods_dra: bool,

    /// The DRA drivers whose claims' devices are GPUs (comma-separated).
    #[arg(
        long = "kubernetes.dra-drivers",
        env = "SIE_KUBERNETES_DRA_DRIVERS",
        value_delimiter = ',',
        default_value = "gpu.nvidia.com"
    )]
    pub(crate) dra_drivers: Vec<String>,

    /// The Kubernetes API [default: in a pod, https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT];
    /// http:// is accepted, for tests and local proxies.
    #[arg(long = "kubernetes.api-url", env = "SIE_KUBERNETES_API_URL")]
    pub(crate) kubernetes_api_url: Option<String>,

    /// The bearer token for the Kubernetes API, re-read for every request.
    #[arg(long = "kubernetes.token-file", env = "SIE_KUBERNETES_TOKEN_FILE", default_value = TOKEN_FILE)]
    pub(crate) kubernetes_token_file: PathBuf,

    /// The CA that signs the Kubernetes API server's certificate.
    #[arg(long = "kubernetes.ca-file", env = "SIE_KUBERNETES_CA_FILE", default_value = CA_FILE)]
    pub(crate) kubernetes_ca_file: PathBuf,

    /// This node's name, whose ResourceSlices are read (the DaemonSet sets
    /// it from the downward API).
    #[arg(long = "kubernetes.node-name", env = "NODE_NAME")]
    pub(crate) node_name: Option<String>,

    /// dcgm-exporter's HPC job mapping directory, written by a Slurm prolog:
    /// a file per GPU named by its index (0), or per MIG GPU instance (0.3),
    /// one job id per line, re-read at every collection. Runs the hpc
    /// collector (nvidia_gpu_job_info; hpc_job in the dcgm view); empty: off.
    #[arg(
        long = "collector.hpc.job-mapping-dir",
        env = "SIE_COLLECTOR_HPC_JOB_MAPPING_DIR",
        value_name = "DIR"
    )]
    pub(crate) job_mapping_dir: Option<PathBuf>,

    /// Least severe log messages to print.
    #[arg(long = "log.level", env = "SIE_LOG_LEVEL", value_enum, ignore_case = true, default_value_t = LogLevel::Info)]
    pub(crate) log_level: LogLevel,

    /// Log line format.
    #[arg(long = "log.format", env = "SIE_LOG_FORMAT", value_enum, ignore_case = true, default_value_t = LogFormat::Text)]
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
    #[arg(long = "metrics.format", env = "SIE_METRICS_FORMAT", value_enum, ignore_case = true, default_value_t = MetricsFormat::Native)]
    pub(crate) metrics_format: MetricsFormat,

    /// dcgm-exporter's counters file (CSV: DCGM field, Prometheus type, help)
    /// for --metrics.format=dcgm: serve the fields it lists that this
    /// exporter provides, in its order, with its help texts [default: every
    /// field, as deploy/dcgm/default-counters.csv].
    #[arg(long = "dcgm.counters", env = "SIE_DCGM_COUNTERS")]
    pub(crate) dcgm_counters: Option<PathBuf>,

    /// Serve only the metric families whose whole name matches this regular
    /// expression (RE2 syntax, as in Prometheus' relabelling), in the names
    /// of --metrics.format; the exporter's own metrics are always served.
    #[arg(long = "metrics.include", env = "SIE_METRICS_INCLUDE", value_parser = Pattern::parse)]
    pub(crate) metrics_include: Option<Pattern>,

    /// Leave out the metric families whose whole name matches this regular
    /// expression; what is left out is not read from NVML where it has a
    /// call of its own.
    #[arg(long = "metrics.exclude", env = "SIE_METRICS_EXCLUDE", value_parser = Pattern::parse)]
    pub(crate) metrics_exclude: Option<Pattern>,

    /// Run only the collectors enabled explicitly with --collector.<name>.
    #[arg(
        long = "collector.disable-defaults",
        env = "SIE_COLLECTOR_DISABLE_DEFAULTS",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value_t = false,
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = BoolishValueParser::new()
    )]
    pub(crate) disable_default_collectors: bool,

    /// Leave out the metrics about the exporter process itself (process_*,
    /// system_info_exporter_http_*, system_info_exporter_web_config_*).
    #[arg(
        long = "web.disable-exporter-metrics",
        env = "SIE_WEB_DISABLE_EXPORTER_METRICS",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value_t = false,
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = BoolishValueParser::new()
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
    #[arg(
        long = "web.probes-without-auth",
        env = "SIE_WEB_PROBES_WITHOUT_AUTH",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value_t = false,
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = BoolishValueParser::new()
    )]
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
    /// The metric filter of `--metrics.include` and `--metrics.exclude`.
    pub(crate) fn metric_filter(&self) -> MetricFilter {
        MetricFilter {
            include: self.metrics_include.clone(),
            exclude: self.metrics_exclude.clone(),
        }
    }

    /// The collectors' configuration; `enabled` from the `--collector.*`
    /// flags, `wanted` the metrics the output serves.
    pub(crate) fn collectors(
        &self,
        enabled: Vec<&'static str>,
        wanted: collector::Wanted,
    ) -> collector::Config {
        collector::Config {
            enabled,
            wanted,
            interval: self.collect_interval,
            nvml_library: self.nvml_library.clone(),
            nvlink: match self.nvlink {
                NvlinkDetail::Off => collector::gpu::NvlinkDetail::Off,
                NvlinkDetail::Totals => collector::gpu::NvlinkDetail::Totals,
                NvlinkDetail::Links => collector::gpu::NvlinkDetail::Links,
            },
            host_name: self.host_name.clone(),
            pod_resources_socket: self.pod_resources_socket.clone(),
            dra: self.dra(),
            procfs: self.procfs.clone(),
            container_state: self.container_state.clone(),
            // Empty means off, as dcgm-exporter's --hpc-job-mapping-dir="".
            job_mapping_dir: self
                .job_mapping_dir
                .clone()
                .filter(|dir| !dir.as_os_str().is_empty()),
        }
    }

    /// How DRA devices are resolved: the API named, else the in-cluster one.
    fn dra(&self) -> DraConfig {
        let in_cluster = || {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").ok()?;
            let host = match host.parse::<std::net::Ipv6Addr>() {
                Ok(_) => format!("[{host}]"),
                Err(_) => host,
            };
            Some(format!("https://{host}:{port}"))
        };
        DraConfig {
            enabled: self.pods_dra,
            drivers: self.dra_drivers.clone(),
            api_url_given: self.kubernetes_api_url.is_some(),
            api_url: self.kubernetes_api_url.clone().or_else(in_cluster),
            token_file: self.kubernetes_token_file.clone(),
            ca_file: self.kubernetes_ca_file.clone(),
            node_name: self.node_name.clone().filter(|n| !n.is_empty()),
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
