//! The composition root: flags into each part's configuration, the output
//! format, the collectors and their loops, and the HTTP server, until
//! SIGTERM or SIGINT.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::level_filters::LevelFilter;
use tracing::{info, warn};

use crate::collector::{self, COLLECTORS, Shared, Wanted};
use crate::config::{self, Command, LogFormat, LogLevel, MetricsFormat, Options};
use crate::http::stats::HttpStats;
use crate::http::web_config::Web;
use crate::http::{self, AppState};
use crate::publish::{Format, Native, collection_loop, dcgm};
use crate::selfmetrics::BuildInfo;
use crate::selfmetrics::process::ProcessMetrics;
use crate::{allocator, healthcheck, record};

/// How long shutdown waits for a collector that is inside a driver call.
const COLLECTOR_STOP_GRACE: Duration = Duration::from_secs(5);

/// Why the exporter stopped with an error.
#[derive(Debug)]
enum Failure {
    /// An invalid configuration file: exit code 2, like an invalid flag.
    Config(String),
    /// Something failed to start or run.
    Runtime(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Runtime(message)
    }
}

/// The program: parses the command line, then runs the exporter or a
/// subcommand.
pub fn main() -> ExitCode {
    let parsed = config::parse();
    match parsed.cli.command {
        Some(Command::Healthcheck { url }) => return healthcheck::main(url),
        Some(Command::RecordNvml {
            out,
            keep_identifiers,
        }) => {
            let library = parsed.cli.options.nvml_library;
            return record::main(library, out, keep_identifiers);
        }
        None => {}
    }
    let options = parsed.cli.options;
    init_logging(options.log_level, options.log_format);
    match run(options, parsed.collectors) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(message)) => {
            tracing::error!("{message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// What `--metrics.format`, `--dcgm.counters` and the metric filters ask
/// the output for.
struct Output {
    format: Arc<dyn Format>,
    /// The native metrics the output serves, for the collectors.
    wanted: Wanted,
    /// The fields of the `--dcgm.counters` file it skips (for `/health`).
    dcgm_skipped_fields: Vec<String>,
}

fn output(options: &Options) -> Result<Output, Failure> {
    let filter = options.metric_filter();
    let mut counters = match (options.metrics_format, &options.dcgm_counters) {
        (MetricsFormat::Native, path) => {
            if path.is_some() {
                warn!("--dcgm.counters has no effect without --metrics.format=dcgm");
            }
            let native = Native(filter);
            return Ok(Output {
                wanted: native.wanted(),
                format: Arc::new(native),
                dcgm_skipped_fields: Vec::new(),
            });
        }
        (MetricsFormat::Dcgm, None) => dcgm::counters::Counters::default(),
        (MetricsFormat::Dcgm, Some(path)) => dcgm::counters::read(path).map_err(Failure::Config)?,
    };
    counters
        .fields
        .retain(|served| filter.keeps(served.field.name));
    let dcgm_skipped_fields = counters.skipped.iter().map(|n| n.field.clone()).collect();
    // Hostname as in host_info: --host.name, else the kernel's.
    let hostname = collector::host::hostname(options.host_name.clone());
    let view = dcgm::View::new(hostname, counters);
    Ok(Output {
        wanted: view.wanted(),
        format: Arc::new(view),
        dcgm_skipped_fields,
    })
}

/// Runs the exporter until SIGTERM or SIGINT. The error says what failed to start.
fn run(options: Options, enabled: Vec<&'static str>) -> Result<(), Failure> {
    allocator::limit_malloc_arenas();
    let http = Arc::new(HttpStats::default());
    let web = match &options.web_config_file {
        Some(path) => Web::load(path, http.clone()).map_err(Failure::Config)?,
        None => Web::plain(http.clone()),
    };
    let web = Arc::new(web);
    let output = output(&options)?;
    let tls = web.current().tls.is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let listener = {
        let _runtime = runtime.enter();
        http::bind(&options.listen_address)?
    };
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;

    let interval = options.collect_interval;
    let shared = Arc::new(Shared::default());
    if enabled.is_empty() {
        warn!(
            "no collector runs (--collector.disable-defaults without any --collector.<name>); /metrics serves the exporter's own metrics only"
        );
    }
    let config = options.collectors(enabled, output.wanted);
    let collectors = collector::start(&config, &shared)?;
    let running_collectors: Vec<&str> = collectors.iter().map(|(name, _)| *name).collect();
    let (slots, running) = collection_loop::start(collectors, interval, output.format)?;

    let state = Arc::new(AppState {
        slots,
        known_collectors: COLLECTORS.iter().map(|r| r.name).collect(),
        gpu: shared.gpu.clone(),
        dra: shared.dra.clone(),
        process: ProcessMetrics::new(),
        interval,
        require_gpu: options.require_gpu,
        disable_exporter_metrics: options.disable_exporter_metrics,
        started: SystemTime::now(),
        telemetry_path: options.telemetry_path.clone(),
        http,
        dcgm_skipped_fields: output.dcgm_skipped_fields,
        metric_filter: options.metric_filter(),
    });
    web.watch()
        .map_err(|e| format!("cannot start watching the web config file: {e}"))?;
    let basic_auth = web.current().users.is_some();
    let build = BuildInfo::CURRENT;
    info!(
        %address,
        telemetry_path = %options.telemetry_path,
        ?interval,
        collectors = ?running_collectors,
        tls,
        basic_auth,
        version = build.version,
        revision = build.revision,
        "serving metrics"
    );
    let served = runtime.block_on(http::serve(
        listener,
        state,
        web,
        options.server(),
        shutdown_signal(),
    ));
    runtime.shutdown_timeout(Duration::from_secs(1));

    for collector_loop in running {
        if !collector_loop.stop(COLLECTOR_STOP_GRACE) {
            warn!("a collector did not stop in time (hung driver call?); exiting without it");
        }
    }
    served.map_err(|e| Failure::Runtime(format!("HTTP server failed: {e}")))?;
    info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the exporter");
            let _ = interrupt.await;
            return;
        }
    };
    tokio::select! {
        _ = interrupt => info!("SIGINT received, shutting down"),
        _ = terminate.recv() => info!("SIGTERM received, shutting down"),
    }
}
