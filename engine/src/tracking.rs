//! Sequence-gap tracking (pauditd's `message_tracking`).
//!
//! Owns the record of which serials have not been seen yet. A gap is stored as one range,
//! however large, so each record costs O(log r) for r open gaps (in practice a handful),
//! where pauditd walks a map entry per missing serial on every record. A missing serial is
//! declared missed once a serial more than `max_out_of_order` past it arrives; one that turns
//! up before that is counted as late. A gap is logged once, when its first serials are
//! declared missed (the rest of it, still awaited then, is counted as it expires but not
//! logged again); replay, whose input is often a filtered log full of gaps, logs a sample
//! and a summary instead ([`GapLog`]). It must never hold per-serial state.

use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct TrackerConfig {
    pub max_out_of_order: i64,
    pub log_out_of_order: bool,
    pub gap_log: GapLog,
}

/// How gaps are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GapLog {
    /// One error line per gap (the daemon: a gap is records the kernel lost).
    #[default]
    EachGap,
    /// A warning for the 1st, 2nd, 4th, 8th... gap and a summary at the end
    /// ([`SeqTracker::summary`]): replay, where a log filtered by type, key or time has a gap
    /// between most events. `log_out_of_order` lines are sampled the same way.
    Sampled,
}

/// A run of missing serials: its last serial, and whether it was logged already (its first
/// part expired while the rest was still awaited).
#[derive(Debug, Clone, Copy)]
struct Gap {
    end: i64,
    logged: bool,
}

#[derive(Debug)]
pub struct SeqTracker {
    cfg: TrackerConfig,
    /// The largest serial seen; 0 before the first.
    last: i64,
    /// Missing serials as disjoint inclusive ranges `start -> gap`, all below `last`.
    missing: BTreeMap<i64, Gap>,
    /// Gaps declared missed (each counted once, however many pieces it expired in).
    pub gaps: u64,
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
            gaps: 0,
            worst_lag: 0,
            missed: 0,
            late: 0,
        }
    }

    /// Account for one record's serial.
    pub fn observe(&mut self, seq: i64) {
        if self.last != 0 && seq > self.last.saturating_add(1) {
            self.missing.insert(
                self.last + 1,
                Gap {
                    end: seq - 1,
                    logged: false,
                },
            );
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
        let Some((&start, &gap)) = self.missing.range(..=seq).next_back() else {
            return;
        };
        let end = gap.end;
        if end < seq {
            return;
        }
        self.missing.remove(&start);
        if start < seq {
            self.missing.insert(
                start,
                Gap {
                    end: seq - 1,
                    ..gap
                },
            );
        }
        if seq < end {
            self.missing.insert(seq + 1, gap);
        }
        let lag = self.last - seq;
        self.worst_lag = self.worst_lag.max(lag);
        self.late += 1;
        let sampled_out = self.cfg.gap_log == GapLog::Sampled && !self.late.is_power_of_two();
        if self.cfg.log_out_of_order && !sampled_out {
            log::error!(
                "Got sequence {seq} after {lag} messages. Worst lag so far {} messages",
                self.worst_lag
            );
        }
    }

    fn expire(&mut self, seq: i64) {
        // Everything at or below `limit` is more than max_out_of_order behind `seq`.
        let limit = i128::from(seq) - i128::from(self.cfg.max_out_of_order) - 1;
        while let Some((&start, &gap)) = self.missing.first_key_value() {
            if i128::from(start) > limit {
                break;
            }
            let end = gap.end;
            let cut = i128::from(end).min(limit) as i64;
            self.missing.remove(&start);
            if cut < end {
                self.missing.insert(cut + 1, Gap { end, logged: true });
            }
            let count = (i128::from(cut) - i128::from(start) + 1) as u64;
            self.missed = self.missed.saturating_add(count);
            if gap.logged {
                continue;
            }
            self.gaps += 1;
            let rest =
                (cut < end).then(|| format!("; {} more up to {end} still awaited", end - cut));
            self.log_gap(start, cut, count, seq, rest.as_deref().unwrap_or(""));
        }
    }

    fn log_gap(&self, start: i64, cut: i64, count: u64, seq: i64, rest: &str) {
        let what = if start == cut {
            format!("Likely missed sequence {start}")
        } else {
            format!("Likely missed sequences {start} to {cut} ({count})")
        };
        match self.cfg.gap_log {
            GapLog::EachGap => log::error!(
                "{what}, current {seq}, worst message delay {}{rest}",
                self.worst_lag
            ),
            GapLog::Sampled if self.gaps.is_power_of_two() => log::warn!(
                "{what}, current {seq}{rest} (serial gap {}; a log filtered by type, key or time has gaps: only gaps 1, 2, 4, 8, ... are logged, and a summary at the end)",
                self.gaps
            ),
            GapLog::Sampled => {}
        }
    }

    /// One line on the gaps seen, for the end of a replay; `None` when there were none.
    pub fn summary(&self) -> Option<String> {
        (self.gaps > 0 || self.late > 0).then(|| {
            format!(
                "serial gaps: {} gap(s), {} serial(s) never seen, {} seen late, {} still awaited at the end (message_tracking.enabled: false turns the check off)",
                self.gaps,
                self.missed,
                self.late,
                self.pending()
            )
        })
    }

    /// Serials currently awaited (for a gauge).
    pub fn pending(&self) -> u64 {
        self.missing
            .iter()
            .map(|(&s, g)| (i128::from(g.end) - i128::from(s) + 1) as u64)
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
            gap_log: GapLog::EachGap,
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
    fn a_gap_is_counted_and_logged_once_however_it_expires() {
        // One gap of 1000 behind a window of 500: its first 500 expire at once, the rest one
        // by one (and one of those arrives late, splitting it): still one gap.
        let mut t = tracker(500);
        t.observe(100);
        t.observe(1101);
        assert_eq!((t.gaps, t.missed, t.pending()), (1, 500, 500));
        t.observe(700);
        for s in 1102..2000 {
            t.observe(s);
        }
        assert_eq!(t.gaps, 1);
        assert_eq!((t.missed, t.late, t.pending()), (999, 1, 0));
        // Two more gaps: 2000-2009 (all of it expires) and 2011-2599 (partly).
        t.observe(2010);
        t.observe(2600);
        assert_eq!((t.gaps, t.missed), (3, 999 + 10 + 89));
        assert!(t
            .summary()
            .unwrap()
            .starts_with("serial gaps: 3 gap(s), 1098 serial(s) never seen, 1 seen late, 500"));
        assert_eq!(tracker(5).summary(), None);
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
