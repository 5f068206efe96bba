//! XID and ECC events. One thread per NVML initialisation registers the GPUs
//! for the event types each supports and blocks in `nvmlEventSetWait_v2` with
//! a bounded timeout, so it costs nothing while nothing happens and stops
//! within one timeout. (nvml-wrapper's high-level event loop polls every
//! millisecond instead.) Counts live outside the session, by GPU UUID, so
//! they never go back when NVML is initialised again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{EventSet, Nvml};
use nvml_wrapper_sys::bindings::nvmlDevice_t;
use tracing::{debug, info, warn};

use super::{NvmlCalls, nvml_values};
use crate::collector::status::EventWatch;
use crate::metrics::catalogue::{
    ECC_EVENTS, LAST_XID_TIMESTAMP, SERIOUS_XIDS, XID_ERRORS, XID_FELL_OFF_THE_BUS,
};
use crate::metrics::exposition::Samples;
use crate::metrics::labels::{EccEventType, NvmlPhase};

/// The event types the exporter watches, where a GPU supports them.
pub(crate) const WATCHED_EVENTS: EventTypes = EventTypes::CRITICAL_XID_ERROR
    .union(EventTypes::SINGLE_BIT_ECC_ERROR)
    .union(EventTypes::DOUBLE_BIT_ECC_ERROR);

/// How long one wait in the driver lasts: the longest the thread takes to stop.
const WAIT: Duration = Duration::from_millis(500);

/// How long `start` waits for the thread to report its registrations.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(5);

/// How `/health` names the watched XID events.
const XID: &str = "xid";

/// Event counts since the exporter started, by GPU UUID.
#[derive(Default)]
pub(super) struct Counts(Mutex<HashMap<String, GpuEvents>>);

#[derive(Default)]
struct GpuEvents {
    xids: BTreeMap<u64, u64>,
    last_xid_at: Option<f64>,
    ecc: [u64; EccEventType::COUNT],
}

impl Counts {
    fn record(&self, uuid: &str, event: impl FnOnce(&mut GpuEvents)) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        event(counts.entry(uuid.to_owned()).or_default());
    }

    /// The GPU's counters. Those of watched types start at 0 (for XIDs, the
    /// serious ones) so that `increase()` sees their first event.
    pub(super) fn add_samples(
        &self,
        index: &str,
        uuid: &str,
        watch: &EventWatch,
        out: &mut Samples,
    ) {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let events = counts.get(uuid);
        let watched =
            |name: &str| matches!(watch, EventWatch::Watching { types } if types.contains(&name));
        let mut xids: BTreeMap<u64, u64> = BTreeMap::new();
        if watched(XID) {
            xids.extend(SERIOUS_XIDS.iter().map(|xid| (*xid, 0)));
        }
        if let Some(events) = events {
            xids.extend(&events.xids);
        }
        for (xid, count) in xids {
            out.add(&XID_ERRORS, &[index, uuid, &xid.to_string()], count as f64);
        }
        if let Some(at) = events.and_then(|e| e.last_xid_at) {
            out.add(&LAST_XID_TIMESTAMP, &[index, uuid], at);
        }
        for &kind in EccEventType::ALL {
            let count = events.map_or(0, |e| e.ecc[kind as usize]);
            if count > 0 || watched(kind.name()) {
                out.add(&ECC_EVENTS, &[index, uuid, kind.name()], count as f64);
            }
        }
    }
}

/// A GPU to watch.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Target {
    pub(super) index: u32,
    pub(super) uuid: String,
    pub(super) types: EventTypes,
}

/// The running event thread of one NVML session.
pub(super) struct Watcher {
    targets: Vec<Target>,
    states: HashMap<u32, EventWatch>,
    fell_off: Arc<Mutex<HashSet<u32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts the thread and waits until it has registered the GPUs.
    pub(super) fn start(
        nvml: Arc<Nvml>,
        targets: Vec<Target>,
        counts: Arc<Counts>,
        calls: NvmlCalls,
    ) -> Self {
        let (registered, registrations) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let fell_off = Arc::new(Mutex::new(HashSet::new()));
        let thread = {
            let (targets, stop, fell_off) = (targets.clone(), stop.clone(), fell_off.clone());
            let watch = move || {
                let context = Context {
                    counts,
                    calls,
                    fell_off,
                };
                watch(&nvml, &targets, &stop, &context, registered)
            };
            std::thread::Builder::new()
                .name("gpu-events".into())
                .spawn(watch)
                .map_err(|error| warn!(%error, "cannot start the NVML event thread; XID and ECC events are not watched"))
                .ok()
        };
        let states = registrations
            .recv_timeout(REGISTRATION_TIMEOUT)
            .unwrap_or_default();
        Self {
            targets,
            states,
            fell_off,
            stop,
            thread,
        }
    }

    pub(super) fn watches(&self, targets: &[Target]) -> bool {
        self.targets == targets
    }

    pub(super) fn state(&self, index: u32) -> Option<EventWatch> {
        self.states.get(&index).cloned()
    }

    /// GPUs that reported XID 79 (fallen off the bus) in this session.
    pub(super) fn fell_off(&self) -> HashSet<u32> {
        self.fell_off
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Watcher {
    /// Stops the thread, waiting at most a little over one wait; a thread
    /// stuck in a hung driver call is left behind.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + WAIT * 3;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

struct Context {
    counts: Arc<Counts>,
    calls: NvmlCalls,
    fell_off: Arc<Mutex<HashSet<u32>>>,
}

impl Context {
    /// Counts one NVML call of the event thread.
    fn count(&self) {
        self.calls
            .count(NvmlPhase::Events)
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// How `/health` names the watched types among `types`.
fn names(types: EventTypes) -> Vec<&'static str> {
    let xid = types
        .contains(EventTypes::CRITICAL_XID_ERROR)
        .then_some(XID);
    let ecc = EccEventType::ALL
        .iter()
        .filter(|kind| types.contains(nvml_values::ecc_event(**kind)))
        .map(|kind| kind.name());
    xid.into_iter().chain(ecc).collect()
}

/// The thread: registers every target, reports how that went, then waits
/// for events until `stop`.
fn watch(
    nvml: &Nvml,
    targets: &[Target],
    stop: &AtomicBool,
    context: &Context,
    registered: mpsc::Sender<HashMap<u32, EventWatch>>,
) {
    let (states, watched) = register(nvml, targets, context);
    let _ = registered.send(states);
    if let Some((set, handles)) = watched {
        info!(gpus = handles.len(), "watching XID and ECC events");
        wait(&set, &handles, stop, context);
    }
}

/// The registered GPUs: each one's device handle, for telling whose an event is.
type Handles<'t> = Vec<(nvmlDevice_t, &'t Target)>;

/// Registers each target for its event types in one event set. Returns how
/// each registration went and, when at least one succeeded, the set.
fn register<'n, 't>(
    nvml: &'n Nvml,
    targets: &'t [Target],
    context: &Context,
) -> (
    HashMap<u32, EventWatch>,
    Option<(EventSet<'n>, Handles<'t>)>,
) {
    let mut states = HashMap::new();
    let mut set = None;
    let mut handles = Vec::new();
    for target in targets {
        if target.types.is_empty() {
            states.insert(target.index, EventWatch::Unsupported);
            continue;
        }
        let fresh = match set.take() {
            Some(set) => Ok(set),
            None => {
                context.count();
                nvml.create_event_set()
            }
        };
        let registration = fresh.map_err(|e| e.to_string()).and_then(|fresh| {
            // Getting the handle and registering: two calls.
            context.count();
            context.count();
            let device = nvml
                .device_by_index(target.index)
                .map_err(|e| e.to_string())?;
            // A failed registration frees the set (nvml-wrapper's rule);
            // the next GPU then starts a new one.
            let fresh = device
                .register_events(target.types, fresh)
                .map_err(|e| e.error.to_string())?;
            // SAFETY: the handle is only compared with those of events, never dereferenced.
            handles.push((unsafe { device.handle() }, target));
            Ok(fresh)
        });
        let state = match registration {
            Ok(fresh) => {
                set = Some(fresh);
                EventWatch::Watching {
                    types: names(target.types),
                }
            }
            Err(error) => {
                warn!(gpu = target.index, %error, "cannot watch the GPU's XID and ECC events");
                EventWatch::Failed { error }
            }
        };
        states.insert(target.index, state);
    }
    let watched = set
        .filter(|_| !handles.is_empty())
        .map(|set| (set, handles));
    (states, watched)
}

/// Waits for events in `set` until `stop`, recording each.
fn wait(set: &EventSet, handles: &Handles, stop: &AtomicBool, context: &Context) {
    let wait_ms = WAIT.as_millis() as u32;
    let mut last_error = None;
    while !stop.load(Ordering::Relaxed) {
        context.count();
        match set.wait(wait_ms) {
            Ok(event) => {
                last_error = None;
                // SAFETY: compared, never dereferenced.
                let handle = unsafe { event.device.handle() };
                let Some((_, target)) = handles.iter().find(|(h, _)| *h == handle) else {
                    continue;
                };
                record(target, event.event_type, event.event_data, context);
            }
            Err(NvmlError::Timeout) => {}
            Err(error) => {
                // NVML is failing (e.g. the driver is being reloaded): the
                // collector notices and starts a new session; until then,
                // wait instead of spinning on the error.
                let message = error.to_string();
                if last_error.as_ref() != Some(&message) {
                    debug!(error = %message, "waiting for NVML events failed");
                    last_error = Some(message);
                }
                std::thread::sleep(WAIT);
            }
        }
    }
}

fn record(target: &Target, types: EventTypes, xid: Option<XidError>, context: &Context) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    if types.contains(EventTypes::CRITICAL_XID_ERROR) {
        let code = match xid {
            Some(XidError::Value(code)) => code,
            // NVML's "unknown XID" (999), counted as such.
            _ => 999,
        };
        warn!(gpu = target.index, uuid = %target.uuid, xid = code, "GPU reported a critical XID error");
        if code == XID_FELL_OFF_THE_BUS {
            let mut fell_off = context.fell_off.lock().unwrap_or_else(|e| e.into_inner());
            fell_off.insert(target.index);
        }
        context.counts.record(&target.uuid, |events| {
            *events.xids.entry(code).or_default() += 1;
            events.last_xid_at = Some(now);
        });
    }
    for &kind in EccEventType::ALL {
        if types.contains(nvml_values::ecc_event(kind)) {
            warn!(gpu = target.index, uuid = %target.uuid, kind = kind.name(), "GPU reported an ECC error event");
            context
                .counts
                .record(&target.uuid, |events| events.ecc[kind as usize] += 1);
        }
    }
}
