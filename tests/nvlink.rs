//! NVLink detail levels end to end: the real binary against the NVML test
//! double with `--collector.gpu.nvlink` at `totals` (the default), `links`
//! and `off`.

mod common;

use std::process::Command;

use common::{DoubleConfig, Driver, Exporter, Scrape, start_on_double as start};

const GPU0: [(&str, &str); 2] = [
    ("gpu", "0"),
    ("uuid", "GPU-00000000-0000-4000-8000-000000000000"),
];

const TYPES: [&str; 4] = ["crc_flit", "crc_data", "replay", "recovery"];

/// NVML field ids of the per-link fields (nvml.h): replay, recovery,
/// crc_flit and state errors of a link; CRC data of links 0–5 and 6–11.
fn is_link_field(id: u32) -> bool {
    matches!(id, 161 | 162 | 163 | 165 | 39..=44 | 102..=107)
}

/// GPU 0 with 4 links, link 2 down, errors on several links and types; GPM
/// traffic, which does not depend on the NVLink detail.
fn four_links(replay_on_link_3: u32) -> String {
    format!(
        "gpu.0.nvlinks = 4
gpu.0.nvlink_state.2 = 0
gpu.0.nvlink_crc_flit.0 = 3
gpu.0.nvlink_crc_flit.3 = 10
gpu.0.nvlink_crc_data.1 = 4
gpu.0.nvlink_replay.0 = 5
gpu.0.nvlink_replay.3 = {replay_on_link_3}
gpu.0.nvlink_recovery.1 = 6
gpu.0.gpm = 1
gpu.0.gpm_value.60 = 1000
gpu.0.gpm_value.61 = 2000
"
    )
}

fn total(s: &Scrape, kind: &str) -> Option<f64> {
    s.value(
        "nvidia_gpu_nvlink_errors_total",
        &[GPU0[0], GPU0[1], ("type", kind)],
    )
}

fn links_in(s: &Scrape, state: &str) -> Option<f64> {
    s.value("nvidia_gpu_nvlinks", &[GPU0[0], GPU0[1], ("state", state)])
}

fn collected(s: &Scrape) -> bool {
    s.has("nvidia_gpu_up") && s.has("nvidia_gpu_nvlink_transmit_bytes_total")
}

#[test]
fn totals_by_default_equal_the_sum_of_the_links() {
    let config = DoubleConfig::new("nvlink-totals", &four_links(7));
    let totals = start(Driver::Current, &config, &[]);
    let links = start(Driver::Current, &config, &["--collector.gpu.nvlink=links"]);
    let t = totals.scrape_until("NVLink totals", collected);
    let l = links.scrape_until("NVLink per link", collected);

    // The default: no per-link series, errors summed per type, links counted.
    assert!(!t.has("nvidia_gpu_nvlink_up"));
    let errors = t.find("nvidia_gpu_nvlink_errors_total", &GPU0);
    assert_eq!(errors.len(), 4);
    assert!(errors.iter().all(|s| !s.labels.contains_key("link")));
    assert_eq!(links_in(&t, "active"), Some(3.0));
    assert_eq!(links_in(&t, "inactive"), Some(1.0));
    for (kind, expected) in TYPES.iter().zip([13.0, 4.0, 12.0, 6.0]) {
        assert_eq!(total(&t, kind), Some(expected), "{kind}");
    }

    // Per link: each link's series, and their sums are the totals.
    for kind in TYPES {
        let per_link = l.find("nvidia_gpu_nvlink_errors_total", &[("type", kind)]);
        assert_eq!(per_link.len(), 4, "{kind}");
        let sum: f64 = per_link.iter().map(|s| s.value).sum();
        assert_eq!(Some(sum), total(&t, kind), "{kind}");
    }
    for (link, up) in [("0", 1.0), ("1", 1.0), ("2", 0.0), ("3", 1.0)] {
        let labels = [GPU0[0], GPU0[1], ("link", link)];
        assert_eq!(l.value("nvidia_gpu_nvlink_up", &labels), Some(up), "{link}");
    }
    let labels = [GPU0[0], GPU0[1], ("link", "1"), ("type", "crc_data")];
    assert_eq!(
        l.value("nvidia_gpu_nvlink_errors_total", &labels),
        Some(4.0)
    );
    // The state counts stay, so alerts on them work at either level; the
    // error counter's family has one label set only.
    assert_eq!(links_in(&l, "inactive"), Some(1.0));
    let per_link_errors = l.find("nvidia_gpu_nvlink_errors_total", &[]);
    assert!(
        per_link_errors
            .iter()
            .all(|s| s.labels.contains_key("link"))
    );
}

#[test]
fn a_link_that_cannot_be_read_keeps_its_last_value_in_the_total() {
    let config = DoubleConfig::new("nvlink-failing", &four_links(7));
    let exporter = start(Driver::Current, &config, &[]);
    let s = exporter.scrape_until("NVLink totals", collected);
    assert_eq!(total(&s, "replay"), Some(12.0));

    // Link 3 cannot be read while link 0 counts one more replay: its 7
    // replays and 10 CRC flit errors stay in the totals.
    config.write(&format!(
        "{}gpu.0.nvlink_replay.0 = 6\ngpu.0.nvlink_fail.3 = UNKNOWN\n",
        four_links(7)
    ));
    let s = exporter.scrape_until("link 0's new replay", |s| total(s, "replay") == Some(13.0));
    assert_eq!(total(&s, "crc_flit"), Some(13.0));
    // Its state is not known: it counts in neither state.
    assert_eq!(links_in(&s, "active"), Some(2.0));
    assert_eq!(links_in(&s, "inactive"), Some(1.0));
    assert!(s.has("nvidia_gpu_up"), "a failing link fails only itself");

    // Link 3 answers again with what it counted meanwhile.
    config.write(&format!("{}gpu.0.nvlink_replay.0 = 6\n", four_links(9)));
    let s = exporter.scrape_until("link 3 again", |s| total(s, "replay") == Some(15.0));
    assert_eq!(links_in(&s, "active"), Some(3.0));
}

#[test]
fn off_serves_no_link_series_and_requests_no_link_fields() {
    let config = DoubleConfig::new("nvlink-off", "");
    let fields = config.sibling("fields");
    let base = format!("{}field_log = {}\n", four_links(7), fields.display());
    config.write(&base);
    let off = start(Driver::Current, &config, &["--collector.gpu.nvlink=off"]);
    let s = off.scrape_until("a collection", collected);
    for family in [
        "nvidia_gpu_nvlinks",
        "nvidia_gpu_nvlink_up",
        "nvidia_gpu_nvlink_errors_total",
    ] {
        assert!(!s.has(family), "{family}");
    }
    // GPM's NVLink traffic does not depend on the detail level.
    assert!(s.has("nvidia_gpu_nvlink_receive_bytes_total"));
    let off_calls = field_requests(&std::fs::read_to_string(&fields).unwrap());
    drop(off);

    config.write(&base);
    let _ = std::fs::remove_file(&fields);
    let totals = start(Driver::Current, &config, &[]);
    totals.scrape_until("a collection", collected);
    let totals_calls = field_requests(&std::fs::read_to_string(&fields).unwrap());

    // The collection's field-value call: off asks for no link field at
    // all, totals for all 4 links' (state and 4 error counters each).
    let collection = |calls: &[Vec<(u32, u32)>]| calls.iter().max_by_key(|c| c.len()).cloned();
    let off_fields = collection(&off_calls).unwrap();
    let totals_fields = collection(&totals_calls).unwrap();
    assert!(
        off_calls
            .iter()
            .flatten()
            .all(|(id, _)| !is_link_field(*id)),
        "{off_calls:?}"
    );
    let link_fields: Vec<_> = totals_fields
        .iter()
        .filter(|(id, _)| is_link_field(*id))
        .collect();
    assert_eq!(link_fields.len(), 4 * 5);
    assert_eq!(off_fields.len() + 4 * 5, totals_fields.len());
}

/// The fields of each field-value call in the double's field log.
fn field_requests(log: &str) -> Vec<Vec<(u32, u32)>> {
    log.lines()
        .map(|line| {
            line.split(' ')
                .skip(1)
                .map(|field| {
                    let (id, scope) = field.split_once(':').unwrap();
                    (id.parse().unwrap(), scope.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_detail_is_also_set_by_environment_and_checked() {
    let config = DoubleConfig::new("nvlink-env", &four_links(7));
    let args = common::double_args(Driver::Current);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::start_with_env(
        &args,
        Some(&config),
        &[("SIE_COLLECTOR_GPU_NVLINK", "links")],
    );
    let s = exporter.scrape_until("per link", collected);
    assert_eq!(s.find("nvidia_gpu_nvlink_up", &GPU0).len(), 4);

    let output = Command::new(common::BIN)
        .arg("--collector.gpu.nvlink=all")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--collector.gpu.nvlink")
            && stderr.contains("off")
            && stderr.contains("totals")
            && stderr.contains("links"),
        "{stderr}"
    );
}
