//! What the integration tests and benchmarks drive directly, exported
//! deliberately: everything else is private to the crate, so that the
//! compiler reports what nothing uses. The end-to-end tests run the binary.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use crate::collector::gpu::{GpuCollector, NvlinkDetail};
use crate::collector::host::HostCollector;
use crate::collector::{self, CollectError, Latest, Shared, Wanted};
use crate::http::scrape::{ExporterMetrics, scrape};
use crate::http::stats::HttpStats;
use crate::metrics::catalogue;
use crate::metrics::exposition::Samples;
use crate::metrics::filter::{MetricFilter, Pattern};
use crate::publish::dcgm::fields::FIELDS;
use crate::publish::{Native, Outcome, Slot, publish};
use crate::selfmetrics::BuildInfo;
use crate::selfmetrics::process::ProcessMetrics;

/// The kubelet pod-resources messages, for a fake kubelet.
pub use crate::collector::pods::proto as pod_resources;

/// The web configuration file's parser.
pub mod web_config {
    pub use crate::http::web_config::file::{Pem, TlsSettings, WebConfig, parse};
}

/// A collector run by hand, outside the collection loop.
pub struct Collector(Box<dyn collector::Collector>);

impl Collector {
    /// The GPU collector, loading NVML from `library`.
    pub fn gpu(library: &Path) -> Self {
        Self::gpu_with(library, NvlinkDetail::default(), Wanted::all())
    }

    /// The GPU collector serving each NVLink link (`--collector.gpu.nvlink=links`).
    pub fn gpu_with_nvlink_links(library: &Path) -> Self {
        Self::gpu_with(library, NvlinkDetail::Links, Wanted::all())
    }

    /// The GPU collector of the native format with `--metrics.exclude=exclude`.
    pub fn gpu_excluding(library: &Path, exclude: Option<&str>) -> Self {
        let filter = MetricFilter {
            include: None,
            exclude: exclude.map(|p| Pattern::parse(p).expect("a valid pattern")),
        };
        Self::gpu_with(library, NvlinkDetail::default(), Native(filter).wanted())
    }

    fn gpu_with(library: &Path, nvlink: NvlinkDetail, wanted: Wanted) -> Self {
        let shared = Arc::new(Shared::default());
        let library = Some(library.as_os_str().to_owned());
        Self(Box::new(GpuCollector::new(
            library,
            Duration::from_secs(1),
            nvlink,
            wanted,
            shared,
        )))
    }

    /// The host collector.
    pub fn host() -> Self {
        let host = HostCollector::new(None, Wanted::all());
        Self(Box::new(host.expect("host statistics")))
    }

    /// One collection; the error says why the source could not be read.
    pub fn collect(&mut self) -> Result<Collection, String> {
        let mut collection = collector::Collection::default();
        match self.0.collect(&mut collection) {
            Ok(()) => Ok(Collection(collection)),
            Err(CollectError::Failed(error)) => Err(error),
            Err(CollectError::Waiting) => Err("waiting for another collector".to_owned()),
        }
    }
}

/// What one collection produced.
pub struct Collection(collector::Collection);

impl Collection {
    /// The collection's samples in the native text format.
    pub fn encode(&self) -> String {
        self.0.samples.encode()
    }
}

/// Collections published as the collection loop publishes them, and the
/// `/metrics` body a scrape sends.
pub struct Scrape {
    slots: Vec<Slot>,
    process: ProcessMetrics,
    http: HttpStats,
}

impl Scrape {
    /// Publishes each collection under its collector's name.
    pub fn new(collections: Vec<(&'static str, Collection)>) -> Self {
        let slots = collections
            .into_iter()
            .map(|(name, collection)| {
                let outcome = Outcome {
                    success: true,
                    duration: Duration::from_millis(1),
                    finished_at: SystemTime::now(),
                    last_success: Some(SystemTime::now()),
                    errors_total: 0,
                };
                let latest = Arc::new(Latest::default());
                let native = Native(MetricFilter::default());
                latest.set(publish(&native, &collection.0, Instant::now(), outcome));
                Slot { name, latest }
            })
            .collect();
        Self {
            slots,
            process: ProcessMetrics::new(),
            http: HttpStats::default(),
        }
    }

    /// The body of one scrape, as chunks, plain or gzipped.
    pub fn body(&self, gzip: bool) -> Vec<Bytes> {
        let slots: Vec<&Slot> = self.slots.iter().collect();
        let exporter = ExporterMetrics {
            process: &self.process,
            http: &self.http,
        };
        scrape(&slots, Some(&exporter), &BuildInfo::CURRENT, gzip)
    }
}

/// Every way of writing each `--collector.*` flag on a command line, from
/// the command itself, so that a flag added later is covered too: `--flag`
/// for a switch (and `--flag=false` for one that takes a value), and
/// `--flag=VALUE` for each value of a flag that has a fixed set.
pub fn collector_flag_forms() -> Vec<String> {
    let mut command = crate::config::command();
    // Settles each argument's number of values.
    command.build();
    let mut forms = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if !long.starts_with("collector.") && !long.starts_with("no-collector.") {
            continue;
        }
        let takes_values = arg.get_num_args().is_some_and(|n| n.takes_values());
        // A switch's value is optional: `--flag` or `--flag=false`.
        let switch = takes_values && arg.get_num_args().is_some_and(|n| n.min_values() == 0);
        if switch || !takes_values {
            forms.push(format!("--{long}"));
        }
        if switch {
            forms.push(format!("--{long}=false"));
        } else if takes_values {
            let values = arg.get_possible_values();
            forms.extend(values.iter().map(|v| format!("--{long}={}", v.get_name())));
        }
    }
    forms
}

/// One sample of the catalogue metric `metric` in the text format.
pub fn encode_sample(metric: &str, labels: &[&str], value: f64) -> String {
    let metric = catalogue::find(metric).unwrap_or_else(|| panic!("no metric {metric}"));
    let mut samples = Samples::default();
    samples.add(metric, labels, value);
    samples.encode()
}

/// A field of the dcgm view and where its value comes from.
pub struct DcgmField {
    pub name: &'static str,
    /// Names of the native metrics it is computed from.
    pub sources: Vec<&'static str>,
    /// Only source samples whose label has this value.
    pub filter: Option<(&'static str, &'static str)>,
}

/// Every field of the dcgm view.
pub fn dcgm_fields() -> Vec<DcgmField> {
    FIELDS
        .iter()
        .map(|field| DcgmField {
            name: field.name,
            sources: field.sources.iter().map(|m| m.name).collect(),
            filter: field.filter,
        })
        .collect()
}
