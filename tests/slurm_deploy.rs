//! The Slurm deployment files of `deploy/slurm/`: the prolog and epilog that
//! write the job mapping files, run with a fake `nvidia-smi` and fake driver
//! `/proc` entries; the systemd unit; and the Prometheus joins that
//! `docs/deployment.md` shows, evaluated by a real Prometheus.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::prometheus::Prometheus;
use common::{DoubleConfig, Driver, require_tool, start_on_double, wait_for};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("slurm-deploy")
        .join(test);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A node for the scripts: a fake `nvidia-smi` printing `gpus` (what
/// `--query-gpu=index,pci.bus_id,uuid --format=csv,noheader` prints), and
/// the driver's `/proc/driver/nvidia/gpus/<bus>/information` per (bus, minor).
struct Node {
    root: PathBuf,
    mapping: PathBuf,
}

impl Node {
    fn new(test: &str, gpus: &str, minors: &[(&str, u32)]) -> Self {
        let root = scratch(test);
        let bin = root.join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(root.join("nvidia-smi.out"), gpus).unwrap();
        let smi = bin.join("nvidia-smi");
        fs::write(
            &smi,
            "#!/bin/sh\n\
             [ \"$*\" = \"--query-gpu=index,pci.bus_id,uuid --format=csv,noheader\" ] || \
             { echo \"unexpected arguments: $*\" >&2; exit 2; }\n\
             exec cat \"$FAKE_NVIDIA_SMI_OUTPUT\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&smi, fs::Permissions::from_mode(0o755)).unwrap();
        for (bus, minor) in minors {
            let dir = root.join("proc-gpus").join(bus);
            fs::create_dir_all(&dir).unwrap();
            fs::write(
                dir.join("information"),
                format!(
                    "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 94\nBus Type: \t PCIe\n\
                     Bus Location: \t {bus}\nDevice Minor: \t {minor}\nGPU Excluded:\t No\n"
                ),
            )
            .unwrap();
        }
        let mapping = root.join("mapping");
        Self { root, mapping }
    }

    /// Runs `script` as slurmd would, with only `env` (and PATH) set;
    /// returns its stderr. Asserts that it exits 0: a failing Prolog drains
    /// the node.
    fn run(&self, script: &str, env: &[(&str, &str)]) -> String {
        let path = format!("{}:/usr/bin:/bin", self.root.join("bin").display());
        let output = Command::new("bash")
            .arg(repo(&format!("deploy/slurm/gpu-job-mapping-{script}.sh")))
            .env_clear()
            .env("PATH", path)
            .env("GPU_JOB_MAPPING_DIR", &self.mapping)
            .env("NVIDIA_PROC_GPUS", self.root.join("proc-gpus"))
            .env("FAKE_NVIDIA_SMI_OUTPUT", self.root.join("nvidia-smi.out"))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{script} {env:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{script} printed to stdout");
        stderr
    }

    /// The mapping directory: file name → contents, dotfiles left out.
    fn files(&self) -> BTreeMap<String, String> {
        let Ok(entries) = fs::read_dir(&self.mapping) else {
            return BTreeMap::new();
        };
        entries
            .map(|e| e.unwrap())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .map(|name| {
                let text = fs::read_to_string(self.mapping.join(&name)).unwrap();
                (name, text)
            })
            .collect()
    }
}

fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect()
}

const UUID_A: &str = "GPU-aaaaaaaa-1111-2222-3333-444444444444";
const UUID_C: &str = "GPU-cccccccc-1111-2222-3333-444444444444";

/// Four GPUs whose device minors do not follow their PCI bus order: NVML
/// numbers them by bus id, the driver gave /dev/nvidia0 to NVML's GPU 2.
const FOUR_GPUS: &str = "\
0, 00000000:3B:00.0, GPU-aaaaaaaa-1111-2222-3333-444444444444
1, 00000000:5E:00.0, GPU-bbbbbbbb-1111-2222-3333-444444444444
2, 00000000:86:00.0, GPU-cccccccc-1111-2222-3333-444444444444
3, 00000000:AF:00.0, GPU-dddddddd-1111-2222-3333-444444444444
";
const MINORS_OUT_OF_ORDER: &[(&str, u32)] = &[
    ("0000:3b:00.0", 2),
    ("0000:5e:00.0", 3),
    ("0000:86:00.0", 0),
    ("0000:af:00.0", 1),
];

#[test]
fn the_prolog_records_the_jobs_gpus_by_nvml_index_and_the_epilog_removes_them() {
    let node = Node::new("scripts", FOUR_GPUS, MINORS_OUT_OF_ORDER);
    fs::create_dir_all(&node.mapping).unwrap();
    // Written by another prolog (dcgm-exporter's examples), without a newline.
    fs::write(node.mapping.join("0"), "55").unwrap();

    // Slurm 25.11 and later: UUIDs in CUDA_VISIBLE_DEVICES, mapped exactly
    // whatever SLURM_JOB_GPUS says.
    let cuda = format!("{UUID_C},{UUID_A}");
    let said = node.run(
        "prolog",
        &[
            ("SLURM_JOB_ID", "101"),
            ("SLURM_JOB_GPUS", "0,1"),
            ("CUDA_VISIBLE_DEVICES", &cuda),
        ],
    );
    assert_eq!(said, "");
    assert_eq!(node.files(), files(&[("0", "55\n101\n"), ("2", "101\n")]));

    // Slurm's indexes in NVML's numbering (AutoDetect=nvml) ...
    let nvml = [
        ("SLURM_JOB_ID", "102"),
        ("SLURM_JOB_GPUS", "1,3"),
        ("GPU_NUMBERING", "nvml"),
    ];
    node.run("prolog", &nvml);
    // ... or in the device minors' (gres.conf File=/dev/nvidia[0-3]):
    // /dev/nvidia0 is NVML's GPU 2.
    node.run(
        "prolog",
        &[
            ("SLURM_JOB_ID", "103"),
            ("SLURM_JOB_GPUS", "0"),
            ("GPU_NUMBERING", "minor"),
        ],
    );
    // Run twice (a requeued job): recorded once.
    node.run("prolog", &nvml);
    let expected = files(&[
        ("0", "55\n101\n"),
        ("1", "102\n"),
        ("2", "101\n103\n"),
        ("3", "102\n"),
    ]);
    assert_eq!(node.files(), expected);

    // auto, where the two numberings name different GPUs: nothing guessed.
    let said = node.run(
        "prolog",
        &[("SLURM_JOB_ID", "104"), ("SLURM_JOB_GPUS", "0")],
    );
    assert!(
        said.contains("Slurm GPU 0 is NVML GPU 0 if Slurm numbers GPUs as NVML does")
            && said.contains("/dev/nvidia0 is NVML GPU 2")
            && said.contains("set GPU_NUMBERING=nvml or minor"),
        "{said}"
    );
    // Unknown GPUs, MIG devices, a bad setting, no nvidia-smi: said, never a failure.
    for (env, says) in [
        (
            vec![("SLURM_JOB_GPUS", "7"), ("GPU_NUMBERING", "nvml")],
            "Slurm GPU 7 is no GPU of this node",
        ),
        (
            vec![(
                "CUDA_VISIBLE_DEVICES",
                "GPU-ffffffff-0000-0000-0000-000000000000",
            )],
            "no GPU GPU-ffffffff",
        ),
        (
            vec![(
                "CUDA_VISIBLE_DEVICES",
                "MIG-aaaaaaaa-0000-0000-0000-000000000000",
            )],
            "MIG devices are not mapped",
        ),
        (
            vec![("SLURM_JOB_GPUS", "0"), ("GPU_NUMBERING", "pci")],
            "GPU_NUMBERING must be auto, nvml or minor",
        ),
        (
            vec![
                ("SLURM_JOB_GPUS", "0"),
                ("FAKE_NVIDIA_SMI_OUTPUT", "/nonexistent"),
            ],
            "nvidia-smi failed",
        ),
    ] {
        let mut env = env;
        env.push(("SLURM_JOB_ID", "104"));
        let said = node.run("prolog", &env);
        assert!(said.contains(says), "{env:?}: {said}");
    }
    // A job without GPUs: nothing to do, nothing said.
    assert_eq!(node.run("prolog", &[("SLURM_JOB_ID", "104")]), "");
    assert_eq!(node.files(), expected);

    // The epilog removes its job's lines, and files left without a job.
    node.run("epilog", &[("SLURM_JOB_ID", "101")]);
    assert_eq!(
        node.files(),
        files(&[
            ("0", "55\n"),
            ("1", "102\n"),
            ("2", "103\n"),
            ("3", "102\n")
        ])
    );
    node.run("epilog", &[("SLURM_JOB_ID", "102")]);
    node.run("epilog", &[("SLURM_JOB_ID", "10")]);
    assert_eq!(node.files(), files(&[("0", "55\n"), ("2", "103\n")]));
    node.run("epilog", &[("SLURM_JOB_ID", "103")]);
    node.run("epilog", &[("SLURM_JOB_ID", "55")]);
    assert_eq!(node.files(), files(&[]));
}

#[test]
fn where_the_numberings_agree_auto_needs_no_setting() {
    let in_order = [
        ("0000:3b:00.0", 0),
        ("0000:5e:00.0", 1),
        ("0000:86:00.0", 2),
        ("0000:af:00.0", 3),
    ];
    let node = Node::new("agree", FOUR_GPUS, &in_order);
    let said = node.run(
        "prolog",
        &[("SLURM_JOB_ID", "7"), ("SLURM_JOB_GPUS", "1,2")],
    );
    assert_eq!(said, "");
    assert_eq!(node.files(), files(&[("1", "7\n"), ("2", "7\n")]));
    // Without the driver's /proc entries only NVML's numbering is known.
    let node = Node::new("no-proc", FOUR_GPUS, &[]);
    node.run("prolog", &[("SLURM_JOB_ID", "8"), ("SLURM_JOB_GPUS", "3")]);
    assert_eq!(node.files(), files(&[("3", "8\n")]));
}

#[test]
fn the_exporter_serves_what_the_prolog_wrote_until_the_epilog() {
    // The NVML test double's two GPUs, as nvidia-smi would print them.
    let node = Node::new(
        "round-trip",
        "0, 00000000:10:00.0, GPU-00000000-0000-4000-8000-000000000000\n\
         1, 00000000:11:00.0, GPU-00000000-0000-4000-8000-000000000001\n",
        &[],
    );
    let job = [
        ("SLURM_JOB_ID", "777"),
        ("SLURM_JOB_GPUS", "0"),
        (
            "CUDA_VISIBLE_DEVICES",
            "GPU-00000000-0000-4000-8000-000000000001",
        ),
    ];
    node.run("prolog", &job);
    let config = DoubleConfig::new("slurm-round-trip", "gpu_count = 2\n");
    let flag = format!("--collector.hpc.job-mapping-dir={}", node.mapping.display());
    let exporter = start_on_double(Driver::Current, &config, &[&flag]);
    let s = exporter.scrape_until("the job", |s| s.has("nvidia_gpu_job_info"));
    let found = s.find("nvidia_gpu_job_info", &[]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].labels["gpu"], "1");
    assert_eq!(found[0].labels["hpc_job"], "777");
    node.run("epilog", &[("SLURM_JOB_ID", "777")]);
    exporter.scrape_until("the job gone", |s| !s.has("nvidia_gpu_job_info"));
    assert!(!exporter.log().contains("WARN"), "{}", exporter.log());
}

#[test]
fn the_systemd_unit_verifies() {
    if !require_tool("systemd-analyze", "apt-get install systemd") {
        return;
    }
    let unit = fs::read_to_string(repo("deploy/slurm/system-info-exporter.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/system-info-exporter "));
    // The unit as installed, with this build's binary where it would be.
    let dir = scratch("systemd");
    let path = dir.join("system-info-exporter.service");
    fs::write(
        &path,
        unit.replace("/usr/local/bin/system-info-exporter", common::BIN),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success() && said.trim().is_empty(), "{said}");
    // Its flags are the exporter's.
    let flags: Vec<&str> = unit
        .lines()
        .map(|line| line.trim().trim_end_matches('\\').trim())
        .filter(|line| line.starts_with("--"))
        .collect();
    assert_eq!(flags.len(), 2, "{flags:?}");
    let output = Command::new(common::BIN)
        .args(&flags)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The queries of docs/deployment.md's Slurm section, with what they give
/// for GPU 0 at 50 % (job 1234), GPU 1 at 30 % (jobs 1234 and 1235), MIG
/// GPU instance 3 of GPU 2 with 45 % SM activity (job 77), a process of job
/// 1234 using 1 GiB of GPU 0, and the same node in the dcgm format: each
/// must appear in the docs as written here.
const JOINS: &[(&str, &[(&str, f64)])] = &[
    (
        "avg by (hpc_job) (nvidia_gpu_utilization_ratio * on(uuid) group_right nvidia_gpu_job_info{gpu_instance_id=\"\"})",
        &[("1234", 0.4), ("1235", 0.3)],
    ),
    (
        "count by (hpc_job) (nvidia_gpu_job_info{gpu_instance_id=\"\"})",
        &[("1234", 2.0), ("1235", 1.0)],
    ),
    (
        "sum by (hpc_job) (nvidia_gpu_process_memory_used_bytes{hpc_job!=\"\"})",
        &[("1234", 1073741824.0)],
    ),
    (
        "avg by (hpc_job) (nvidia_gpu_sm_active_ratio * on(uuid, gpu_instance_id) group_right nvidia_gpu_job_info)",
        &[("77", 0.45)],
    ),
    (
        "avg by (hpc_job) (DCGM_FI_DEV_GPU_UTIL{hpc_job!=\"\"})",
        &[("1234", 40.0), ("1235", 30.0)],
    ),
];

#[test]
fn prometheus_answers_the_documented_joins() {
    if !require_tool("prometheus", "apt-get install prometheus") {
        return;
    }
    let doc = fs::read_to_string(repo("docs/deployment.md")).unwrap();
    for (query, _) in JOINS {
        assert!(doc.contains(query), "docs/deployment.md lacks {query}");
    }
    let dir = scratch("joins");
    let mapping = dir.join("mapping");
    fs::create_dir_all(&mapping).unwrap();
    fs::write(mapping.join("0"), "1234\n").unwrap();
    fs::write(mapping.join("1"), "1234\n1235\n").unwrap();
    fs::write(mapping.join("2.3"), "77\n").unwrap();
    let task = dir.join("proc/4242");
    fs::create_dir_all(&task).unwrap();
    fs::write(task.join("comm"), "python3\n").unwrap();
    fs::write(
        task.join("cgroup"),
        "0::/system.slice/slurmstepd.scope/job_1234/step_0/user/task_0\n",
    )
    .unwrap();
    let config = DoubleConfig::new(
        "slurm-joins",
        "gpu_count = 3
gpu.1.utilization_gpu = 30
gpu.2.mig = 1
gpu.2.mig_slots = 7
gpu.2.mig_device.0 = MIG-bbbbbbbb-0000-5000-8000-000000000001 gi=3 ci=0 profile=1g.10gb memory_total=10737418240 memory_used=0
gpu.2.gpm = 1
gpu.2.gpm_mig = 1
gpu.2.gpm_value.2 = 45
process.0 = gpu=0 pid=4242 type=compute memory=1073741824
",
    );
    let flag = format!("--collector.hpc.job-mapping-dir={}", mapping.display());
    let procfs = format!("--path.procfs={}", dir.join("proc").display());
    let native = start_on_double(
        Driver::Current,
        &config,
        &[&flag, "--collector.processes", &procfs],
    );
    let dcgm = start_on_double(Driver::Current, &config, &[&flag, "--metrics.format=dcgm"]);
    let prometheus = Prometheus::start(
        "slurm-joins",
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gpu\n    \
             static_configs:\n      - targets: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
            native.port, dcgm.port
        ),
    );
    for (query, expected) in JOINS {
        let got = wait_for(query, Duration::from_secs(60), || {
            let mut got: Vec<(String, f64)> = prometheus
                .query(query)
                .into_iter()
                .map(|(labels, value)| (labels.get("hpc_job").cloned().unwrap_or_default(), value))
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            (got.len() == expected.len()).then_some(got)
        });
        for ((job, value), (want_job, want)) in got.iter().zip(expected.iter()) {
            assert_eq!(job, want_job, "{query}");
            assert!(
                (value - want).abs() < 1e-9,
                "{query}, job {job}: {value} != {want}"
            );
        }
    }
}
