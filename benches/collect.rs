//! `cargo bench`: a scrape (the `/metrics` body) with 1, 8 and 64 GPUs plus
//! the host, the encoding of one collection's samples, and one full
//! collection of each collector (the GPU one against the NVML test double).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use system_info_exporter::collector::gpu::GpuCollector;
use system_info_exporter::collector::host::HostCollector;
use system_info_exporter::collector::{Collector, Latest, Shared, Slot};
use system_info_exporter::exposition::Samples;
use system_info_exporter::process::ProcessMetrics;
use system_info_exporter::render::{BuildInfo, ExporterMetrics, scrape};
use system_info_exporter::snapshot::{Outcome, Published};
use system_info_exporter::web::stats::HttpStats;

fn gpu_collector(gpus: usize) -> GpuCollector {
    let config =
        common::DoubleConfig::new(&format!("bench-{gpus}"), &format!("gpu_count = {gpus}\n"));
    // SAFETY: set before any thread of this benchmark reads the environment.
    unsafe { std::env::set_var("NVML_DOUBLE_CONFIG", &config.path) };
    let library = common::nvml_double(common::Driver::Current);
    GpuCollector::new(
        Some(library.into()),
        Duration::from_secs(1),
        Arc::new(Shared::default()),
    )
}

/// One collection's samples, read through the collector.
fn collect(collector: &mut dyn Collector) -> Samples {
    let mut samples = Samples::default();
    assert!(collector.collect(&mut samples), "the source did not answer");
    samples
}

fn slot(name: &'static str, samples: &Samples) -> Slot {
    let latest = Arc::new(Latest::default());
    let outcome = Outcome {
        success: true,
        duration: Duration::from_millis(1),
        finished_at: SystemTime::now(),
        last_success: Some(SystemTime::now()),
    };
    let mut compress = system_info_exporter::compress::best();
    latest.set(Published::new(outcome, samples.encode(), &mut compress));
    Slot { name, latest }
}

fn rendering(c: &mut Criterion) {
    let process = ProcessMetrics::new();
    let host = collect(&mut HostCollector::new(None).unwrap());
    for gpus in [1, 8, 64] {
        let gpu = collect(&mut gpu_collector(gpus));
        c.bench_with_input(
            BenchmarkId::new("encode_gpu_and_host", gpus),
            &gpus,
            |b, _| b.iter(|| black_box((gpu.encode(), host.encode()))),
        );
        let slots = [slot("gpu", &gpu), slot("host", &host)];
        c.bench_with_input(BenchmarkId::new("scrape", gpus), &gpus, |b, _| {
            let slots: Vec<&Slot> = slots.iter().collect();
            let http = HttpStats::default();
            let exporter = ExporterMetrics {
                process: &process,
                http: &http,
            };
            b.iter(|| black_box(scrape(&slots, Some(&exporter), &BuildInfo::CURRENT, false)))
        });
    }
}

fn collection(c: &mut Criterion) {
    let mut gpu = gpu_collector(8);
    c.bench_function("collect_gpu_8_test_double", |b| {
        b.iter(|| black_box(collect(&mut gpu)))
    });
    let mut host = HostCollector::new(None).unwrap();
    c.bench_function("collect_host", |b| b.iter(|| black_box(collect(&mut host))));
}

criterion_group!(benches, rendering, collection);
criterion_main!(benches);
