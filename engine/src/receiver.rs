//! What the two receive paths share (the plain `recv` loop in [`crate::live`], the io_uring
//! one in [`crate::uring`]): the receiver's latency budget (`Budget`) and its counters
//! ([`ReceiverCounters`], snapshots as [`ReceiverStats`]). Owns no thread, socket or buffer:
//! it must never receive, and never block.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Datagrams that end a budget early: a batch this big is published at once.
pub(crate) const BUDGET_DATAGRAMS: usize = 64;

/// The receiver's latency budget (`engine.max_delay`), with the clock as an input.
///
/// Idle, the receiver blocks for the first datagram. Once one arrives a window of `max_delay`
/// opens: datagrams are staged, not published, until the window closes or
/// [`BUDGET_DATAGRAMS`] are staged; then they are published together and, if any were, the
/// next window opens at once (a steady stream costs one wake-up per window, not two). A
/// window that closes with nothing staged ends the stream: back to blocking. So a datagram
/// waits in the receiver at most `max_delay` after it was received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    max_delay: Duration,
    /// When the open window closes.
    deadline: Option<Instant>,
}

impl Budget {
    pub(crate) fn new(max_delay: Duration) -> Budget {
        Budget {
            max_delay,
            deadline: None,
        }
    }

    /// How long the next wait for datagrams may last: `None` blocks for the first one (no
    /// window open); `Some(d)` waits for more until the window closes (`d` may be zero).
    pub(crate) fn wait(&self, now: Instant) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(now))
    }

    /// End the open window early (the caller publishes what is staged): the next wait blocks
    /// for a first datagram.
    pub(crate) fn close(&mut self) {
        self.deadline = None;
    }

    /// After a receive at `now`, with `staged` datagrams not yet published (in all): whether
    /// to publish them now.
    pub(crate) fn publish(&mut self, now: Instant, staged: usize) -> bool {
        if self.max_delay.is_zero() {
            return staged > 0;
        }
        match self.deadline {
            _ if staged >= BUDGET_DATAGRAMS => {
                self.deadline = Some(now + self.max_delay);
                true
            }
            None => {
                if staged > 0 {
                    self.deadline = Some(now + self.max_delay);
                }
                false
            }
            Some(d) if now >= d => {
                self.deadline = (staged > 0).then(|| now + self.max_delay);
                staged > 0
            }
            Some(_) => false,
        }
    }
}

/// Counters the receiver publishes (plain stores of its own tallies; read by anyone).
#[derive(Debug, Default)]
pub struct ReceiverCounters {
    /// Datagrams received (pauditd's `messages.total`).
    pub received: AtomicU64,
    /// ENOBUFS: the socket buffer overflowed (pauditd's `messages.netlink_dropped`).
    pub enobufs: AtomicU64,
    /// Datagrams larger than the receive slot (cut short, dropped).
    pub truncated: AtomicU64,
    pub recv_errors: AtomicU64,
    /// Times the ring was full and the receiver waited for the reassembler.
    pub ring_full_waits: AtomicU64,
    /// Whether the io_uring path is receiving (false: the plain `recv` loop).
    pub io_uring: AtomicBool,
}

/// A snapshot of [`ReceiverCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverStats {
    pub received: u64,
    pub enobufs: u64,
    pub truncated: u64,
    pub recv_errors: u64,
    pub ring_full_waits: u64,
    pub io_uring: bool,
}

impl ReceiverCounters {
    pub fn snapshot(&self) -> ReceiverStats {
        ReceiverStats {
            received: self.received.load(Ordering::Relaxed),
            enobufs: self.enobufs.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
            recv_errors: self.recv_errors.load(Ordering::Relaxed),
            ring_full_waits: self.ring_full_waits.load(Ordering::Relaxed),
            io_uring: self.io_uring.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn publish(&self, c: &ReceiverStats) {
        self.received.store(c.received, Ordering::Relaxed);
        self.enobufs.store(c.enobufs, Ordering::Relaxed);
        self.truncated.store(c.truncated, Ordering::Relaxed);
        self.recv_errors.store(c.recv_errors, Ordering::Relaxed);
        self.ring_full_waits
            .store(c.ring_full_waits, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive a [`Budget`] as the receive loops do, with a simulated clock: datagrams arrive at
    /// `arrivals` (µs from the start, sorted); each wait lasts until the next arrival, or the
    /// budget's window end if that comes first. Returns, per publish, the publish time and
    /// the arrival times it carried.
    fn publishes(max_delay_us: u64, arrivals: &[u64]) -> Vec<(u64, Vec<u64>)> {
        let t0 = Instant::now();
        let at = |us: u64| t0 + Duration::from_micros(us);
        let mut budget = Budget::new(Duration::from_micros(max_delay_us));
        let (mut now, mut next, mut staged) = (0u64, 0usize, Vec::new());
        let mut out = Vec::new();
        loop {
            // The wait: blocks for the next arrival, or ends at the window's end.
            match budget.wait(at(now)) {
                None if next == arrivals.len() => break,
                None => now = now.max(arrivals[next]),
                Some(d) => {
                    let end = now + d.as_micros() as u64;
                    now = arrivals.get(next).map_or(end, |&a| a.max(now).min(end));
                }
            }
            // Everything that arrived by now is received (one datagram per completion, at
            // most what fills a batch in one turn).
            while next < arrivals.len() && arrivals[next] <= now && staged.len() < BUDGET_DATAGRAMS
            {
                staged.push(arrivals[next]);
                next += 1;
            }
            if budget.publish(at(now), staged.len()) {
                out.push((now, std::mem::take(&mut staged)));
            }
        }
        assert!(staged.is_empty(), "datagrams never published: {staged:?}");
        out
    }

    /// Every datagram is published within the budget of its arrival, whatever the pattern
    /// (steady, bursts, silences); a steady stream is published once per budget, not per
    /// datagram; a burst that fills a batch goes at once.
    #[test]
    fn the_budget_publishes_every_datagram_within_max_delay_and_batches_the_rest() {
        let budget = 5_000; // µs
                            // 1,000/s for a second, a silence, a burst of 300 in 3 ms, a lone datagram.
        let mut arrivals: Vec<u64> = (0..1000).map(|i| i * 1000 + 7).collect();
        arrivals.extend((0..300).map(|i| 2_000_000 + i * 10));
        arrivals.push(3_500_000);
        let pubs = publishes(budget, &arrivals);
        let all: Vec<u64> = pubs.iter().flat_map(|(_, a)| a.iter().copied()).collect();
        assert_eq!(all, arrivals, "every datagram once, in order");
        for (t, carried) in &pubs {
            for a in carried {
                assert!(t - a <= budget, "a datagram of {a} µs published at {t} µs");
            }
        }
        // The steady second: ~200 windows of 5 ms, not 1,000 publishes.
        let steady = pubs.iter().filter(|(t, _)| *t < 1_100_000).count();
        assert!(
            (190..=210).contains(&steady),
            "{steady} publishes for the steady second"
        );
        // The burst: full batches of 64 published as they fill, the rest at the window's end.
        let burst: Vec<usize> = pubs
            .iter()
            .filter(|(t, _)| (2_000_000..3_000_000).contains(t))
            .map(|(_, a)| a.len())
            .collect();
        assert!(burst.iter().all(|&n| n <= BUDGET_DATAGRAMS), "{burst:?}");
        assert!(
            burst.iter().filter(|&&n| n == BUDGET_DATAGRAMS).count() >= 4,
            "{burst:?}"
        );
        // The lone datagram, after a silence, waits its budget and no more.
        let (t, last) = pubs.last().unwrap();
        assert_eq!((*t, last.as_slice()), (3_505_000, &[3_500_000][..]));
    }

    /// `max_delay: 0` is the behaviour before the budget: every receive is published at once,
    /// and the receiver only ever blocks for the next datagram.
    #[test]
    fn a_zero_budget_publishes_every_datagram_at_once() {
        let arrivals: Vec<u64> = (0..100).map(|i| i * 1000).collect();
        let pubs = publishes(0, &arrivals);
        assert_eq!(pubs.len(), 100);
        assert!(pubs.iter().all(|(t, a)| a == &[*t]), "{pubs:?}");
        let mut b = Budget::new(Duration::ZERO);
        assert!(!b.publish(Instant::now(), 0));
        assert_eq!(b.wait(Instant::now()), None);
    }
}
