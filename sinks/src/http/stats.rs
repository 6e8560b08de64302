//! The HTTP output's counters, shared by its workers and read by the metrics reporter.
//!
//! Owns what only the HTTP transport knows: requests by outcome, response codes, latency,
//! breaker, transformer topics. The output ([`crate::output`]) keeps the per-event accounting
//! (pauditd's `http_writer.total_messages` and `dropped_messages` come from there). Workers
//! update it as requests finish, so it lives behind an `Arc` and is read live. It must never
//! block a worker for longer than a counter update.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use crate::LiveCounters;

/// Latency samples kept between two metric reports; beyond this they are not recorded (the
/// distribution statsd computes needs a sample, not every request).
const MAX_LATENCY_SAMPLES: usize = 4096;

#[derive(Debug, Default)]
pub struct HttpStats {
    /// Events in requests the service answered with 1xx-3xx.
    pub delivered: AtomicU64,
    /// Events in requests answered 4xx: the service refused them; not retried.
    pub rejected: AtomicU64,
    /// Events in requests that failed (5xx, transport error, breaker open): the output tries
    /// them again or spools them, per its policy.
    pub failed: AtomicU64,
    /// Events the transformer skipped (no topic).
    pub skipped: AtomicU64,
    /// Requests that got no response (pauditd's `http_writer.request_error.count`).
    pub request_errors: AtomicU64,
    /// Attempts refused without contacting the service because the breaker was open.
    pub breaker_rejected: AtomicU64,
    /// Attempts after the first.
    pub retries: AtomicU64,
    /// Times the breaker opened.
    pub breaker_opened: AtomicU64,
    /// Requests waiting for a worker, as last seen (a gauge).
    pub queued: AtomicU64,
    /// Counters named at run time: `http_code.<code>`, transformer topics.
    named: Mutex<BTreeMap<String, u64>>,
    /// Time from queueing to response, since the last report (`http_writer.latency`).
    latency: Mutex<Vec<Duration>>,
}

impl HttpStats {
    pub fn bump(&self, name: &str, n: u64) {
        let mut m = self.named.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(name) {
            Some(v) => *v += n,
            None => {
                m.insert(name.to_string(), n);
            }
        }
    }

    pub fn named(&self, name: &str) -> u64 {
        let m = self.named.lock().unwrap_or_else(|e| e.into_inner());
        m.get(name).copied().unwrap_or(0)
    }

    pub fn record_latency(&self, d: Duration) {
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() < MAX_LATENCY_SAMPLES {
            l.push(d);
        }
    }

    /// Latency samples since the last call.
    pub fn take_latencies(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.latency.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl LiveCounters for HttpStats {
    fn skipped(&self) -> u64 {
        self.skipped.load(Relaxed)
    }

    fn gauges(&self, out: &mut Vec<(String, u64)>) {
        out.push(("http_writer.queued".to_string(), self.queued.load(Relaxed)));
    }

    fn take_timings(&self, out: &mut Vec<(&'static str, Duration)>) {
        out.extend(
            self.take_latencies()
                .into_iter()
                .map(|d| ("http_writer.latency", d)),
        );
    }

    fn counters(&self, out: &mut Vec<(String, u64)>) {
        let fixed: [(&str, &AtomicU64); 8] = [
            ("http_writer.delivered", &self.delivered),
            ("http_writer.rejected", &self.rejected),
            ("http_writer.failed", &self.failed),
            ("http_writer.skipped", &self.skipped),
            ("http_writer.request_error.count", &self.request_errors),
            ("http_writer.breaker.rejected", &self.breaker_rejected),
            ("http_writer.breaker.opened", &self.breaker_opened),
            ("http_writer.retries", &self.retries),
        ];
        for (name, v) in fixed {
            out.push((name.to_string(), v.load(Relaxed)));
        }
        let m = self.named.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(m.iter().map(|(k, v)| (k.clone(), *v)));
    }
}
