//! Starts the real exporter binary against the NVML test double and talks to
//! it over HTTP.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod kube_api;
pub mod kubelet;
pub mod prometheus;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_system-info-exporter");

/// Which symbols the test double exports.
#[derive(Clone, Copy)]
pub enum Driver {
    Current,
    /// Lacks the energy counter and per-fan speed, like an older driver.
    Legacy,
}

/// Builds the NVML test double once per test binary and returns its path.
pub fn nvml_double(driver: Driver) -> PathBuf {
    static CURRENT: OnceLock<PathBuf> = OnceLock::new();
    static LEGACY: OnceLock<PathBuf> = OnceLock::new();
    let (cell, name, defines): (_, _, &[&str]) = match driver {
        Driver::Current => (&CURRENT, "current", &[]),
        Driver::Legacy => (&LEGACY, "legacy", &["-DLEGACY_DRIVER"]),
    };
    cell.get_or_init(|| {
        // Every C file of the directory, compiled into the one library.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nvml-double");
        let mut sources: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "c"))
            .collect();
        sources.sort();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("nvml-double")
            .join(name);
        fs::create_dir_all(&dir).unwrap();
        let library = dir.join("libnvidia-ml.so.1");
        // Several test binaries may build at once: build privately, then rename.
        let partial = dir.join(format!("libnvidia-ml.so.1.{}", std::process::id()));
        let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
            .args([
                "-shared",
                "-fPIC",
                "-O2",
                "-Wall",
                "-Werror",
                "-fvisibility=hidden",
            ])
            .args(defines)
            .arg("-o")
            .arg(&partial)
            .args(&sources)
            .arg("-lpthread")
            .status()
            .expect("cannot run the C compiler (cc); install gcc");
        assert!(status.success(), "building the NVML test double failed");
        fs::rename(&partial, &library).unwrap();
        library
    })
    .clone()
}

/// A config file for the test double; rewriting it changes what NVML reports.
pub struct DoubleConfig {
    pub path: PathBuf,
}

impl DoubleConfig {
    pub fn new(test: &str, contents: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("configs");
        fs::create_dir_all(&dir).unwrap();
        let config = Self {
            path: dir.join(format!("{test}.conf")),
        };
        config.write(contents);
        config
    }

    /// Replaces the file atomically, so the double never reads half of it.
    pub fn write(&self, contents: &str) {
        let partial = self.path.with_extension("partial");
        fs::write(&partial, contents).unwrap();
        fs::rename(&partial, &self.path).unwrap();
    }

    /// A file next to the config, e.g. for the double's `call_log`.
    pub fn sibling(&self, extension: &str) -> PathBuf {
        let path = self.path.with_extension(extension);
        let _ = fs::remove_file(&path);
        path
    }
}

/// Test-double settings under which GPU 0 exports every GPU family: an XID,
/// NVLink, GPM profiling, a MIG device, a registered NVLink fabric with a
/// health summary, and a process (the last one with
/// `--collector.processes`, the per-link NVLink families with
/// `--collector.gpu.nvlink=links`).
pub const EVERY_GPU_FAMILY: &str = "
gpu.0.xid = 13
gpu.0.nvlinks = 2
gpu.0.gpm = 1
gpu.0.gpm_value.1 = 70
gpu.0.gpm_value.2 = 45
gpu.0.gpm_value.3 = 30
gpu.0.gpm_value.5 = 12
gpu.0.gpm_value.10 = 60
gpu.0.gpm_value.11 = 1
gpu.0.gpm_value.12 = 25
gpu.0.gpm_value.13 = 5
gpu.0.gpm_value.20 = 100
gpu.0.gpm_value.21 = 50
gpu.0.gpm_value.60 = 1000
gpu.0.gpm_value.61 = 2000
gpu.0.mig = 1
gpu.0.mig_slots = 7
gpu.0.mig_device.0 = MIG-00000000-0000-5000-8000-000000000000 gi=1 ci=0 profile=7g.80gb memory_total=85899345920 memory_used=1073741824
gpu.0.fabric_state = 3
gpu.0.fabric_clique_id = 1
gpu.0.fabric_health_mask = 0x1aa
gpu.0.fabric_health_summary = 1
process.0 = gpu=0 pid=1 type=compute memory=1073741824 gi=1 ci=0 sm=10
";

/// Whether a scrape has every family `EVERY_GPU_FAMILY` brings.
pub fn has_every_gpu_family(s: &Scrape) -> bool {
    [
        "nvidia_gpu_last_xid_timestamp_seconds",
        "nvidia_gpu_nvlinks",
        "nvidia_gpu_nvlink_up",
        "nvidia_gpu_sm_active_ratio",
        "nvidia_gpu_mig_info",
        "nvidia_gpu_process_memory_used_bytes",
        "nvidia_gpu_fabric_status",
        "nvidia_gpu_fabric_overall_health",
    ]
    .iter()
    .all(|name| s.has(name))
}

/// The flags that point the exporter at the test double, collecting every 200 ms.
pub fn double_args(driver: Driver) -> Vec<String> {
    vec![
        format!("--nvml.library={}", nvml_double(driver).display()),
        "--collect.interval=200ms".to_owned(),
    ]
}

/// Starts the exporter on the test double with `extra` flags.
pub fn start_on_double(driver: Driver, config: &DoubleConfig, extra: &[&str]) -> Exporter {
    let mut args = double_args(driver);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Exporter::start(&args, Some(config))
}

pub struct Exporter {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

pub struct Reply {
    pub status: u16,
    pub body: String,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

pub fn http(method: &str, url: &str) -> Result<Reply, ureq::Error> {
    let agent = agent();
    let mut response = match method {
        "GET" => agent.get(url).call()?,
        "HEAD" => agent.head(url).call()?,
        "POST" => agent.post(url).send_empty()?,
        other => panic!("unsupported method {other}"),
    };
    let mut body = String::new();
    response
        .body_mut()
        .as_reader()
        .read_to_string(&mut body)
        .unwrap();
    Ok(Reply {
        status: response.status().as_u16(),
        body,
    })
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Exporter {
    /// Starts the exporter on a free loopback port with `args`, the test
    /// double's config in `config`, and waits until it answers `/health`.
    pub fn start(args: &[&str], config: Option<&DoubleConfig>) -> Self {
        Self::start_with_env(args, config, &[])
    }

    pub fn start_with_env(
        args: &[&str],
        config: Option<&DoubleConfig>,
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("exporter-{port}.log"));
        let mut command = Command::new(BIN);
        command
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .env_remove("NVML_DOUBLE_CONFIG")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        for (key, value) in env {
            command.env(key, value);
        }
        if let Some(config) = config {
            command.env("NVML_DOUBLE_CONFIG", &config.path);
        }
        let child = command.spawn().expect("cannot start the exporter");
        let mut exporter = Self { child, port, log };
        exporter.wait_until_serving(|e| e.get("/health").is_ok());
        exporter
    }

    /// Starts the exporter without waiting for it (e.g. for TLS, or to see
    /// it refuse to start); `port` 0 picks a free one.
    pub fn spawn(args: &[&str], config: Option<&DoubleConfig>) -> Self {
        let port = free_port();
        let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("exporter-{port}.log"));
        let mut command = Command::new(BIN);
        command
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .env_remove("NVML_DOUBLE_CONFIG")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        if let Some(config) = config {
            command.env("NVML_DOUBLE_CONFIG", &config.path);
        }
        let child = command.spawn().expect("cannot start the exporter");
        Self { child, port, log }
    }

    /// Waits until `serving` says the exporter answers; panics if it exits.
    pub fn wait_until_serving(&mut self, serving: impl Fn(&Self) -> bool) {
        wait_for("the exporter to listen", Duration::from_secs(30), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("exporter exited with {status}: {}", self.log());
            }
            serving(self).then_some(())
        });
    }

    /// Waits up to 30 s for the exporter to exit by itself.
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        let child = &mut self.child;
        wait_for("the exporter to exit", Duration::from_secs(30), || {
            child.try_wait().unwrap()
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn get(&self, path: &str) -> Result<Reply, ureq::Error> {
        http("GET", &self.url(path))
    }

    /// Scrapes `path` and parses the exposition.
    pub fn scrape_at(&self, path: &str) -> Scrape {
        let reply = self.get(path).expect("scrape failed");
        assert_eq!(
            reply.status, 200,
            "scrape answered {}: {}",
            reply.status, reply.body
        );
        Scrape::parse(&reply.body)
    }

    pub fn scrape(&self) -> Scrape {
        self.scrape_at("/metrics")
    }

    /// Waits until a scrape satisfies `check`, and returns that scrape.
    pub fn scrape_until(&self, what: &str, check: impl Fn(&Scrape) -> bool) -> Scrape {
        wait_for(what, Duration::from_secs(30), || {
            Some(self.scrape()).filter(|s| check(s))
        })
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn terminate(mut self) -> ExitStatus {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let child = &mut self.child;
        wait_for("the exporter to exit", Duration::from_secs(30), || {
            child.try_wait().unwrap()
        })
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed text exposition: samples plus `# TYPE` lines.
#[derive(Debug)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, String>,
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').unwrap())),
                None => (series, BTreeMap::new()),
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().unwrap(),
            });
        }
        Self {
            text: text.to_owned(),
            samples,
            types,
        }
    }

    /// Samples of `name` whose labels include every pair in `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample of `name` matching `labels`, if any.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, labels);
        assert!(
            found.len() <= 1,
            "{name}{labels:?} matches {} samples",
            found.len()
        );
        found.first().map(|s| s.value)
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().unwrap() {
                (_, '\\') => match chars.next().unwrap().1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

/// Whether something a test needs is here. Where it is missing the test is
/// skipped with a message, unless SIE_REQUIRE_TOOLS is set (as in CI), which
/// turns the skip into a failure.
fn require(present: bool, what: &str, install: &str) -> bool {
    if !present {
        assert!(
            std::env::var_os("SIE_REQUIRE_TOOLS").is_none(),
            "{what} is required (SIE_REQUIRE_TOOLS is set); {install}"
        );
        eprintln!("SKIPPED: {what} is missing; {install}");
    }
    present
}

/// Whether a shell snippet runs successfully, quietly.
fn shell_succeeds(script: &str) -> bool {
    Command::new("sh")
        .args(["-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An external program, e.g. `require_tool("promtool", "apt-get install prometheus")`.
pub fn require_tool(tool: &str, install: &str) -> bool {
    require(shell_succeeds(&format!("command -v {tool}")), tool, install)
}

/// Root, for a test that runs the exporter as another user.
pub fn require_root() -> bool {
    // SAFETY: geteuid only reads the process's user id.
    let root = unsafe { libc::geteuid() } == 0;
    require(root, "root", "run the tests as root (as CI does)")
}

/// A Python module, e.g. `require_python_module("yaml", "pip install pyyaml")`.
pub fn require_python_module(module: &str, install: &str) -> bool {
    let found = shell_succeeds(&format!("python3 -c 'import {module}'"));
    require(found, &format!("the Python module {module}"), install)
}

/// Asserts that `promtool check metrics` finds nothing to say about `text`.
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "promtool: {findings}"
    );
}
