//! Fan-out: encode each batch of events once and hand it to every enabled sink.
//!
//! Owns the per-sink accounting (events written, events lost after the sink's attempts) and
//! the policy that a failing sink never stops the others or the daemon: its loss is counted
//! and logged. It must never reorder events: every sink sees them in completion order.

use std::sync::Arc;

use pauditd_engine::Event;

use crate::{Batch, LiveCounters, Sink, SinkError};

/// Counters for one sink.
#[derive(Debug, Default, Clone)]
pub struct SinkStats {
    pub name: &'static str,
    /// Events the sink accepted (for the HTTP output: queued).
    pub written: u64,
    /// Events the sink refused or failed to write.
    pub lost: u64,
    /// The sink's own counters when it delivers after `written` (the HTTP output).
    pub live: Option<Arc<dyn LiveCounters>>,
}

/// Where every event handed to one sink went: `received = delivered + lost + skipped +
/// in_flight`, and `in_flight` is 0 once the sink is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accounting {
    pub received: u64,
    pub delivered: u64,
    pub lost: u64,
    pub skipped: u64,
    /// Still queued or being sent (an asynchronous sink), or unaccounted after close.
    pub in_flight: i64,
}

impl std::fmt::Display for Accounting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "written={} lost={} skipped={} received={} in_flight={}",
            self.delivered, self.lost, self.skipped, self.received, self.in_flight
        )
    }
}

impl SinkStats {
    /// The accounting identity for this sink (see [`Accounting`]).
    pub fn accounting(&self) -> Accounting {
        let received = self.written + self.lost;
        let (delivered, skipped) = match &self.live {
            Some(l) => (l.delivered(), l.skipped()),
            None => (self.written, 0),
        };
        let lost = self.lost_total();
        Accounting {
            received,
            delivered,
            lost,
            skipped,
            in_flight: received as i64 - (delivered + lost + skipped) as i64,
        }
    }

    /// Events that did not reach their destination, including late asynchronous failures.
    pub fn lost_total(&self) -> u64 {
        match &self.live {
            Some(h) => h.undelivered(),
            None => self.lost,
        }
    }
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
                live: s.live_counters(),
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
                    let before = st.lost;
                    st.lost += lost;
                    // A full queue can drop on every batch: log when the total crosses a
                    // power of two, so a flood costs a bounded number of lines.
                    let quiet = matches!(e, SinkError::Dropped { .. })
                        && (before + 1..=st.lost).all(|c| !c.is_power_of_two());
                    if !quiet {
                        log::error!("{e} ({} lost so far)", st.lost);
                    }
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

    /// Let every sink finish what it accepted (the HTTP queue drains).
    pub fn close(&mut self) {
        for s in &mut self.sinks {
            s.close();
        }
    }

    pub fn stats(&self) -> &[SinkStats] {
        &self.stats
    }
}
