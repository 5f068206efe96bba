//! The whole GPU exposition of a fixed set of GPUs, read from the NVML test
//! double, compared with `tests/golden/gpus.prom`: any change of a metric's
//! name, labels, unit, type or help text fails here. After an intended change,
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the file; review its diff.
//! The NVLink families per link (`--collector.gpu.nvlink=links`) have their
//! own file, `tests/golden/gpus-nvlink-links.prom`.

mod common;

use system_info_exporter::testing::Collector;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/gpus.prom");
/// The NVLink families of the same GPUs with `--collector.gpu.nvlink=links`.
const GOLDEN_LINKS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/gpus-nvlink-links.prom"
);

/// GPU 0 has NVLink, memory errors and throttling; GPU 1 is lost after its
/// identity was read; GPU 2 lacks many readings and all events.
const GPUS: &str = "
gpu_count = 3
gpu.0.nvlinks = 2
gpu.0.nvlink_state.1 = 0
gpu.0.nvlink_replay.0 = 2
gpu.0.ecc_sbe_volatile = 3
gpu.0.remapped_cor = 1
gpu.0.clock_event_reasons = 0x24
gpu.0.violation.0 = 1500000000
gpu.0.recovery_action = 1
gpu.2.name = Tesla V100-SXM2-16GB
gpu.2.unsupported = memory_temperature recovery_action remapped_cor remapped_unc remap_pending remap_failure fans pcie events
gpu.2.supported_clock_event_reasons = 0x1f
";

/// Two collections of `gpu` (GPU 1 is lost in the second), as text.
fn exposition(config: &common::DoubleConfig, mut gpu: Collector) -> String {
    config.write(GPUS);
    gpu.collect().expect("the first collection reads the GPUs");
    config.write(&format!("{GPUS}gpu.1.fail = GPU_IS_LOST\n"));
    let collection = gpu.collect().expect("a lost GPU fails only itself");
    // The event thread's calls depend on timing; everything else is fixed.
    collection
        .encode()
        .lines()
        .filter(|line| !line.contains("phase=\"events\""))
        .map(|line| format!("{line}\n"))
        .collect()
}

fn compare(text: &str, golden: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, text).unwrap();
    }
    let expected = std::fs::read_to_string(golden).expect("run with UPDATE_GOLDEN=1 to create it");
    assert!(
        text == expected,
        "the exposition differs from {golden} (UPDATE_GOLDEN=1 rewrites it):\n{text}"
    );
}

/// Whether a line belongs to one of the NVLink link families, which
/// `--collector.gpu.nvlink` chooses (GPM's traffic counters aside).
fn is_link_family(line: &str) -> bool {
    [
        "nvidia_gpu_nvlinks",
        "nvidia_gpu_nvlink_up",
        "nvidia_gpu_nvlink_errors_total",
    ]
    .iter()
    .any(|name| {
        let line = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line);
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(['{', ' ']))
    })
}

/// One test: both collectors read the environment variable set here.
#[test]
fn gpu_exposition_matches_the_golden_files() {
    let config = common::DoubleConfig::new("golden", GPUS);
    // SAFETY: the only test of this binary; no other thread reads the environment.
    unsafe { std::env::set_var("NVML_DOUBLE_CONFIG", &config.path) };
    let library = common::nvml_double(common::Driver::Current);
    let default = exposition(&config, Collector::gpu(&library));
    compare(&default, GOLDEN);

    // Per link: the NVLink families differ, nothing else does.
    let links = exposition(&config, Collector::gpu_with_nvlink_links(&library));
    let without_links = |text: &str| -> String {
        let lines = text.lines().filter(|line| !is_link_family(line));
        lines.map(|line| format!("{line}\n")).collect()
    };
    assert_eq!(without_links(&links), without_links(&default));
    let link_families: String = links
        .lines()
        .filter(|line| is_link_family(line))
        .map(|line| format!("{line}\n"))
        .collect();
    compare(&link_families, GOLDEN_LINKS);
}
