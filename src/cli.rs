//! Command-line flags. Each flag can also be set through an `SIE_*`
//! environment variable, which suits containers and DaemonSets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{
    ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum,
};

use crate::collector::COLLECTORS;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Prometheus exporter for NVIDIA GPU metrics (NVML) and host statistics"
)]
pub struct Cli {
    #[command(flatten)]
    pub options: Options,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// Parses the command line (exit code 2 with a message on an error),
    /// including a `--collector.<name>` and `--no-collector.<name>` flag per
    /// collector.
    pub fn parse_with_collectors() -> Self {
        let matches = command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        cli.options.collectors =
            enabled_collectors(&matches, cli.options.disable_default_collectors);
        cli
    }
}

/// The command with the per-collector flags, which derive cannot generate.
pub fn command() -> clap::Command {
    let mut command = Cli::command();
    for registration in COLLECTORS {
        let name = registration.name;
        let default = if registration.enabled_by_default {
            "on"
        } else {
            "off"
        };
        command = command
            .arg(
                clap::Arg::new(format!("collector.{name}"))
                    .long(format!("collector.{name}"))
                    .env(format!("SIE_COLLECTOR_{}", name.to_uppercase()))
                    .value_parser(clap::value_parser!(bool))
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true")
                    .help(format!(
                        "Collect {} [default: {default}]",
                        registration.help
                    )),
            )
            .arg(
                clap::Arg::new(format!("no-collector.{name}"))
                    .long(format!("no-collector.{name}"))
                    .action(ArgAction::SetTrue)
                    .help(format!("Do not run the {name} collector")),
            );
    }
    command
}

fn enabled_collectors(matches: &ArgMatches, disable_defaults: bool) -> Vec<&'static str> {
    COLLECTORS
        .iter()
        .filter(|registration| {
            let name = registration.name;
            if matches.get_flag(&format!("no-collector.{name}")) {
                return false;
            }
            let explicit = matches
                .get_one::<bool>(&format!("collector.{name}"))
                .copied();
            explicit.unwrap_or(registration.enabled_by_default && !disable_defaults)
        })
        .map(|registration| registration.name)
        .collect()
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
pub struct Options {
    /// Address and port to serve HTTP on; ":9400" means every address, as
    /// with node_exporter.
    #[arg(
        long = "web.listen-address",
        env = "SIE_WEB_LISTEN_ADDRESS",
        default_value = "0.0.0.0:8080",
        value_parser = parse_listen_address,
        global = true
    )]
    pub listen_address: SocketAddr,

    /// Path under which metrics are served.
    #[arg(long = "web.telemetry-path", env = "SIE_WEB_TELEMETRY_PATH", default_value = "/metrics", value_parser = parse_telemetry_path)]
    pub telemetry_path: String,

    /// How often the collectors read NVML and the host (e.g. 5s, 500ms, 1m).
    #[arg(long = "collect.interval", env = "SIE_COLLECT_INTERVAL", default_value = "5s", value_parser = parse_interval)]
    pub collect_interval: Duration,

    /// Report not ready while NVML is unavailable or a GPU is lost (for GPU nodes).
    #[arg(long = "require-gpu", env = "SIE_REQUIRE_GPU")]
    pub require_gpu: bool,

    /// Path of the NVML library [default: the dynamic loader finds libnvidia-ml.so.1].
    #[arg(long = "nvml.library", env = "SIE_NVML_LIBRARY")]
    pub nvml_library: Option<PathBuf>,

    /// Host name for host_info, e.g. the Kubernetes node name [default: the kernel's host name].
    #[arg(long = "host.name", env = "SIE_HOST_NAME")]
    pub host_name: Option<String>,

    /// Socket of the kubelet pod-resources API, to label GPUs with the pods
    /// that hold them; attribution is off when it does not exist.
    #[arg(
        long = "kubelet.pod-resources-socket",
        env = "SIE_KUBELET_POD_RESOURCES_SOCKET",
        default_value = crate::collector::pods::DEFAULT_SOCKET
    )]
    pub pod_resources_socket: PathBuf,

    /// Least severe log messages to print.
    #[arg(long = "log.level", env = "SIE_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log line format.
    #[arg(long = "log.format", env = "SIE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The proc filesystem the processes collector reads process names and
    /// cgroups from (the host's needs the host's PID namespace).
    #[arg(long = "path.procfs", env = "SIE_PATH_PROCFS", default_value = "/proc")]
    pub procfs: PathBuf,

    /// Container runtime state directories (comma-separated) where the
    /// processes collector finds the pod of a process's container.
    #[arg(
        long = "path.container-state",
        env = "SIE_PATH_CONTAINER_STATE",
        value_delimiter = ',',
        default_value = crate::collector::containers::DEFAULT_STATE_DIRS
    )]
    pub container_state: Vec<PathBuf>,

    /// Metric names, units and labels to serve: native, or dcgm-exporter's
    /// (DCGM_FI_*, for its dashboards and alerts; see docs/dcgm-compatibility.md).
    #[arg(long = "metrics.format", env = "SIE_METRICS_FORMAT", value_enum, default_value_t = MetricsFormat::Native)]
    pub metrics_format: MetricsFormat,

    /// Run only the collectors enabled explicitly with --collector.<name>.
    #[arg(
        long = "collector.disable-defaults",
        env = "SIE_COLLECTOR_DISABLE_DEFAULTS"
    )]
    pub disable_default_collectors: bool,

    /// Leave out the metrics about the exporter process itself (process_*,
    /// system_info_exporter_http_*, system_info_exporter_web_config_*).
    #[arg(
        long = "web.disable-exporter-metrics",
        env = "SIE_WEB_DISABLE_EXPORTER_METRICS"
    )]
    pub disable_exporter_metrics: bool,

    /// Web configuration file (exporter-toolkit format): TLS, basic auth,
    /// response headers. Re-read when it or a file it names changes.
    #[arg(long = "web.config.file", env = "SIE_WEB_CONFIG_FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Time a client has to send a request's headers (from its first byte, or
    /// from the connection for the first request) and to complete a TLS handshake.
    #[arg(long = "web.read-header-timeout", env = "SIE_WEB_READ_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub read_header_timeout: Duration,

    /// Time a kept-alive connection may wait for its next request; longer
    /// than the scrape interval, so that Prometheus keeps its connection.
    #[arg(long = "web.idle-timeout", env = "SIE_WEB_IDLE_TIMEOUT", default_value = "3m", value_parser = parse_timeout)]
    pub idle_timeout: Duration,

    /// Most open connections; at the limit the oldest connection waiting for
    /// a request is closed to admit a new one. Keep it well below the file
    /// descriptor limit (ulimit -n).
    #[arg(long = "web.max-connections", env = "SIE_WEB_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Most concurrent /metrics requests; more are answered 503 at once. 0: no limit.
    #[arg(
        long = "web.max-requests",
        env = "SIE_WEB_MAX_REQUESTS",
        default_value_t = 40
    )]
    pub max_requests: u32,

    /// Answer /health and /ready without basic auth, for liveness and
    /// readiness probes that cannot send credentials (/metrics still needs them).
    #[arg(long = "web.probes-without-auth", env = "SIE_WEB_PROBES_WITHOUT_AUTH")]
    pub probes_without_auth: bool,

    /// The collectors to run, from the --collector.<name> flags.
    #[arg(skip)]
    pub collectors: Vec<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsFormat {
    Native,
    Dcgm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_interval(value: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(value)
        .map_err(|e| format!("{e}; write a duration such as 5s, 500ms or 1m"))?;
    if interval < Duration::from_millis(100) {
        return Err("must be at least 100ms".to_owned());
    }
    Ok(interval)
}

fn parse_listen_address(value: &str) -> Result<SocketAddr, String> {
    let full = match value.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => value.to_owned(),
    };
    full.parse().map_err(|_| {
        "write an address and port such as 0.0.0.0:8080, [::]:8080 or :8080".to_owned()
    })
}

fn parse_timeout(value: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(value)
        .map_err(|e| format!("{e}; write a duration such as 10s or 3m"))?;
    if timeout < Duration::from_millis(100) {
        return Err("must be at least 100ms".to_owned());
    }
    Ok(timeout)
}

fn parse_telemetry_path(value: &str) -> Result<String, String> {
    match value {
        "/" | "/health" | "/ready" => Err(format!(
            "{value} is taken by another endpoint; pick another path such as /metrics"
        )),
        path if path.starts_with('/') => Ok(path.to_owned()),
        _ => Err("must start with '/', e.g. /metrics".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_consistent() {
        command().debug_assert();
    }

    fn collectors(args: &[&str]) -> Vec<&'static str> {
        let matches = command()
            .try_get_matches_from(std::iter::once("exporter").chain(args.iter().copied()))
            .unwrap();
        let disable = matches.get_flag("disable_default_collectors");
        enabled_collectors(&matches, disable)
    }

    #[test]
    fn collectors_are_selected_like_node_exporter() {
        assert_eq!(collectors(&[]), ["gpu", "host", "pods"]);
        assert_eq!(collectors(&["--no-collector.host"]), ["gpu", "pods"]);
        assert_eq!(
            collectors(&["--collector.disable-defaults", "--collector.host"]),
            ["host"]
        );
        assert_eq!(collectors(&["--collector.gpu=false"]), ["host", "pods"]);
    }

    #[test]
    fn parses_intervals() {
        assert_eq!(parse_interval("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("five").is_err());
    }

    #[test]
    fn parses_listen_addresses_with_or_without_a_host() {
        let address = |s: &str| parse_listen_address(s).map(|a| a.to_string());
        assert_eq!(address(":9400").as_deref(), Ok("0.0.0.0:9400"));
        assert_eq!(address("127.0.0.1:80").as_deref(), Ok("127.0.0.1:80"));
        assert_eq!(address("[::]:8080").as_deref(), Ok("[::]:8080"));
        assert!(address("localhost").is_err());
        assert!(address(":http").is_err());
    }

    #[test]
    fn rejects_clashing_telemetry_paths() {
        assert!(parse_telemetry_path("/health").is_err());
        assert!(parse_telemetry_path("metrics").is_err());
        assert_eq!(parse_telemetry_path("/prom").as_deref(), Ok("/prom"));
    }
}
