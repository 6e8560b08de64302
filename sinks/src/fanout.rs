//! Fan-out: encode each batch of events once and hand it to every enabled sink.
//!
//! Owns the per-sink accounting (events written, events lost after the sink's attempts) and
//! the policy that a failing sink never stops the others or the daemon: its loss is counted
//! and logged. It must never reorder events: every sink sees them in completion order.

use pauditd_engine::Event;

use crate::{Batch, Sink};

/// Counters for one sink.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SinkStats {
    pub name: &'static str,
    pub written: u64,
    pub lost: u64,
}

pub struct Fanout {
    sinks: Vec<Box<dyn Sink>>,
    stats: Vec<SinkStats>,
    batch: Batch,
}

impl Fanout {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        let stats = sinks
            .iter()
            .map(|s| SinkStats {
                name: s.name(),
                ..Default::default()
            })
            .collect();
        Fanout {
            sinks,
            stats,
            batch: Batch::default(),
        }
    }

    /// Encode and write `events`, leaving `events` empty for reuse.
    pub fn write(&mut self, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.batch.clear();
        for e in events.drain(..) {
            self.batch.push_event(&e);
        }
        self.write_encoded();
    }

    /// Write the batch already encoded into [`batch_mut`](Self::batch_mut).
    pub fn write_encoded(&mut self) {
        let n = self.batch.len() as u64;
        for (sink, st) in self.sinks.iter_mut().zip(&mut self.stats) {
            match sink.write_batch(&self.batch) {
                Ok(()) => st.written += n,
                Err(e) => {
                    let lost = e.lost() as u64;
                    st.written += n - lost;
                    st.lost += lost;
                    log::error!("{e}");
                }
            }
        }
        self.batch.clear();
    }

    pub fn batch_mut(&mut self) -> &mut Batch {
        &mut self.batch
    }

    /// SIGUSR1: reopen every sink that has something to reopen.
    pub fn reopen(&mut self) {
        for s in &mut self.sinks {
            if let Err(e) = s.reopen() {
                log::error!("Error re-opening output: {e}");
            }
        }
    }

    pub fn stats(&self) -> &[SinkStats] {
        &self.stats
    }
}
