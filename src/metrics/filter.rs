//! `--metrics.include` and `--metrics.exclude`: which metric families the
//! collectors' collections keep. Patterns are full matches in RE2 syntax,
//! as in Prometheus' relabelling. The exporter's metrics about itself are
//! never filtered.
//!
//! Metric names are ASCII, so patterns are compiled without Unicode: `\w`,
//! `\d`, `\s` and `\b` are ASCII as in RE2, `(?i)` folds ASCII case, and
//! the regex crate's Unicode tables (1.2 MB of the binary) stay out. A
//! Unicode class such as `\pL` is refused with the crate's message.

use std::fmt;

use regex::bytes::{Regex, RegexBuilder};

use super::catalogue::{Metric, Section};

/// A pattern that must match a whole metric name.
#[derive(Clone)]
pub(crate) struct Pattern {
    text: String,
    regex: Regex,
}

impl Pattern {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let regex = RegexBuilder::new(&format!("^(?:{text})$"))
            .unicode(false)
            .build()
            .map_err(|e| match e.to_string() {
                m if m.contains("Unicode") => {
                    format!("{m}\nmetric names are ASCII: write a class such as [A-Za-z] instead")
                }
                m => m,
            })?;
        Ok(Self {
            text: text.to_owned(),
            regex,
        })
    }

    fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name.as_bytes())
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Which families are kept: those `include` matches (all without it) that
/// `exclude` does not match.
#[derive(Debug, Clone, Default)]
pub(crate) struct MetricFilter {
    pub(crate) include: Option<Pattern>,
    pub(crate) exclude: Option<Pattern>,
}

impl MetricFilter {
    /// Whether the family named `name` is kept.
    pub(crate) fn keeps(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|p| p.matches(name))
            && !self.exclude.as_ref().is_some_and(|p| p.matches(name))
    }

    /// Whether a collection keeps `metric`: the exporter's own metrics always.
    pub(crate) fn keeps_metric(&self, metric: &Metric) -> bool {
        metric.section == Section::Exporter || self.keeps(metric.name)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::catalogue::{CLOCK, NVML_CALLS, TEMPERATURE};

    fn filter(include: Option<&str>, exclude: Option<&str>) -> MetricFilter {
        MetricFilter {
            include: include.map(|p| Pattern::parse(p).unwrap()),
            exclude: exclude.map(|p| Pattern::parse(p).unwrap()),
        }
    }

    #[test]
    fn patterns_match_whole_names_and_exclude_wins() {
        let f = filter(Some("nvidia_gpu_.*"), Some("nvidia_gpu_clock.*"));
        assert!(f.keeps("nvidia_gpu_temperature_celsius"));
        assert!(!f.keeps("nvidia_gpu_clock_hertz"));
        assert!(!f.keeps("host_cpus"));
        // A full match: a pattern for part of a name keeps nothing.
        assert!(!filter(Some("temperature"), None).keeps("nvidia_gpu_temperature_celsius"));
        assert!(filter(None, None).keeps("anything"));
        assert!(filter(Some("a|b"), None).keeps("b"));
        // RE2's ASCII classes and case folding.
        let f = filter(Some(r"(?i)NVIDIA_\w+_celsius"), Some(r"\w*memory\w*"));
        assert!(f.keeps("nvidia_gpu_temperature_celsius"));
        assert!(!f.keeps("nvidia_gpu_memory_temperature_celsius"));
        assert!(filter(Some(r"host_load\d+"), None).keeps("host_load15"));
    }

    #[test]
    fn the_exporters_own_metrics_are_never_filtered() {
        let f = filter(Some("nvidia_gpu_temperature_celsius"), Some(".*calls.*"));
        assert!(f.keeps_metric(&TEMPERATURE));
        assert!(!f.keeps_metric(&CLOCK));
        assert!(f.keeps_metric(&NVML_CALLS));
    }

    #[test]
    fn invalid_patterns_say_why() {
        assert!(
            Pattern::parse("nvidia_(")
                .unwrap_err()
                .contains("unclosed group")
        );
        assert!(Pattern::parse(r"\pL+").unwrap_err().contains("[A-Za-z]"));
    }
}
