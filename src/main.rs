use std::process::ExitCode;

use tracing::level_filters::LevelFilter;

use system_info_exporter::cli::{Cli, Command, LogFormat, LogLevel};
use system_info_exporter::{app, healthcheck};

fn main() -> ExitCode {
    let cli = Cli::parse_with_collectors();
    if let Some(Command::Healthcheck { url }) = cli.command {
        return healthcheck::main(url);
    }
    init_logging(cli.options.log_level, cli.options.log_format);
    match app::run(cli.options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(app::Failure::Config(message)) => {
            tracing::error!("{message}");
            ExitCode::from(2)
        }
        Err(app::Failure::Runtime(message)) => {
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
