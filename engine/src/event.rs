//! The event model: one audit event (all records sharing a serial) as pauditd prints it.
//!
//! Owns the storage layout of an event: the timestamp and every message's data live back to
//! back in one byte buffer, so adding a record costs one append (no allocation per record once
//! the buffer has grown) and the "all data concatenated" view that key filters match against
//! is a plain slice. It must never interpret the data: enrichment (uids, rule key, syscall)
//! lives in `add_message`, grouping in `reassemble`, output in the sinks.

use std::ops::Range;
use std::sync::Arc;

/// One record of an event: its type and where its data sits in the event's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSpan {
    pub rtype: u16,
    start: u32,
    end: u32,
}

/// A uid seen in the event's data and the user name it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UidEntry {
    /// Where the uid's text sits in the buffer (it is always a slice of some message's data).
    uid: Range<u32>,
    name: Arc<[u8]>,
}

/// A complete or in-progress audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The audit serial shared by all records of the event (pauditd's `sequence`).
    pub serial: i64,
    /// Timestamp bytes first (`ts_len` of them), then each message's data in arrival order.
    buf: Vec<u8>,
    /// Invariant: `ts_len <= buf.len()` and every span lies in `ts_len..buf.len()`.
    ts_len: u32,
    /// In arrival order; spans are contiguous and ascending.
    messages: Vec<MessageSpan>,
    /// Distinct uids in first-seen order (sorted only when printed).
    uids: Vec<UidEntry>,
    /// The same uids as a set, built once there are enough of them that scanning `uids`
    /// would make an event with many distinct uids cost quadratic time.
    uid_index: Option<Box<rustc_hash::FxHashSet<Box<[u8]>>>>,
    /// Distinct uids past the per-event bound were seen and not mapped.
    uids_truncated: bool,
    /// `uids` is in uid byte order (set by [`Event::finish`], cleared by a new uid).
    uids_sorted: bool,
    /// Distinct gids with a group name, when the resolver resolves groups (first-seen order).
    gids: Vec<UidEntry>,
    /// User names of ids given only as `id=` (user-management records), when the resolver
    /// resolves groups (only the enriched and ecs formats print them): kept apart from `uids`
    /// so pauditd's `uid_map` stays as pauditd prints it.
    id_users: Vec<UidEntry>,
    /// The `syscall=` value of the last SYSCALL record, as a range of `buf`.
    syscall: Option<Range<u32>>,
    /// pauditd's `rule_key`: from the SYSCALL record's `key=`, or `tty` for TTY records.
    rule_key: Vec<u8>,
    /// The container and service of the event's process, when attribution is on.
    attribution: Option<Arc<crate::container::Attribution>>,
    /// The parent of the event's process, when lineage is on.
    parent: Option<Arc<crate::lineage::ProcessInfo>>,
}

impl Event {
    pub fn new(serial: i64, timestamp: &[u8]) -> Self {
        // Sized from the held-out kernel log: the median event is ~900 bytes.
        let mut buf = Vec::with_capacity(1024);
        buf.extend_from_slice(timestamp);
        Event {
            serial,
            ts_len: timestamp.len() as u32,
            buf,
            messages: Vec::with_capacity(6),
            uids: Vec::new(),
            uid_index: None,
            uids_truncated: false,
            uids_sorted: true,
            gids: Vec::new(),
            id_users: Vec::new(),
            syscall: None,
            rule_key: Vec::new(),
            attribution: None,
            parent: None,
        }
    }

    /// Make this (written) event a new, empty one, keeping every buffer's capacity: events
    /// are recycled ([`crate::pool`]) so the steady state allocates nothing.
    pub fn reset(&mut self, serial: i64, timestamp: &[u8]) {
        // Recycled events take whatever event comes next: give each room for the common
        // large ones once, instead of growing it a step at a time as bigger events land in it.
        const BUF_FLOOR: usize = 4096;
        const MESSAGES_FLOOR: usize = 16;
        const KEY_FLOOR: usize = 64;
        const UIDS_FLOOR: usize = 8;
        self.serial = serial;
        self.buf.clear();
        self.buf.reserve(BUF_FLOOR);
        self.messages.clear();
        self.messages.reserve(MESSAGES_FLOOR);
        self.rule_key.clear();
        self.rule_key.reserve(KEY_FLOOR);
        self.uids.clear();
        self.uids.reserve(UIDS_FLOOR);
        self.buf.extend_from_slice(timestamp);
        self.ts_len = timestamp.len() as u32;
        self.uid_index = None;
        self.uids_truncated = false;
        self.uids_sorted = true;
        self.gids.clear();
        self.id_users.clear();
        self.syscall = None;
        self.attribution = None;
        self.parent = None;
    }

    /// Bytes the event's buffer can hold without growing (what recycling keeps).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Append a record's data; returns the index of the new message.
    pub fn push_message(&mut self, rtype: u16, data: &[u8]) -> usize {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(data);
        self.messages.push(MessageSpan {
            rtype,
            start,
            end: self.buf.len() as u32,
        });
        self.messages.len() - 1
    }

    pub fn timestamp(&self) -> &[u8] {
        &self.buf[..self.ts_len as usize]
    }

    /// Bytes held by the event (the limit on a single event's size is checked against this).
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// `(type, data)` of every message in arrival order.
    pub fn messages(&self) -> impl ExactSizeIterator<Item = (u16, &[u8])> + '_ {
        self.messages
            .iter()
            .map(|m| (m.rtype, &self.buf[m.start as usize..m.end as usize]))
    }

    pub fn message(&self, i: usize) -> (u16, &[u8]) {
        let m = self.messages[i];
        (m.rtype, &self.buf[m.start as usize..m.end as usize])
    }

    /// Every message's data concatenated, which pauditd's key filters match against.
    pub fn all_data(&self) -> &[u8] {
        &self.buf[self.ts_len as usize..]
    }

    /// The byte range of message `i`'s data, for recording slices of it.
    pub(crate) fn message_range(&self, i: usize) -> Range<usize> {
        let m = self.messages[i];
        m.start as usize..m.end as usize
    }

    pub fn has_uid(&self, uid: &[u8]) -> bool {
        match &self.uid_index {
            Some(set) => set.contains(uid),
            None => self.uids.iter().any(|e| self.slice(&e.uid) == uid),
        }
    }

    /// Record that `range` (a slice of the buffer holding a uid) maps to `name`.
    pub(crate) fn insert_uid(&mut self, range: Range<usize>, name: Arc<[u8]>) {
        /// Past this many distinct uids a set answers `has_uid` (below it a scan is cheaper).
        const INDEX_FROM: usize = 16;
        let uid = range.start as u32..range.end as u32;
        if let Some(set) = &mut self.uid_index {
            set.insert(self.buf[range.clone()].into());
        } else if self.uids.len() + 1 >= INDEX_FROM {
            let mut set: rustc_hash::FxHashSet<Box<[u8]>> = self
                .uids
                .iter()
                .map(|e| self.buf[e.uid.start as usize..e.uid.end as usize].into())
                .collect();
            set.insert(self.buf[range.clone()].into());
            self.uid_index = Some(Box::new(set));
        }
        self.uids.push(UidEntry { uid, name });
        self.uids_sorted = self.uids.len() < 2;
    }

    /// Record that `range` (a slice of the buffer holding a gid) names group `name`.
    pub(crate) fn insert_gid(&mut self, range: Range<usize>, name: Arc<[u8]>) {
        let gid = range.start as u32..range.end as u32;
        self.gids.push(UidEntry { uid: gid, name });
    }

    /// Record that `range` (a slice of the buffer holding an `id=` value) names user `name`.
    pub(crate) fn insert_id_user(&mut self, range: Range<usize>, name: Arc<[u8]>) {
        let uid = range.start as u32..range.end as u32;
        self.id_users.push(UidEntry { uid, name });
    }

    /// Whether an `id=` value was looked up as a user already (named or not).
    pub(crate) fn has_id_user(&self, uid: &[u8]) -> bool {
        self.id_users.iter().any(|e| self.slice(&e.uid) == uid)
    }

    /// The user name of `uid`: from the uid map (pauditd's), or else from the names of ids
    /// given only as `id=`; `None` when unknown (`UNKNOWN_USER`) or not looked up.
    pub fn user_name(&self, uid: &[u8]) -> Option<&[u8]> {
        let name = match self.sorted_uids() {
            Some(mut it) => it.find(|(u, _)| *u == uid).map(|(_, n)| n),
            None => self
                .uids
                .iter()
                .find(|e| self.slice(&e.uid) == uid)
                .map(|e| &*e.name),
        }
        .or_else(|| {
            self.id_users
                .iter()
                .find(|e| self.slice(&e.uid) == uid)
                .map(|e| &*e.name)
        })?;
        (name != crate::users::UNKNOWN_USER).then_some(name)
    }

    /// Distinct gids looked up so far (with or without a name).
    pub fn gid_count(&self) -> usize {
        self.gids.len()
    }

    /// The group name of `gid`, when groups were resolved and it has one.
    pub fn group_name(&self, gid: &[u8]) -> Option<&[u8]> {
        self.gids
            .iter()
            .find(|e| self.slice(&e.uid) == gid)
            .map(|e| &*e.name)
    }

    /// The event is complete: put its uids in the order they are printed, in place, so
    /// encoding needs no allocation.
    pub fn finish(&mut self) {
        if !self.uids_sorted {
            let buf = &self.buf;
            self.uids.sort_unstable_by(|a, b| {
                buf[a.uid.start as usize..a.uid.end as usize]
                    .cmp(&buf[b.uid.start as usize..b.uid.end as usize])
            });
            self.uids_sorted = true;
        }
    }

    /// `(uid, user name)` in uid byte order, without allocating, when the event is
    /// [finished](Event::finish); `None` otherwise (use [`Event::uid_map`]).
    pub fn sorted_uids(&self) -> Option<impl Iterator<Item = (&[u8], &[u8])> + '_> {
        self.uids_sorted
            .then(|| self.uids.iter().map(|e| (self.slice(&e.uid), &*e.name)))
    }

    pub(crate) fn mark_uids_truncated(&mut self) {
        self.uids_truncated = true;
    }

    /// Whether distinct uids beyond the per-event bound were left out of the uid map.
    pub fn uids_truncated(&self) -> bool {
        self.uids_truncated
    }

    /// `(uid, user name)` sorted by uid bytes, as Go's encoder orders map keys.
    pub fn uid_map(&self) -> Vec<(&[u8], &[u8])> {
        let mut v: Vec<(&[u8], &[u8])> = self
            .uids
            .iter()
            .map(|e| (self.slice(&e.uid), &*e.name))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
    }

    pub fn uid_count(&self) -> usize {
        self.uids.len()
    }

    pub fn syscall(&self) -> &[u8] {
        self.syscall.as_ref().map_or(&[], |r| self.slice(r))
    }

    pub(crate) fn set_syscall(&mut self, range: Range<usize>) {
        self.syscall = Some(range.start as u32..range.end as u32);
    }

    pub fn rule_key(&self) -> &[u8] {
        &self.rule_key
    }

    pub fn attribution(&self) -> Option<&crate::container::Attribution> {
        self.attribution.as_deref()
    }

    pub fn set_attribution(&mut self, a: Option<Arc<crate::container::Attribution>>) {
        self.attribution = a;
    }

    pub fn parent(&self) -> Option<&crate::lineage::ProcessInfo> {
        self.parent.as_deref()
    }

    pub fn set_parent(&mut self, p: Option<Arc<crate::lineage::ProcessInfo>>) {
        self.parent = p;
    }

    /// The rule key's buffer, to fill in place.
    pub(crate) fn rule_key_mut(&mut self) -> &mut Vec<u8> {
        &mut self.rule_key
    }

    pub fn set_rule_key(&mut self, key: &[u8]) {
        self.rule_key.clear();
        self.rule_key.extend_from_slice(key);
    }

    fn slice(&self, r: &Range<u32>) -> &[u8] {
        &self.buf[r.start as usize..r.end as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_keeps_messages_apart_and_concatenated() {
        let mut e = Event::new(7, b"1.2");
        e.push_message(1300, b"abc");
        e.push_message(1307, b"");
        e.push_message(1302, b"de");
        assert_eq!(e.timestamp(), b"1.2");
        let msgs: Vec<_> = e.messages().collect();
        assert_eq!(
            msgs,
            vec![(1300, &b"abc"[..]), (1307, &b""[..]), (1302, &b"de"[..])]
        );
        assert_eq!(e.all_data(), b"abcde");
    }

    #[test]
    fn uid_map_sorted_bytewise() {
        let mut e = Event::new(1, b"t");
        let i = e.push_message(1300, b"uid=1000 auid=0 x=10");
        let base = e.message_range(i).start;
        e.insert_uid(base + 4..base + 8, Arc::from(&b"alice"[..]));
        e.insert_uid(base + 14..base + 15, Arc::from(&b"root"[..]));
        e.insert_uid(base + 18..base + 20, Arc::from(&b"x"[..]));
        let keys: Vec<_> = e.uid_map().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![&b"0"[..], b"10", b"1000"]);
        assert!(e.has_uid(b"1000") && !e.has_uid(b"100"));
    }
}
