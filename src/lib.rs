//! system-info-exporter: NVIDIA GPU metrics (NVML) and host statistics for
//! Prometheus. The binary in `main.rs` only parses flags and calls [`app::run`];
//! the library exists so that benchmarks and tests can drive the collectors
//! and the renderer directly.

pub mod app;
pub mod catalogue;
pub mod cli;
pub mod collector;
pub mod compress;
pub mod dcgm;
pub mod exposition;
pub mod health;
pub mod healthcheck;
pub mod process;
pub mod render;
pub mod server;
pub mod snapshot;
pub mod units;
pub mod web;
