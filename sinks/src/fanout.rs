//! Fan-out: encode each batch of events once and offer it to every output.
//!
//! Owns the one encoding of each batch, shared (an `Arc`, never copied) by every output's
//! queue, and the output set's lifecycle (reopen, bounded close, the death of an output's
//! thread). Each [`Output`] has its own thread and policy, so a slow or dead one never holds
//! back another or the caller (unless its policy is `block`). It must never reorder events:
//! every output is offered them in completion order.

use std::sync::Arc;
use std::time::Instant;

use pauditd_engine::pool::EventPool;
use pauditd_engine::Event;

use crate::encode::EncoderPool;
pub use crate::output::{Accounting, SinkStats};
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
}

/// One batch per format (`Format::index`); `None` for a format no output takes.
pub type Encoded = [Option<Arc<Batch>>; crate::FORMATS];

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
        }
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
            self.pool = Some(EncoderPool::new(workers, self.returns.clone())?);
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
            pool.submit(std::mem::take(events), formats);
            pool.collect(false, |b| self.offer_encoded(b));
            self.pool = Some(pool);
            return;
        }
        // Each format in use encoded once, shared by every output that takes it.
        let mut encoded: Encoded = Default::default();
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

    /// Stop the outputs that have a spool right away (what they hold is spooled), so a new
    /// output can open the same spool.
    pub fn close_spooled(&mut self, now: Instant) {
        self.flush_encoders();
        let limit = now + std::time::Duration::from_secs(5);
        for o in self.outputs.iter_mut().filter(|o| o.has_spool()) {
            o.begin_close(Deadline::At(now));
            if !o.join(limit) {
                log::error!("output {}: did not stop within 5 s", o.name());
            }
        }
    }

    /// Whether every output has ended (its destination closed for good).
    pub fn all_ended(&self) -> bool {
        !self.outputs.is_empty() && self.outputs.iter().all(|o| o.has_ended())
    }

    /// An output whose thread died (a panic): the pipeline cannot trust its accounting.
    pub fn dead_output(&self) -> Option<&'static str> {
        self.outputs.iter().find(|o| o.has_died()).map(|o| o.name())
    }

    pub fn stats(&self) -> Vec<SinkStats> {
        self.outputs.iter().map(|o| o.stats()).collect()
    }
}
