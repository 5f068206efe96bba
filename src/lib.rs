//! system-info-exporter: NVIDIA GPU metrics (NVML) and host statistics for
//! Prometheus. `docs/architecture.md` shows the layers; from the bottom:
//! `metrics` (the catalogue and the text format), `collector` (the sources),
//! `publish` (collections into prepared bytes, in the chosen format), `http`
//! (serving them), and `app`, which wires them from the flags of `config`.
//! Only [`main`] and the [`testing`] surface are public.

mod allocator;
mod app;
mod collector;
mod config;
mod healthcheck;
mod http;
mod metrics;
mod publish;
mod record;
mod selfmetrics;
pub mod testing;
mod units;

pub use app::main;
