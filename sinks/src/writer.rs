//! The writer thread: encodes batches of events once and offers them to every output.
//!
//! Owns the hand-over from the engine to the outputs in the live daemon. Control messages
//! (reopen after SIGUSR1, new outputs after SIGHUP) travel in the same queue as events, so
//! they apply exactly between two batches. The queue from the engine is bounded and the
//! sender waits when it is full; this thread itself only waits for an output whose policy is
//! `block`, so in every other case it keeps up with the engine (encoding is ~1 µs per event).
//! It must never drop an event it was given: every one is offered to every output, which
//! delivers, spools or counts it.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pauditd_engine::Event;

use crate::fanout::{Fanout, SinkStats};
use crate::output::{Deadline, Output};

/// Builds a new set of outputs on the writer thread, after the old ones let go of their
/// spools and files.
pub type Rebuild = Box<dyn FnOnce() -> Result<Vec<Output>, String> + Send>;

pub enum WriterMsg {
    /// Completed events and when they were handed over (for the `latency` timing).
    Events(Vec<Event>, Instant),
    /// SIGUSR1: reopen file outputs.
    Reopen,
    /// SIGHUP: switch to new outputs. `fallback` rebuilds the running ones if `new` fails.
    Replace { new: Rebuild, fallback: Rebuild },
}

/// Timing samples kept between two metric reports.
const MAX_LATENCY_SAMPLES: usize = 4096;

/// What the writer tells the metrics reporter.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Every output used so far (live handles: read them for current counts).
    pub sinks: Vec<SinkStats>,
    /// Per batch: from hand-over to every output having it (pauditd's `latency`, which
    /// timed the same encode-and-write step per message). Taken by the reporter.
    pub latency: Vec<Duration>,
    /// An output whose thread died.
    pub dead_output: Option<&'static str>,
}

/// How the writer closes its outputs when it stops.
#[derive(Debug, Clone, Copy)]
pub struct CloseBudget {
    /// Time each output gets to deliver what it holds (`shutdown_timeout`).
    pub timeout: Duration,
}

/// Run the writer until every sender is gone, then close the outputs within `budget`;
/// returns the counters of every output it used. `shared` is updated as it goes.
pub fn spawn(
    mut out: Fanout,
    rx: Receiver<WriterMsg>,
    shared: Arc<Mutex<WriterReport>>,
    budget: CloseBudget,
) -> std::io::Result<JoinHandle<Vec<SinkStats>>> {
    shared
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .sinks
        .extend(out.stats());
    std::thread::Builder::new()
        .name("pauditd-write".into())
        .spawn(move || {
            let mut retiring: Vec<JoinHandle<()>> = Vec::new();
            for msg in rx {
                let mut took = None;
                match msg {
                    WriterMsg::Events(mut events, handed) => {
                        out.write(&mut events);
                        took = Some(handed.elapsed());
                    }
                    WriterMsg::Reopen => out.reopen(),
                    WriterMsg::Replace { new, fallback } => {
                        let encoders = out.encoders();
                        let returns = out.event_pool();
                        let old = std::mem::replace(&mut out, Fanout::new(Vec::new()));
                        retiring.push(retire(old, budget));
                        let outputs = match new() {
                            Ok(o) => o,
                            Err(e) => {
                                log::error!("reload: the new outputs could not start ({e}); restarting the previous ones");
                                fallback().unwrap_or_else(|e| {
                                    log::error!("reload: the previous outputs could not restart either ({e}): events are counted lost until the next reload");
                                    Vec::new()
                                })
                            }
                        };
                        out = Fanout::new(outputs).with_event_pool(returns);
                        if let Err(e) = out.set_encoders(encoders) {
                            log::error!("reload: cannot start encoder threads ({e}); encoding on the writer thread");
                        }
                        shared
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .sinks
                            .extend(out.stats());
                    }
                }
                let mut r = shared.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(d) = took.filter(|_| r.latency.len() < MAX_LATENCY_SAMPLES) {
                    r.latency.push(d);
                }
                if r.dead_output.is_none() {
                    r.dead_output = out.dead_output();
                }
            }
            let limit = Instant::now() + budget.timeout + Duration::from_secs(2);
            let stuck = out.close(Deadline::At(Instant::now() + budget.timeout), limit);
            for name in stuck {
                log::error!("output {name}: still blocked in a write {:?} after the shutdown deadline; exiting without it", budget.timeout + Duration::from_secs(2));
            }
            for t in retiring {
                let _ = t.join();
            }
            let r = shared.lock().unwrap_or_else(|e| e.into_inner());
            r.sinks.clone()
        })
}

/// Close replaced outputs: at once for those with a spool (what they hold goes to it, so the
/// new outputs can take the spool over), with the full budget for the others, in a thread
/// of its own so the pipeline does not wait.
fn retire(mut old: Fanout, budget: CloseBudget) -> JoinHandle<()> {
    let now = Instant::now();
    old.close_spooled(now);
    std::thread::spawn(move || {
        let limit = Instant::now() + budget.timeout + Duration::from_secs(2);
        old.close(Deadline::At(Instant::now() + budget.timeout), limit);
    })
}
