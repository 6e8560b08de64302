//! Parallel encoding with order kept: batches of events are encoded on worker threads and
//! come back in the order they went in.
//!
//! Owns the encoder threads and the reordering. Each batch gets a sequence number; workers
//! encode in any order; [`EncoderPool::collect`] hands out encoded batches strictly by sequence
//! number, so every output sees events exactly as a single encoder would have produced them
//! (the path-invariance test checks it byte for byte). The queue to the workers is bounded
//! (twice the workers): a caller that outruns them waits, as it would encoding itself. It
//! must never reorder and never drop a batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use pauditd_engine::pool::EventPool;
use pauditd_engine::Event;

use crate::Batch;

/// A batch to encode: its place in order, its events, the formats wanted.
type Job = (u64, Vec<Event>, [bool; crate::FORMATS]);

pub struct EncoderPool {
    jobs: Option<Sender<Job>>,
    done: Receiver<(u64, [Option<Batch>; crate::FORMATS])>,
    workers: Vec<JoinHandle<()>>,
    next_in: u64,
    next_out: u64,
    /// Encoded batches that arrived before their turn.
    waiting: BTreeMap<u64, [Option<Batch>; crate::FORMATS]>,
}

impl EncoderPool {
    /// `returns`: where encoded events go back to the engine for reuse.
    pub fn new(workers: usize, returns: Option<EventPool>) -> std::io::Result<EncoderPool> {
        let workers = workers.max(1);
        let (jobs, rx) = bounded::<Job>(2 * workers);
        let (tx, done) = unbounded();
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let (rx, tx, returns) = (rx.clone(), tx.clone(), returns.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("pauditd-enc-{i}"))
                    .spawn(move || {
                        for (seq, events, formats) in rx {
                            let mut b: [Option<Batch>; crate::FORMATS] = Default::default();
                            for f in crate::Format::ALL {
                                if formats[f.index()] {
                                    let mut batch = Batch::default();
                                    for e in &events {
                                        batch.push_event_as(e, f);
                                    }
                                    b[f.index()] = Some(batch);
                                }
                            }
                            if let Some(r) = &returns {
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
    pub fn submit(&mut self, events: Vec<Event>, formats: [bool; crate::FORMATS]) {
        let jobs = self.jobs.as_ref().expect("submit after finish");
        jobs.send((self.next_in, events, formats))
            .expect("the encoder threads live as long as the pool");
        self.next_in += 1;
    }

    /// Encoded batches whose turn has come, in order; with `wait`, until every submitted
    /// batch is out.
    pub fn collect(&mut self, wait: bool, mut f: impl FnMut(crate::fanout::Encoded)) {
        loop {
            while let Some(b) = self.waiting.remove(&self.next_out) {
                self.next_out += 1;
                f(b.map(|b| b.map(Arc::new)));
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
