//! Slurm job attribution end to end: dcgm-exporter's HPC job mapping
//! directory (collector `hpc`) in the native and the dcgm format, the
//! problems it logs once, and the `hpc_job` of GPU processes from their
//! Slurm cgroups, from the real binary on the NVML test double. The prolog
//! and epilog of `deploy/slurm/` and the documented join are in
//! `tests/slurm_deploy.rs`.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{DoubleConfig, Driver, Exporter, Scrape, start_on_double};

const UUID0: &str = "GPU-00000000-0000-4000-8000-000000000000";
const UUID1: &str = "GPU-00000000-0000-4000-8000-000000000001";

/// An empty directory for `test`.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("slurm")
        .join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn mapping_flag(dir: &Path) -> String {
    format!("--collector.hpc.job-mapping-dir={}", dir.display())
}

/// `nvidia_gpu_job_info` as (gpu, uuid, gpu_instance_id, hpc_job).
fn jobs(s: &Scrape) -> BTreeSet<(String, String, String, String)> {
    s.find("nvidia_gpu_job_info", &[])
        .into_iter()
        .map(|sample| {
            assert_eq!(sample.value, 1.0);
            assert_eq!(sample.labels.len(), 4, "{:?}", sample.labels);
            let label = |name: &str| sample.labels[name].clone();
            (
                label("gpu"),
                label("uuid"),
                label("gpu_instance_id"),
                label("hpc_job"),
            )
        })
        .collect()
}

fn job(gpu: &str, uuid: &str, gpu_instance: &str, job: &str) -> (String, String, String, String) {
    (gpu.into(), uuid.into(), gpu_instance.into(), job.into())
}

/// The exporter's log lines that are warnings and contain `text`.
fn warnings(exporter: &Exporter, text: &str) -> usize {
    exporter
        .log()
        .lines()
        .filter(|line| line.contains("WARN") && line.contains(text))
        .count()
}

/// Lets several collections (of 200 ms) pass, for what must happen only once.
fn some_collections() {
    std::thread::sleep(Duration::from_millis(1200));
}

#[test]
fn each_job_of_the_mapping_files_is_a_series_and_labels_the_dcgm_fields() {
    let dir = scratch("done-when");
    fs::write(dir.join("0"), "1234").unwrap();
    fs::write(dir.join("1"), "1234\n1235\n").unwrap();
    let config = DoubleConfig::new("slurm-done-when", "gpu_count = 2\n");
    let native = start_on_double(Driver::Current, &config, &[&mapping_flag(&dir)]);
    let s = native.scrape_until("three jobs", |s| {
        s.find("nvidia_gpu_job_info", &[]).len() == 3
    });
    assert_eq!(
        jobs(&s),
        BTreeSet::from([
            job("0", UUID0, "", "1234"),
            job("1", UUID1, "", "1234"),
            job("1", UUID1, "", "1235"),
        ])
    );
    assert_eq!(
        s.value(
            "system_info_exporter_collect_success",
            &[("collector", "hpc")]
        ),
        Some(1.0)
    );

    let dcgm = start_on_double(
        Driver::Current,
        &config,
        &[
            &mapping_flag(&dir),
            "--metrics.format=dcgm",
            "--host.name=node-7",
        ],
    );
    let s = dcgm.scrape_until("the fields with their jobs", |s| {
        s.find("DCGM_FI_DEV_GPU_TEMP", &[("gpu", "1")]).len() == 2
            && s.find("DCGM_FI_DEV_GPU_TEMP", &[("gpu", "0"), ("hpc_job", "1234")])
                .len()
                == 1
    });
    // dcgm-exporter's order: hpc_job among the attributes, after the labels.
    let line = s
        .text
        .lines()
        .find(|l| l.starts_with("DCGM_FI_DEV_GPU_TEMP{gpu=\"1\"") && l.contains("1235"))
        .unwrap();
    assert_eq!(
        line,
        format!(
            "DCGM_FI_DEV_GPU_TEMP{{gpu=\"1\",UUID=\"{UUID1}\",pci_bus_id=\"00000000:11:00.0\",\
             device=\"nvidia1\",modelName=\"NVIDIA A100-SXM4-80GB\",Hostname=\"node-7\",\
             DCGM_FI_DRIVER_VERSION=\"550.54.15\",hpc_job=\"1235\"}} 41"
        )
    );
    // Every field: GPU 0's series once, with its job; GPU 1's once per job.
    let fields: BTreeSet<&str> = s
        .samples
        .iter()
        .filter(|sample| sample.name.starts_with("DCGM_FI_"))
        .map(|sample| sample.name.as_str())
        .collect();
    assert!(fields.len() >= 15, "{fields:?}");
    for field in fields {
        let jobs_of = |gpu: &str| -> Vec<String> {
            let mut jobs: Vec<String> = s
                .find(field, &[("gpu", gpu)])
                .iter()
                .map(|sample| sample.labels.get("hpc_job").cloned().unwrap_or_default())
                .collect();
            jobs.sort();
            jobs
        };
        assert_eq!(jobs_of("0"), ["1234"], "{field} of GPU 0");
        assert_eq!(jobs_of("1"), ["1234", "1235"], "{field} of GPU 1");
        // The copies are the same series but for hpc_job.
        let values: Vec<f64> = s
            .find(field, &[("gpu", "1")])
            .iter()
            .map(|s| s.value)
            .collect();
        assert_eq!(values[0], values[1], "{field}");
    }
    // The job series is native only, as nvidia_gpu_allocation_info.
    assert!(!s.has("nvidia_gpu_job_info"));
}

/// GPU 0 is in MIG mode with GPU instance 3.
const MIG: &str = "gpu_count = 2
gpu.0.mig = 1
gpu.0.mig_slots = 7
gpu.0.mig_device.0 = MIG-aaaaaaaa-0000-5000-8000-000000000001 gi=3 ci=0 profile=3g.40gb memory_total=42949672960 memory_used=10737418240
";

#[test]
fn gpu_instances_bad_entries_and_emptied_files() {
    let dir = scratch("entries");
    fs::write(dir.join("0"), "1234\n").unwrap();
    fs::write(dir.join("0.3"), "77\n").unwrap();
    fs::write(dir.join("gpu0"), "1234\n").unwrap();
    // A GPU this node does not have.
    fs::write(dir.join("5"), "1234\n").unwrap();
    // A file it cannot read: a link to nothing (root reads any mode).
    std::os::unix::fs::symlink(dir.join("absent"), dir.join("1")).unwrap();
    // A prolog's partial file, about to be renamed: skipped without a word.
    fs::write(dir.join(".1.4242"), "55\n").unwrap();
    let config = DoubleConfig::new("slurm-entries", MIG);
    let native = start_on_double(Driver::Current, &config, &[&mapping_flag(&dir)]);
    let dcgm = start_on_double(
        Driver::Current,
        &config,
        &[&mapping_flag(&dir), "--metrics.format=dcgm"],
    );
    let s = native.scrape_until("two jobs", |s| {
        s.find("nvidia_gpu_job_info", &[]).len() == 2
    });
    assert_eq!(
        jobs(&s),
        BTreeSet::from([job("0", UUID0, "", "1234"), job("0", UUID0, "3", "77")])
    );
    // A directory with bad entries is still a successful collection.
    assert_eq!(
        s.value(
            "system_info_exporter_collect_success",
            &[("collector", "hpc")]
        ),
        Some(1.0)
    );

    // The dcgm view: the GPU instance's series carry its own job.
    let s = dcgm.scrape_until("the instance's job", |s| {
        !s.find(
            "DCGM_FI_DEV_FB_USED",
            &[("GPU_I_ID", "3"), ("hpc_job", "77")],
        )
        .is_empty()
    });
    let whole: Vec<_> = s
        .find("DCGM_FI_DEV_FB_USED", &[("gpu", "0")])
        .into_iter()
        .filter(|sample| !sample.labels.contains_key("GPU_I_ID"))
        .collect();
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].labels["hpc_job"], "1234");
    let instance = s.find("DCGM_FI_DEV_FB_USED", &[("GPU_I_ID", "3")]);
    assert_eq!((instance.len(), instance[0].value), (1, 10240.0));
    let gpu1 = s.find("DCGM_FI_DEV_FB_USED", &[("gpu", "1")]);
    assert!(!gpu1[0].labels.contains_key("hpc_job"), "{:?}", gpu1[0]);

    // Each bad entry is warned about once, with its path, however many
    // collections meet it.
    some_collections();
    for exporter in [&native, &dcgm] {
        let name = dir.join("gpu0").display().to_string();
        assert_eq!(
            warnings(exporter, &format!("{name} is skipped")),
            1,
            "{}",
            exporter.log()
        );
        let unreadable = format!(
            "cannot read the job mapping file {}",
            dir.join("1").display()
        );
        assert_eq!(warnings(exporter, &unreadable), 1, "{}", exporter.log());
        assert_eq!(warnings(exporter, ".1.4242"), 0, "{}", exporter.log());
        let absent = format!(
            "{} names GPU 5, which NVML does not list",
            dir.join("5").display()
        );
        assert_eq!(warnings(exporter, &absent), 1, "{}", exporter.log());
    }

    // A file emptied between collections: its series go, the others stay.
    fs::write(dir.join("0"), "").unwrap();
    let s = native.scrape_until("GPU 0's job gone", |s| {
        s.find("nvidia_gpu_job_info", &[]).len() == 1
    });
    assert_eq!(jobs(&s), BTreeSet::from([job("0", UUID0, "3", "77")]));
    let s = dcgm.scrape_until("GPU 0's series without a job", |s| {
        s.find("DCGM_FI_DEV_FB_USED", &[("gpu", "0")])
            .iter()
            .any(|sample| {
                !sample.labels.contains_key("GPU_I_ID") && !sample.labels.contains_key("hpc_job")
            })
    });
    assert_eq!(
        s.find("DCGM_FI_DEV_FB_USED", &[("hpc_job", "1234")]).len(),
        0
    );
    // Removed: gone too. A fixed entry is said once to be fine again.
    fs::remove_file(dir.join("0.3")).unwrap();
    fs::remove_file(dir.join("gpu0")).unwrap();
    native.scrape_until("no job", |s| !s.has("nvidia_gpu_job_info"));
    some_collections();
    let fine_again = format!("{} is read again, or gone", dir.join("gpu0").display());
    assert_eq!(
        native.log().matches(&fine_again).count(),
        1,
        "{}",
        native.log()
    );
}

#[test]
fn a_missing_directory_is_warned_once_and_read_once_it_exists() {
    let dir = scratch("missing").join("jobs");
    let config = DoubleConfig::new("slurm-missing", "gpu_count = 2\n");
    let exporter = start_on_double(Driver::Current, &config, &[&mapping_flag(&dir)]);
    let failing = |s: &Scrape| {
        s.value(
            "system_info_exporter_collect_success",
            &[("collector", "hpc")],
        ) == Some(0.0)
    };
    exporter.scrape_until("a failed collection", failing);
    some_collections();
    let s = exporter.scrape();
    assert!(failing(&s));
    assert!(
        s.value(
            "system_info_exporter_collector_errors_total",
            &[("collector", "hpc")]
        )
        .is_some_and(|errors| errors >= 3.0)
    );
    let missing = format!("{} does not exist", dir.display());
    assert_eq!(warnings(&exporter, &missing), 1, "{}", exporter.log());
    assert!(!s.has("nvidia_gpu_job_info"));

    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("1"), "99\n").unwrap();
    let s = exporter.scrape_until("the job", |s| s.has("nvidia_gpu_job_info"));
    assert_eq!(jobs(&s), BTreeSet::from([job("1", UUID1, "", "99")]));
    exporter.scrape_until("a successful collection", |s| !failing(s));
    assert!(
        exporter
            .log()
            .contains("the hpc collector reads its source again")
    );
}

#[test]
fn the_collector_runs_only_with_a_directory_and_not_when_turned_off() {
    let dir = scratch("off");
    fs::write(dir.join("0"), "1\n").unwrap();
    let config = DoubleConfig::new("slurm-off", "");
    let hpc = |s: &Scrape| {
        !s.find(
            "system_info_exporter_collect_success",
            &[("collector", "hpc")],
        )
        .is_empty()
    };
    let without = start_on_double(Driver::Current, &config, &[]);
    let s = without.scrape_until("the GPUs", |s| s.has("nvidia_gpu_up"));
    assert!(!hpc(&s) && !s.has("nvidia_gpu_job_info"));
    let off = start_on_double(
        Driver::Current,
        &config,
        &[&mapping_flag(&dir), "--no-collector.hpc"],
    );
    let s = off.scrape_until("the GPUs", |s| s.has("nvidia_gpu_up"));
    some_collections();
    assert!(!hpc(&s) && !off.scrape().has("nvidia_gpu_job_info"));
    // The variable does what the flag does.
    let mut args = common::double_args(Driver::Current);
    args.push("--collector.disable-defaults".into());
    args.push("--collector.gpu".into());
    args.push("--collector.hpc".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir_text = dir.display().to_string();
    let env = Exporter::start_with_env(
        &args,
        Some(&config),
        &[("SIE_COLLECTOR_HPC_JOB_MAPPING_DIR", dir_text.as_str())],
    );
    let s = env.scrape_until("the job", |s| s.has("nvidia_gpu_job_info"));
    assert_eq!(jobs(&s), BTreeSet::from([job("0", UUID0, "", "1")]));
    // Without the gpu collector there are no UUIDs to attribute: said at start.
    let alone = start_on_double(
        Driver::Current,
        &config,
        &[
            "--collector.disable-defaults",
            "--collector.hpc",
            &mapping_flag(&dir),
        ],
    );
    some_collections();
    assert!(!alone.scrape().has("nvidia_gpu_job_info"));
    assert_eq!(
        warnings(&alone, "gpu collector, which is not running"),
        1,
        "{}",
        alone.log()
    );
}

/// A `/proc/<pid>` with a command name and a cgroup file.
fn fake_process(procfs: &Path, pid: u32, comm: &str, cgroup: &str) {
    let dir = procfs.join(pid.to_string());
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
    fs::write(dir.join("cgroup"), cgroup).unwrap();
}

#[test]
fn gpu_processes_carry_the_job_of_their_slurm_cgroup() {
    let procfs = scratch("processes").join("proc");
    // cgroup v2 (Slurm up to 25.11, or CgroupJobIdPaths=yes), cgroup v1, a
    // v2 job directory named by SLUID (26.05), and a process outside Slurm.
    fake_process(
        &procfs,
        100,
        "python3",
        "0::/system.slice/slurmstepd.scope/job_840392/step_0/user/task_0\n",
    );
    fake_process(
        &procfs,
        200,
        "lmp",
        "12:pids:/user.slice\n10:memory:/slurm/uid_1000/job_31/step_0/task_0\n5:devices:/slurm/uid_1000/job_31/step_0\n",
    );
    fake_process(
        &procfs,
        300,
        "torchrun",
        "0::/system.slice/slurmstepd.scope/s5K1KKYAYG5D00/step_0/user/task_0\n",
    );
    fake_process(
        &procfs,
        301,
        "torchrun",
        "0::/system.slice/slurmstepd.scope/s5K1KKYAYG5D01/step_0/user/task_0\n",
    );
    fake_process(&procfs, 400, "Xorg", "0::/system.slice/display.service\n");
    let config = DoubleConfig::new(
        "slurm-processes",
        "gpu_count = 2
process.0 = gpu=0 pid=100 type=compute memory=1048576 sm=40
process.1 = gpu=1 pid=200 type=compute memory=2097152
process.2 = gpu=1 pid=300 type=compute memory=3145728
process.3 = gpu=1 pid=301 type=compute memory=3145728
process.4 = gpu=0 pid=400 type=graphics memory=4194304
",
    );
    let exporter = start_on_double(
        Driver::Current,
        &config,
        &[
            "--collector.processes",
            &format!("--path.procfs={}", procfs.display()),
        ],
    );
    let s = exporter.scrape_until("five processes", |s| {
        s.find("nvidia_gpu_process_memory_used_bytes", &[]).len() == 5
    });
    for (pid, job) in [
        ("100", "840392"),
        ("200", "31"),
        ("300", ""),
        ("301", ""),
        ("400", ""),
    ] {
        for name in [
            "nvidia_gpu_process_memory_used_bytes",
            "nvidia_gpu_process_sm_utilization_ratio",
        ] {
            let found = s.find(name, &[("pid", pid)]);
            assert_eq!(found.len(), 1, "{name} {pid}");
            assert_eq!(found[0].labels["hpc_job"], job, "{name} of {pid}");
        }
    }
    assert_eq!(
        s.value(
            "nvidia_gpu_process_sm_utilization_ratio",
            &[("hpc_job", "840392")]
        ),
        Some(0.4)
    );
    // A job cgroup named by SLUID: said once, for the first such process.
    some_collections();
    assert_eq!(
        warnings(&exporter, "CgroupJobIdPaths=yes"),
        1,
        "{}",
        exporter.log()
    );
}
