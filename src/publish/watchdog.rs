//! Notices a collector that stops finishing collections, and one that
//! starts again, and logs each once: `/health` turns 503 for a stale
//! collector, and a liveness restart should leave a trace of why.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{STALE_AFTER_INTERVALS, Slot, age, is_stale};

/// Checks every slot each interval (each second at most) on a thread of its
/// own, until the sender returned is used or dropped.
pub(super) fn spawn(
    slots: Vec<Slot>,
    interval: Duration,
) -> std::io::Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let started = SystemTime::now();
    let (stop, stopped) = mpsc::channel();
    let check = interval.min(Duration::from_secs(1));
    let thread = std::thread::Builder::new()
        .name("collect-watchdog".to_owned())
        .spawn(move || {
            let mut stale = vec![false; slots.len()];
            loop {
                for (slot, was_stale) in slots.iter().zip(&mut stale) {
                    let published = slot.latest.get();
                    let age = age(published.as_ref().map(|p| &p.outcome), started, SystemTime::now());
                    let now_stale = is_stale(age, interval);
                    if now_stale && !*was_stale {
                        warn!(
                            collector = slot.name,
                            "the {} collector has not finished a collection for {:.0}s (more than {STALE_AFTER_INTERVALS} intervals of {interval:?}); /health answers 503 until it does",
                            slot.name,
                            age.as_secs_f64()
                        );
                    } else if !now_stale && *was_stale {
                        info!(collector = slot.name, "the {} collector finishes collections again; /health is ok", slot.name);
                    }
                    *was_stale = now_stale;
                }
                match stopped.recv_timeout(check) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        })?;
    Ok((stop, thread))
}
