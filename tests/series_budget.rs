//! The series budget: what one GPU costs a Prometheus in the default
//! configuration, counted from real scrapes of the binary against the NVML
//! test double. A Hopper GPU of an HGX node has 18 NVLink links; at 1,000
//! nodes of 8 GPUs every series per GPU is 8,000 series of the fleet. The
//! whole sizing table is `make bench-series` (docs/deployment.md).

mod common;

use std::io::Read;

use common::{DoubleConfig, Driver, Scrape, start_on_double as start};

/// Series per GPU: default configuration, one 18-link GPU with GPM profiling.
const BUDGET_WITH_GPM: usize = 100;
/// The same without GPM (pre-Hopper GPUs, or GPM unsupported).
const BUDGET_WITHOUT_GPM: usize = 90;
/// Series of the NVLink link families per GPU, whatever its link count.
const BUDGET_LINK_FAMILIES: usize = 6;

const LINK_FAMILIES: [&str; 3] = [
    "nvidia_gpu_nvlinks",
    "nvidia_gpu_nvlink_up",
    "nvidia_gpu_nvlink_errors_total",
];

/// GPM metric ids the GPU collector reads: 8 ratios and 4 traffic rates.
const GPM_METRICS: [u32; 12] = [1, 2, 3, 5, 10, 11, 12, 13, 20, 21, 60, 61];

/// `gpus` GPUs of 18 NVLink links each, with GPM profiling or without.
fn hgx(gpus: u32, gpm: bool) -> String {
    let mut config = format!("gpu_count = {gpus}\n");
    for gpu in 0..gpus {
        config.push_str(&format!("gpu.{gpu}.nvlinks = 18\n"));
        if gpm {
            config.push_str(&format!("gpu.{gpu}.gpm = 1\n"));
            for metric in GPM_METRICS {
                config.push_str(&format!("gpu.{gpu}.gpm_value.{metric} = 10\n"));
            }
        }
    }
    config
}

/// Whether a collection with every family of `hgx` has been published.
fn complete(gpm: bool) -> impl Fn(&Scrape) -> bool {
    move |s| s.has("nvidia_gpu_up") && (!gpm || s.has("nvidia_gpu_sm_active_ratio"))
}

/// The series of GPU 0, and those of the NVLink link families.
fn count(s: &Scrape) -> (usize, usize) {
    let gpu0: Vec<_> = s
        .samples
        .iter()
        .filter(|s| s.labels.get("gpu").map(String::as_str) == Some("0"))
        .collect();
    let links = gpu0
        .iter()
        .filter(|s| LINK_FAMILIES.contains(&s.name.as_str()))
        .count();
    (gpu0.len(), links)
}

#[test]
fn one_18_link_gpu_stays_within_the_series_budget() {
    for (gpm, budget) in [(true, BUDGET_WITH_GPM), (false, BUDGET_WITHOUT_GPM)] {
        let config = DoubleConfig::new(&format!("budget-gpm-{gpm}"), &hgx(1, gpm));
        let exporter = start(Driver::Current, &config, &[]);
        let s = exporter.scrape_until("every family", complete(gpm));
        let (series, links) = count(&s);
        eprintln!("GPM {gpm}: {series} series per GPU, {links} of them NVLink link series");
        assert!(
            series <= budget,
            "GPM {gpm}: {series} series per GPU, over the budget of {budget}"
        );
        assert!(
            links <= BUDGET_LINK_FAMILIES,
            "{links} NVLink link series, over the budget of {BUDGET_LINK_FAMILIES}"
        );
        // The budget holds with the link signal kept: links counted by state,
        // errors per type.
        assert_eq!(s.find("nvidia_gpu_nvlinks", &[("gpu", "0")]).len(), 2);
        assert_eq!(
            s.find("nvidia_gpu_nvlink_errors_total", &[("gpu", "0")])
                .len(),
            4
        );
        assert_eq!(s.has("nvidia_gpu_nvlink_transmit_bytes_total"), gpm);
    }
}

#[test]
fn per_link_detail_serves_84_link_series_per_18_link_gpu() {
    let config = DoubleConfig::new("budget-links", &hgx(1, false));
    let totals = start(Driver::Current, &config, &[]);
    let links = start(Driver::Current, &config, &["--collector.gpu.nvlink=links"]);
    let (totals, _) = count(&totals.scrape_until("totals", complete(false)));
    let (per_link, link_series) = count(&links.scrape_until("links", complete(false)));
    // 18 states and 66 error counters (crc_data exists for links 0–11 only)
    // replace the 4 totals; the 2 state counts stay.
    assert_eq!(link_series, 18 + 18 * 3 + 12 + 2);
    assert_eq!(per_link, totals - 4 + 18 + 18 * 3 + 12);
}

/// The body of one scrape, gzipped as the exporter serves it.
fn gzip_body(url: &str) -> Vec<u8> {
    let mut response = ureq::get(url)
        .header("Accept-Encoding", "gzip")
        .call()
        .expect("scrape failed");
    assert_eq!(response.headers().get("content-encoding").unwrap(), "gzip");
    response.body_mut().read_to_vec().unwrap()
}

/// Each collection's text is compressed once when published and joined at
/// the scrape (metrics::gzip); that costs little against compressing the
/// whole body at deflate's best level, here for the biggest body, an HGX node
/// with every link's series.
#[test]
fn the_gzip_body_stays_within_10_percent_of_the_best_compression() {
    for detail in ["totals", "links"] {
        let config = DoubleConfig::new(&format!("budget-gzip-{detail}"), &hgx(8, true));
        let flag = format!("--collector.gpu.nvlink={detail}");
        let exporter = start(Driver::Current, &config, &[&flag]);
        exporter.scrape_until("every family", complete(true));
        let body = gzip_body(&exporter.url("/metrics"));
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .read_to_end(&mut text)
            .unwrap();
        let mut best = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut best, &text).unwrap();
        let best = best.finish().unwrap();
        let ratio = body.len() as f64 / best.len() as f64;
        eprintln!(
            "{detail}: {} bytes of text, gzip body {} bytes, best {} bytes ({ratio:.3})",
            text.len(),
            body.len(),
            best.len()
        );
        assert!(
            ratio <= 1.10,
            "{detail}: the gzip body is {ratio:.3} × the best"
        );
    }
}
