//! Reassembly of records into events (pauditd's marshaller, minus filtering and output).
//!
//! Owns the set of open events keyed by serial and the rule that completes them: the EOE
//! record of a serial completes it at once; otherwise an event completes at its deadline.
//! Time is an input (`now`, in ticks the caller chooses): the live daemon passes milliseconds
//! and deadlines run from an event's creation (pauditd's 2 s); replay passes the record count
//! and deadlines run from an event's latest record, so an event completes once enough later
//! records have gone by. Completed events leave in a deterministic order: EOE order, then
//! deadline order. It must never sleep, read a clock, or look at filters or sinks.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::enrich;
use crate::event::Event;
use crate::header::Header;
use crate::stats::DropReason;
use crate::types;
use crate::users::UserResolver;

/// When an event without an EOE completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Ticks after the deadline's start.
    pub after: u64,
    /// Whether each new record restarts the deadline (replay) or not (live, as pauditd).
    pub restart_on_record: bool,
    /// Whether records of one serial also need the same timestamp and the same origin
    /// (auditd's own DAEMON_* records or the kernel's) to share an event (replay: a log holds
    /// auditd's records, numbered by the daemon, beside the kernel's, and serials that come
    /// back after a restart). Live, as pauditd, the serial alone groups: the kernel stamps
    /// every record of an event alike.
    pub apart_by_time_and_origin: bool,
}

#[derive(Debug, Clone)]
pub struct ReassemblerConfig {
    pub min_type: u16,
    pub max_type: u16,
    pub completion: Completion,
    /// Records that would grow one event beyond this many bytes are dropped. Each record
    /// counts [`RECORD_COST`] bytes besides its data, so empty records cannot pile up free.
    pub max_event_bytes: usize,
    /// Open events held at most, by count and by bytes (as [`Event::cost`]); past either the
    /// event with the earliest deadline completes early (counted, logged).
    pub max_open_events: usize,
    pub max_open_bytes: usize,
}

/// What one record costs an event besides its data: its span, and its JSON wrapper
/// (`{"type":1300,"data":""},`) when printed.
pub const RECORD_COST: usize = 32;

/// Default bound on open events: far above any real stream (the kernel's backlog holds a few
/// thousand records), low enough that a hostile input cannot exhaust memory.
pub const DEFAULT_MAX_OPEN_EVENTS: usize = 100_000;
pub const DEFAULT_MAX_OPEN_BYTES: usize = 256 << 20;

/// Recently completed serials remembered to tell a late record (a split event) from a new one.
const RECENT_SERIALS: usize = 1 << 16;

/// How an event came to be complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletedBy {
    Eoe,
    Deadline,
    /// Early, to keep open events within their bounds.
    Evicted,
}

/// What one record did, besides joining or starting an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Joined,
    /// The record's event had already completed (by deadline or eviction): it starts a new,
    /// split event (or, for an EOE, finds nothing to complete).
    AfterCompletion,
}

struct Open {
    event: Event,
    deadline: u64,
}

/// An open event's key: its serial and, when events are told apart by time and origin,
/// its origin and timestamp (zeros otherwise). A timestamp of up to [`TS_KEPT`] bytes (every
/// real one: `1700000013.250`) is kept whole, so the key is exact; a longer one keeps its
/// first 16 bytes and a hash of the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    serial: i64,
    daemon: bool,
    ts_len: u8,
    ts: [u8; TS_KEPT],
}

/// Timestamp bytes a key holds.
const TS_KEPT: usize = 24;

fn is_daemon(rtype: u16) -> bool {
    types::DAEMON_TYPES.contains(&rtype)
}

/// A hash of a long timestamp (eight bytes at a time).
fn fingerprint(timestamp: &[u8]) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mut h = timestamp.len() as u64;
    let mut chunks = timestamp.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("eight bytes"));
        h = (h ^ w).wrapping_mul(K).rotate_left(26);
    }
    let mut tail = 0u64;
    for (i, &b) in chunks.remainder().iter().enumerate() {
        tail |= u64::from(b) << (8 * i);
    }
    (h ^ tail).wrapping_mul(K).rotate_left(26).wrapping_mul(K)
}

pub struct Reassembler {
    cfg: ReassemblerConfig,
    open: FxHashMap<Key, Open>,
    /// `(deadline, serial)` in non-decreasing deadline order (ticks never go backwards). An
    /// entry is stale when its event completed or got a later deadline; stale entries are
    /// skipped when they reach the front.
    deadlines: VecDeque<(u64, Key)>,
    /// Sum of the open events' costs.
    open_bytes: usize,
    /// Serials completed without their EOE, oldest first, and the same as a set.
    recent: VecDeque<Key>,
    recent_set: rustc_hash::FxHashSet<Key>,
    /// Where new events come from: recycled ones first.
    spares: crate::pool::Spares,
}

fn cost(e: &Event) -> usize {
    e.byte_len() + e.message_count() * RECORD_COST
}

impl Reassembler {
    pub fn new(cfg: ReassemblerConfig) -> Self {
        Reassembler {
            cfg,
            open: FxHashMap::default(),
            deadlines: VecDeque::new(),
            open_bytes: 0,
            recent: VecDeque::new(),
            recent_set: Default::default(),
            spares: Default::default(),
        }
    }

    /// Spare events and batch vectors (see [`crate::pool`]).
    pub fn spares(&mut self) -> &mut crate::pool::Spares {
        &mut self.spares
    }

    /// Bytes held by open events (as [`cost`]).
    pub fn open_bytes(&self) -> usize {
        self.open_bytes
    }

    fn remember_completed(&mut self, key: Key) {
        if self.recent_set.insert(key) {
            self.recent.push_back(key);
            if self.recent.len() > RECENT_SERIALS {
                if let Some(old) = self.recent.pop_front() {
                    self.recent_set.remove(&old);
                }
            }
        }
    }

    pub fn open_events(&self) -> usize {
        self.open.len()
    }

    /// Where the record's event is (open or to be opened): its serial, and when events are
    /// told apart by time and origin, those too.
    fn key_of(&self, rtype: u16, h: &Header<'_>) -> Key {
        let mut key = Key {
            serial: h.serial,
            daemon: false,
            ts_len: 0,
            ts: [0; TS_KEPT],
        };
        if !self.cfg.completion.apart_by_time_and_origin {
            return key;
        }
        key.daemon = is_daemon(rtype);
        let t = h.timestamp;
        if t.len() <= TS_KEPT {
            key.ts[..t.len()].copy_from_slice(t);
            key.ts_len = t.len() as u8;
        } else {
            key.ts[..16].copy_from_slice(&t[..16]);
            key.ts[16..].copy_from_slice(&fingerprint(t).to_le_bytes());
            key.ts_len = u8::MAX;
        }
        key
    }

    /// Take one record. Completed events are appended to `out`; an error says why the record
    /// was dropped (the caller counts it).
    pub fn push(
        &mut self,
        rtype: u16,
        h: &Header<'_>,
        now: u64,
        users: &mut dyn UserResolver,
        out: &mut Vec<(Event, CompletedBy)>,
    ) -> Result<Pushed, DropReason> {
        if h.serial == 0 {
            return Err(DropReason::SerialZero);
        }
        if rtype < self.cfg.min_type || rtype > self.cfg.max_type {
            return Err(DropReason::TypeOutOfRange);
        }
        let key = self.key_of(rtype, h);
        if rtype == types::EOE {
            return Ok(match self.open.remove(&key) {
                Some(o) => {
                    self.open_bytes -= cost(&o.event);
                    let mut event = o.event;
                    event.finish();
                    out.push((event, CompletedBy::Eoe));
                    Pushed::Joined
                }
                None if self.recent_set.contains(&key) => Pushed::AfterCompletion,
                None => Pushed::Joined,
            });
        }
        let deadline = now.saturating_add(self.cfg.completion.after);
        let added = h.data.len() + RECORD_COST;
        let pushed = match self.open.get_mut(&key) {
            Some(o) => {
                if cost(&o.event) + added > self.cfg.max_event_bytes {
                    return Err(DropReason::EventTooLarge);
                }
                enrich::add_record(&mut o.event, rtype, h.data, users);
                if self.cfg.completion.restart_on_record && o.deadline != deadline {
                    o.deadline = deadline;
                    self.deadlines.push_back((deadline, key));
                }
                self.open_bytes += added;
                Pushed::Joined
            }
            None => {
                if h.timestamp.len() + added > self.cfg.max_event_bytes {
                    return Err(DropReason::EventTooLarge);
                }
                let mut event = self.spares.event(h.serial, h.timestamp);
                enrich::add_record(&mut event, rtype, h.data, users);
                self.open_bytes += cost(&event);
                self.open.insert(key, Open { event, deadline });
                self.deadlines.push_back((deadline, key));
                if self.recent_set.contains(&key) {
                    Pushed::AfterCompletion
                } else {
                    Pushed::Joined
                }
            }
        };
        while self.open.len() > self.cfg.max_open_events
            || self.open_bytes > self.cfg.max_open_bytes
        {
            if !self.evict_oldest(out) {
                break;
            }
        }
        Ok(pushed)
    }

    /// Complete the open event with the earliest deadline; false if none is open.
    fn evict_oldest(&mut self, out: &mut Vec<(Event, CompletedBy)>) -> bool {
        while let Some((deadline, key)) = self.deadlines.pop_front() {
            if self.complete_if_current(deadline, key, CompletedBy::Evicted, out) {
                return true;
            }
        }
        false
    }

    /// Complete every event whose deadline is at or before `now`.
    pub fn expire(&mut self, now: u64, out: &mut Vec<(Event, CompletedBy)>) {
        while let Some(&(deadline, key)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            self.complete_if_current(deadline, key, CompletedBy::Deadline, out);
        }
    }

    /// The earliest tick at which [`expire`](Self::expire) has work, if any.
    pub fn next_deadline(&mut self) -> Option<u64> {
        while let Some(&(deadline, key)) = self.deadlines.front() {
            if self.open.get(&key).is_some_and(|o| o.deadline == deadline) {
                return Some(deadline);
            }
            self.deadlines.pop_front();
        }
        None
    }

    /// Complete everything still open (end of input, shutdown), in deadline order.
    pub fn flush(&mut self, out: &mut Vec<(Event, CompletedBy)>) {
        while let Some((deadline, key)) = self.deadlines.pop_front() {
            self.complete_if_current(deadline, key, CompletedBy::Deadline, out);
        }
        debug_assert!(self.open.is_empty());
    }

    /// Complete the event at `key` if `deadline` is still its current one (the queue holds
    /// stale entries); whether it did.
    fn complete_if_current(
        &mut self,
        deadline: u64,
        key: Key,
        by: CompletedBy,
        out: &mut Vec<(Event, CompletedBy)>,
    ) -> bool {
        if self.open.get(&key).is_none_or(|o| o.deadline != deadline) {
            return false;
        }
        let o = self.open.remove(&key).expect("checked above");
        self.open_bytes -= cost(&o.event);
        self.remember_completed(key);
        let mut event = o.event;
        event.finish();
        out.push((event, by));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header;
    use crate::users::tests::FixedUsers;

    fn reassembler(after: u64, restart: bool) -> Reassembler {
        Reassembler::new(ReassemblerConfig {
            min_type: 1100,
            max_type: 1399,
            completion: Completion {
                after,
                restart_on_record: restart,
                apart_by_time_and_origin: restart,
            },
            max_event_bytes: 1 << 20,
            max_open_events: DEFAULT_MAX_OPEN_EVENTS,
            max_open_bytes: DEFAULT_MAX_OPEN_BYTES,
        })
    }

    fn push(
        r: &mut Reassembler,
        rtype: u16,
        payload: &str,
        now: u64,
        out: &mut Vec<(Event, CompletedBy)>,
    ) -> Result<Pushed, DropReason> {
        let h = header::parse(payload.as_bytes()).unwrap();
        r.push(rtype, &h, now, &mut FixedUsers, out)
    }

    fn serials(out: &[(Event, CompletedBy)]) -> Vec<(i64, CompletedBy)> {
        out.iter().map(|(e, c)| (e.serial, *c)).collect()
    }

    #[test]
    fn eoe_completes_its_serial_only() {
        let mut r = reassembler(2000, false);
        let mut out = vec![];
        push(&mut r, 1300, "audit(10000001:1): hi there", 0, &mut out).unwrap();
        push(&mut r, 1301, "audit(10000001:1): hi there", 0, &mut out).unwrap();
        push(&mut r, 1300, "audit(10000001:2): other", 0, &mut out).unwrap();
        push(&mut r, 1320, "audit(10000001:1): ", 0, &mut out).unwrap();
        assert_eq!(serials(&out), vec![(1, CompletedBy::Eoe)]);
        assert_eq!(out[0].0.message_count(), 2);
        assert_eq!(r.open_events(), 1);
    }

    #[test]
    fn range_and_serial_zero_are_dropped() {
        let mut r = reassembler(2000, false);
        let mut out = vec![];
        assert_eq!(
            push(&mut r, 1099, "audit(1:2): x", 0, &mut out),
            Err(DropReason::TypeOutOfRange)
        );
        assert_eq!(
            push(&mut r, 1400, "audit(1:3): x", 0, &mut out),
            Err(DropReason::TypeOutOfRange)
        );
        assert_eq!(
            push(&mut r, 1300, "audit(1:0): x", 0, &mut out),
            Err(DropReason::SerialZero)
        );
        assert_eq!(r.open_events(), 0);
    }

    #[test]
    fn timeout_runs_from_creation_and_never_needs_sleep() {
        let mut r = reassembler(2000, false);
        let mut out = vec![];
        push(&mut r, 1300, "audit(1:4): a", 100, &mut out).unwrap();
        push(&mut r, 1302, "audit(1:4): b", 1500, &mut out).unwrap();
        push(&mut r, 1300, "audit(1:5): c", 1000, &mut out).unwrap();
        assert_eq!(r.next_deadline(), Some(2100));
        r.expire(2099, &mut out);
        assert!(out.is_empty());
        r.expire(2100, &mut out);
        assert_eq!(serials(&out), vec![(4, CompletedBy::Deadline)]);
        assert_eq!(out[0].0.message_count(), 2);
        assert_eq!(r.next_deadline(), Some(3000));
        r.expire(5000, &mut out);
        assert_eq!(serials(&out)[1], (5, CompletedBy::Deadline));
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn window_restarts_on_each_record_and_orders_by_last_record() {
        let mut r = reassembler(3, true);
        let mut out = vec![];
        // Interleaved: 10's last record comes after 11's.
        push(&mut r, 1300, "audit(1:10): a", 0, &mut out).unwrap();
        push(&mut r, 1300, "audit(1:11): b", 1, &mut out).unwrap();
        push(&mut r, 1302, "audit(1:10): c", 2, &mut out).unwrap();
        r.expire(3, &mut out);
        assert!(out.is_empty());
        r.expire(4, &mut out);
        assert_eq!(serials(&out), vec![(11, CompletedBy::Deadline)]);
        r.flush(&mut out);
        assert_eq!(serials(&out)[1], (10, CompletedBy::Deadline));
        assert_eq!(out[1].0.message_count(), 2);
    }

    #[test]
    fn replay_keeps_daemon_records_and_far_apart_times_out_of_kernel_events() {
        // auditd's DAEMON_START numbered 48 by the daemon; a kernel event 48 13 s later, whose
        // records interleave with a second DAEMON record of serial 48 and its own EOE.
        let mut r = reassembler(100, true);
        let mut out = vec![];
        push(
            &mut r,
            1200,
            "audit(1700000000.000:48): op=start ver=3.0 res=success",
            0,
            &mut out,
        )
        .unwrap();
        push(
            &mut r,
            1300,
            "audit(1700000013.250:48): arch=c000003e syscall=59",
            1,
            &mut out,
        )
        .unwrap();
        push(
            &mut r,
            1203,
            "audit(1700000013.250:48): op=reconfigure",
            2,
            &mut out,
        )
        .unwrap();
        push(
            &mut r,
            1302,
            "audit(1700000013.250:48): item=0 name=\"/bin/ls\"",
            3,
            &mut out,
        )
        .unwrap();
        push(&mut r, 1320, "audit(1700000013.250:48): ", 4, &mut out).unwrap();
        // The same serial again hours later (serials restart with the daemon).
        push(
            &mut r,
            1300,
            "audit(1700090000.000:48): arch=c000003e syscall=2",
            5,
            &mut out,
        )
        .unwrap();
        r.flush(&mut out);
        let got: Vec<(i64, String, Vec<u16>)> = out
            .iter()
            .map(|(e, _)| {
                (
                    e.serial,
                    String::from_utf8_lossy(e.timestamp()).into_owned(),
                    e.messages().map(|(t, _)| t).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (48, "1700000013.250".into(), vec![1300, 1302]),
                (48, "1700000000.000".into(), vec![1200]),
                (48, "1700000013.250".into(), vec![1203]),
                (48, "1700090000.000".into(), vec![1300]),
            ]
        );
        // Timestamps longer than a key holds are told apart too (by their hash).
        let mut r = reassembler(100, true);
        let mut out = vec![];
        let long = "1".repeat(30);
        push(&mut r, 1300, &format!("audit({long}.1:7): a"), 0, &mut out).unwrap();
        push(&mut r, 1300, &format!("audit({long}.2:7): b"), 0, &mut out).unwrap();
        push(&mut r, 1302, &format!("audit({long}.1:7): c"), 0, &mut out).unwrap();
        r.flush(&mut out);
        let counts: Vec<usize> = out.iter().map(|(e, _)| e.message_count()).collect();
        assert_eq!(counts, vec![2, 1]);
        // Live (pauditd), the serial alone groups.
        let mut r = reassembler(100, false);
        let mut out = vec![];
        push(&mut r, 1300, "audit(1.000:48): a", 0, &mut out).unwrap();
        push(&mut r, 1302, "audit(2.000:48): b", 0, &mut out).unwrap();
        r.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.message_count(), 2);
    }

    #[test]
    fn eoe_then_straggler_makes_a_new_event() {
        let mut r = reassembler(3, true);
        let mut out = vec![];
        push(&mut r, 1300, "audit(1:7): a", 0, &mut out).unwrap();
        push(&mut r, 1320, "audit(1:7): ", 1, &mut out).unwrap();
        push(&mut r, 1302, "audit(1:7): late", 2, &mut out).unwrap();
        r.flush(&mut out);
        assert_eq!(
            serials(&out),
            vec![(7, CompletedBy::Eoe), (7, CompletedBy::Deadline)]
        );
    }

    #[test]
    fn oversized_event_drops_records_not_memory() {
        // One record of 10 data bytes fits (with its record cost), a second does not.
        let mut r = Reassembler::new(ReassemblerConfig {
            max_event_bytes: 16 + RECORD_COST,
            max_open_events: DEFAULT_MAX_OPEN_EVENTS,
            max_open_bytes: DEFAULT_MAX_OPEN_BYTES,
            ..reassembler(3, true).cfg
        });
        let mut out = vec![];
        push(&mut r, 1300, "audit(1:7): 0123456789", 0, &mut out).unwrap();
        assert_eq!(
            push(&mut r, 1302, "audit(1:7): 0123456789", 1, &mut out),
            Err(DropReason::EventTooLarge)
        );
    }

    #[test]
    fn empty_records_count_against_the_event_cap() {
        let mut r = reassembler(100, false);
        r.cfg.max_event_bytes = 10 * RECORD_COST;
        let mut out = vec![];
        let mut accepted = 0;
        for _ in 0..1000 {
            if push(&mut r, 1300, "audit(1.0:5): ", 0, &mut out).is_ok() {
                accepted += 1;
            }
        }
        assert!(accepted < 10, "{accepted} empty records held");
        assert!(r.open_bytes() <= 10 * RECORD_COST);
    }

    #[test]
    fn open_events_are_bounded_and_the_oldest_completes_first() {
        let mut r = reassembler(1_000_000, true);
        r.cfg.max_open_events = 100;
        let mut out = vec![];
        for s in 1..=1000 {
            push(&mut r, 1300, &format!("audit(1.0:{s}): x=1"), s, &mut out).unwrap();
        }
        assert_eq!(r.open_events(), 100);
        assert_eq!(out.len(), 900);
        assert!(out.iter().all(|(_, by)| *by == CompletedBy::Evicted));
        assert_eq!(
            out.iter().map(|(e, _)| e.serial).collect::<Vec<_>>(),
            (1..=900).collect::<Vec<_>>()
        );
        // Bytes too: one big event pushes the others out.
        let mut r = reassembler(1_000_000, true);
        r.cfg.max_open_bytes = 4096;
        let mut out = vec![];
        for s in 1..=100 {
            push(
                &mut r,
                1300,
                &format!("audit(1.0:{s}): {}", "y".repeat(100)),
                s,
                &mut out,
            )
            .unwrap();
        }
        assert!(r.open_bytes() <= 4096);
        assert!(out.len() > 60);
    }

    #[test]
    fn a_record_after_its_event_completed_is_reported_as_a_split() {
        let mut r = reassembler(2, true);
        let mut out = vec![];
        assert_eq!(
            push(&mut r, 1300, "audit(1.0:7): a=1", 0, &mut out),
            Ok(Pushed::Joined)
        );
        r.expire(5, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            push(&mut r, 1302, "audit(1.0:7): b=2", 6, &mut out),
            Ok(Pushed::AfterCompletion)
        );
        r.expire(100, &mut out);
        assert_eq!(
            push(&mut r, 1320, "audit(1.0:7): ", 101, &mut out),
            Ok(Pushed::AfterCompletion)
        );
        // A serial completed by its EOE is not remembered: nothing follows an EOE.
        push(&mut r, 1300, "audit(1.0:8): a=1", 102, &mut out).unwrap();
        push(&mut r, 1320, "audit(1.0:8): ", 102, &mut out).unwrap();
        assert_eq!(
            push(&mut r, 1320, "audit(1.0:9): ", 102, &mut out),
            Ok(Pushed::Joined)
        );
    }
}
