//! The writer as the daemon holds it: [`Writer::start`] spawns the writer thread on a bounded
//! data queue and a control queue of its own, and returns both ends of the hand-over.
//!
//! [`Emit`] is the engine's end (the `emit` of `Live::start`, on the reassembler thread): it
//! waits while the writer is behind (it only is when an output's policy is `block`) and gives
//! up only once the writer is gone or the shutdown bound passed, counting what it could not
//! hand over ([`Writer::not_handed`]). [`Writer`] is the main loop's end: reopen, replace,
//! stop, what supervision needs, and the final join. It must never drop a batch uncounted,
//! never make a control message wait behind data, and never wait past the bound [`Writer::stop`]
//! set.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::SendTimeoutError;
use pauditd_engine::Event;

use super::{
    channels, spawn, CloseBudget, Control, ControlSender, DataSender, WriterReport, STUCK_GRACE,
};
use crate::fanout::{Fanout, OutputStats};

/// What both ends share: the engine's bound on waiting for the writer, and what it could not
/// hand over.
#[derive(Debug)]
struct Bound {
    /// Set at shutdown: past it the engine stops waiting for the writer (milliseconds since
    /// `epoch`; 0: not set).
    give_up: AtomicU64,
    epoch: Instant,
    /// Events the engine completed after the writer had gone (it died): counted, never
    /// silent; supervision stops the daemon right after.
    orphaned: AtomicU64,
}

/// The engine's end of the data queue (see the module doc).
pub struct Emit {
    tx: DataSender,
    bound: Arc<Bound>,
}

impl Emit {
    /// Hand `events` to the writer, waiting while it is behind; once the writer is gone or the
    /// shutdown bound passed, count them lost instead (logged once).
    pub fn emit(&self, events: Vec<Event>) {
        let n = events.len() as u64;
        let mut msg = (events, Instant::now());
        let why = loop {
            match self.tx.send_timeout(msg, Duration::from_millis(100)) {
                Ok(()) => return,
                Err(SendTimeoutError::Disconnected(_)) if self.bound.give_up.load(Relaxed) != 0 => {
                    break "the writer stopped at the shutdown deadline";
                }
                Err(SendTimeoutError::Disconnected(_)) => {
                    break "the writer thread is gone";
                }
                Err(SendTimeoutError::Timeout(m)) => {
                    let at = self.bound.give_up.load(Relaxed);
                    if at != 0 && self.bound.epoch.elapsed() >= Duration::from_millis(at) {
                        break "the writer did not take them by the shutdown bound";
                    }
                    msg = m;
                }
            }
        };
        if self.bound.orphaned.fetch_add(n, Relaxed) == 0 {
            log::error!("{why}: completed events are counted lost");
        }
    }
}

/// The main loop's end of the writer (see the module doc).
pub struct Writer {
    ctl: ControlSender,
    report: Arc<Mutex<WriterReport>>,
    thread: JoinHandle<Vec<OutputStats>>,
    bound: Arc<Bound>,
}

/// What the writer left when it was joined (or given up on).
pub struct Finished {
    /// Every output it used.
    pub sinks: Vec<OutputStats>,
    /// Events the engine could not hand over (counted lost).
    pub not_handed: u64,
    /// Events whose encoding panicked (counted lost).
    pub encode_failed: u64,
}

impl Writer {
    /// Spawn the writer thread over `out`, with a data queue of `queue` batches (the engine
    /// waits when it is full) and a control queue that never fills.
    pub fn start(
        out: Fanout,
        queue: usize,
        budget: CloseBudget,
    ) -> std::io::Result<(Writer, Emit)> {
        // Data and control apart: a signal never waits behind a full data queue.
        let (tx, ctl, inbox) = channels(queue);
        let report = Arc::new(Mutex::new(WriterReport::default()));
        let thread = spawn(out, inbox, report.clone(), budget)?;
        let bound = Arc::new(Bound {
            give_up: AtomicU64::new(0),
            epoch: Instant::now(),
            orphaned: AtomicU64::new(0),
        });
        let emit = Emit {
            tx,
            bound: bound.clone(),
        };
        Ok((
            Writer {
                ctl,
                report,
                thread,
                bound,
            },
            emit,
        ))
    }

    /// SIGUSR1: outputs reopen before their next batch. Never waits.
    pub fn reopen(&self) {
        self.ctl.send(Control::Reopen);
    }

    /// SIGHUP: switch to `out` between two batches (see [`Control::Replace`]). Never waits;
    /// false when the writer is gone.
    pub fn replace(&self, out: Fanout) -> bool {
        self.ctl.send(Control::Replace(out))
    }

    /// What the writer reports as it goes (outputs, latency samples, a dead output, encode
    /// failures).
    pub fn report(&self) -> MutexGuard<'_, WriterReport> {
        self.report.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events the engine completed after the writer had gone, or past the shutdown bound.
    pub fn not_handed(&self) -> u64 {
        self.bound.orphaned.load(Relaxed)
    }

    /// Why the writer can no longer be trusted to take events, if it cannot: its thread
    /// stopped (or the engine found it gone), or one of its outputs' threads stopped.
    pub fn failure(&self) -> Option<String> {
        if self.thread.is_finished() || self.not_handed() > 0 {
            return Some("the writer thread stopped".into());
        }
        self.report()
            .dead_output
            .map(|name| format!("the {name} output's thread stopped"))
    }

    /// SIGTERM: the writer takes the engine's last events until `deadline` and then closes
    /// its outputs by it (their deadlines are the caller's to set first, through
    /// [`crate::fanout::OutputsHandle`]); the engine stops waiting for the writer
    /// [`STUCK_GRACE`] after it.
    pub fn stop(&self, deadline: Instant) {
        self.ctl.send(Control::Stop(deadline));
        self.bound.give_up.store(
            (deadline + STUCK_GRACE)
                .saturating_duration_since(self.bound.epoch)
                .as_millis()
                .max(1) as u64,
            Relaxed,
        );
    }

    /// Wait for the writer thread until `bound` (the engine's senders are gone by then, so
    /// it ends), then join it; past `bound`, or if it panicked, what it last reported.
    pub fn finish_by(self, bound: Instant) -> Finished {
        while !self.thread.is_finished() && Instant::now() < bound {
            std::thread::sleep(Duration::from_millis(10));
        }
        let not_handed = self.not_handed();
        if not_handed > 0 {
            log::error!("{not_handed} completed event(s) never reached the writer: counted lost");
        }
        let report = self.report;
        let reported = || {
            report
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sinks
                .clone()
        };
        let sinks = if self.thread.is_finished() {
            self.thread.join().unwrap_or_else(|_| {
                log::error!("the writer thread panicked");
                reported()
            })
        } else {
            log::error!("the writer did not finish by the shutdown bound; exiting without it");
            reported()
        };
        let encode_failed = report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .encode_failures
            .events();
        Finished {
            sinks,
            not_handed,
            encode_failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: i64) -> Vec<Event> {
        (0..n).map(|s| Event::new(s, b"1.0")).collect()
    }

    /// Batches the writer takes are handed over; once it stopped at the shutdown deadline,
    /// what the engine still completes is counted (not handed), never dropped silently, and
    /// the hop does not wait for a writer that is gone.
    #[test]
    fn after_the_writer_stopped_the_engines_last_events_are_counted_not_handed() {
        let budget = CloseBudget {
            timeout: Duration::from_secs(1),
        };
        let (writer, emit) = Writer::start(Fanout::new(Vec::new()), 2, budget).unwrap();
        emit.emit(events(3));
        assert_eq!(writer.not_handed(), 0);
        assert!(writer.failure().is_none());
        writer.stop(Instant::now());
        while !writer.thread.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let t = Instant::now();
        emit.emit(events(5));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert_eq!(writer.not_handed(), 5);
        assert_eq!(
            writer.failure().as_deref(),
            Some("the writer thread stopped")
        );
        let finished = writer.finish_by(Instant::now() + Duration::from_secs(1));
        assert_eq!(finished.not_handed, 5);
        assert_eq!(finished.encode_failed, 0);
    }
}
