mod app;
mod cli;
mod collector;
mod health;
mod healthcheck;
mod render;
mod server;
mod snapshot;
mod units;

use std::process::ExitCode;

use clap::Parser;
use tracing::level_filters::LevelFilter;

use cli::{Cli, Command, LogFormat, LogLevel};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { url }) = cli.command {
        let url = url.unwrap_or_else(|| healthcheck::default_url(cli.options.listen_address));
        return healthcheck::run(&url);
    }
    init_logging(cli.options.log_level, cli.options.log_format);
    app::run(cli.options)
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
