//! One output on its own: a bounded queue, a thread, a policy for when it falls behind, and
//! optionally a durable spool.
//!
//! Owns isolation. The writer hands each encoded batch (shared, never copied) to
//! [`Output::offer`], which never waits unless the operator chose [`Overflow::Block`]: a full
//! queue spills to the spool ([`Overflow::Spool`]) or drops and counts ([`Overflow::Drop`]).
//! The output's thread delivers in order: its queue, and once anything is spooled, the spool
//! first (a spooled output appends every new batch to the spool until the spool is empty, so
//! order holds across spilling, outages and restarts). When the destination fails, the thread
//! backs off (a circuit breaker: fail fast while open, one probe after the cool-down); with a
//! spool it moves what it holds into the spool at once, so an outage costs memory for nothing
//! and a `kill -9` loses nothing spooled. Shutdown is bounded: past the deadline what is left
//! goes to the spool, or is counted lost.
//!
//! Every event offered is accounted for: `received + recovered = delivered + lost + skipped +
//! spooled (pending on disk) + in_flight`, `in_flight` being 0 once the thread has stopped. It
//! must never block the caller of `offer` except under `Block`, and never lose an event
//! uncounted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::spool::{Spool, SpoolConfig, SpoolError, Spooled};
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
}

impl LossReason {
    pub const ALL: [LossReason; 7] = [
        LossReason::QueueFull,
        LossReason::SpoolFull,
        LossReason::SpoolError,
        LossReason::Failed,
        LossReason::Rejected,
        LossReason::Closed,
        LossReason::Shutdown,
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
    lost: [AtomicU64; 7],
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

/// The spool and whether the output is currently diverted to it.
struct SpoolState {
    spool: Spool,
    /// Set while the destination is down: every new batch goes to the spool.
    diverted: bool,
}

/// Shared between the writer (offer) and the output's thread.
struct Shared {
    name: &'static str,
    overflow: Overflow,
    counters: Arc<OutputCounters>,
    spool: Option<Mutex<SpoolState>>,
    /// `Some(deadline)` once closing began: past it, stop trying and keep or count the rest.
    deadline: Mutex<Option<Deadline>>,
    reopen: AtomicBool,
    /// The destination ended (stdout closed): offers are counted lost at once.
    ended: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
pub enum Deadline {
    /// Give up at this instant (the daemon's SIGTERM: `shutdown_timeout`).
    At(Instant),
    /// Give up once nothing was delivered for this long (replay: wait while it progresses).
    Stalled(Duration),
}

impl Shared {
    fn lock_spool(&self) -> Option<MutexGuard<'_, SpoolState>> {
        self.spool
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn deadline(&self) -> Option<Deadline> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish_spool(&self, s: &Spool) {
        self.counters.spool_events.store(s.events(), Relaxed);
        self.counters.spool_bytes.store(s.bytes(), Relaxed);
    }
}

/// Log the `n`th occurrence only when `n` is a power of two: a flood costs few lines.
fn worth_logging(n: u64) -> bool {
    n.is_power_of_two()
}

pub struct Output {
    format: crate::Format,
    shared: Arc<Shared>,
    tx: Option<Sender<Arc<Batch>>>,
    thread: Option<JoinHandle<()>>,
    live: Option<Arc<dyn LiveCounters>>,
}

impl Output {
    /// Start `sink`'s thread. A spool that cannot be opened is logged and the output runs
    /// without it (overflow then drops and counts as `spool_error`); a spool directory
    /// others could tamper with is an error.
    pub fn start(sink: Box<dyn Sink>, cfg: OutputConfig) -> Result<Output, SinkError> {
        let name = sink.name();
        let counters = Arc::new(OutputCounters::default());
        let spool = match (&cfg.spool, cfg.overflow) {
            (Some(sc), Overflow::Spool) => match Spool::open(sc.clone()) {
                Ok((spool, rec)) => {
                    if rec.events > 0 || rec.corrupt_bytes > 0 {
                        log::info!(
                            "output {name}: spool {} holds {} event(s) from an earlier run; delivering them first{}",
                            sc.dir.display(),
                            rec.events,
                            if rec.corrupt_bytes > 0 {
                                format!(" ({} corrupt byte(s) removed)", rec.corrupt_bytes)
                            } else {
                                String::new()
                            }
                        );
                    }
                    counters.recovered.store(rec.events, Relaxed);
                    counters
                        .spool_corrupt_bytes
                        .store(rec.corrupt_bytes, Relaxed);
                    Some(Mutex::new(SpoolState {
                        spool,
                        diverted: false,
                    }))
                }
                Err(e @ SpoolError::Unsafe { .. }) => {
                    return Err(SinkError::Setup {
                        sink: name,
                        message: e.to_string(),
                    })
                }
                Err(e) => {
                    log::error!(
                        "output {name}: {e}; running without a spool (a full queue drops and counts)"
                    );
                    None
                }
            },
            _ => None,
        };
        let shared = Arc::new(Shared {
            name,
            overflow: cfg.overflow,
            counters,
            spool,
            deadline: Mutex::new(None),
            reopen: AtomicBool::new(false),
            ended: AtomicBool::new(false),
        });
        if let Some(s) = shared.lock_spool() {
            shared.publish_spool(&s.spool);
        }
        let live = sink.live_counters();
        let format = cfg.format;
        let (tx, rx) = bounded::<Arc<Batch>>(cfg.queue.max(1));
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("pauditd-out-{name}"))
                .spawn(move || {
                    let mut r = Runner {
                        sink,
                        cfg,
                        shared: shared.clone(),
                        rx,
                        last_progress: Instant::now(),
                        backoff: Duration::ZERO,
                        open_until: None,
                        failures: 0,
                    };
                    r.run();
                    shared.counters.stopped.store(true, Relaxed);
                })
                .map_err(|e| SinkError::Setup {
                    sink: name,
                    message: format!("cannot start the output thread: {e}"),
                })?
        };
        Ok(Output {
            format,
            shared,
            tx: Some(tx),
            thread: Some(thread),
            live,
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

    /// Hand `batch` to this output. Waits only under [`Overflow::Block`].
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
        let gone = |c: &OutputCounters| c.lose(LossReason::Closed, n);
        match self.shared.overflow {
            Overflow::Block => {
                if tx.send(batch.clone()).is_err() {
                    gone(c);
                }
            }
            Overflow::Drop => self.try_queue(tx, batch, LossReason::QueueFull),
            Overflow::Spool => {
                let Some(mut s) = self.shared.lock_spool() else {
                    return self.try_queue(tx, batch, LossReason::SpoolError);
                };
                // Order: while anything is spooled (or the output is down), new batches go
                // behind it in the spool, never past it through the queue.
                if !s.diverted && s.spool.is_empty() {
                    match tx.try_send(batch.clone()) {
                        Ok(()) => return,
                        Err(TrySendError::Disconnected(_)) => return gone(c),
                        Err(TrySendError::Full(_)) => {}
                    }
                }
                match s.spool.append(batch, 0) {
                    Ok(()) => {
                        c.spooled.fetch_add(n, Relaxed);
                    }
                    Err(e) => {
                        let why = match e {
                            SpoolError::Full { .. } => LossReason::SpoolFull,
                            _ => LossReason::SpoolError,
                        };
                        let before = c.lost(why);
                        c.lose(why, n);
                        if (before + 1..=before + n).any(worth_logging) {
                            log::error!(
                                "output {}: {e}: {n} event(s) dropped ({} so far)",
                                self.shared.name,
                                before + n
                            );
                        }
                    }
                }
                self.shared.publish_spool(&s.spool);
            }
        }
        c.queued_batches.store(tx.len() as u64, Relaxed);
    }

    fn try_queue(&self, tx: &Sender<Arc<Batch>>, batch: &Arc<Batch>, why: LossReason) {
        let c = &self.shared.counters;
        let n = batch.len() as u64;
        if let Err(e) = tx.try_send(batch.clone()) {
            let why = match e {
                TrySendError::Full(_) => why,
                TrySendError::Disconnected(_) => LossReason::Closed,
            };
            let before = c.lost(why);
            c.lose(why, n);
            if (before + 1..=before + n).any(worth_logging) {
                log::error!(
                    "output {}: queue full, {n} event(s) dropped ({} so far; policy {})",
                    self.shared.name,
                    before + n,
                    self.shared.overflow.name()
                );
            }
        }
    }

    /// The destination closed for good (stdout's reader went away).
    pub fn has_ended(&self) -> bool {
        self.shared.ended.load(Relaxed)
    }

    pub fn has_spool(&self) -> bool {
        self.shared.spool.is_some()
    }

    /// SIGUSR1: reopen before the next batch.
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Relaxed);
    }

    /// Stop taking batches; the thread delivers what it holds until `deadline`, then keeps
    /// the rest in the spool or counts it lost.
    pub fn begin_close(&mut self, deadline: Deadline) {
        *self
            .shared
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(deadline);
        self.tx = None;
    }

    /// Whether the thread has stopped (it can no longer be waited on when this is false past
    /// the deadline: a write stuck in the kernel).
    pub fn is_stopped(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Whether the thread died (a panic), as opposed to stopping after close.
    pub fn has_died(&self) -> bool {
        self.tx.is_some() && self.thread.as_ref().is_some_and(|t| t.is_finished())
    }

    /// Wait for the thread, at most until `limit`; false if it is still stuck.
    pub fn join(&mut self, limit: Instant) -> bool {
        while !self.is_stopped() {
            if Instant::now() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("output {}: its thread panicked", self.shared.name);
            }
        }
        true
    }

    // Minimal version added on the `control` branch until the buffer rewrite brings its own.
    /// Set the deadline without closing the queue: past it the thread stops trying and keeps
    /// (spool) or counts what it holds, and a `block` offer waiting on it returns.
    pub fn set_deadline(&self, deadline: Deadline) {
        *self
            .shared
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(deadline);
    }

    /// [`set_deadline`](Self::set_deadline) from another thread (the daemon's main loop at
    /// SIGTERM, while the writer may be waiting in [`offer`](Self::offer)). It holds the
    /// output weakly: it never keeps a stopped output's state (its spool) alive.
    pub fn deadline_setter(&self) -> Box<dyn Fn(Deadline) + Send + Sync> {
        let shared = Arc::downgrade(&self.shared);
        Box::new(move |d| {
            if let Some(shared) = shared.upgrade() {
                *shared.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(d);
            }
        })
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.begin_close(Deadline::At(Instant::now()));
            let _ = self.join(Instant::now() + Duration::from_secs(5));
        }
    }
}

/// Where a batch being delivered came from.
enum Held {
    /// From the queue: `lines` of it are still to deliver.
    Queued(Arc<Batch>),
    /// From the spool: acknowledged once delivered.
    Spooled(Spooled),
}

impl Held {
    fn batch(&self) -> &Batch {
        match self {
            Held::Queued(b) => b,
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

struct Runner {
    sink: Box<dyn Sink>,
    cfg: OutputConfig,
    shared: Arc<Shared>,
    rx: Receiver<Arc<Batch>>,
    last_progress: Instant,
    backoff: Duration,
    /// Breaker open: no attempt before this instant.
    open_until: Option<Instant>,
    failures: u64,
}

impl Runner {
    fn counters(&self) -> &OutputCounters {
        &self.shared.counters
    }

    fn past_deadline(&self) -> bool {
        match self.shared.deadline() {
            None => false,
            Some(Deadline::At(t)) => Instant::now() >= t,
            Some(Deadline::Stalled(d)) => self.last_progress.elapsed() >= d,
        }
    }

    fn closing(&self) -> bool {
        self.shared.deadline().is_some()
    }

    fn run(&mut self) {
        loop {
            if self.past_deadline() {
                break;
            }
            // The queue holds batches older than anything spooled: it goes first.
            let held = match self.rx.try_recv() {
                Ok(b) => Held::Queued(b),
                Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                Err(crossbeam_channel::TryRecvError::Empty) => match self.next_spooled() {
                    Some(r) => Held::Spooled(r),
                    None => match self.rx.recv_timeout(Duration::from_millis(50)) {
                        Ok(b) => Held::Queued(b),
                        Err(RecvTimeoutError::Timeout) => continue,
                        // Closed and drained: what is spooled waits for the next start.
                        Err(RecvTimeoutError::Disconnected) => break,
                    },
                },
            };
            self.counters()
                .queued_batches
                .store(self.rx.len() as u64, Relaxed);
            // Checked once a batch is in hand: a reopen requested before that batch was
            // offered applies to it (the queue orders the two).
            if self.shared.reopen.swap(false, Relaxed) {
                if let Err(e) = self.sink.reopen() {
                    log::error!("Error re-opening output: {e}");
                }
            }
            if !self.deliver(held) {
                break;
            }
        }
        // Whatever is still queued (a deadline passed): to the spool, else counted.
        self.stash(None, LossReason::Shutdown);
        self.counters().queued_batches.store(0, Relaxed);
        self.sink.close();
    }

    /// The oldest spooled record, unless the output is closing (shutdown must not spend its
    /// time budget on the spool: it waits on disk for the next start).
    fn next_spooled(&mut self) -> Option<Spooled> {
        if self.closing() {
            return None;
        }
        let mut s = self.shared.lock_spool()?;
        match s.spool.peek() {
            Ok(Some(r)) => Some(r),
            Ok(None) => {
                s.diverted = false;
                None
            }
            Err(e) => {
                log::error!("output {}: {e}", self.shared.name);
                None
            }
        }
    }

    /// Deliver one held batch, per the policy. False when the output must stop.
    fn deliver(&mut self, held: Held) -> bool {
        let mut rest: Option<Batch> = None;
        let mut tries = 0u32;
        loop {
            let cur = rest.as_ref().unwrap_or_else(|| held.batch());
            if self.past_deadline() {
                let cur = cur_owned(&rest, &held);
                self.stash(Some((&held, &cur)), LossReason::Shutdown);
                return false;
            }
            let open = self.open_until.filter(|t| Instant::now() < *t);
            if open.is_some() && self.closing() && self.shared.spool.is_some() {
                // Closing while the destination is down: keep it all for the next start now
                // rather than wait out the deadline.
                let cur = cur_owned(&rest, &held);
                self.stash(Some((&held, &cur)), LossReason::Shutdown);
                return false;
            }
            if let Some(until) = open {
                // Breaker open: fail fast (drop), move it all to the spool, or wait (block).
                if self.cfg.give_up {
                    let cur = cur_owned(&rest, &held);
                    self.settle(&held, &cur, LossReason::Failed);
                    return true;
                }
                if matches!(held, Held::Queued(_)) && self.shared.spool.is_some() {
                    let cur = cur_owned(&rest, &held);
                    self.stash(Some((&held, &cur)), LossReason::SpoolError);
                    return true;
                }
                self.sleep_until(until);
                continue;
            }
            tries += 1;
            let o = self.attempt(cur);
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
                self.settle(&held, &o.retry, LossReason::Closed);
                while let Ok(b) = self.rx.try_recv() {
                    c.lose(LossReason::Closed, b.len() as u64);
                }
                return false;
            }
            if o.retry.is_empty() {
                if self.open_until.take().is_some() || self.backoff > Duration::ZERO {
                    log::info!("output {}: delivering again", self.shared.name);
                }
                self.backoff = Duration::ZERO;
                self.settle(&held, &o.retry, LossReason::Failed);
                return true;
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
            rest = Some(o.retry);
            if self.cfg.give_up && tries < self.cfg.attempts {
                self.sleep_until(Instant::now() + self.cfg.pause);
                continue;
            }
            self.open_breaker();
            if self.cfg.give_up {
                let cur = cur_owned(&rest, &held);
                self.settle(&held, &cur, LossReason::Failed);
                return true;
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

    /// `held` is done with: `undelivered` (a part of it) is lost for `why`.
    fn settle(&mut self, held: &Held, undelivered: &Batch, why: LossReason) {
        let c = &self.shared.counters;
        c.lose(why, undelivered.len() as u64);
        if let Held::Spooled(r) = held {
            if let Some(mut s) = self.shared.lock_spool() {
                if let Err(e) = s.spool.ack(r) {
                    log::error!("output {}: {e}", self.shared.name);
                }
                self.shared.publish_spool(&s.spool);
            }
        }
    }

    /// Move what this output holds into the spool, oldest first: `front` (the batch being
    /// sent, with what is left of it), then the queue; everything after them is spooled
    /// already. The output stays diverted until the spool is empty. Without a spool, all
    /// of it is counted lost for `why`.
    fn stash(&mut self, front: Option<(&Held, &Batch)>, why: LossReason) {
        let queued: Vec<Arc<Batch>> = self.rx.try_iter().collect();
        let c = self.shared.counters.clone();
        let Some(mut s) = self.shared.lock_spool() else {
            let n: usize =
                queued.iter().map(|b| b.len()).sum::<usize>() + front.map_or(0, |(_, r)| r.len());
            c.lose(why, n as u64);
            return;
        };
        s.diverted = true;
        let name = self.shared.name;
        let push = |s: &mut SpoolState, b: &Batch| match s.spool.push_front(b, 0) {
            Ok(()) => {
                c.spooled.fetch_add(b.len() as u64, Relaxed);
            }
            Err(e) => {
                let why = match e {
                    SpoolError::Full { .. } => LossReason::SpoolFull,
                    _ => LossReason::SpoolError,
                };
                c.lose(why, b.len() as u64);
                log::error!("output {name}: {e}: {} event(s) lost", b.len());
            }
        };
        for b in queued.iter().rev() {
            push(&mut s, b);
        }
        match front {
            Some((Held::Queued(_), rest)) => push(&mut s, rest),
            Some((Held::Spooled(r), rest)) if rest.len() < r.batch.len() => {
                // Part of the record went out: keep only the rest, at the front.
                if let Err(e) = s.spool.ack(r) {
                    log::error!("output {name}: {e}");
                }
                push(&mut s, rest);
            }
            // Untouched: it is still the spool's first record.
            Some((Held::Spooled(_), _)) | None => {}
        }
        self.shared.publish_spool(&s.spool);
    }
}

fn cur_owned(rest: &Option<Batch>, held: &Held) -> Batch {
    match rest {
        Some(r) => r.clone(),
        None => held.batch().clone(),
    }
}
