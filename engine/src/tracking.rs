//! Sequence-gap tracking (pauditd's `message_tracking`).
//!
//! Owns the record of which serials have not been seen yet. A gap is stored as one range,
//! however large, so each record costs O(log r) for r open gaps (in practice a handful),
//! where pauditd walks a map entry per missing serial on every record. A missing serial is
//! declared missed once a serial more than `max_out_of_order` past it arrives; one that turns
//! up before that is counted as late. It must never hold per-serial state.

use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct TrackerConfig {
    pub max_out_of_order: i64,
    pub log_out_of_order: bool,
}

#[derive(Debug)]
pub struct SeqTracker {
    cfg: TrackerConfig,
    /// The largest serial seen; 0 before the first.
    last: i64,
    /// Missing serials as disjoint inclusive ranges `start -> end`, all below `last`.
    missing: BTreeMap<i64, i64>,
    worst_lag: i64,
    /// Serials declared lost.
    pub missed: u64,
    /// Serials that arrived after a later one, within `max_out_of_order`.
    pub late: u64,
}

impl SeqTracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        SeqTracker {
            cfg,
            last: 0,
            missing: BTreeMap::new(),
            worst_lag: 0,
            missed: 0,
            late: 0,
        }
    }

    /// Account for one record's serial.
    pub fn observe(&mut self, seq: i64) {
        if self.last != 0 && seq > self.last.saturating_add(1) {
            self.missing.insert(self.last + 1, seq - 1);
        }
        if seq < self.last {
            self.arrived_late(seq);
        }
        self.expire(seq);
        if seq > self.last {
            self.last = seq;
        }
    }

    fn arrived_late(&mut self, seq: i64) {
        let Some((&start, &end)) = self.missing.range(..=seq).next_back() else {
            return;
        };
        if end < seq {
            return;
        }
        self.missing.remove(&start);
        if start < seq {
            self.missing.insert(start, seq - 1);
        }
        if seq < end {
            self.missing.insert(seq + 1, end);
        }
        let lag = self.last - seq;
        self.worst_lag = self.worst_lag.max(lag);
        self.late += 1;
        if self.cfg.log_out_of_order {
            log::error!(
                "Got sequence {seq} after {lag} messages. Worst lag so far {} messages",
                self.worst_lag
            );
        }
    }

    fn expire(&mut self, seq: i64) {
        // Everything at or below `limit` is more than max_out_of_order behind `seq`.
        let limit = i128::from(seq) - i128::from(self.cfg.max_out_of_order) - 1;
        while let Some((&start, &end)) = self.missing.first_key_value() {
            if i128::from(start) > limit {
                break;
            }
            let cut = i128::from(end).min(limit) as i64;
            self.missing.remove(&start);
            if cut < end {
                self.missing.insert(cut + 1, end);
            }
            let count = (i128::from(cut) - i128::from(start) + 1) as u64;
            self.missed = self.missed.saturating_add(count);
            if start == cut {
                log::error!(
                    "Likely missed sequence {start}, current {seq}, worst message delay {}",
                    self.worst_lag
                );
            } else {
                log::error!(
                    "Likely missed sequences {start} to {cut} ({count}), current {seq}, worst message delay {}",
                    self.worst_lag
                );
            }
        }
    }

    /// Serials currently awaited (for a gauge).
    pub fn pending(&self) -> u64 {
        self.missing
            .iter()
            .map(|(&s, &e)| (i128::from(e) - i128::from(s) + 1) as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(max: i64) -> SeqTracker {
        SeqTracker::new(TrackerConfig {
            max_out_of_order: max,
            log_out_of_order: true,
        })
    }

    #[test]
    fn in_order_sees_nothing() {
        let mut t = tracker(5);
        for s in 1..100 {
            t.observe(s);
            t.observe(s); // several records per serial
        }
        assert_eq!((t.missed, t.late, t.pending()), (0, 0, 0));
    }

    #[test]
    fn late_arrival_is_not_missed() {
        let mut t = tracker(5);
        t.observe(1);
        t.observe(3);
        assert_eq!(t.pending(), 1);
        t.observe(2);
        assert_eq!((t.missed, t.late, t.pending()), (0, 1, 0));
        assert_eq!(t.worst_lag, 1);
    }

    #[test]
    fn gap_is_declared_missed_after_max_out_of_order() {
        let mut t = tracker(5);
        t.observe(10);
        t.observe(13); // 11, 12 missing
        t.observe(16); // 14, 15 missing too; 16-11 = 5, not > 5
        assert_eq!((t.missed, t.pending()), (0, 4));
        t.observe(17); // 17-11 = 6 > 5: 11 missed; 17-12 = 5: 12 still pending
        assert_eq!((t.missed, t.pending()), (1, 3));
        t.observe(18);
        assert_eq!((t.missed, t.pending()), (2, 2));
    }

    #[test]
    fn huge_gap_is_one_range_and_counted_exactly() {
        let mut t = tracker(500);
        t.observe(1);
        t.observe(10_000_002); // 10 million missing
        assert_eq!(t.missing.len(), 1);
        assert_eq!(t.missed, 10_000_000 - 500);
        t.observe(10_000_003);
        assert_eq!(t.missed, 10_000_000 - 499);
        t.observe(10_000_001); // late but within the window
        assert_eq!(t.late, 1);
        t.observe(20_000_000);
        // The rest of the first gap, and all but the last 500 of the new one.
        let second_gap_expired = 19_999_499 - 10_000_004 + 1;
        assert_eq!(t.missed, 10_000_000 - 1 + second_gap_expired);
        assert_eq!(t.pending(), 500);
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut t = tracker(500);
        t.observe(i64::MIN);
        t.observe(1);
        t.observe(i64::MAX);
        t.observe(i64::MAX);
        t.observe(-5);
        assert!(t.missed > 0);
    }
}
