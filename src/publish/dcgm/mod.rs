//! The dcgm-exporter compatible view (`--metrics.format=dcgm`): the fields
//! of dcgm-exporter's default counter set, under DCGM's names, units and
//! labels, computed from the same collections as the native metrics. Its
//! purpose is that dashboards and alerts written for dcgm-exporter work
//! unchanged, so it deliberately follows DCGM's conventions (MHz, MiB,
//! percent, mJ, `UUID`, `modelName`) rather than Prometheus' base units.
//!
//! The fields are one table, [`fields::FIELDS`] (like dcgm-exporter's
//! `default-counters.csv`, plus where each value comes from); which of them
//! are served, in which order, with which type and help, is
//! [`counters::Counters`]: all of them by default, or those a counters file
//! lists. A field's series are labelled from the typed facts of the
//! collections ([`labels`]). `docs/dcgm-compatibility.md` documents it.

pub(crate) mod counters;
pub(crate) mod fields;
mod labels;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use super::Format;
use crate::collector::facts::{GpuAllocation, JobAssignment};
use crate::collector::{Collection, Latest, Wanted};
use crate::metrics::catalogue::Section;
use crate::metrics::catalogue::{MIG_MEMORY_TOTAL, MIG_MEMORY_USED};
use crate::metrics::exposition::{Families, Sample, Samples};
use counters::Counters;
use fields::{Conversion, DRIVER_VERSION_LABEL, Field, MigMemory, xid_name};
use labels::{Labeller, Labels};

/// The dcgm view of the collections: converts each GPU collection's native
/// samples, keeping what a conversion needs from earlier collections.
pub(crate) struct View {
    hostname: String,
    /// The fields served and the labels added.
    counters: Counters,
    /// From the pods collector's latest collection: its thread is not the GPU
    /// collector's, so the join happens when a GPU collection is converted,
    /// with the allocations at most one interval old (as in the native view,
    /// where the pods collector reads the GPU collector's latest indexes).
    allocations: Latest<Vec<GpuAllocation>>,
    /// From the hpc collector's latest collection, joined the same way.
    jobs: Latest<Vec<JobAssignment>>,
    state: Mutex<State>,
}

/// The value and time of each rate's counter, by field and series.
type Rates = HashMap<(&'static str, Key), (f64, Instant)>;

/// What conversions remember between GPU collections.
#[derive(Default)]
struct State {
    counters: Rates,
    /// Previous XID counts and the last XID, by GPU UUID.
    xids: HashMap<String, Xids>,
}

#[derive(Default)]
struct Xids {
    counts: BTreeMap<u64, f64>,
    last: u64,
}

/// One DCGM series before labelling: the GPU index, its UUID and the GPU
/// instance (empty for the whole GPU). Ordered so that GPU 10 follows GPU 9.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    gpu_width: usize,
    gpu: String,
    uuid: String,
    gpu_instance: String,
}

impl Key {
    /// The series a native GPU sample belongs to.
    fn of(sample: &Sample) -> Option<Self> {
        let gpu = sample.label("gpu")?;
        Some(Self {
            gpu_width: gpu.len(),
            gpu: gpu.to_owned(),
            uuid: sample.label("uuid")?.to_owned(),
            gpu_instance: sample.label("gpu_instance_id").unwrap_or("").to_owned(),
        })
    }
}

/// A series of a field: which GPU (instance), labels beyond the common ones,
/// and the value.
type Series = (Key, Labels, f64);

impl Format for View {
    /// The exporter's own metrics as they are, and the GPU readings as DCGM
    /// fields, labelled with the pods collector's allocations. The other
    /// native metrics (host, native GPU) are not part of dcgm-exporter's
    /// output and are left out.
    fn render(&self, collection: &Collection, taken: Instant) -> String {
        let mut text = own_metrics(&collection.samples).encode();
        if let Some(allocations) = &collection.allocations {
            self.allocations.set(allocations.clone());
        }
        if let Some(jobs) = &collection.jobs {
            self.jobs.set(jobs.clone());
        }
        if let Some(inventory) = &collection.gpus {
            let allocations = self.allocations.get().unwrap_or_default();
            let jobs = self.jobs.get().unwrap_or_default();
            let driver_version = self.counters.labels.contains(&DRIVER_VERSION_LABEL);
            let labels = Labeller::new(inventory, &self.hostname, driver_version, &allocations)
                .with_jobs(&jobs);
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let families = convert(
                &self.counters,
                &collection.samples,
                &labels,
                &mut state,
                taken,
            );
            text.push_str(&families.encode());
        }
        text
    }
}

impl View {
    /// The native metrics the served fields are computed from, for the
    /// collectors: the view needs no other reading.
    pub(crate) fn wanted(&self) -> Wanted {
        let sources = self.counters.fields.iter().flat_map(|s| s.field.sources);
        Wanted::only(sources.map(|metric| metric.name))
    }

    /// `hostname` is the `Hostname` label of every series (none when empty);
    /// `counters` the fields to serve.
    pub(crate) fn new(hostname: String, counters: Counters) -> Self {
        Self {
            hostname,
            counters,
            allocations: Latest::default(),
            jobs: Latest::default(),
            state: Mutex::new(State::default()),
        }
    }
}

/// Every served field's series from one GPU collection's samples, in the
/// order of `served`.
fn convert(
    served: &Counters,
    samples: &Samples,
    labels: &Labeller,
    state: &mut State,
    now: Instant,
) -> Families {
    let mut counters = Rates::new();
    let mut families = Families::default();
    for served in &served.fields {
        let field = served.field;
        let series: Vec<Series> = match field.conversion {
            Conversion::LastXid => last_xids(samples, field, &mut state.xids),
            _ => sums(samples, field)
                .into_iter()
                .filter_map(|(key, sum)| {
                    let value = converted(field, &key, sum, &state.counters, &mut counters, now)?;
                    Some((key, Labels::new(), value))
                })
                .collect(),
        };
        families.family(field.name, &served.help, served.kind);
        for (key, extra, value) in series {
            // One copy of the series per Slurm job of its GPU (instance), as
            // dcgm-exporter's HPC job mapping makes them.
            let jobs = labels.jobs(&key.uuid, &key.gpu_instance);
            let copies: Vec<Labels> = match jobs {
                [] => vec![extra],
                jobs => jobs
                    .iter()
                    .map(|job| {
                        let mut extra = extra.clone();
                        extra.push(("hpc_job", (*job).to_owned()));
                        extra
                    })
                    .collect(),
            };
            for extra in copies {
                let labels = labels.of(&key.gpu, &key.uuid, &key.gpu_instance, extra);
                let labels = labels.iter().map(|(name, value)| (*name, value.as_str()));
                families.series(labels, value);
            }
        }
    }
    // Series not in this collection start again from nothing, e.g. after
    // a GPU was down: a rate across the gap would mislead.
    state.counters = counters;
    families
}

/// The sum of `field`'s sources per GPU and GPU instance, and for a
/// framebuffer field each MIG GPU instance's.
fn sums(samples: &Samples, field: &Field) -> BTreeMap<Key, f64> {
    let mut sums = BTreeMap::new();
    for sample in sources(samples, field) {
        if let Some(key) = Key::of(sample) {
            *sums.entry(key).or_default() += sample.value;
        }
    }
    if let Some(memory) = field.mig_memory {
        sums.extend(mig_memory(samples, memory));
    }
    sums
}

/// The used or free framebuffer of each MIG GPU instance. Its compute
/// instances' devices report the same memory, the instance's: one counts.
fn mig_memory(samples: &Samples, memory: MigMemory) -> BTreeMap<Key, f64> {
    let mut used = BTreeMap::new();
    let mut total = BTreeMap::new();
    for sample in samples.iter() {
        let into = match sample.metric.name {
            name if name == MIG_MEMORY_USED.name => &mut used,
            name if name == MIG_MEMORY_TOTAL.name => &mut total,
            _ => continue,
        };
        if let Some(key) = Key::of(sample) {
            into.insert(key, sample.value);
        }
    }
    match memory {
        MigMemory::Used => used,
        MigMemory::Free => total
            .into_iter()
            .filter_map(|(key, total)| Some((key.clone(), total - used.get(&key)?)))
            .collect(),
    }
}

/// The field's value for one series from the sum of its sources; `None` for
/// a rate without a usable previous value. Rates record the sum in `current`.
fn converted(
    field: &Field,
    key: &Key,
    sum: f64,
    previous: &Rates,
    current: &mut Rates,
    now: Instant,
) -> Option<f64> {
    match field.conversion {
        Conversion::Integer(factor) => Some((sum * factor).round()),
        Conversion::Floor(divisor) => Some((sum / divisor).floor()),
        Conversion::Scale(factor) => Some(sum * factor),
        Conversion::Rate(factor) => {
            let id = (field.name, key.clone());
            let before = previous.get(&id).copied();
            current.insert(id, (sum, now));
            Some(rate(before, sum, now)? * factor)
        }
        // Per XID, not per sum: see `last_xids`.
        Conversion::LastXid => None,
    }
}

/// The samples of `field`'s sources that pass its filter.
fn sources<'a>(samples: &'a Samples, field: &'a Field) -> impl Iterator<Item = &'a Sample> {
    samples.iter().filter(move |sample| {
        field.sources.iter().any(|s| s.name == sample.metric.name)
            && field
                .filter
                .is_none_or(|(name, value)| sample.label(name) == Some(value))
    })
}

/// Increase per second since `previous`; none for the first collection or
/// after a counter reset (driver reload).
fn rate(previous: Option<(f64, Instant)>, value: f64, now: Instant) -> Option<f64> {
    let (before, at) = previous?;
    let seconds = now.checked_duration_since(at)?.as_secs_f64();
    (seconds > 0.0 && value >= before).then(|| (value - before) / seconds)
}

/// One series per GPU with events: the XID whose count increased last. When
/// several increase within one collection their order is unknown, and the
/// highest code is reported. The counts start at the exporter's start, so
/// "last" means since then; 0 (`No Error`) until the first.
fn last_xids(
    samples: &Samples,
    field: &Field,
    previous: &mut HashMap<String, Xids>,
) -> Vec<Series> {
    let mut gpus: BTreeMap<Key, BTreeMap<u64, f64>> = BTreeMap::new();
    for sample in sources(samples, field) {
        let (Some(key), Some(xid)) = (Key::of(sample), sample.label("xid")) else {
            continue;
        };
        if let Ok(xid) = xid.parse::<u64>() {
            gpus.entry(key).or_default().insert(xid, sample.value);
        }
    }
    let mut current = HashMap::new();
    let mut series = Vec::new();
    for (key, counts) in gpus {
        let before = previous.remove(&key.uuid).unwrap_or_default();
        let increased = counts
            .iter()
            .filter(|(xid, count)| **count > before.counts.get(xid).copied().unwrap_or(0.0))
            .map(|(xid, _)| *xid)
            .max();
        let last = increased.unwrap_or(before.last);
        let extra = vec![
            ("err_code", last.to_string()),
            ("err_msg", xid_name(last).to_owned()),
        ];
        current.insert(key.uuid.clone(), Xids { counts, last });
        series.push((key, extra, last as f64));
    }
    *previous = current;
    series
}

/// The exporter's metrics about itself in a collection (e.g. its NVML
/// calls), which stay observable in this view.
fn own_metrics(samples: &Samples) -> Samples {
    let mut own = Samples::default();
    for sample in samples.iter() {
        if sample.metric.section == Section::Exporter {
            let labels: Vec<&str> = sample.labels.iter().map(String::as_str).collect();
            own.add(sample.metric, &labels, sample.value);
        }
    }
    own
}
