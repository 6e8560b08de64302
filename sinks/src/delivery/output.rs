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
//! lose an event uncounted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender, TryRecvError, TrySendError};

use crate::spool::{Spool, SpoolConfig, SpoolError, SpoolReader, SpoolWriter, Spooled};
use crate::{Batch, LiveCounters, Sink, SinkError};

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

/// Counters of one output, shared by its thread and whoever reports.
#[derive(Debug, Default)]
pub struct OutputCounters {
    pub received: AtomicU64,
    pub delivered: AtomicU64,
    lost: [AtomicU64; 8],
    /// Events appended to the spool / delivered from it (cumulative).
    pub spooled: AtomicU64,
    pub unspooled: AtomicU64,
    /// Undelivered events found in the spool at start.
    pub recovered: AtomicU64,
    /// Bytes cut off corrupt spool tails.
    pub spool_corrupt_bytes: AtomicU64,
    /// Gauges.
    pub spool_events: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub queued_batches: AtomicU64,
    /// Times the breaker opened.
    pub breaker_opened: AtomicU64,
    /// Set once the thread has stopped.
    pub stopped: AtomicBool,
}

impl OutputCounters {
    fn lose(&self, why: LossReason, n: u64) {
        self.lost[why as usize].fetch_add(n, Relaxed);
    }

    pub fn lost(&self, why: LossReason) -> u64 {
        self.lost[why as usize].load(Relaxed)
    }

    pub fn lost_total(&self) -> u64 {
        self.lost.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// Where every event handed to one output went: `received = delivered + lost + skipped +
/// spooled + in_flight`, `received` including events recovered from the spool at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accounting {
    pub received: u64,
    pub delivered: u64,
    pub lost: u64,
    pub skipped: u64,
    /// Waiting in the spool on disk (delivered after the next start if not before).
    pub spooled: u64,
    /// Queued or being sent; 0 once the output has stopped, else unaccounted.
    pub in_flight: i64,
}

impl std::fmt::Display for Accounting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "written={} lost={} skipped={} spooled={} received={} in_flight={}",
            self.delivered, self.lost, self.skipped, self.spooled, self.received, self.in_flight
        )
    }
}

/// A snapshot handle on one output's counters (cheap to clone, read live).
#[derive(Debug, Clone)]
pub struct SinkStats {
    pub name: &'static str,
    pub overflow: Overflow,
    pub counters: Arc<OutputCounters>,
    /// The transport's own counters (HTTP codes, latency, topics).
    pub live: Option<Arc<dyn LiveCounters>>,
}

impl SinkStats {
    pub fn accounting(&self) -> Accounting {
        let c = &self.counters;
        let received = c.received.load(Relaxed) + c.recovered.load(Relaxed);
        let skipped = self.live.as_ref().map_or(0, |l| l.skipped());
        // Skipped events are counted delivered by the thread (the sink took them).
        let delivered = c.delivered.load(Relaxed).saturating_sub(skipped);
        let lost = c.lost_total();
        let spooled = c.spool_events.load(Relaxed);
        Accounting {
            received,
            delivered,
            lost,
            skipped,
            spooled,
            in_flight: received as i64 - (delivered + lost + skipped + spooled) as i64,
        }
    }

    pub fn lost_total(&self) -> u64 {
        self.counters.lost_total()
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

/// The spool as the output starts with it.
enum SpoolStart {
    None,
    Open(Spool),
    /// Held by an output of this process being retired (a reload): taken over by the buffer
    /// thread once released.
    Wait(SpoolConfig),
}

fn open_spool(
    name: &'static str,
    sc: &SpoolConfig,
    counters: &OutputCounters,
) -> Result<SpoolStart, SpoolError> {
    match Spool::open(sc.clone()) {
        Ok((spool, rec)) => {
            note_recovered(name, sc, &rec, counters);
            Ok(SpoolStart::Open(spool))
        }
        Err(SpoolError::Busy { ours: true, .. }) => Ok(SpoolStart::Wait(sc.clone())),
        Err(e) => Err(e),
    }
}

fn note_recovered(
    name: &str,
    sc: &SpoolConfig,
    rec: &crate::spool::Recovered,
    counters: &OutputCounters,
) {
    if rec.events > 0 || rec.corrupt_bytes > 0 {
        log::info!(
            "output {name}: spool {} holds {} event(s) from an earlier run; delivering them first{}",
            sc.dir.display(),
            rec.events,
            if rec.corrupt_bytes > 0 {
                format!(
                    " ({} unreadable byte(s) skipped, {} event(s) known lost)",
                    rec.corrupt_bytes, rec.corrupt_events
                )
            } else {
                String::new()
            }
        );
    }
    counters.recovered.fetch_add(rec.events, Relaxed);
    counters
        .spool_corrupt_bytes
        .fetch_add(rec.corrupt_bytes, Relaxed);
    // Known lost events were received by an earlier run: counted as received and lost here,
    // so the accounting still balances.
    counters.recovered.fetch_add(rec.corrupt_events, Relaxed);
    counters.lose(LossReason::Corrupt, rec.corrupt_events);
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

    pub fn stats(&self) -> SinkStats {
        SinkStats {
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
    pub fn has_died(&self) -> bool {
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

/// The buffer thread of a spooled output: the only writer of its spool.
struct Buffer {
    shared: Arc<Shared>,
    rx: Receiver<Window>,
    win: Sender<Window>,
    write_ahead: bool,
}

impl Buffer {
    fn run(self, start: SpoolStart, reader_tx: Sender<SpoolReader>) {
        let spool = match start {
            SpoolStart::Open(s) => Some(s),
            SpoolStart::Wait(sc) => self.take_over(&sc),
            SpoolStart::None => None,
        };
        let Some(spool) = spool else {
            // No spool after all (it could not be taken over): batches pass to the window.
            drop(reader_tx);
            for w in &self.rx {
                let sent = self.win.send(w);
                self.shared.ring();
                if let Err(e) = sent {
                    if let Window::Batch(_, b) = e.into_inner() {
                        self.shared
                            .counters
                            .lose(LossReason::Shutdown, b.len() as u64);
                    }
                }
            }
            return;
        };
        self.shared.publish_spool(spool.events(), spool.bytes());
        let (mut w, r) = spool.split();
        let _ = reader_tx.send(r);
        if !w.is_drained() {
            let _ = self.win.try_send(Window::Spooled);
            self.shared.ring();
        }
        let mut spooling = self.write_ahead || !w.is_drained();
        for msg in &self.rx {
            let Window::Batch(_, b) = msg else { continue };
            if self.shared.ended.load(Relaxed) {
                self.shared
                    .counters
                    .lose(LossReason::Closed, b.len() as u64);
                continue;
            }
            self.shared
                .counters
                .queued_batches
                .store(self.rx.len() as u64, Relaxed);
            if spooling && !self.write_ahead && w.is_drained() && !*self.shared.diverted() {
                spooling = false;
            }
            if !spooling && !*self.shared.diverted() {
                let id = w.assign_id();
                let sent = {
                    let diverted = self.shared.diverted();
                    if *diverted {
                        Err(b)
                    } else {
                        match self.win.try_send(Window::Batch(id, b)) {
                            Ok(()) => Ok(()),
                            Err(TrySendError::Full(Window::Batch(_, back)))
                            | Err(TrySendError::Disconnected(Window::Batch(_, back))) => Err(back),
                            // Only batches are sent here.
                            Err(_) => continue,
                        }
                    }
                };
                match sent {
                    Ok(()) => {
                        self.shared.ring();
                        continue;
                    }
                    Err(back) => {
                        // The window is full, or delivery diverted: from now on everything
                        // goes to disk until delivery has caught up with it (order: memory,
                        // then spool).
                        spooling = true;
                        self.append(&mut w, &back);
                    }
                }
                continue;
            }
            spooling = true;
            self.append(&mut w, &b);
        }
        self.shared.publish_spool(w.events(), w.bytes());
    }

    fn append(&self, w: &mut SpoolWriter, b: &Batch) {
        let n = b.len() as u64;
        match w.append(b, 0) {
            Ok(()) => {
                self.shared.counters.spooled.fetch_add(n, Relaxed);
                // A doorbell; when the window is full, delivery is busy and looks anyway.
                let _ = self.win.try_send(Window::Spooled);
                self.shared.ring();
            }
            Err(e) => {
                let why = match e {
                    SpoolError::Full { .. } => LossReason::SpoolFull,
                    _ => LossReason::SpoolError,
                };
                self.shared.lose_logged(why, n, &e);
            }
        }
        self.shared.publish_spool(w.events(), w.bytes());
    }

    /// Wait for a retiring output of this process to release the spool (a reload hands it
    /// over; never two owners). Gives up at the deadline.
    fn take_over(&self, sc: &SpoolConfig) -> Option<Spool> {
        let mut logged = false;
        loop {
            match Spool::open(sc.clone()) {
                Ok((s, rec)) => {
                    note_recovered(self.shared.name, sc, &rec, &self.shared.counters);
                    return Some(s);
                }
                Err(SpoolError::Busy { .. })
                    if !self.shared.past(Instant::now() + Duration::from_secs(3600)) =>
                {
                    if !logged {
                        log::info!(
                            "output {}: waiting for the previous output to release spool {}",
                            self.shared.name,
                            sc.dir.display()
                        );
                        logged = true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    log::error!("output {}: {e}; running without a spool", self.shared.name);
                    return None;
                }
            }
        }
    }
}

/// Where a batch being delivered came from.
enum Held {
    /// From memory (with its id, 0 without a spool).
    Memory(u64, Arc<Batch>),
    /// From the spool: acknowledged once delivered.
    Spooled(Spooled),
}

impl Held {
    fn batch(&self) -> &Batch {
        match self {
            Held::Memory(_, b) => b,
            Held::Spooled(r) => &r.batch,
        }
    }
}

/// What one delivery attempt did.
struct Outcome {
    delivered: usize,
    rejected: usize,
    /// Lines that failed and may succeed later (in order).
    retry: Batch,
    /// The destination is gone for good; `retry` is what it did not take.
    closed: bool,
    error: String,
}

/// How delivering one batch ended.
enum Done {
    /// Delivered, or settled per the policy: take the next.
    Next,
    /// The destination failed while this batch came from memory, and there is a spool:
    /// move it (`rest` of it) and the window to the spool, and go on from there.
    Divert { rest: Option<Batch> },
    /// Stop (deadline or closed destination); `rest` is what is still held of it (`None`:
    /// all of it).
    Stop { rest: Option<Batch> },
}

/// The longest an idle delivery thread sleeps without being rung.
const IDLE_PARK: Duration = Duration::from_secs(10);

/// The delivery thread: sends the window, then the spool, oldest first.
struct Delivery {
    sink: Box<dyn Sink>,
    cfg: OutputConfig,
    shared: Arc<Shared>,
    win: Receiver<Window>,
    spool: Option<SpoolReader>,
    last_progress: Instant,
    backoff: Duration,
    /// Breaker open: no attempt before this instant.
    open_until: Option<Instant>,
    failures: u64,
}

impl Delivery {
    fn counters(&self) -> &OutputCounters {
        &self.shared.counters
    }

    fn past_deadline(&self) -> bool {
        self.shared.past(self.last_progress)
    }

    fn closing(&self) -> bool {
        self.shared.deadline().is_some()
    }

    fn run(&mut self) {
        let mut stopped: Option<(Held, Option<Batch>)> = None;
        loop {
            if self.past_deadline() {
                break;
            }
            // The window holds batches older than anything spooled: it goes first.
            let held = match self.win.try_recv() {
                Ok(Window::Batch(id, b)) => Held::Memory(id, b),
                Ok(Window::Spooled) => continue,
                Err(empty) => {
                    if let Some(r) = self.next_spooled() {
                        Held::Spooled(r)
                    } else if empty == TryRecvError::Disconnected {
                        // Closed, drained, and nothing spooled: done.
                        break;
                    } else {
                        // Idle: block until rung (a batch, a spool notice, the window's close
                        // or a new deadline; see `Shared::ring`). While closing, look again
                        // every 250 ms (a `Stalled` deadline passes without a ring); otherwise
                        // the timeout only bounds the cost of a missed ring, which would be a
                        // bug.
                        std::thread::park_timeout(if self.closing() {
                            Duration::from_millis(250)
                        } else {
                            IDLE_PARK
                        });
                        continue;
                    }
                }
            };
            if self.shared.reopen.swap(false, Relaxed) {
                if let Err(e) = self.sink.reopen() {
                    log::error!("Error re-opening output: {e}");
                }
            }
            match self.deliver(&held) {
                Done::Next => {}
                Done::Divert { rest } => self.divert(held, rest),
                Done::Stop { rest } => {
                    stopped = Some((held, rest));
                    break;
                }
            }
        }
        self.keep_the_rest(stopped);
        self.counters().queued_batches.store(0, Relaxed);
        self.sink.close();
    }

    /// The oldest spooled record (corrupt ones skipped and counted).
    fn next_spooled(&mut self) -> Option<Spooled> {
        let s = self.spool.as_mut()?;
        let r = match s.peek() {
            Ok(r) => r,
            Err(e) => {
                log::error!("output {}: {e}", self.shared.name);
                None
            }
        };
        if r.is_none() {
            // Read empty: the buffer may pass batches in memory again.
            *self.shared.diverted() = false;
        }
        let corrupt = s.take_corrupt_events();
        self.shared.publish_spool(s.events(), s.bytes());
        if corrupt > 0 {
            self.shared
                .lose_logged(LossReason::Corrupt, corrupt, &"unreadable in the spool");
        }
        r
    }

    /// The destination failed: what is held in memory (this batch, then the window) goes to
    /// the spool now, so an outage costs no memory and a `kill -9` loses none of it.
    fn divert(&mut self, held: Held, rest: Option<Batch>) {
        let Held::Memory(id, b) = held else { return };
        let mut keep = vec![(id, rest.map_or(b, Arc::new))];
        {
            let mut diverted = self.shared.diverted();
            *diverted = true;
            keep.extend(self.win.try_iter().filter_map(|w| match w {
                Window::Batch(id, b) => Some((id, b)),
                Window::Spooled => None,
            }));
        }
        self.write_held(keep, LossReason::SpoolError);
    }

    fn write_held(&mut self, held: Vec<(u64, Arc<Batch>)>, why: LossReason) {
        let n: u64 = held.iter().map(|(_, b)| b.len() as u64).sum();
        if n == 0 {
            return;
        }
        match self.spool.as_mut() {
            Some(s) => {
                let refs: Vec<(u64, &Batch)> = held.iter().map(|(i, b)| (*i, &**b)).collect();
                match s.write_held(&refs) {
                    Ok(k) => {
                        self.shared.counters.spooled.fetch_add(k, Relaxed);
                    }
                    Err(e) => self.shared.lose_logged(LossReason::SpoolError, n, &e),
                }
                self.shared.publish_spool(s.events(), s.bytes());
            }
            None => self.shared.lose_logged(why, n, &"still held at the end"),
        }
    }

    /// Past the deadline or ended: what is still held in memory (the batch being sent, with
    /// what is left of it, then the window) goes to the spool with its ids, else is counted.
    fn keep_the_rest(&mut self, stopped: Option<(Held, Option<Batch>)>) {
        let ended = self.shared.ended.load(Relaxed);
        let mut held: Vec<(u64, Arc<Batch>)> = Vec::new();
        match stopped {
            Some((Held::Memory(id, b), rest)) => {
                held.push((id, rest.map_or(b, Arc::new)));
            }
            // Not acknowledged: it stays first in the spool (sent whole again next time).
            Some((Held::Spooled(_), _)) | None => {}
        }
        {
            // As for a divert: once this is set (under the lock the buffer sends under), the
            // buffer never sends to the window again; it appends what it still gets.
            let mut diverted = self.shared.diverted();
            *diverted = true;
            for w in self.win.try_iter() {
                if let Window::Batch(id, b) = w {
                    held.push((id, b));
                }
            }
        }
        if ended {
            let n: u64 = held.iter().map(|(_, b)| b.len() as u64).sum();
            self.shared
                .lose_logged(LossReason::Closed, n, &"the destination ended");
            return;
        }
        self.write_held(held, LossReason::Shutdown);
    }

    /// Deliver one held batch, per the policy.
    fn deliver(&mut self, held: &Held) -> Done {
        let mut rest: Option<Batch> = None;
        let mut tries = 0u32;
        loop {
            if self.past_deadline() {
                return Done::Stop { rest };
            }
            let open = self.open_until.filter(|t| Instant::now() < *t);
            if open.is_some() && self.closing() && self.spool.is_some() {
                // Closing while the destination is down: keep it all for the next start now
                // rather than wait out the deadline.
                return Done::Stop { rest };
            }
            if let Some(until) = open {
                // Breaker open: fail fast (drop) or wait (spool, block): with a spool the
                // window fills meanwhile and the buffer spools behind this batch.
                if self.cfg.give_up {
                    let cur = rest.as_ref().unwrap_or_else(|| held.batch()).len();
                    self.settle(held, cur, LossReason::Failed);
                    return Done::Next;
                }
                self.sleep_until(until);
                continue;
            }
            tries += 1;
            let o = self.attempt(rest.as_ref().unwrap_or_else(|| held.batch()));
            let c = self.shared.counters.clone();
            c.delivered.fetch_add(o.delivered as u64, Relaxed);
            if matches!(held, Held::Spooled(_)) {
                c.unspooled.fetch_add(o.delivered as u64, Relaxed);
            }
            c.lose(LossReason::Rejected, o.rejected as u64);
            if o.delivered + o.rejected > 0 {
                self.last_progress = Instant::now();
            }
            if o.closed {
                self.shared.ended.store(true, Relaxed);
                log::error!(
                    "output {}: {}; the output has ended, its events are counted lost from now on",
                    self.shared.name,
                    o.error
                );
                self.settle(held, o.retry.len(), LossReason::Closed);
                // Counted just now: nothing of it is left to keep.
                return Done::Stop {
                    rest: Some(Batch::default()),
                };
            }
            if o.retry.is_empty() {
                if self.open_until.take().is_some() || self.backoff > Duration::ZERO {
                    log::info!("output {}: delivering again", self.shared.name);
                }
                self.backoff = Duration::ZERO;
                self.settle(held, 0, LossReason::Failed);
                return Done::Next;
            }
            self.failures += 1;
            if worth_logging(self.failures) {
                log::error!(
                    "output {}: {} event(s) not delivered: {} ({} failed attempt(s) so far)",
                    self.shared.name,
                    o.retry.len(),
                    o.error,
                    self.failures
                );
            }
            let left = o.retry.len();
            rest = Some(o.retry);
            if self.cfg.give_up && tries < self.cfg.attempts {
                self.sleep_until(Instant::now() + self.cfg.pause);
                continue;
            }
            self.open_breaker();
            if self.cfg.give_up {
                self.settle(held, left, LossReason::Failed);
                return Done::Next;
            }
            if matches!(held, Held::Memory(..)) && self.spool.is_some() {
                return Done::Divert { rest };
            }
        }
    }

    fn open_breaker(&mut self) {
        let (first, max) = self.cfg.backoff;
        self.backoff = if self.backoff.is_zero() {
            first
        } else {
            (self.backoff * 2).min(max)
        };
        if self.open_until.is_none() {
            self.counters().breaker_opened.fetch_add(1, Relaxed);
            log::warn!(
                "output {}: failing; trying again every {:?} at most (policy {})",
                self.shared.name,
                self.backoff,
                self.cfg.overflow.name()
            );
        }
        self.open_until = Some(Instant::now() + self.backoff);
    }

    /// One try of the sink on `b`.
    fn attempt(&mut self, b: &Batch) -> Outcome {
        match self.sink.write_batch(b) {
            Ok(()) => Outcome {
                delivered: b.len(),
                rejected: 0,
                retry: Batch::default(),
                closed: false,
                error: String::new(),
            },
            Err(e) => {
                let f = e.failure(b.len());
                let mut retry = Batch::default();
                for &i in &f.retry {
                    retry.push_line(&b.bytes()[b.line_range(i)]);
                }
                Outcome {
                    delivered: b.len() - f.retry.len() - f.rejected,
                    rejected: f.rejected,
                    retry,
                    closed: f.closed,
                    error: e.to_string(),
                }
            }
        }
    }

    /// Sleep until `t`, waking early when the deadline passes.
    fn sleep_until(&self, t: Instant) {
        while !self.past_deadline() {
            let left = t.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    /// `held` is done with: `undelivered` events of it are lost for `why`.
    fn settle(&mut self, held: &Held, undelivered: usize, why: LossReason) {
        self.shared.counters.lose(why, undelivered as u64);
        if let (Held::Spooled(r), Some(s)) = (held, self.spool.as_mut()) {
            if let Err(e) = s.ack(r) {
                log::error!("output {}: {e}", self.shared.name);
            }
            self.shared.publish_spool(s.events(), s.bytes());
        }
    }
}
