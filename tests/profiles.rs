//! Every profile in `tests/profiles/` (recorded by `record-nvml` on a real
//! GPU, or written from a GPU's published output) replays on the NVML test
//! double in strict mode: the exporter serves only documented metrics and
//! `promtool check metrics` accepts them, the dcgm view serves a field for
//! each of its native sources that is served, and recording the replay gives
//! back every value the profile sets. The golden exposition files stay with
//! the hand-written configs of `tests/golden.rs`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BIN, DoubleConfig, Driver, Exporter, Scrape, nvml_double, require_tool};
use system_info_exporter::testing::dcgm_fields;

fn profiles() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/profiles");
    let mut profiles: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "conf"))
        .collect();
    profiles.sort();
    assert!(!profiles.is_empty(), "no profile in tests/profiles");
    profiles
}

fn name(profile: &Path) -> String {
    profile.file_stem().unwrap().to_string_lossy().into_owned()
}

/// The profile's `key = value` lines, comments removed.
fn entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap();
            let (key, value) = line.split_once('=')?;
            Some((key.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn gpu_count(profile: &Path) -> usize {
    let text = std::fs::read_to_string(profile).unwrap();
    entries(&text)
        .iter()
        .find(|(key, _)| key == "gpu_count")
        .map_or(1, |(_, value)| value.parse().unwrap())
}

/// The exporter on the double replaying `profile` in strict mode, once its
/// GPU collector has collected twice (GPM needs two samples).
fn replay(profile: &Path, flags: &[&str]) -> (Exporter, Scrape) {
    let mut args = common::double_args(Driver::Current);
    args.extend(flags.iter().map(|f| f.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let config = DoubleConfig {
        path: profile.to_owned(),
    };
    let exporter = Exporter::start_with_env(&args, Some(&config), &[("NVML_DOUBLE_STRICT", "1")]);
    let gpu = [("collector", "gpu")];
    let collected = |s: &Scrape| s.value("system_info_exporter_collect_success", &gpu) == Some(1.0);
    let last = |s: &Scrape| s.value("system_info_exporter_last_collect_timestamp_seconds", &gpu);
    let first = exporter.scrape_until("a GPU collection", collected);
    let s = exporter.scrape_until("another GPU collection", |s| {
        collected(s) && last(s) != last(&first)
    });
    assert!(
        !exporter.log().contains("nvml double:"),
        "the double complained about {}:\n{}",
        profile.display(),
        exporter.log()
    );
    (exporter, s)
}

fn documented() -> BTreeSet<String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    doc.lines()
        .filter_map(|line| {
            line.strip_prefix("| `")?
                .split_once('`')
                .map(|(name, _)| name.to_owned())
        })
        .collect()
}

#[test]
fn every_profile_serves_documented_metrics_that_promtool_accepts() {
    let documented = documented();
    let promtool = require_tool("promtool", "apt-get install prometheus");
    for profile in profiles() {
        for flags in [
            &[][..],
            &["--collector.processes", "--collector.gpu.nvlink=links"][..],
        ] {
            let (_exporter, s) = replay(&profile, flags);
            assert_eq!(
                s.value("nvidia_nvml_up", &[]),
                Some(1.0),
                "{}",
                name(&profile)
            );
            let up = s.find("nvidia_gpu_up", &[]);
            assert_eq!(up.len(), gpu_count(&profile), "{}", name(&profile));
            assert!(up.iter().all(|sample| sample.value == 1.0), "{}", s.text);
            let undocumented: Vec<&String> = s
                .types
                .keys()
                .filter(|name| !name.starts_with("process_") && !documented.contains(*name))
                .collect();
            assert!(
                undocumented.is_empty(),
                "{} with {flags:?} serves metrics docs/metrics.md lacks: {undocumented:?}",
                name(&profile)
            );
            assert!(s.has("nvidia_gpu_temperature_celsius"), "{}", s.text);
            if promtool {
                common::promtool_check_metrics(&s.text);
            }
        }
    }
}

#[test]
fn the_dcgm_view_serves_its_fields_for_every_profile() {
    let fields = dcgm_fields();
    for profile in profiles() {
        let (_native, native) = replay(&profile, &[]);
        let expected: BTreeSet<String> = fields
            .iter()
            .filter(|field| {
                native.samples.iter().any(|sample| {
                    field.sources.contains(&sample.name.as_str())
                        && field.filter.is_none_or(|(k, v)| {
                            sample.labels.get(k).map(String::as_str) == Some(v)
                        })
                })
            })
            .map(|field| field.name.to_owned())
            .collect();
        assert!(expected.len() >= 15, "{}: {expected:?}", name(&profile));
        let (dcgm, _) = replay(&profile, &["--metrics.format=dcgm"]);
        let served = |s: &Scrape| -> BTreeSet<String> {
            s.samples
                .iter()
                .filter(|s| s.name.starts_with("DCGM_FI_"))
                .map(|s| s.name.clone())
                .collect()
        };
        // Rates need two collections.
        let s = dcgm.scrape_until("every expected field", |s| {
            expected.iter().all(|name| s.has(name))
        });
        assert_eq!(served(&s), expected, "{}", name(&profile));
    }
}

/// Keys that set how the double behaves rather than what the driver
/// answered, and events, which happen by themselves: never recorded.
const NOT_RECORDED: &[&str] = &[
    "delay_ms",
    "call_log",
    "field_log",
    "driver_generation",
    "stale_error",
    "synthetic_processes",
];

/// A value as the double reads it: numbers (decimal or 0x hex) compared as
/// numbers, UUIDs without dashes and case, attribute lists as sets.
fn normal(key: &str, value: &str) -> String {
    let number = match value.strip_prefix("0x").or(value.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse::<u64>().ok(),
    };
    if let Some(number) = number {
        return number.to_string();
    }
    if key.ends_with("fabric_cluster_uuid") {
        return value.replace('-', "").to_lowercase();
    }
    if key.ends_with(".unsupported") || key.contains(".mig_device.") {
        let words: BTreeSet<&str> = value.split_whitespace().collect();
        return words.into_iter().collect::<Vec<_>>().join(" ");
    }
    value.to_owned()
}

/// A profile's keys and values (`unsupported` lines added up), and its
/// processes' values apart: the recorder names processes itself.
fn keys_and_processes(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    let mut processes = Vec::new();
    for (key, value) in entries(text) {
        if key.starts_with("process.") {
            processes.push(value);
        } else if key.ends_with(".unsupported") {
            let all = keys.entry(key).or_default();
            all.push(' ');
            all.push_str(&value);
        } else {
            keys.insert(key, value);
        }
    }
    (keys, processes)
}

#[test]
fn recording_a_profile_gives_back_every_value_it_sets() {
    for profile in profiles() {
        let output = Command::new(BIN)
            .args(["record-nvml", "--keep-identifiers"])
            .env("SIE_NVML_LIBRARY", nvml_double(Driver::Current))
            .env("NVML_DOUBLE_CONFIG", &profile)
            .env("NVML_DOUBLE_STRICT", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{}: {stderr}", name(&profile));
        let text = String::from_utf8(output.stdout).unwrap();
        let (recorded, recorded_processes) = keys_and_processes(&text);
        let (given, processes) = keys_and_processes(&std::fs::read_to_string(&profile).unwrap());
        let mut compared = 0;
        for (key, value) in &given {
            let last = key.rsplit('.').next().unwrap();
            if NOT_RECORDED.contains(&key.as_str()) || ["xid", "ecc_events"].contains(&last) {
                continue;
            }
            let got = recorded.get(key).map(|v| normal(key, v));
            assert_eq!(
                got,
                Some(normal(key, value)),
                "{}: {key} recorded differently:\n{text}",
                name(&profile)
            );
            compared += 1;
        }
        assert!(compared >= 40, "{}: only {compared} keys", name(&profile));
        // Every attribute a process is given must be recorded of one.
        for process in processes {
            let words: BTreeSet<&str> = process.split_whitespace().collect();
            let found = recorded_processes.iter().any(|p| {
                let recorded: BTreeSet<&str> = p.split_whitespace().collect();
                words.is_subset(&recorded)
            });
            assert!(
                found,
                "{}: process {process} not recorded:\n{text}",
                name(&profile)
            );
        }
    }
}
