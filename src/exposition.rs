//! Samples of catalogue metrics and their Prometheus text encoding. A
//! collector's samples are encoded once per collection, so a scrape only
//! concatenates prepared text.

use prometheus::proto::{
    Counter, Gauge, LabelPair, Metric as ProtoMetric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

use crate::catalogue::{Kind, Metric};

#[derive(Debug, Clone)]
pub struct Sample {
    pub metric: &'static Metric,
    /// Values of the metric's labels, in the catalogue's order.
    pub labels: Box<[String]>,
    pub value: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Sample>);

impl Samples {
    /// Adds a sample; `labels` are the values of the metric's labels in the
    /// catalogue's order.
    pub fn add(&mut self, metric: &'static Metric, labels: &[&str], value: f64) {
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
    pub fn add_some(&mut self, metric: &'static Metric, labels: &[&str], value: Option<f64>) {
        if let Some(value) = value {
            self.add(metric, labels, value);
        }
    }

    /// The samples in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Sample> {
        self.0.iter()
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// The samples as Prometheus text, one family per metric, families sorted
    /// by name.
    pub fn encode(&self) -> String {
        let mut samples: Vec<&Sample> = self.0.iter().collect();
        // Stable: the samples of a family keep the order they were added in.
        samples.sort_by_key(|s| s.metric.name);
        let mut families: Vec<MetricFamily> = Vec::new();
        for sample in samples {
            if families
                .last()
                .is_none_or(|f| f.name() != sample.metric.name)
            {
                families.push(family(sample.metric));
            }
            let family = families.last_mut().expect("pushed above");
            family.mut_metric().push(proto_metric(sample));
        }
        encode_families(&families)
    }
}

/// Encodes families in the text format.
pub fn encode_families(families: &[MetricFamily]) -> String {
    let mut text = Vec::with_capacity(4096);
    TextEncoder::new()
        .encode(families, &mut text)
        .expect("every family has samples, and writing to a Vec cannot fail");
    String::from_utf8(text).expect("the text encoder writes UTF-8")
}

fn family(metric: &Metric) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(metric.name.to_owned());
    family.set_help(metric.help.to_owned());
    family.set_field_type(match metric.kind {
        Kind::Gauge => MetricType::GAUGE,
        Kind::Counter => MetricType::COUNTER,
    });
    family
}

fn proto_metric(sample: &Sample) -> ProtoMetric {
    let mut metric = ProtoMetric::default();
    metric.set_label(
        sample
            .metric
            .labels
            .iter()
            .zip(&sample.labels)
            .map(|(label, value)| {
                let mut pair = LabelPair::default();
                pair.set_name(label.name.to_owned());
                pair.set_value(value.clone());
                pair
            })
            .collect(),
    );
    match sample.metric.kind {
        Kind::Counter => {
            let mut counter = Counter::default();
            counter.set_value(sample.value);
            metric.set_counter(counter);
        }
        Kind::Gauge => {
            let mut gauge = Gauge::default();
            gauge.set_value(sample.value);
            metric.set_gauge(gauge);
        }
    }
    metric
}

pub fn bool_value(value: bool) -> f64 {
    if value { 1.0 } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{CLOCK, ENERGY, TEMPERATURE};

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
}
