//! The whole GPU exposition of a fixed set of GPUs, read from the NVML test
//! double, compared with `tests/golden/gpus.prom`: any change of a metric's
//! name, labels, unit, type or help text fails here. After an intended change,
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the file; review its diff.

mod common;

use system_info_exporter::testing::Collector;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/gpus.prom");

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

#[test]
fn gpu_exposition_matches_the_golden_file() {
    let config = common::DoubleConfig::new("golden", GPUS);
    // SAFETY: the only test of this binary; no other thread reads the environment.
    unsafe { std::env::set_var("NVML_DOUBLE_CONFIG", &config.path) };
    let library = common::nvml_double(common::Driver::Current);
    let mut gpu = Collector::gpu(&library);
    gpu.collect().expect("the first collection reads the GPUs");
    config.write(&format!("{GPUS}gpu.1.fail = GPU_IS_LOST\n"));
    let collection = gpu.collect().expect("a lost GPU fails only itself");
    // The event thread's calls depend on timing; everything else is fixed.
    let text: String = collection
        .encode()
        .lines()
        .filter(|line| !line.contains("phase=\"events\""))
        .map(|line| format!("{line}\n"))
        .collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &text).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN).expect("run with UPDATE_GOLDEN=1 to create it");
    assert!(
        text == golden,
        "the exposition differs from tests/golden/gpus.prom (UPDATE_GOLDEN=1 rewrites it):\n{text}"
    );
}
