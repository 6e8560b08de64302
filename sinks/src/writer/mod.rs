//! The writer thread: encodes batches of events once and offers them to every output.
//!
//! Owns the hand-over from the engine to the outputs in the live daemon. Events arrive on a
//! bounded data queue (the sender waits when it is full); control (reopen after SIGUSR1, a new
//! output set after SIGHUP, the shutdown deadline after SIGTERM) arrives on a queue of its own
//! that never fills, so a signal never waits behind data: the daemon's main loop only ever
//! sends it, and the writer takes it before the next batch. This thread itself only waits for
//! an output whose policy is `block` (and then only until that output's deadline, which the
//! daemon can set from outside through [`crate::fanout::OutputsHandle`]); in every other case it keeps up with
//! the engine (encoding is ~1 µs per event). It must never drop an event it was given: every
//! one is offered to every output, which delivers, spools or counts it (or, if encoding it
//! panicked, it is counted in [`EncodeFailures`]).
//!
//! The daemon holds it through [`handoff`]: [`Writer`] (start, control, supervision, join) and
//! [`Emit`], the engine's end of the data queue.

use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, unbounded, Receiver, SendError, SendTimeoutError, Sender, TryRecvError,
};
use pauditd_engine::Event;

use crate::encode::EncodeFailures;
use crate::fanout::{Fanout, OutputStats};
use crate::output::Deadline;

pub mod handoff;
pub use handoff::{Emit, Finished, Writer};

/// Completed events and when they were handed over (for the `latency` timing).
pub type Handed = (Vec<Event>, Instant);

pub enum Control {
    /// SIGUSR1: reopen file outputs before their next batch.
    Reopen,
    /// SIGHUP: switch to these outputs (started by the caller, so a set that cannot start
    /// never replaces a running one; the caller keeps its [`Fanout::handle`]). The old set
    /// retires in the background.
    Replace(Fanout),
    /// SIGTERM: the outputs' deadline (already set through their [`crate::fanout::OutputsHandle`]); the
    /// final close uses it once the data queue ends.
    Stop(Instant),
}

/// The writer's doorbell: every sender rings it after a send and when it goes away, and the
/// writer, idle, parks until rung. (A channel's own blocking receive spins and yields before
/// it sleeps, and a select's wake-up contends with the sender on the channel's waker lock:
/// on a busy 2-core machine that was ~1.4 context switches per batch instead of one.) An
/// unpark that comes before the park is kept, so no ring is lost.
#[derive(Clone, Default)]
struct Bell(Arc<OnceLock<Thread>>);

impl Bell {
    fn ring(&self) {
        if let Some(t) = self.0.get() {
            t.unpark();
        }
    }
}

/// The engine's side of the data queue (bounded: the sender waits when it is full).
#[derive(Clone)]
pub struct DataSender {
    tx: Option<Sender<Handed>>,
    bell: Bell,
}

impl DataSender {
    pub fn send(&self, msg: Handed) -> Result<(), SendError<Handed>> {
        let r = match &self.tx {
            Some(t) => t.send(msg),
            None => Err(SendError(msg)),
        };
        self.bell.ring();
        r
    }

    pub fn send_timeout(
        &self,
        msg: Handed,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError<Handed>> {
        let r = match &self.tx {
            Some(t) => t.send_timeout(msg, timeout),
            None => Err(SendTimeoutError::Disconnected(msg)),
        };
        self.bell.ring();
        r
    }
}

impl Drop for DataSender {
    fn drop(&mut self) {
        // The last sender gone ends the writer's loop: it must see that.
        drop(self.tx.take());
        self.bell.ring();
    }
}

/// The control queue's sender (unbounded: never waits).
#[derive(Clone)]
pub struct ControlSender {
    tx: Sender<Control>,
    bell: Bell,
}

impl ControlSender {
    /// Whether the writer is still there to take it (if not, `c` is dropped).
    pub fn send(&self, c: Control) -> bool {
        let sent = self.tx.send(c).is_ok();
        self.bell.ring();
        sent
    }
}

/// The writer's ends of both queues, for [`spawn`].
pub struct Inbox {
    data: Receiver<Handed>,
    control: Receiver<Control>,
    bell: Bell,
}

/// The data queue (`data` batches) and the control queue, with the writer's doorbell.
pub fn channels(data: usize) -> (DataSender, ControlSender, Inbox) {
    let bell = Bell::default();
    let (tx, rx) = bounded(data);
    let (ctl, ctl_rx) = unbounded();
    (
        DataSender {
            tx: Some(tx),
            bell: bell.clone(),
        },
        ControlSender {
            tx: ctl,
            bell: bell.clone(),
        },
        Inbox {
            data: rx,
            control: ctl_rx,
            bell,
        },
    )
}

/// The longest the idle writer sleeps without being rung (it bounds only the cost of a
/// missed ring, which would be a bug).
const IDLE_PARK: Duration = Duration::from_secs(10);

/// Timing samples kept between two metric reports.
const MAX_LATENCY_SAMPLES: usize = 4096;

/// An output still stuck in one write (a send timeout) this long after its deadline is left
/// behind. The syslog send timeout is 2 s; an HTTP request is cut at the batch deadline.
pub const STUCK_GRACE: Duration = Duration::from_secs(2);

/// What the writer tells the metrics reporter.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Every output used so far (live handles: read them for current counts).
    pub sinks: Vec<OutputStats>,
    /// Per batch: from hand-over to every output having it (pauditd's `latency`, which
    /// timed the same encode-and-write step per message). Taken by the reporter.
    pub latency: Vec<Duration>,
    /// An output whose thread died.
    pub dead_output: Option<&'static str>,
    /// Events whose encoding panicked (counted lost).
    pub encode_failures: Arc<EncodeFailures>,
}

/// How the writer closes its outputs when it stops.
#[derive(Debug, Clone, Copy)]
pub struct CloseBudget {
    /// Time each output gets to deliver what it holds (`shutdown_timeout`).
    pub timeout: Duration,
}

/// Run the writer until the data queue ends (every sender gone), then close the outputs
/// within `budget` (or by the deadline a [`Control::Stop`] gave); returns the counters of
/// every output it used. `shared` is updated as it goes.
pub fn spawn(
    out: Fanout,
    inbox: Inbox,
    shared: Arc<Mutex<WriterReport>>,
    budget: CloseBudget,
) -> std::io::Result<JoinHandle<Vec<OutputStats>>> {
    let failures = {
        let mut r = shared.lock().unwrap_or_else(|e| e.into_inner());
        r.sinks.extend(out.stats());
        r.encode_failures.clone()
    };
    let mut out = out.with_encode_failures(failures);
    std::thread::Builder::new()
        .name("pauditd-write".into())
        .spawn(move || {
            crate::batch_scheduling();
            let mut retiring: Vec<JoinHandle<()>> = Vec::new();
            let mut stop_at: Option<Instant> = None;
            let Inbox {
                data,
                control,
                bell,
            } = inbox;
            let _ = bell.0.set(std::thread::current());
            let mut ended_logged = false;
            loop {
                // Control first: it is never queued behind a batch.
                while let Ok(c) = control.try_recv() {
                    apply(c, &mut out, &mut retiring, &mut stop_at, &shared, budget);
                }
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                let took = match data.try_recv() {
                    Ok((mut events, handed)) => {
                        fail::fail_point!("writer-batch");
                        out.write(&mut events);
                        Some(handed.elapsed())
                    }
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {
                        // After SIGTERM: the engine's last events are taken until the
                        // deadline, not past it (the engine may be stuck; the outputs stop
                        // then anyway).
                        let wait = stop_at
                            .map_or(IDLE_PARK, |t| t.saturating_duration_since(Instant::now()));
                        std::thread::park_timeout(wait);
                        continue;
                    }
                };
                let mut r = shared.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(d) = took.filter(|_| r.latency.len() < MAX_LATENCY_SAMPLES) {
                    r.latency.push(d);
                }
                if r.dead_output.is_none() {
                    r.dead_output = out.dead_output();
                }
                drop(r);
                if !ended_logged && out.all_ended() {
                    ended_logged = true;
                    log::error!(
                        "every output has ended ({}): events are counted lost (lost.closed) until a reload gives them somewhere to go",
                        out.ended().join(", ")
                    );
                }
            }
            let deadline = stop_at.unwrap_or_else(|| Instant::now() + budget.timeout);
            let stuck = out.close(Deadline::At(deadline), deadline + STUCK_GRACE);
            for name in stuck {
                log::error!(
                    "output {name}: still blocked in a write {STUCK_GRACE:?} after the shutdown deadline; exiting without it"
                );
            }
            for t in retiring {
                let _ = t.join();
            }
            let r = shared.lock().unwrap_or_else(|e| e.into_inner());
            r.sinks.clone()
        })
}

fn apply(
    c: Control,
    out: &mut Fanout,
    retiring: &mut Vec<JoinHandle<()>>,
    stop_at: &mut Option<Instant>,
    shared: &Mutex<WriterReport>,
    budget: CloseBudget,
) {
    match c {
        Control::Reopen => out.reopen(),
        Control::Stop(at) => *stop_at = Some(at),
        Control::Replace(outputs) => {
            // Batches already encoded go to the old set (they were read before the reload).
            out.flush_encoders();
            let encoders = out.encoders();
            let mut next = outputs
                .with_event_pool(out.event_pool())
                .with_encode_failures(out.encode_failures());
            if let Err(e) = next.set_encoders(encoders) {
                log::error!(
                    "reload: cannot start encoder threads ({e}); encoding on the writer thread"
                );
            }
            let old = std::mem::replace(out, next);
            let deadline = stop_at.unwrap_or_else(|| Instant::now() + budget.timeout);
            match old.retire(deadline, deadline + STUCK_GRACE) {
                Ok(t) => retiring.push(t),
                Err(e) => log::error!("reload: cannot start a thread to retire the old outputs ({e}); they stop when dropped"),
            }
            shared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sinks
                .extend(out.stats());
        }
    }
}
