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

use crate::add_message;
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
                add_message::add_record(&mut o.event, rtype, h.data, users);
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
                add_message::add_record(&mut event, rtype, h.data, users);
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
mod tests;
