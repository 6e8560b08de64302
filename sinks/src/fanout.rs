//! Fan-out: encode each batch of events once and offer it to every output.
//!
//! Owns the one encoding of each batch, shared (an `Arc`, never copied) by every output's
//! queue, and the output set's lifecycle (reopen, bounded close, the death of an output's
//! thread, as opposed to an output whose destination ended). Each [`Output`] has its own
//! thread and policy, so a slow or dead one never holds back another or the caller (unless
//! its policy is `block`). It must never reorder events: every output is offered them in
//! completion order.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use pauditd_engine::pool::EventPool;
use pauditd_engine::Event;

pub use crate::encode::Encoded;
use crate::encode::{panic_message, EncodeFailures, EncoderPool};
pub use crate::output::{Accounting, OutputStats};
use crate::output::{Deadline, Output};
use crate::Batch;

/// Encoded batches kept for reuse once every output is done with them.
const RECYCLE: usize = 8;

pub struct Fanout {
    outputs: Vec<Output>,
    /// Encoder threads (`None`: encode on the caller's thread).
    pool: Option<EncoderPool>,
    /// Batches handed out; reused when no output holds them any more (no allocation per
    /// batch in the steady state).
    recycle: std::collections::VecDeque<Arc<Batch>>,
    /// Where written events go back to the engine for reuse (`None`: they are freed).
    returns: Option<EventPool>,
    /// Batches whose encoding panicked (counted, never a stall).
    failures: Arc<EncodeFailures>,
    /// Set once a deadline was given to the set from outside (SIGTERM, a reload retiring
    /// it): its threads stopping then is the plan, not a death.
    released: Arc<AtomicBool>,
}

type SetDeadline = Box<dyn Fn(Deadline) + Send + Sync>;

/// Sets the deadline of one set of outputs from another thread, without the writer (which
/// may be waiting in a `block` output's `offer`). Cheap to keep; does nothing once the
/// outputs are gone.
pub struct OutputsHandle {
    /// Each output's deadline setter, and whether its policy is `block`.
    setters: Vec<(SetDeadline, bool)>,
    released: Arc<AtomicBool>,
}

impl OutputsHandle {
    /// Every output of the set stops trying at `deadline` (what it holds then is spooled or
    /// counted), whether or not the writer gets to close it.
    pub fn set_deadline(&self, deadline: Deadline) {
        self.released.store(true, Relaxed);
        for (s, _) in &self.setters {
            s(deadline);
        }
    }

    /// Only the `block` outputs stop trying at `deadline` (a reload replaced the set: the
    /// writer, which may be waiting on one of them, then gets to the switch; the others keep
    /// delivering until the writer retires them).
    pub fn release_blocking(&self, deadline: Deadline) {
        self.released.store(true, Relaxed);
        for (s, _) in self.setters.iter().filter(|(_, blocks)| *blocks) {
            s(deadline);
        }
    }
}

/// Which formats the outputs take.
fn formats_of(outputs: &[Output]) -> [bool; crate::FORMATS] {
    let mut f = [false; crate::FORMATS];
    for o in outputs {
        f[o.format().index()] = true;
    }
    f
}

impl Fanout {
    pub fn new(outputs: Vec<Output>) -> Self {
        Fanout {
            outputs,
            pool: None,
            recycle: Default::default(),
            returns: None,
            failures: Arc::default(),
            released: Arc::default(),
        }
    }

    /// A handle that sets every output's deadline from another thread.
    pub fn handle(&self) -> OutputsHandle {
        OutputsHandle {
            setters: self
                .outputs
                .iter()
                .map(|o| {
                    let blocks = o.stats().overflow == crate::output::Overflow::Block;
                    (o.deadline_setter(), blocks)
                })
                .collect(),
            released: self.released.clone(),
        }
    }

    /// Count encoding failures into `failures` (shared across output sets by the writer).
    pub fn with_encode_failures(mut self, failures: Arc<EncodeFailures>) -> Self {
        self.failures = failures;
        self
    }

    pub fn encode_failures(&self) -> Arc<EncodeFailures> {
        self.failures.clone()
    }

    /// Every output takes `format` (replay's `--format`; set before the encoders).
    pub fn with_format(mut self, format: crate::Format) -> Self {
        for o in &mut self.outputs {
            o.set_format(format);
        }
        self
    }

    /// Give written events back to the engine's pool (set before the encoders).
    pub fn with_event_pool(mut self, returns: Option<EventPool>) -> Self {
        self.returns = returns;
        self
    }

    pub fn event_pool(&self) -> Option<EventPool> {
        self.returns.clone()
    }

    /// Encode on `workers` threads (order kept) instead of the caller's; 0 keeps it inline.
    pub fn with_encoders(mut self, workers: usize) -> std::io::Result<Self> {
        self.set_encoders(workers)?;
        Ok(self)
    }

    /// As [`with_encoders`](Self::with_encoders), in place; on error the outputs stay and
    /// encoding stays on the caller's thread.
    pub fn set_encoders(&mut self, workers: usize) -> std::io::Result<()> {
        self.flush_encoders();
        self.pool = None;
        if workers > 0 {
            self.pool = Some(EncoderPool::new(
                workers,
                self.returns.clone(),
                self.failures.clone(),
            )?);
        }
        Ok(())
    }

    fn fresh_batch(&mut self) -> Arc<Batch> {
        if let Some(mut b) = self.recycle.pop_front() {
            if let Some(inner) = Arc::get_mut(&mut b) {
                inner.clear();
                return b;
            }
            self.recycle.push_front(b);
        }
        Arc::new(Batch::default())
    }

    /// Encode and offer `events`, leaving `events` empty (its events, and the vector itself
    /// when there is a pool, go back to the engine).
    pub fn write(&mut self, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let formats = formats_of(&self.outputs);
        if let Some(mut pool) = self.pool.take() {
            if let Err(mut events) = pool.submit(std::mem::take(events), formats) {
                // The encoder threads are gone (they never should be): encode here instead.
                log::error!("the encoder threads are gone; encoding on the writer thread");
                self.flush_pool(&mut pool);
                self.write_inline(&mut events, formats);
                return;
            }
            pool.collect(false, |b| self.offer_encoded(b));
            self.pool = Some(pool);
            return;
        }
        self.write_inline(events, formats);
    }

    fn flush_pool(&mut self, pool: &mut EncoderPool) {
        pool.collect(true, |b| self.offer_encoded(b));
    }

    /// Each format in use encoded once on this thread, shared by every output that takes it
    /// (into recycled buffers: no allocation per batch). A panic is counted, never a stall.
    fn write_inline(&mut self, events: &mut Vec<Event>, formats: [bool; crate::FORMATS]) {
        let mut encoded: Encoded = Default::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fail::fail_point!("encode-batch");
            for f in crate::Format::ALL {
                if !formats[f.index()] {
                    continue;
                }
                let mut batch = self.fresh_batch();
                let b = Arc::get_mut(&mut batch).expect("a fresh batch is not shared");
                for e in events.iter() {
                    b.push_event_as(e, f);
                }
                encoded[f.index()] = Some(batch);
            }
        }));
        if let Err(p) = r {
            self.failures.count(events.len(), &panic_message(&*p));
            // Possibly half-updated: not given back for reuse.
            events.clear();
            return;
        }
        match &self.returns {
            Some(r) => r.give_back(std::mem::take(events)),
            None => events.clear(),
        }
        self.offer_encoded(encoded);
    }

    /// Offer an already encoded batch to every output (whatever its format).
    pub fn offer(&mut self, batch: Arc<Batch>) {
        for o in &self.outputs {
            o.offer(&batch);
        }
        self.keep_for_reuse(batch);
    }

    /// Offer each output the batch in its format.
    pub fn offer_encoded(&mut self, encoded: Encoded) {
        for o in &self.outputs {
            if let Some(b) = &encoded[o.format().index()] {
                o.offer(b);
            }
        }
        for b in encoded.into_iter().flatten() {
            self.keep_for_reuse(b);
        }
    }

    fn keep_for_reuse(&mut self, batch: Arc<Batch>) {
        if self.recycle.len() >= RECYCLE {
            self.recycle.pop_front();
        }
        self.recycle.push_back(batch);
    }

    /// Encoder threads in use (0: the caller encodes).
    pub fn encoders(&self) -> usize {
        self.pool.as_ref().map_or(0, EncoderPool::workers)
    }

    /// Hand on every batch still with the encoders (in order).
    pub fn flush_encoders(&mut self) {
        if let Some(mut pool) = self.pool.take() {
            pool.collect(true, |b| self.offer_encoded(b));
            self.pool = Some(pool);
        }
    }

    /// SIGUSR1: every output reopens before its next batch.
    pub fn reopen(&mut self) {
        // Batches read before the signal go to the old file.
        self.flush_encoders();
        for o in &self.outputs {
            o.reopen();
        }
    }

    /// Stop every output: each delivers what it holds until `deadline`, then spools or
    /// counts the rest. Waits for their threads until `limit` at most; returns the names of
    /// outputs whose thread was still stuck then (a write blocked in the kernel).
    pub fn close(&mut self, deadline: Deadline, limit: Instant) -> Vec<&'static str> {
        self.flush_encoders();
        for o in &mut self.outputs {
            o.begin_close(deadline);
        }
        let mut stuck = Vec::new();
        for o in &mut self.outputs {
            if !o.join(limit) {
                stuck.push(o.name());
            }
        }
        stuck
    }

    /// Retire this set (a reload replaced it) without waiting: the outputs that have a spool
    /// stop at once (what they hold goes to the spool, which their successor takes over in
    /// order), the others get until `deadline` to deliver what they hold. Returns a thread
    /// that waits for them, at most until `limit`.
    pub fn retire(
        mut self,
        deadline: Instant,
        limit: Instant,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        self.flush_encoders();
        self.released.store(true, Relaxed);
        let now = Instant::now();
        for o in &mut self.outputs {
            o.begin_close(Deadline::At(if o.has_spool() { now } else { deadline }));
        }
        std::thread::Builder::new()
            .name("pauditd-retire".into())
            .spawn(move || {
                for o in &mut self.outputs {
                    if !o.join(limit) {
                        log::error!(
                            "output {} (replaced by a reload): still blocked in a write; left behind",
                            o.name()
                        );
                    }
                }
            })
    }

    /// Whether every output has ended (its destination closed for good).
    pub fn all_ended(&self) -> bool {
        !self.outputs.is_empty() && self.outputs.iter().all(|o| o.has_ended())
    }

    /// An output whose thread died (a panic): the pipeline cannot trust its accounting. An
    /// output whose destination ended (stdout's reader gone) is not dead: it counts its
    /// events `lost.closed`; nor is one stopping at a deadline it was given.
    pub fn dead_output(&self) -> Option<&'static str> {
        if self.released.load(Relaxed) {
            return None;
        }
        self.outputs
            .iter()
            .find(|o| o.has_dead_thread() && !o.has_ended())
            .map(|o| o.name())
    }

    /// The outputs whose destination ended.
    pub fn ended(&self) -> Vec<&'static str> {
        self.outputs
            .iter()
            .filter(|o| o.has_ended())
            .map(|o| o.name())
            .collect()
    }

    pub fn stats(&self) -> Vec<OutputStats> {
        self.outputs.iter().map(|o| o.stats()).collect()
    }
}
