//! The Kafka output's own counters, shared by the producer's callbacks and read live by the
//! metrics reporter.
//!
//! Owns what only the Kafka transport knows: messages acknowledged and failed, failures by
//! the client's error name, messages the client holds (outstanding) and the brokers' round
//! trip. The output ([`crate::output`]) keeps the per-event accounting (written, lost,
//! spooled). It must never block a callback for longer than a counter update.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::LiveCounters;

#[derive(Debug, Default)]
pub struct KafkaStats {
    /// Messages the broker acknowledged (per `acks`).
    pub acknowledged: AtomicU64,
    /// Messages whose delivery failed (a report with an error, or not enqueued at all); the
    /// output tries them again, spools or counts them per its policy.
    pub failed: AtomicU64,
    /// Times the client's own queue was full and a send waited for room.
    pub queue_full: AtomicU64,
    /// Messages the client holds: queued or sent and not yet acknowledged (a gauge, as last
    /// seen by the output's thread).
    pub outstanding: AtomicU64,
    /// The highest of the brokers' average round-trip times in the client's last statistics
    /// report, in microseconds (a gauge; 0 before the first report).
    pub rtt_avg_us: AtomicU64,
    /// Failures by the client's error name (`kafka.error.<name>`), e.g. `UnknownTopicOrPartition`,
    /// `MessageTimedOut`.
    errors: Mutex<BTreeMap<String, u64>>,
}

impl KafkaStats {
    pub fn count_error(&self, name: &str, n: u64) {
        let mut m = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(name) {
            Some(v) => *v += n,
            None => {
                m.insert(name.to_string(), n);
            }
        }
    }

    /// Failures counted under the client's error `name`.
    pub fn errors(&self, name: &str) -> u64 {
        let m = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        m.get(name).copied().unwrap_or(0)
    }
}

impl LiveCounters for KafkaStats {
    fn counters(&self, out: &mut Vec<(String, u64)>) {
        out.push(("kafka.acknowledged".into(), self.acknowledged.load(Relaxed)));
        out.push(("kafka.failed".into(), self.failed.load(Relaxed)));
        out.push(("kafka.queue_full".into(), self.queue_full.load(Relaxed)));
        let m = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(m.iter().map(|(k, v)| (format!("kafka.error.{k}"), *v)));
    }

    fn gauges(&self, out: &mut Vec<(String, u64)>) {
        out.push(("kafka.outstanding".into(), self.outstanding.load(Relaxed)));
        out.push(("kafka.rtt_avg_us".into(), self.rtt_avg_us.load(Relaxed)));
    }
}
