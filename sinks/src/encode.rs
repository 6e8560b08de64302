//! Parallel encoding with order kept: batches of events are encoded on worker threads and
//! come back in the order they went in.
//!
//! Owns the encoder threads and the reordering. Each batch gets a sequence number; workers
//! encode in any order; [`EncoderPool::collect`] hands out encoded batches strictly by sequence
//! number, so every output sees events exactly as a single encoder would have produced them
//! (the path-invariance test checks it byte for byte). The queue to the workers is bounded
//! (twice the workers): a caller that outruns them waits, as it would encoding itself. It
//! must never reorder and never drop a batch silently: a batch whose encoding panics comes
//! back as a counted failure in its place (its events counted in [`EncodeFailures`]), so the
//! batches after it are not parked forever.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use pauditd_engine::pool::EventPool;
use pauditd_engine::Event;

use crate::Batch;

/// A batch to encode: its place in order, its events, the formats wanted.
type Job = (u64, Vec<Event>, [bool; crate::FORMATS]);

/// One batch per format, or `None` when its encoding panicked.
type Outcome = Option<[Option<Batch>; crate::FORMATS]>;

/// One batch per format (`Format::index`); `None` for a format no output takes. What the
/// encoders hand the fan-out, shared by every output of that format.
pub type Encoded = [Option<Arc<Batch>>; crate::FORMATS];

/// Events lost because their batch's encoding panicked (a bug in an encoder): counted, logged,
/// never a stall. Shared by the pool, the writer and whoever reports.
#[derive(Debug, Default)]
pub struct EncodeFailures {
    pub batches: AtomicU64,
    pub events: AtomicU64,
}

impl EncodeFailures {
    pub fn events(&self) -> u64 {
        self.events.load(Relaxed)
    }

    pub(crate) fn count(&self, events: usize, why: &str) {
        let n = self.batches.fetch_add(1, Relaxed) + 1;
        let total = self.events.fetch_add(events as u64, Relaxed) + events as u64;
        if n.is_power_of_two() {
            log::error!(
                "encoding a batch of {events} event(s) panicked ({why}): they are counted lost (lost.encode_failed, {total} event(s) in {n} batch(es) so far)"
            );
        }
    }
}

/// Encode `events` in every format wanted; `None` (and the failure counted) if that panics.
pub fn encode_batch(
    events: &[Event],
    formats: [bool; crate::FORMATS],
    failures: &EncodeFailures,
) -> Outcome {
    let r = catch_unwind(AssertUnwindSafe(|| {
        fail::fail_point!("encode-batch");
        let mut b: [Option<Batch>; crate::FORMATS] = Default::default();
        for f in crate::Format::ALL {
            if formats[f.index()] {
                let mut batch = Batch::default();
                for e in events {
                    batch.push_event_as(e, f);
                }
                b[f.index()] = Some(batch);
            }
        }
        b
    }));
    match r {
        Ok(b) => Some(b),
        Err(p) => {
            failures.count(events.len(), &panic_message(&*p));
            None
        }
    }
}

/// What a panic said (its payload, when it is text).
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

pub struct EncoderPool {
    jobs: Option<Sender<Job>>,
    done: Receiver<(u64, Outcome)>,
    workers: Vec<JoinHandle<()>>,
    next_in: u64,
    next_out: u64,
    /// Encoded batches that arrived before their turn.
    waiting: BTreeMap<u64, Outcome>,
}

impl EncoderPool {
    /// `returns`: where encoded events go back to the engine for reuse; `failures`: where a
    /// batch whose encoding panicked is counted.
    pub fn new(
        workers: usize,
        returns: Option<EventPool>,
        failures: Arc<EncodeFailures>,
    ) -> std::io::Result<EncoderPool> {
        let workers = workers.max(1);
        let (jobs, rx) = bounded::<Job>(2 * workers);
        let (tx, done) = unbounded();
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let (rx, tx, returns, failures) =
                (rx.clone(), tx.clone(), returns.clone(), failures.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("pauditd-enc-{i}"))
                    .spawn(move || {
                        crate::batch_scheduling();
                        for (seq, events, formats) in rx {
                            let b = encode_batch(&events, formats, &failures);
                            // Events of a batch that panicked may be half-updated: not reused.
                            if let (Some(r), Some(_)) = (&returns, &b) {
                                r.give_back(events);
                            }
                            if tx.send((seq, b)).is_err() {
                                break;
                            }
                        }
                    })?,
            );
        }
        Ok(EncoderPool {
            jobs: Some(jobs),
            done,
            workers: handles,
            next_in: 0,
            next_out: 0,
            waiting: BTreeMap::new(),
        })
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Queue `events` for encoding (waits while every worker is busy and the queue is full).
    /// False when the workers are gone (the events are handed back unencoded).
    pub fn submit(
        &mut self,
        events: Vec<Event>,
        formats: [bool; crate::FORMATS],
    ) -> Result<(), Vec<Event>> {
        let Some(jobs) = self.jobs.as_ref() else {
            return Err(events);
        };
        match jobs.send((self.next_in, events, formats)) {
            Ok(()) => {
                self.next_in += 1;
                Ok(())
            }
            Err(e) => Err(e.into_inner().1),
        }
    }

    /// Encoded batches whose turn has come, in order (a batch whose encoding panicked is
    /// skipped: it was counted); with `wait`, until every submitted batch is out.
    pub fn collect(&mut self, wait: bool, mut f: impl FnMut(Encoded)) {
        loop {
            while let Some(b) = self.waiting.remove(&self.next_out) {
                self.next_out += 1;
                if let Some(b) = b {
                    f(b.map(|b| b.map(Arc::new)));
                }
            }
            if self.next_out == self.next_in {
                return;
            }
            let got = if wait {
                self.done.recv().ok()
            } else {
                self.done.try_recv().ok()
            };
            match got {
                Some((seq, b)) => {
                    self.waiting.insert(seq, b);
                }
                None => return,
            }
        }
    }
}

impl Drop for EncoderPool {
    fn drop(&mut self) {
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
