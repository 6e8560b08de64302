//! The HTTP output's circuit breaker: stop calling a service that keeps failing.
//!
//! Owns the state machine only (closed, open, half-open) over the outcomes it is told about;
//! time is an input (`now`), so tests step through it without sleeping. It follows pauditd's
//! breaker (streadway/handy): it opens when, over the last `window`, at least
//! `min_observations` requests were made and the share of failures exceeds `failure_ratio`;
//! while open every request fails fast; after `cooldown` one probe goes through (half-open),
//! whose success closes it and whose failure opens it again. It must never block or sleep.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Failures / observations above which the breaker opens (pauditd's
    /// `breaker_failure_ratio`, default 0.05).
    pub failure_ratio: f64,
    pub window: Duration,
    pub min_observations: u32,
    pub cooldown: Duration,
}

impl BreakerConfig {
    /// pauditd's breaker with its library's defaults: 5 s window, 10 observations, 5 s cooldown.
    pub fn with_ratio(failure_ratio: f64) -> Self {
        BreakerConfig {
            failure_ratio,
            window: Duration::from_secs(5),
            min_observations: 10,
            cooldown: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Failing fast until the instant given.
    Open {
        until: Instant,
    },
    /// One probe is in flight; everything else fails fast until it reports.
    HalfOpen,
}

const BUCKETS: usize = 10;

/// Counts over one slice of the window.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which slice this is (time since `epoch` / slice length); stale when it lags `now`'s.
    slice: u64,
    successes: u32,
    failures: u32,
}

#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: BreakerState,
    epoch: Instant,
    buckets: [Bucket; BUCKETS],
    /// How many times the breaker has opened (a metric).
    pub opened: u64,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig, now: Instant) -> Self {
        Breaker {
            cfg,
            state: BreakerState::Closed,
            epoch: now,
            buckets: [Bucket::default(); BUCKETS],
            opened: 0,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// May a request be made now? In half-open state only the first caller gets `true`.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => false,
        }
    }

    /// The outcome of a request that [`allow`](Self::allow) let through.
    pub fn record(&mut self, now: Instant, success: bool) {
        match self.state {
            BreakerState::HalfOpen => {
                if success {
                    self.state = BreakerState::Closed;
                    self.buckets = [Bucket::default(); BUCKETS];
                } else {
                    self.open(now);
                }
            }
            // A request that started before the breaker opened: its outcome is old news.
            BreakerState::Open { .. } => {}
            BreakerState::Closed => {
                let b = self.bucket(now);
                if success {
                    b.successes += 1;
                } else {
                    b.failures += 1;
                    let (ok, failed) = self.totals(now);
                    let seen = ok + failed;
                    if seen >= self.cfg.min_observations
                        && f64::from(failed) / f64::from(seen) > self.cfg.failure_ratio
                    {
                        self.open(now);
                    }
                }
            }
        }
    }

    /// A request timed out: the service is not answering, so open at once (without waiting
    /// for the failure ratio over `min_observations`), unless already open. Returns whether
    /// this opened it.
    pub fn trip(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Open { .. } => false,
            BreakerState::Closed | BreakerState::HalfOpen => {
                self.open(now);
                true
            }
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open {
            until: now + self.cfg.cooldown,
        };
        self.buckets = [Bucket::default(); BUCKETS];
        self.opened += 1;
    }

    fn slice_len(&self) -> Duration {
        (self.cfg.window / BUCKETS as u32).max(Duration::from_millis(1))
    }

    fn slice(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.epoch).as_nanos() / self.slice_len().as_nanos()) as u64
    }

    fn bucket(&mut self, now: Instant) -> &mut Bucket {
        let slice = self.slice(now);
        let b = &mut self.buckets[(slice % BUCKETS as u64) as usize];
        if b.slice != slice {
            *b = Bucket {
                slice,
                ..Bucket::default()
            };
        }
        b
    }

    /// (successes, failures) over the buckets still inside the window.
    fn totals(&self, now: Instant) -> (u32, u32) {
        let current = self.slice(now);
        self.buckets
            .iter()
            .filter(|b| current.saturating_sub(b.slice) < BUCKETS as u64)
            .fold((0, 0), |(s, f), b| (s + b.successes, f + b.failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_ratio: 0.5,
            window: Duration::from_secs(1),
            min_observations: 4,
            cooldown: Duration::from_secs(2),
        }
    }

    #[test]
    fn a_timeout_trips_it_at_once_and_a_probe_closes_it() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        assert!(b.allow(t0));
        assert!(b.trip(t0), "one timeout is enough, whatever the ratio");
        assert!(!b.allow(t0));
        assert!(!b.trip(t0), "already open");
        assert_eq!(b.opened, 1);
        let later = t0 + Duration::from_secs(2);
        assert!(b.allow(later));
        b.record(later, true);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn opens_over_the_ratio_then_half_opens_and_closes_on_success() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        // 2 ok + 2 failed = exactly 0.5: not above the ratio.
        for ok in [true, true, false, false] {
            assert!(b.allow(t0));
            b.record(t0, ok);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow(t0));
        b.record(t0, false); // 3 of 5 failed
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: t0 + Duration::from_secs(2)
            }
        );
        assert_eq!(b.opened, 1);
        assert!(!b.allow(t0 + Duration::from_millis(1999)));
        // Cooldown over: exactly one probe.
        let t1 = t0 + Duration::from_secs(2);
        assert!(b.allow(t1));
        assert!(!b.allow(t1));
        b.record(t1, true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow(t1));
    }

    #[test]
    fn failed_probe_reopens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        for _ in 0..4 {
            b.record(t0, false);
        }
        let t1 = t0 + Duration::from_secs(2);
        assert!(b.allow(t1));
        b.record(t1, false);
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: t1 + Duration::from_secs(2)
            }
        );
        assert_eq!(b.opened, 2);
    }

    #[test]
    fn needs_min_observations_and_forgets_outside_the_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg(), t0);
        for _ in 0..3 {
            b.record(t0, false);
        }
        assert_eq!(b.state(), BreakerState::Closed, "3 < min_observations");
        // A second later those failures have left the window: one more is still only 1 of 1.
        let t1 = t0 + Duration::from_millis(1100);
        b.record(t1, false);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.totals(t1), (0, 1));
    }
}
