//! One output on its own: a bounded queue, its own threads, a policy for when it falls
//! behind, and optionally a durable spool it alone owns.
//!
//! Owns isolation and delivery order. The writer hands each encoded batch (shared, never
//! copied) to [`Output::offer`], which only enqueues: it never touches a disk, and never
//! waits unless the operator chose [`Overflow::Block`] (then at most until the shutdown
//! deadline). A full queue drops and counts ([`Overflow::Drop`], and [`Overflow::Spool`]
//! when even the spool's intake is full).
//!
//! With a spool, two threads share the work: the *buffer* thread takes batches from the
//! queue and gives each the next id; it passes a batch on in memory while nothing is spooled
//! and the memory window (`queue` batches) has room, and appends it to the spool otherwise
//! (always with `write_ahead`). The *delivery* thread sends the memory window first, then the
//! spool, oldest first: memory batches are always older than spooled ones (nothing goes to
//! memory while anything is spooled), so order holds across spilling, outages and restarts.
//! When the destination fails, delivery backs off (a circuit breaker: fail fast while open,
//! one probe after the cool-down) and holds its batch; the window fills and the buffer
//! spools. At shutdown what delivery still holds in memory goes to the spool with its own
//! ids ([`crate::spool::SpoolReader::write_held`]). In memory, and so lost to a `kill -9`
//! without `write_ahead`: the queue, the memory window and the batch being sent.
//!
//! Every event offered is accounted for: `received + recovered = delivered + lost + skipped +
//! spooled (pending on disk) + in_flight`, `in_flight` being 0 once the threads have stopped.
//! It must never block the caller of `offer` except under `Block`, never reorder, and never
//! lose an event uncounted.//!
//! One module each: the numbers (`counters`), the buffer thread (`buffer`), the delivery
//! thread (`deliver`). This one holds the policy, the state the threads share, and
//! [`Output`], the handle the writer offers to.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender, TryRecvError, TrySendError};

use crate::spool::{Spool, SpoolConfig, SpoolError, SpoolReader, SpoolWriter, Spooled};
use crate::{Batch, LiveCounters, Sink, SinkError};

mod buffer;
mod counters;
mod deliver;

use buffer::{open_spool, Buffer, SpoolStart};
pub use counters::{Accounting, OutputCounters, OutputStats};
use deliver::Delivery;

/// What an output does with a batch when its queue is full (`output.<name>.overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Append it to the output's spool on disk; delivered in order later.
    Spool,
    /// Count it lost and go on.
    Drop,
    /// Wait for room: the pipeline, and behind it the audited processes, wait too.
    Block,
}

impl Overflow {
    pub fn name(self) -> &'static str {
        match self {
            Overflow::Spool => "spool",
            Overflow::Drop => "drop",
            Overflow::Block => "block",
        }
    }
}

/// Why events offered to an output were not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The queue was full (policy `drop`, or `spool` without a usable spool).
    QueueFull,
    /// The spool reached `max_bytes`.
    SpoolFull,
    /// The spool could not be written (disk full, I/O error, not usable at start).
    SpoolError,
    /// Still failing after the output's attempts (policy `drop`).
    Failed,
    /// The destination refused them (HTTP 4xx): sending again would not help.
    Rejected,
    /// The destination is gone for good (stdout's reader exited): the output has ended.
    Closed,
    /// Still held when the shutdown deadline passed, with no spool to keep them.
    Shutdown,
    /// Found unreadable in the spool (a damaged disk, someone else's hand).
    Corrupt,
}

impl LossReason {
    pub const ALL: [LossReason; 8] = [
        LossReason::QueueFull,
        LossReason::SpoolFull,
        LossReason::SpoolError,
        LossReason::Failed,
        LossReason::Rejected,
        LossReason::Closed,
        LossReason::Shutdown,
        LossReason::Corrupt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LossReason::QueueFull => "queue_full",
            LossReason::SpoolFull => "spool_full",
            LossReason::SpoolError => "spool_error",
            LossReason::Failed => "failed",
            LossReason::Rejected => "rejected",
            LossReason::Closed => "closed",
            LossReason::Shutdown => "shutdown",
            LossReason::Corrupt => "corrupt",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutputConfig {
    /// Batches the queue holds (each up to the writer's batch size).
    pub queue: usize,
    pub overflow: Overflow,
    /// Required for [`Overflow::Spool`]; ignored otherwise.
    pub spool: Option<SpoolConfig>,
    /// Attempts per batch before its events are counted lost (pauditd's `attempts`), under
    /// [`Overflow::Drop`] or when `give_up` is set; otherwise the output keeps trying until
    /// delivered (or spooled) or shut down.
    pub attempts: u32,
    /// Give up on a batch after `attempts` whatever the overflow policy (replay: wait for a
    /// slow output, but do not wait forever for a dead one).
    pub give_up: bool,
    /// Pause between attempts of one batch (pauditd: 1 s).
    pub pause: Duration,
    /// First and longest wait of the breaker after a failure; doubles in between.
    pub backoff: (Duration, Duration),
    /// How this output's events are encoded (the fan-out encodes each format once).
    pub format: crate::Format,
}

impl OutputConfig {
    pub fn new(overflow: Overflow, attempts: u32) -> Self {
        OutputConfig {
            queue: 64,
            overflow,
            spool: None,
            attempts: attempts.max(1),
            give_up: overflow == Overflow::Drop,
            pause: Duration::from_secs(1),
            backoff: (Duration::from_millis(250), Duration::from_secs(5)),
            format: crate::Format::Pauditd,
        }
    }
}

/// What the buffer thread passes to delivery in memory.
enum Window {
    /// A batch, with its id when there is a spool (0 without one).
    Batch(u64, Arc<Batch>),
    /// Something was appended to the spool: look there (a doorbell, so delivery never polls).
    Spooled,
}

/// Shared between the writer (offer), the output's threads and whoever closes it.
struct Shared {
    name: &'static str,
    overflow: Overflow,
    counters: Arc<OutputCounters>,
    /// `Some(deadline)` once closing began: past it, stop trying and keep or count the rest.
    deadline: Mutex<Option<Deadline>>,
    reopen: AtomicBool,
    /// The destination ended (stdout closed): offers are counted lost at once.
    ended: AtomicBool,
    /// Set by delivery when the destination failed and it moved what it held in memory to
    /// the spool: the buffer then spools every batch until delivery has read the spool
    /// empty. The lock orders the buffer's sends to the window against delivery draining
    /// it; it is never held across I/O.
    diverted: Mutex<bool>,
    /// The delivery thread (set by itself before it first looks at the window), unparked by
    /// [`Shared::ring`].
    delivery: OnceLock<Thread>,
}

#[derive(Debug, Clone, Copy)]
pub enum Deadline {
    /// Give up at this instant (the daemon's SIGTERM: `shutdown_timeout`).
    At(Instant),
    /// Give up once nothing was delivered for this long (replay: wait while it progresses).
    Stalled(Duration),
}

impl Shared {
    fn deadline(&self) -> Option<Deadline> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wake the delivery thread: something was put in its window, the window closed, or the
    /// deadline changed. Idle, delivery blocks until this (no polling, no spinning: a
    /// channel's blocking receive spins and yields before it sleeps, which on a busy machine
    /// is a context switch per yield). An unpark before the park is kept, so a ring between
    /// delivery's last look and its park is not lost.
    fn ring(&self) {
        if let Some(t) = self.delivery.get() {
            t.unpark();
        }
    }

    fn diverted(&self) -> std::sync::MutexGuard<'_, bool> {
        self.diverted.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn past(&self, last_progress: Instant) -> bool {
        match self.deadline() {
            None => false,
            Some(Deadline::At(t)) => Instant::now() >= t,
            Some(Deadline::Stalled(d)) => last_progress.elapsed() >= d,
        }
    }

    fn publish_spool(&self, events: u64, bytes: u64) {
        self.counters.spool_events.store(events, Relaxed);
        self.counters.spool_bytes.store(bytes, Relaxed);
    }

    /// Count `n` lost for `why`, logging the first and then every power of two.
    fn lose_logged(&self, why: LossReason, n: u64, what: &dyn std::fmt::Display) {
        let before = self.counters.lost(why);
        self.counters.lose(why, n);
        if (before + 1..=before + n).any(worth_logging) {
            log::error!(
                "output {}: {what}: {n} event(s) lost ({} so far, reason {})",
                self.name,
                before + n,
                why.name()
            );
        }
    }
}

/// Log the `n`th occurrence only when `n` is a power of two: a flood costs few lines.
fn worth_logging(n: u64) -> bool {
    n.is_power_of_two()
}

pub struct Output {
    format: crate::Format,
    shared: Arc<Shared>,
    tx: Option<Sender<Window>>,
    /// The queue's other end, kept to count what is left in it once the threads stopped
    /// (offered in the instant the destination ended, say): never dropped uncounted.
    leftovers: Receiver<Window>,
    threads: Vec<JoinHandle<()>>,
    live: Option<Arc<dyn LiveCounters>>,
    has_spool: bool,
}

impl Output {
    /// Start `sink`'s threads. A spool that cannot be opened is logged and the output runs
    /// without it (overflow then drops and counts as `spool_error`); a spool directory
    /// others could tamper with, or one another process holds, is an error. Never fails
    /// because the destination is down: delivery fails and the policy applies.
    pub fn start(sink: Box<dyn Sink>, cfg: OutputConfig) -> Result<Output, SinkError> {
        let name = sink.name();
        let counters = Arc::new(OutputCounters::default());
        let spool = match (&cfg.spool, cfg.overflow) {
            (Some(sc), Overflow::Spool) => match open_spool(name, sc, &counters) {
                Ok(s) => s,
                Err(e @ (SpoolError::Unsafe { .. } | SpoolError::Busy { .. })) => {
                    return Err(SinkError::Setup {
                        sink: name,
                        message: e.to_string(),
                    })
                }
                Err(e) => {
                    log::error!(
                        "output {name}: {e}; running without a spool (a full queue drops and counts)"
                    );
                    SpoolStart::None
                }
            },
            _ => SpoolStart::None,
        };
        let has_spool = !matches!(spool, SpoolStart::None);
        let shared = Arc::new(Shared {
            name,
            overflow: cfg.overflow,
            counters,
            deadline: Mutex::new(None),
            reopen: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            diverted: Mutex::new(false),
            delivery: OnceLock::new(),
        });
        let live = sink.live_counters();
        let format = cfg.format;
        let window = cfg.queue.max(1);
        // Without a spool the queue is the window delivery reads; with one, the buffer
        // thread reads the queue and fills the window (or the spool).
        let (tx, rx) = bounded::<Window>(window);
        let leftovers = rx.clone();
        let spawn = |what: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("pauditd-{what}-{name}"))
                .spawn(f)
                .map_err(|e| SinkError::Setup {
                    sink: name,
                    message: format!("cannot start the output's {what} thread: {e}"),
                })
        };
        let mut threads = Vec::new();
        let (win_rx, reader) = if has_spool {
            let (win_tx, win_rx) = bounded::<Window>(window);
            let (reader_tx, reader_rx) = bounded::<SpoolReader>(1);
            let buffer = Buffer {
                shared: shared.clone(),
                rx,
                win: win_tx,
                write_ahead: cfg.spool.as_ref().is_some_and(|s| s.write_ahead),
            };
            let bell = shared.clone();
            threads.push(spawn(
                "buffer",
                Box::new(move || {
                    buffer.run(spool, reader_tx);
                    // The window's sender is gone with the buffer: delivery sees it closed.
                    bell.ring();
                }),
            )?);
            (win_rx, Some(reader_rx))
        } else {
            (rx, None)
        };
        let shared2 = shared.clone();
        threads.push(spawn(
            "out",
            Box::new(move || {
                let _ = shared2.delivery.set(std::thread::current());
                let spool = reader.and_then(|r| r.recv().ok());
                let mut d = Delivery {
                    sink,
                    cfg,
                    shared: shared2.clone(),
                    win: win_rx,
                    spool,
                    last_progress: Instant::now(),
                    backoff: Duration::ZERO,
                    open_until: None,
                    failures: 0,
                };
                d.run();
                shared2.counters.stopped.store(true, Relaxed);
            }),
        )?);
        Ok(Output {
            format,
            shared,
            tx: Some(tx),
            leftovers,
            threads,
            live,
            has_spool,
        })
    }

    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// The format this output takes its events in.
    pub fn format(&self) -> crate::Format {
        self.format
    }

    /// Take events in `format` from now on (replay's `--format`).
    pub fn set_format(&mut self, format: crate::Format) {
        self.format = format;
    }

    pub fn stats(&self) -> OutputStats {
        OutputStats {
            name: self.shared.name,
            overflow: self.shared.overflow,
            counters: self.shared.counters.clone(),
            live: self.live.clone(),
        }
    }

    /// Hand `batch` to this output: enqueued, or counted. Waits only under
    /// [`Overflow::Block`], and then only until the shutdown deadline.
    pub fn offer(&self, batch: &Arc<Batch>) {
        let n = batch.len() as u64;
        if n == 0 {
            return;
        }
        let c = &self.shared.counters;
        c.received.fetch_add(n, Relaxed);
        let Some(tx) = &self.tx else {
            c.lose(LossReason::Closed, n);
            return;
        };
        if self.shared.ended.load(Relaxed) {
            c.lose(LossReason::Closed, n);
            return;
        }
        let mut b = Window::Batch(0, batch.clone());
        loop {
            match tx.try_send(b) {
                Ok(()) => {
                    self.ring_receiver();
                    break;
                }
                Err(TrySendError::Disconnected(_)) => {
                    c.lose(LossReason::Closed, n);
                    break;
                }
                Err(TrySendError::Full(back)) if self.shared.overflow == Overflow::Block => {
                    if matches!(self.shared.deadline(), Some(Deadline::At(t)) if Instant::now() >= t)
                    {
                        self.shared.lose_logged(
                            LossReason::Shutdown,
                            n,
                            &"queue full at the shutdown deadline",
                        );
                        break;
                    }
                    match tx.send_timeout(back, Duration::from_millis(50)) {
                        Ok(()) => {
                            self.ring_receiver();
                            break;
                        }
                        Err(SendTimeoutError::Timeout(back)) => b = back,
                        Err(SendTimeoutError::Disconnected(_)) => {
                            c.lose(LossReason::Closed, n);
                            break;
                        }
                    }
                }
                Err(TrySendError::Full(_)) => {
                    let (why, what) = if self.has_spool {
                        (
                            LossReason::QueueFull,
                            "the spool's intake is full (the disk is slower than the events)",
                        )
                    } else if self.shared.overflow == Overflow::Spool {
                        // A spool was asked for but could not be opened.
                        (LossReason::SpoolError, "queue full and the spool unusable")
                    } else {
                        (LossReason::QueueFull, "queue full")
                    };
                    self.shared.lose_logged(why, n, &what);
                    break;
                }
            }
        }
        c.queued_batches.store(tx.len() as u64, Relaxed);
    }

    /// Without a spool the queue is delivery's window: wake it. (With one, the buffer thread
    /// receives, and rings delivery itself.)
    fn ring_receiver(&self) {
        if !self.has_spool {
            self.shared.ring();
        }
    }

    /// The destination closed for good (stdout's reader went away).
    pub fn has_ended(&self) -> bool {
        self.shared.ended.load(Relaxed)
    }

    pub fn has_spool(&self) -> bool {
        self.has_spool
    }

    /// SIGUSR1: reopen before the next batch.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Relaxed);
    }

    /// Set the deadline without closing the queue (SIGTERM: every output knows it before the
    /// engine drains, so a `block` offer gives up in time).
    pub fn set_deadline(&self, deadline: Deadline) {
        *self
            .shared
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.shared.ring();
    }

    /// Stop taking batches; the threads deliver what they hold until `deadline`, then keep
    /// the rest in the spool or count it lost.
    pub fn begin_close(&mut self, deadline: Deadline) {
        self.set_deadline(deadline);
        self.tx = None;
        self.shared.ring();
    }

    /// Whether the threads have stopped.
    pub fn is_stopped(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Whether a thread died (a panic) while the output was open, as opposed to stopping
    /// after close or ending with its destination (EPIPE).
    pub fn has_dead_thread(&self) -> bool {
        self.tx.is_some() && !self.has_ended() && self.threads.iter().any(|t| t.is_finished())
    }

    /// Wait for the threads, at most until `limit`; false if one is still stuck.
    pub fn join(&mut self, limit: Instant) -> bool {
        while !self.is_stopped() {
            if Instant::now() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                log::error!("output {}: a thread panicked", self.shared.name);
            }
        }
        let why = if self.has_ended() {
            LossReason::Closed
        } else {
            LossReason::Shutdown
        };
        for w in self.leftovers.try_iter() {
            if let Window::Batch(_, b) = w {
                self.shared.counters.lose(why, b.len() as u64);
            }
        }
        true
    }

    /// [`set_deadline`](Self::set_deadline) from another thread (the daemon's main loop at
    /// SIGTERM, while the writer may be waiting in [`offer`](Self::offer)). It holds the
    /// output weakly: it never keeps a stopped output's state (its spool) alive.
    pub fn deadline_setter(&self) -> Box<dyn Fn(Deadline) + Send + Sync> {
        let shared = Arc::downgrade(&self.shared);
        Box::new(move |d| {
            if let Some(shared) = shared.upgrade() {
                *shared.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
                shared.ring();
            }
        })
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.begin_close(Deadline::At(Instant::now()));
            let _ = self.join(Instant::now() + Duration::from_secs(5));
        }
    }
}
