//! `cargo bench`: a scrape (the `/metrics` body) with 1, 8 and 64 GPUs plus
//! the host, the encoding of one collection's samples, and one full
//! collection of each collector (the GPU one against the NVML test double).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use system_info_exporter::testing::{Collection, Collector, Scrape};

fn gpu_collector(gpus: usize) -> Collector {
    let config =
        common::DoubleConfig::new(&format!("bench-{gpus}"), &format!("gpu_count = {gpus}\n"));
    // SAFETY: set before any thread of this benchmark reads the environment.
    unsafe { std::env::set_var("NVML_DOUBLE_CONFIG", &config.path) };
    Collector::gpu(&common::nvml_double(common::Driver::Current))
}

/// One collection, read through the collector.
fn collect(collector: &mut Collector) -> Collection {
    collector.collect().expect("the source did not answer")
}

fn rendering(c: &mut Criterion) {
    for gpus in [1, 8, 64] {
        let gpu = collect(&mut gpu_collector(gpus));
        let host = collect(&mut Collector::host());
        c.bench_with_input(
            BenchmarkId::new("encode_gpu_and_host", gpus),
            &gpus,
            |b, _| b.iter(|| black_box((gpu.encode(), host.encode()))),
        );
        let scrape = Scrape::new(vec![("gpu", gpu), ("host", host)]);
        c.bench_with_input(BenchmarkId::new("scrape", gpus), &gpus, |b, _| {
            b.iter(|| black_box(scrape.body(false)))
        });
    }
}

fn collection(c: &mut Criterion) {
    let mut gpu = gpu_collector(8);
    c.bench_function("collect_gpu_8_test_double", |b| {
        b.iter(|| black_box(collect(&mut gpu)))
    });
    let mut host = Collector::host();
    c.bench_function("collect_host", |b| b.iter(|| black_box(collect(&mut host))));
}

criterion_group!(benches, rendering, collection);
criterion_main!(benches);
