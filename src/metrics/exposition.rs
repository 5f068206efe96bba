//! The one place that writes the Prometheus text format. A collection's
//! samples are encoded once, through the prometheus crate's encoder, when it
//! is published; the few metrics made per scrape are written directly by
//! [`Text`], which writes the same bytes (a test checks it) without building
//! protobuf messages.

use std::fmt::Write as _;

use prometheus::proto::{
    Counter, Gauge, LabelPair, Metric as ProtoMetric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

use super::catalogue::{Kind, Metric};

#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) metric: &'static Metric,
    /// Values of the metric's labels, in the catalogue's order.
    pub(crate) labels: Box<[String]>,
    pub(crate) value: f64,
}

impl Sample {
    /// The value of the label `name`, if the metric has that label.
    pub(crate) fn label(&self, name: &str) -> Option<&str> {
        let position = self.metric.label_position(name)?;
        Some(&self.labels[position])
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Samples(Vec<Sample>);

impl Samples {
    /// Adds a sample; `labels` are the values of the metric's labels in the
    /// catalogue's order.
    pub(crate) fn add(&mut self, metric: &'static Metric, labels: &[&str], value: f64) {
        debug_assert_eq!(labels.len(), metric.labels.len(), "{}", metric.name);
        debug_assert!(
            metric
                .labels
                .iter()
                .zip(labels)
                .all(|(label, value)| label.values.is_empty() || label.values.contains(value)),
            "{}{labels:?}: a label value the catalogue does not list",
            metric.name
        );
        self.0.push(Sample {
            metric,
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            value,
        });
    }

    /// Adds a sample when there is a value: readings a source does not offer
    /// are omitted, never zeroed.
    pub(crate) fn add_some(
        &mut self,
        metric: &'static Metric,
        labels: &[&str],
        value: Option<f64>,
    ) {
        if let Some(value) = value {
            self.add(metric, labels, value);
        }
    }

    /// The samples in the order they were added.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Sample> {
        self.0.iter()
    }

    pub(crate) fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// The samples as Prometheus text, one family per metric, families sorted
    /// by name.
    pub(crate) fn encode(&self) -> String {
        self.encode_kept(|_| true)
    }

    /// As [`Samples::encode`], for the metrics `keep` keeps only.
    pub(crate) fn encode_kept(&self, keep: impl Fn(&Metric) -> bool) -> String {
        let mut samples: Vec<&Sample> = self.0.iter().filter(|s| keep(s.metric)).collect();
        // Stable: the samples of a family keep the order they were added in.
        samples.sort_by_key(|s| s.metric.name);
        let mut families = Families::default();
        let mut current: Option<&Metric> = None;
        for sample in samples {
            let metric = sample.metric;
            match current {
                // Two catalogue entries may share a name (the two forms of
                // the NVLink error counter); a family holds one of them.
                Some(family) if family.name == metric.name => debug_assert!(
                    label_names(family).eq(label_names(metric)),
                    "{}: two label sets in one family",
                    metric.name
                ),
                _ => {
                    families.family(metric.name, metric.help, metric.kind);
                    current = Some(metric);
                }
            }
            let names = metric.labels.iter().map(|label| label.name);
            let values = sample.labels.iter().map(String::as_str);
            families.series(names.zip(values), sample.value);
        }
        families.encode()
    }
}

fn label_names(metric: &Metric) -> impl Iterator<Item = &'static str> + '_ {
    metric.labels.iter().map(|label| label.name)
}

/// Families of series with any label names, in the order they are started:
/// for series whose labels are not a catalogue metric's (the dcgm view's
/// fields), and for collections.
#[derive(Default)]
pub(crate) struct Families(Vec<MetricFamily>);

impl Families {
    /// Starts a family; the series added next belong to it. A family that
    /// got no series is left out.
    pub(crate) fn family(&mut self, name: &str, help: &str, kind: Kind) {
        if self.0.last().is_some_and(|f| f.get_metric().is_empty()) {
            self.0.pop();
        }
        let mut family = MetricFamily::default();
        family.set_name(name.to_owned());
        family.set_help(help.to_owned());
        family.set_field_type(match kind {
            Kind::Gauge => MetricType::GAUGE,
            Kind::Counter => MetricType::COUNTER,
        });
        self.0.push(family);
    }

    /// Adds a series to the family started last.
    pub(crate) fn series<'a>(
        &mut self,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        value: f64,
    ) {
        let family = self.0.last_mut().expect("a family is started first");
        let mut metric = ProtoMetric::default();
        metric.set_label(
            labels
                .into_iter()
                .map(|(name, value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name(name.to_owned());
                    pair.set_value(value.to_owned());
                    pair
                })
                .collect(),
        );
        match family.get_field_type() {
            MetricType::COUNTER => {
                let mut counter = Counter::default();
                counter.set_value(value);
                metric.set_counter(counter);
            }
            _ => {
                let mut gauge = Gauge::default();
                gauge.set_value(value);
                metric.set_gauge(gauge);
            }
        }
        family.mut_metric().push(metric);
    }

    /// The families in the text format.
    pub(crate) fn encode(&self) -> String {
        let mut families = self.0.as_slice();
        if families.last().is_some_and(|f| f.get_metric().is_empty()) {
            families = &families[..families.len() - 1];
        }
        let mut text = Vec::with_capacity(4096);
        TextEncoder::new()
            .encode(families, &mut text)
            .expect("every family has samples, and writing to a Vec cannot fail");
        String::from_utf8(text).expect("the text encoder writes UTF-8")
    }
}

pub(crate) fn bool_value(value: bool) -> f64 {
    if value { 1.0 } else { 0.0 }
}

/// The text format written directly, for the few metrics made per scrape:
/// building the prometheus crate's protobuf messages for them cost more
/// than the rest of a scrape. Callers write each family's samples together.
#[derive(Default)]
pub(crate) struct Text {
    out: String,
    family: &'static str,
}

impl Text {
    /// A sample of a catalogue metric; `labels` in the catalogue's order.
    pub(crate) fn sample(&mut self, metric: &'static Metric, labels: &[&str], value: f64) {
        debug_assert_eq!(labels.len(), metric.labels.len(), "{}", metric.name);
        if self.family != metric.name {
            self.header(metric.name, metric.kind.name(), metric.help);
        }
        self.out.push_str(metric.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in metric.labels.iter().zip(labels).enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label.name);
                self.out.push_str("=\"");
                escape_label_value(&mut self.out, value);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.value(value);
    }

    /// A family of one sample without labels, outside the catalogue (the
    /// standard `process_*` metrics).
    pub(crate) fn unlabelled_family(
        &mut self,
        name: &'static str,
        kind: Kind,
        help: &str,
        value: f64,
    ) {
        self.header(name, kind.name(), help);
        self.out.push_str(name);
        self.value(value);
    }

    fn header(&mut self, name: &'static str, kind: &str, help: &str) {
        self.family = name;
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push(' ');
        // Help texts rarely need escaping: copy them whole when they do not.
        if help.contains(['\\', '\n']) {
            for c in help.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
        } else {
            self.out.push_str(help);
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
    }

    fn value(&mut self, value: f64) {
        self.out.push(' ');
        if value.is_infinite() {
            self.out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(self.out, "{value}");
        }
        self.out.push('\n');
    }

    /// Text written by another `Text`: whole families.
    pub(crate) fn append(&mut self, families: &str) {
        self.family = "";
        self.out.push_str(families);
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

fn escape_label_value(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::catalogue::{CLOCK, ENERGY, GPU_INFO, TEMPERATURE};

    #[test]
    fn groups_samples_into_families_sorted_by_name() {
        let mut samples = Samples::default();
        samples.add(&TEMPERATURE, &["0", "GPU-a"], 45.0);
        samples.add(&CLOCK, &["0", "GPU-a", "sm"], 1.41e9);
        samples.add(&TEMPERATURE, &["1", "GPU-b\"\n"], 50.5);
        samples.add_some(&ENERGY, &["0", "GPU-a"], None);
        let text = samples.encode();
        let expected = "\
# HELP nvidia_gpu_clock_hertz Current clock frequency of a clock domain.
# TYPE nvidia_gpu_clock_hertz gauge
nvidia_gpu_clock_hertz{gpu=\"0\",uuid=\"GPU-a\",clock=\"sm\"} 1410000000
# HELP nvidia_gpu_temperature_celsius GPU core temperature in degrees Celsius.
# TYPE nvidia_gpu_temperature_celsius gauge
nvidia_gpu_temperature_celsius{gpu=\"0\",uuid=\"GPU-a\"} 45
nvidia_gpu_temperature_celsius{gpu=\"1\",uuid=\"GPU-b\\\"\\n\"} 50.5
";
        assert_eq!(text, expected);
    }

    #[test]
    #[should_panic(expected = "a label value the catalogue does not list")]
    fn rejects_label_values_outside_the_catalogue() {
        Samples::default().add(&CLOCK, &["0", "GPU-a", "warp"], 1.0);
    }

    /// The direct writer writes what the prometheus crate's encoder writes.
    #[test]
    fn text_matches_the_prometheus_encoder() {
        let labels = [
            "0",
            "GPU-a",
            "name \"quoted\" back\\slash\nline",
            "0000:01:00.0",
            "s",
        ];
        for value in [1.0, 0.5, 1796081500.0, 1e-7, 123456.789] {
            let mut text = Text::default();
            text.sample(&GPU_INFO, &labels, value);
            text.sample(&GPU_INFO, &labels, value);
            let mut samples = Samples::default();
            samples.add(&GPU_INFO, &labels, value);
            samples.add(&GPU_INFO, &labels, value);
            assert_eq!(text.finish(), samples.encode());
        }
        let mut text = Text::default();
        text.unlabelled_family("process_x", Kind::Gauge, "Help.", f64::INFINITY);
        assert_eq!(
            text.finish(),
            "# HELP process_x Help.\n# TYPE process_x gauge\nprocess_x +Inf\n"
        );
    }
}
