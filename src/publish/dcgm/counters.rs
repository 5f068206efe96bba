//! dcgm-exporter's counters file (`--dcgm.counters`): which fields the dcgm
//! view serves, in which order, with which type and help text, and which
//! fields become labels. The format is that of dcgm-exporter's
//! `default-counters.csv`: rows `DCGM field, Prometheus type, help`, quoted
//! as in CSV, `#` at the start of a line for a comment. The file is read
//! once, at start, into plain data ([`Counters`]) for [`super::View`].

use std::collections::HashMap;
use std::path::Path;

use tracing::{info, warn};

use super::fields::{Conversion, DRIVER_VERSION_LABEL, FIELDS, Field};
use crate::metrics::catalogue::Kind;

/// The fields that can be `label` rows: each names one label of every
/// series, whose value is the field's (here the driver version).
const LABEL_FIELDS: &[&str] = &[DRIVER_VERSION_LABEL];

/// What the dcgm view serves.
#[derive(Debug, PartialEq)]
pub(crate) struct Counters {
    /// The fields to serve, in this order.
    pub(crate) fields: Vec<Served>,
    /// The `label` rows this exporter provides, by name: dcgm-exporter adds
    /// each to every series, sorted by name.
    pub(crate) labels: Vec<&'static str>,
    /// Rows naming a field this exporter never provides; not served.
    pub(crate) skipped: Vec<Note>,
    /// Rows served with another type than the file's, and why.
    pub(crate) retyped: Vec<Note>,
}

/// A field to serve, with its type and help text.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) field: &'static Field,
    pub(crate) kind: Kind,
    pub(crate) help: String,
}

impl PartialEq for Served {
    fn eq(&self, other: &Self) -> bool {
        (self.field.name, self.kind, &self.help) == (other.field.name, other.kind, &other.help)
    }
}

/// A row of the file the view does not follow as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Note {
    pub(crate) line: u64,
    pub(crate) field: String,
    pub(crate) why: String,
}

impl Default for Counters {
    /// Without a file: every field of the table with its own type and help,
    /// and the driver-version label, as `deploy/dcgm/default-counters.csv`.
    fn default() -> Self {
        Self {
            fields: FIELDS
                .iter()
                .map(|field| Served {
                    field,
                    kind: field.kind,
                    help: field.help.to_owned(),
                })
                .collect(),
            labels: vec![DRIVER_VERSION_LABEL],
            skipped: Vec::new(),
            retyped: Vec::new(),
        }
    }
}

/// The Prometheus types dcgm-exporter accepts in the second column.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Type {
    Gauge,
    Counter,
    Histogram,
    Summary,
    Label,
}

impl Type {
    /// Exact and case-sensitive, as dcgm-exporter compares them.
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "gauge" => Self::Gauge,
            "counter" => Self::Counter,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "label" => Self::Label,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Gauge => "gauge",
            Self::Counter => "counter",
            Self::Histogram => "histogram",
            Self::Summary => "summary",
            Self::Label => "label",
        }
    }
}

/// Reads and checks the file, and logs each row the view does not follow
/// as written (one line each). The error names the file and the line.
pub(crate) fn read(path: &Path) -> Result<Counters, String> {
    let name = path.display();
    let text = std::fs::read(path)
        .map_err(|e| format!("cannot read the dcgm counters file {name}: {e}"))?;
    let counters = parse(&text)
        .map_err(|(line, e)| format!("invalid dcgm counters file {name}, line {line}: {e}"))?;
    for note in &counters.skipped {
        let (line, field) = (note.line, &note.field);
        warn!(file = %name, line, field = %field, "dcgm counters: skipped: {}", note.why);
    }
    for note in &counters.retyped {
        let (line, field) = (note.line, &note.field);
        info!(file = %name, line, field = %field, "dcgm counters: {}", note.why);
    }
    if counters.fields.is_empty() {
        warn!(file = %name, "dcgm counters: the file lists no field this exporter provides; the view serves none");
    }
    Ok(counters)
}

/// The rows of `text`, or the line of the first malformed one and what is
/// wrong with it. Each row is one line: the csv crate splits it into
/// columns (quoting), while lines, comments and line numbers are handled
/// here, because its record positions count blank and comment lines
/// inconsistently.
pub(crate) fn parse(text: &[u8]) -> Result<Counters, (u64, String)> {
    let text = std::str::from_utf8(text).map_err(|e| {
        let line = text[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        (line as u64 + 1, "not UTF-8 text".to_owned())
    })?;
    let mut counters = Counters {
        fields: Vec::new(),
        labels: Vec::new(),
        skipped: Vec::new(),
        retyped: Vec::new(),
    };
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (line, content) in (1..).zip(text.split('\n')) {
        let content = content.strip_suffix('\r').unwrap_or(content);
        // A comment starts at the first character, as for dcgm-exporter; a
        // line of spaces is blank too (dcgm-exporter rejects it).
        if content.starts_with('#') || content.trim().is_empty() {
            continue;
        }
        let row = columns(content).map_err(|e| (line, e))?;
        let [name, kind, help] = &row[..] else {
            return Err((
                line,
                format!(
                    "expected 3 columns (DCGM field, Prometheus type, help), found {}; \
                     quote a help text that contains a comma",
                    row.len()
                ),
            ));
        };
        let identifier = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if name.is_empty() || !name.chars().all(identifier) {
            return Err((
                line,
                format!(
                    "{name:?} is not a DCGM field name; a comment needs its # first on the line"
                ),
            ));
        }
        let kind = Type::parse(kind).ok_or_else(|| {
            (
                line,
                format!("unknown Prometheus type {kind:?} for {name}: gauge, counter, histogram, summary or label"),
            )
        })?;
        if let Some(first) = seen.insert(name.clone(), line) {
            return Err((
                line,
                format!("{name} is listed twice (also on line {first})"),
            ));
        }
        counters.add(line, name, kind, help);
    }
    counters.labels.sort_unstable();
    Ok(counters)
}

/// The columns of one line, unquoted and trimmed. A quote must close on
/// its line: a row is one line, and a help text one `# HELP` line.
fn columns(line: &str) -> Result<Vec<String>, String> {
    if line.matches('"').count() % 2 == 1 {
        return Err("a quote is not closed; a quoted value must end on its line".to_owned());
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(line.as_bytes());
    match reader.records().next() {
        Some(Ok(record)) => Ok(record.iter().map(str::to_owned).collect()),
        Some(Err(e)) => Err(e.to_string()),
        None => Ok(Vec::new()),
    }
}

impl Counters {
    fn add(&mut self, line: u64, name: &str, kind: Type, help: &str) {
        let note = |why: String| Note {
            line,
            field: name.to_owned(),
            why,
        };
        let label = LABEL_FIELDS.iter().copied().find(|l| *l == name);
        let field = FIELDS.iter().find(|f| f.name == name);
        match (kind, label, field) {
            (Type::Label, Some(label), _) => self.labels.push(label),
            (Type::Label, None, Some(_)) => self.skipped.push(note(format!(
                "{name} is served as a metric, not as a label"
            ))),
            (_, Some(_), _) => self.skipped.push(note(format!(
                "{name} is served as a label only (type label)"
            ))),
            (_, None, Some(field)) => {
                let (served, why) = kind_of(field, kind);
                if let Some(why) = why {
                    self.retyped.push(note(why));
                }
                self.fields.push(Served {
                    field,
                    kind: served,
                    help: help.to_owned(),
                });
            }
            (_, None, None) => self
                .skipped
                .push(note(format!("{name} is not provided by this exporter"))),
        }
    }
}

/// The type `field` is served with when the file says `kind`, and why it
/// differs when it does: the file's, except that a rate is a gauge whatever
/// dcgm-exporter declares (`DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL`), and that
/// one value per series cannot be a histogram or a summary.
fn kind_of(field: &Field, kind: Type) -> (Kind, Option<String>) {
    let name = field.name;
    match (kind, field.conversion) {
        (Type::Gauge, _) => (Kind::Gauge, None),
        (Type::Counter, Conversion::Rate(_)) => (
            Kind::Gauge,
            Some(format!(
                "{name} is served as a gauge, not a counter: its value is a rate \
                 (docs/dcgm-compatibility.md)"
            )),
        ),
        (Type::Counter, _) => (Kind::Counter, None),
        (Type::Histogram | Type::Summary | Type::Label, _) => (
            field.kind,
            Some(format!(
                "{name} is served as a {}, not a {}: it has one value per series",
                field.kind.name(),
                kind.name()
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Counters {
        parse(text.as_bytes()).unwrap_or_else(|(line, e)| panic!("line {line}: {e}"))
    }

    fn error(text: &str) -> (u64, String) {
        parse(text.as_bytes()).expect_err("a malformed file")
    }

    /// (name, type, help) of each served field, in order.
    fn served(counters: &Counters) -> Vec<(&str, &str, &str)> {
        let fields = counters.fields.iter();
        fields
            .map(|s| (s.field.name, s.kind.name(), s.help.as_str()))
            .collect()
    }

    fn skipped(counters: &Counters) -> Vec<(u64, &str)> {
        let skipped = counters.skipped.iter();
        skipped.map(|n| (n.line, n.field.as_str())).collect()
    }

    #[test]
    fn rows_are_served_in_the_files_order_with_its_type_and_help() {
        let counters = parsed(
            "# Format\n\
             # DCGM FIELD, Prometheus metric type, help message\n\
             \n\
             DCGM_FI_DEV_GPU_TEMP,    gauge, GPU temperature (in C).\n\
             \t \n\
             DCGM_FI_DEV_SM_CLOCK ,  counter ,  SM clock # not a comment  \n\
             DCGM_FI_DEV_FB_USED,gauge,\"Framebuffer used, in MiB\"\r\n\
             DCGM_FI_DEV_POWER_USAGE, gauge, \n",
        );
        assert_eq!(
            served(&counters),
            [
                ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
                (
                    "DCGM_FI_DEV_SM_CLOCK",
                    "counter",
                    "SM clock # not a comment"
                ),
                ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer used, in MiB"),
                ("DCGM_FI_DEV_POWER_USAGE", "gauge", ""),
            ]
        );
        assert!(counters.labels.is_empty());
        assert!(counters.skipped.is_empty() && counters.retyped.is_empty());
    }

    #[test]
    fn quotes_escape_commas_and_quotes() {
        let counters = parsed("DCGM_FI_DEV_GPU_UTIL,gauge,\"a \"\"quoted\"\", comma\"\n");
        assert_eq!(served(&counters)[0].2, "a \"quoted\", comma");
    }

    #[test]
    fn label_rows_become_labels_and_only_provided_ones() {
        let counters = parsed(
            "DCGM_FI_DRIVER_VERSION, label, Driver Version\n\
             DCGM_FI_DEV_SERIAL, label, Device Serial Number\n\
             DCGM_FI_DEV_GPU_TEMP, label, temperature as a label\n\
             DCGM_FI_DEV_GPU_TEMP_X, gauge, x\n",
        );
        assert_eq!(counters.labels, [DRIVER_VERSION_LABEL]);
        assert!(counters.fields.is_empty());
        assert_eq!(
            skipped(&counters),
            [
                (2, "DCGM_FI_DEV_SERIAL"),
                (3, "DCGM_FI_DEV_GPU_TEMP"),
                (4, "DCGM_FI_DEV_GPU_TEMP_X")
            ]
        );
        // The driver version is a string: a label only.
        let counters = parsed("DCGM_FI_DRIVER_VERSION, gauge, Driver Version\n");
        assert!(counters.labels.is_empty() && counters.fields.is_empty());
        assert_eq!(skipped(&counters), [(1, "DCGM_FI_DRIVER_VERSION")]);
    }

    #[test]
    fn fields_this_exporter_never_provides_are_skipped_not_fatal() {
        let counters = parsed(
            "DCGM_FI_DEV_NVSWITCH_LINK_THROUGHPUT_TX, counter, NVSwitch\n\
             DCGM_EXP_XID_ERRORS_COUNT, counter, reported XIDs during last window\n\
             DCGM_FI_DEV_VGPU_LICENSE_STATUS, gauge, vGPU License status\n\
             # A profiling field is provided, also where a GPU has no GPM.\n\
             DCGM_FI_PROF_SM_ACTIVE, gauge, SM active\n",
        );
        assert_eq!(
            skipped(&counters),
            [
                (1, "DCGM_FI_DEV_NVSWITCH_LINK_THROUGHPUT_TX"),
                (2, "DCGM_EXP_XID_ERRORS_COUNT"),
                (3, "DCGM_FI_DEV_VGPU_LICENSE_STATUS"),
            ]
        );
        assert_eq!(
            served(&counters),
            [("DCGM_FI_PROF_SM_ACTIVE", "gauge", "SM active")]
        );
        assert!(counters.skipped[0].why.contains("not provided"));
    }

    #[test]
    fn a_rate_stays_a_gauge_and_single_values_are_no_histograms() {
        let counters = parsed(
            "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL, counter, Total number of NVLink bandwidth counters\n\
             DCGM_FI_PROF_PCIE_TX_BYTES, counter, PCIe\n\
             DCGM_FI_DEV_GPU_TEMP, histogram, t\n\
             DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION, summary, e\n\
             DCGM_FI_DEV_PCIE_REPLAY_COUNTER, gauge, as the file says\n",
        );
        let kinds: Vec<&str> = served(&counters).iter().map(|s| s.1).collect();
        assert_eq!(kinds, ["gauge", "gauge", "gauge", "counter", "gauge"]);
        let retyped: Vec<(u64, &str)> = counters
            .retyped
            .iter()
            .map(|n| (n.line, n.field.as_str()))
            .collect();
        assert_eq!(
            retyped,
            [
                (1, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"),
                (2, "DCGM_FI_PROF_PCIE_TX_BYTES"),
                (3, "DCGM_FI_DEV_GPU_TEMP"),
                (4, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"),
            ]
        );
        assert!(
            counters.retyped[0].why.contains("rate"),
            "{:?}",
            counters.retyped
        );
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let (line, e) = error("# c\nDCGM_FI_DEV_GPU_TEMP, gauge, t\nDCGM_FI_DEV_SM_CLOCK, gauge\n");
        assert_eq!(line, 3);
        assert!(
            e.contains("expected 3 columns") && e.contains("found 2"),
            "{e}"
        );
        // A comma in an unquoted help text.
        let (line, e) = error("\nDCGM_FI_DEV_GPU_TEMP, gauge, GPU temperature, in C\n");
        assert_eq!(line, 2);
        assert!(e.contains("found 4") && e.contains("quote"), "{e}");
        let (line, e) = error("DCGM_FI_DEV_GPU_TEMP, gauge, t\nDCGM_FI_DEV_SM_CLOCK, Gauge, c\n");
        assert_eq!(line, 2);
        assert!(e.contains("unknown Prometheus type \"Gauge\""), "{e}");
        let (line, e) = error("DCGM_FI_DEV_SM_CLOCK, untyped, c\n");
        assert_eq!(line, 1);
        assert!(e.contains("untyped"), "{e}");
        // A comment must start the line.
        let (line, e) =
            error("DCGM_FI_DEV_SM_CLOCK, gauge, c\n  # DCGM_FI_DEV_GPU_TEMP, gauge, t\n");
        assert_eq!(line, 2);
        assert!(e.contains("not a DCGM field name"), "{e}");
        let (line, e) = error("DCGM_FI_DEV_SM_CLOCK, gauge, \"c\nDCGM_FI_DEV_GPU_TEMP, gauge, t\n");
        assert_eq!(line, 1);
        assert!(e.contains("quote is not closed"), "{e}");
        let (line, e) = error("DCGM_FI_DEV_SM_CLOCK, gauge, c\n\nDCGM_FI_DEV_SM_CLOCK, gauge, d\n");
        assert_eq!(line, 3);
        assert!(e.contains("twice (also on line 1)"), "{e}");
        let (line, e) = error(", gauge, c\n");
        assert_eq!(line, 1);
        assert!(e.contains("not a DCGM field name"), "{e}");
        let (line, _) =
            parse(b"DCGM_FI_DEV_SM_CLOCK, gauge, c\nDCGM_FI_DEV_GPU_TEMP, gauge, \xff\n")
                .expect_err("invalid UTF-8");
        assert_eq!(line, 2);
    }

    #[test]
    fn an_empty_file_serves_nothing() {
        let counters = parsed("# nothing\n\n");
        assert!(counters.fields.is_empty() && counters.labels.is_empty());
    }

    #[test]
    fn the_shipped_default_file_is_the_built_in_default() {
        let file = include_str!("../../../deploy/dcgm/default-counters.csv");
        assert_eq!(parsed(file), Counters::default());
    }
}
