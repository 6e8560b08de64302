//! An output's numbers: its counters ([`OutputCounters`], written by its threads, read by
//! whoever reports), the balance they must keep ([`Accounting`]) and the cheap handle the
//! metrics and status read them through ([`OutputStats`]). It must never decide what is lost
//! or why (the output's threads do), only hold and sum.

use super::*;

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
    pub(super) fn lose(&self, why: LossReason, n: u64) {
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
pub struct OutputStats {
    pub name: &'static str,
    pub overflow: Overflow,
    pub counters: Arc<OutputCounters>,
    /// The transport's own counters (HTTP codes, latency, topics).
    pub live: Option<Arc<dyn LiveCounters>>,
}

impl OutputStats {
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
