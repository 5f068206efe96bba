//! Every metric the exporter serves, defined once: name, type, unit, labels
//! (with their values where the set is fixed), help and source. Collectors
//! add samples of these definitions, `metrics::exposition` turns them into
//! text, and `docs/metrics.md` is generated from these tables (a test keeps
//! it in step). Adding a reading is one entry here, one read in a collector,
//! one test. The definitions are split by section, one file each, in the
//! order of the docs: `gpu` (`nvidia_*`), `host` (`host_*`) and `exporter`
//! (`system_info_exporter_*`, the exporter's metrics about itself).

mod exporter;
mod gpu;
mod host;

pub(crate) use exporter::*;
pub(crate) use gpu::*;
pub(crate) use host::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    /// The name in `# TYPE` lines and in the docs.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// Which part of the docs a metric belongs to; each has its name prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Gpu,
    Host,
    /// The exporter's metrics about itself, which every output format keeps.
    Exporter,
}

impl Section {
    pub(crate) const ALL: [Section; 3] = [Section::Gpu, Section::Host, Section::Exporter];

    #[cfg(test)]
    pub(crate) const fn prefix(self) -> &'static str {
        match self {
            Section::Gpu => "nvidia_",
            Section::Host => "host_",
            Section::Exporter => "system_info_exporter_",
        }
    }

    /// The section's metrics, in the order of the docs.
    pub(crate) fn metrics(self) -> &'static [&'static Metric] {
        match self {
            Section::Gpu => gpu::ALL,
            Section::Host => host::ALL,
            Section::Exporter => exporter::ALL,
        }
    }
}

/// A label; `values` lists every value it can take, or is empty when free.
#[derive(Debug)]
pub(crate) struct Label {
    pub(crate) name: &'static str,
    pub(crate) values: &'static [&'static str],
}

#[derive(Debug)]
pub(crate) struct Metric {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// For the docs, which the tests generate and check.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) unit: &'static str,
    pub(crate) labels: &'static [Label],
    pub(crate) help: &'static str,
    /// Where the value comes from, for the docs.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) source: &'static str,
    pub(crate) section: Section,
}

impl Metric {
    /// The position of the label `name`, if the metric has it.
    pub(crate) fn label_position(&self, name: &str) -> Option<usize> {
        self.labels.iter().position(|label| label.name == name)
    }
}

/// Every metric, in the order of the docs.
pub(crate) fn all() -> impl Iterator<Item = &'static Metric> {
    Section::ALL
        .into_iter()
        .flat_map(|section| section.metrics().iter().copied())
}

/// The metric named `name`, if the catalogue has it; of the two forms of
/// `nvidia_gpu_nvlink_errors_total`, the first (`totals`).
pub(crate) fn find(name: &str) -> Option<&'static Metric> {
    all().find(|metric| metric.name == name)
}

const fn free(name: &'static str) -> Label {
    Label { name, values: &[] }
}

const fn values(name: &'static str, values: &'static [&'static str]) -> Label {
    Label { name, values }
}

pub(crate) const GPU: Label = free("gpu");
pub(crate) const UUID: Label = free("uuid");
pub(crate) const GPU_INSTANCE: Label = free("gpu_instance_id");

/// Serious XIDs: every watched GPU exports these at 0 from the start, so that
/// `increase()` sees their first occurrence. Others appear when they occur.
pub(crate) const SERIOUS_XIDS: &[u64] = &[48, 62, 64, 74, 79, 92, 94, 95, 119, 120];

/// The XID of a GPU that has fallen off the bus.
pub(crate) const XID_FELL_OFF_THE_BUS: u64 = 79;

/// Defines each metric of a section as a constant and lists them in `ALL`.
macro_rules! catalogue {
    ($section:ident: $($id:ident = $kind:ident $name:literal [$($label:expr),*] unit $unit:literal,
        $help:literal, $source:literal;)*) => {
        $(pub(crate) const $id: Metric = Metric {
            name: $name,
            kind: Kind::$kind,
            unit: $unit,
            labels: &[$($label),*],
            help: $help,
            source: $source,
            section: Section::$section,
        };)*
        /// The section's metrics, in the order of the docs.
        pub(super) const ALL: &[&Metric] = &[$(&$id),*];
    };
}
use catalogue;

/// The Markdown table of a section's metrics, as in `docs/metrics.md`.
#[cfg(test)]
fn markdown_table(section: Section) -> String {
    let mut table = String::from(
        "| Metric | Type | Unit | Labels | Source |\n| --- | --- | --- | --- | --- |\n",
    );
    for metric in section.metrics() {
        let labels: Vec<String> = metric
            .labels
            .iter()
            .map(|label| {
                let quoted = |s: &str| format!("`{s}`");
                match label.values {
                    [] => quoted(label.name),
                    values => {
                        let values: Vec<_> = values.iter().map(|v| quoted(v)).collect();
                        format!("{} = {}", quoted(label.name), values.join(", "))
                    }
                }
            })
            .collect();
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            metric.name,
            metric.kind.name(),
            metric.unit,
            labels.join(", "),
            metric.source
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");

    fn markers(section: Section) -> (String, String) {
        let prefix = section.prefix();
        (
            format!("<!-- generated from src/metrics/catalogue: {prefix} -->\n"),
            format!("<!-- end of generated {prefix} -->\n"),
        )
    }

    /// The docs' tables are generated from the catalogue. To regenerate:
    /// `UPDATE_METRICS_DOC=1 cargo test --lib catalogue`.
    #[test]
    fn metrics_doc_tables_are_generated_from_the_catalogue() {
        let mut doc = std::fs::read_to_string(DOC).unwrap();
        let original = doc.clone();
        for section in Section::ALL {
            let (begin, end) = markers(section);
            let start = doc
                .find(&begin)
                .unwrap_or_else(|| panic!("{begin} missing"));
            let start = start + begin.len();
            let stop = start + doc[start..].find(&end).expect("end marker");
            doc.replace_range(start..stop, &markdown_table(section));
        }
        if std::env::var_os("UPDATE_METRICS_DOC").is_some() {
            std::fs::write(DOC, &doc).unwrap();
        } else {
            assert!(
                doc == original,
                "docs/metrics.md is out of date; run UPDATE_METRICS_DOC=1 cargo test --lib catalogue"
            );
        }
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let mut names: Vec<&str> = all().map(|m| m.name).collect();
        names.sort_unstable();
        let mut twice: Vec<&str> = names
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        twice.dedup();
        // The one name with two forms: the NVLink detail level serves one.
        assert_eq!(twice, [NVLINK_ERRORS.name], "a metric is defined twice");
        assert_eq!(
            names.iter().filter(|n| **n == NVLINK_ERRORS.name).count(),
            2
        );
        let (totals, links) = (&NVLINK_ERRORS, &NVLINK_LINK_ERRORS);
        assert_eq!((totals.kind, totals.unit), (links.kind, links.unit));
        let without_link: Vec<&str> = links
            .labels
            .iter()
            .map(|label| label.name)
            .filter(|name| *name != "link")
            .collect();
        let totals_labels: Vec<&str> = totals.labels.iter().map(|label| label.name).collect();
        assert_eq!(
            totals_labels, without_link,
            "the two forms differ by `link` only"
        );
        for metric in all() {
            let counter = metric.kind == Kind::Counter;
            assert_eq!(
                counter,
                metric.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                metric.name
            );
            assert!(
                metric.name.starts_with(metric.section.prefix()),
                "{} is not in the section of its prefix",
                metric.name
            );
        }
    }
}
