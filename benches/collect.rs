//! `cargo bench`: a scrape (the `/metrics` body) and the per-collection
//! rendering for 1, 8 and 64 GPUs plus the host, and one full collection of
//! each collector (the GPU one against the NVML test double).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use prometheus::process_collector::ProcessCollector;
use system_info_exporter::collector::Collector;
use system_info_exporter::collector::gpu::GpuCollector;
use system_info_exporter::collector::host::HostCollector;
use system_info_exporter::render::{BuildInfo, Snapshots, prepare, scrape};
use system_info_exporter::snapshot::{Collected, GpuSnapshot, HostSnapshot, Outcome};

fn collected<T>(data: T) -> Collected<T> {
    let outcome = Outcome {
        success: true,
        duration: Duration::from_millis(1),
        finished_at: SystemTime::now(),
        last_success: Some(SystemTime::now()),
    };
    Collected { data, outcome }
}

/// Real snapshots, read through the collectors from the test double and this host.
fn snapshots(gpus: usize) -> (Collected<GpuSnapshot>, Collected<HostSnapshot>) {
    let config =
        common::DoubleConfig::new(&format!("bench-{gpus}"), &format!("gpu_count = {gpus}\n"));
    // SAFETY: set before any thread of this benchmark reads the environment.
    unsafe { std::env::set_var("NVML_DOUBLE_CONFIG", &config.path) };
    let library = common::nvml_double(common::Driver::Current);
    let mut gpu = GpuCollector::new(Some(library.into()), Duration::from_secs(1));
    let (gpu_snapshot, ok) = gpu.collect();
    assert!(
        ok && gpu_snapshot.gpus.len() == gpus,
        "the test double did not answer"
    );
    let mut host = HostCollector::new(None).unwrap();
    (collected(gpu_snapshot), collected(host.collect().0))
}

fn rendering(c: &mut Criterion) {
    let process = ProcessCollector::for_self();
    for gpus in [1, 8, 64] {
        let (gpu, host) = snapshots(gpus);
        c.bench_with_input(
            BenchmarkId::new("prepare_gpu_and_host", gpus),
            &gpus,
            |b, _| {
                b.iter_batched(
                    || (gpu.clone(), host.clone()),
                    |(gpu, host)| black_box((prepare(gpu), prepare(host))),
                    BatchSize::SmallInput,
                )
            },
        );
        let (gpu, host) = (prepare(gpu), prepare(host));
        c.bench_with_input(BenchmarkId::new("scrape", gpus), &gpus, |b, _| {
            let snapshots = Snapshots {
                gpu: Some(&gpu),
                host: Some(&host),
                pods: None,
            };
            b.iter(|| black_box(scrape(snapshots, &process, &BuildInfo::CURRENT)))
        });
    }
}

fn collection(c: &mut Criterion) {
    let config = common::DoubleConfig::new("bench-collect", "gpu_count = 8\n");
    // SAFETY: set before any thread of this benchmark reads the environment.
    unsafe { std::env::set_var("NVML_DOUBLE_CONFIG", &config.path) };
    let library = common::nvml_double(common::Driver::Current);
    let mut gpu = GpuCollector::new(Some(library.into()), Duration::from_secs(1));
    c.bench_function("collect_gpu_8_test_double", |b| {
        b.iter(|| black_box(gpu.collect()))
    });
    let mut host = HostCollector::new(None).unwrap();
    c.bench_function("collect_host", |b| b.iter(|| black_box(host.collect())));
}

criterion_group!(benches, rendering, collection);
criterion_main!(benches);
