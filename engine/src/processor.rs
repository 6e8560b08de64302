//! The record-processing stage: parse, track sequences, reassemble, filter, count.
//!
//! Owns one thread's worth of state between "a record arrived" and "an event is ready to be
//! printed": the sequence tracker, the reassembler, the filters, the user resolver and the
//! counters. Both input forms enter here (netlink payloads and auditd log lines), so replay and
//! live ingestion share every rule. It must never do I/O other than the user lookups of its
//! resolver and, with `enrichment` on (live only), the procfs and cgroupfs reads of
//! attribution and lineage; and never decide how events are written.

use crate::event::Event;
use crate::filter::FilterSet;
use crate::header;
use crate::logline::{self, LogLine, LogLineError};
use crate::reassemble::{CompletedBy, Pushed, Reassembler, ReassemblerConfig};
use crate::stats::{escaped, log_drop, DropReason, Stats};
use crate::tracking::{SeqTracker, TrackerConfig};
use crate::users::UserResolver;

pub struct ProcessorConfig {
    pub reassembler: ReassemblerConfig,
    /// `None` when `message_tracking.enabled` is false.
    pub tracking: Option<TrackerConfig>,
    /// Attribute each event to its process's container and service (live only: it reads
    /// `/proc/<pid>`, which means nothing for a log from another time or host).
    pub containers: bool,
    /// Name each event's parent process (live only, as `containers`).
    pub lineage: bool,
}

impl ProcessorConfig {
    /// pauditd's defaults (types 1300..=1399, tracking with max_out_of_order 500) with the
    /// replay completion rule: an event without EOE completes `window` lines after its last
    /// record.
    pub fn replay_defaults(window: u64) -> Self {
        ProcessorConfig {
            reassembler: ReassemblerConfig {
                min_type: 1300,
                max_type: 1399,
                completion: crate::reassemble::Completion {
                    after: window,
                    restart_on_record: true,
                    apart_by_time_and_origin: true,
                },
                max_event_bytes: 16 << 20,
                max_open_events: crate::reassemble::DEFAULT_MAX_OPEN_EVENTS,
                max_open_bytes: crate::reassemble::DEFAULT_MAX_OPEN_BYTES,
            },
            tracking: Some(TrackerConfig {
                max_out_of_order: 500,
                log_out_of_order: false,
                gap_log: crate::tracking::GapLog::Sampled,
            }),
            containers: false,
            lineage: false,
        }
    }
}

pub struct Processor<U: UserResolver> {
    reassembler: Reassembler,
    tracker: Option<SeqTracker>,
    filters: FilterSet,
    users: U,
    stats: Stats,
    /// Reused between calls so completing events allocates nothing.
    completed: Vec<(Event, CompletedBy)>,
    multi_key_events: u64,
    /// Container/service attribution (`enrichment.containers`), live only.
    containers: Option<crate::container::ContainerCache>,
    /// The process table (`enrichment.lineage`), live only.
    lineage: Option<crate::lineage::ProcessTable>,
    /// Said once, the first time a record of one of these types is dropped as out of range.
    range_note: Option<RangeNote>,
}

/// Record types worth a note when dropped as out of range, and the note.
type RangeNote = (fn(u16) -> bool, String);

impl<U: UserResolver> Processor<U> {
    pub fn new(cfg: ProcessorConfig, filters: FilterSet, users: U) -> Self {
        Processor {
            reassembler: Reassembler::new(cfg.reassembler),
            tracker: cfg.tracking.map(SeqTracker::new),
            filters,
            users,
            stats: Stats::default(),
            completed: Vec::new(),
            multi_key_events: 0,
            containers: cfg
                .containers
                .then(|| crate::container::ContainerCache::new(CONTAINER_CACHE)),
            lineage: cfg
                .lineage
                .then(|| crate::lineage::ProcessTable::new(PROCESS_TABLE, PROCESS_TABLE_BYTES)),
            range_note: None,
        }
    }

    /// Log `note` once, the first time a record whose type `wanted` accepts is dropped as
    /// outside `events.min..=events.max` (e.g. replay in the ecs format, whose documents are
    /// made from user-space records the default range leaves out). `{type}` in the note is
    /// replaced by the record type's name and number.
    pub fn note_range_drops(&mut self, wanted: fn(u16) -> bool, note: String) {
        self.range_note = Some((wanted, note));
    }

    /// Replace the filters (SIGHUP); open events are kept and meet the new filters.
    pub fn set_filters(&mut self, mut filters: FilterSet) {
        filters.keep_counts_from(&self.filters);
        self.filters = filters;
    }

    /// Where the writer returns written batches, so their events are reused.
    pub fn event_pool(&mut self) -> crate::pool::EventPool {
        self.reassembler.spares().pool()
    }

    /// An empty vector for the next batch of events (a returned one when there is one).
    pub fn batch_vec(&mut self, capacity: usize) -> Vec<Event> {
        self.reassembler.spares().batch(capacity)
    }

    pub fn users_mut(&mut self) -> &mut U {
        &mut self.users
    }

    /// Counters, with the tracker's folded in.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        if let Some(t) = &self.tracker {
            s.seq_missed = t.missed;
            s.seq_late = t.late;
        }
        s.event_filter_hits = self.filters.event_filter_hits();
        s.container_misses = self.containers.as_ref().map_or(0, |c| c.misses);
        s.lineage_misses = self.lineage.as_ref().map_or(0, |t| t.misses);
        s.pid_reused = self.containers.as_ref().map_or(0, |c| c.reused)
            + self.lineage.as_ref().map_or(0, |t| t.reused);
        s.untrusted_attributions = self.containers.as_ref().map_or(0, |c| c.untrusted);
        s
    }

    pub fn open_events(&self) -> usize {
        self.reassembler.open_events()
    }

    /// One netlink message: its type from the netlink header, its payload `audit(...): text`.
    /// Events this completes (and that pass the filters) are appended to `out`.
    pub fn push_netlink(&mut self, rtype: u16, payload: &[u8], now: u64, out: &mut Vec<Event>) {
        self.stats.records += 1;
        if rtype == crate::types::CONFIG_CHANGE && is_rule_change(payload) {
            self.stats.rule_changes += 1;
        }
        let result = match header::parse(payload) {
            Ok(h) => {
                // auditd's own records are numbered by the daemon, not in the kernel's sequence.
                if h.serial != 0 && !crate::types::DAEMON_TYPES.contains(&rtype) {
                    if let Some(t) = &mut self.tracker {
                        t.observe(h.serial);
                    }
                }
                self.reassembler
                    .push(rtype, &h, now, &mut self.users, &mut self.completed)
                    .map(|pushed| {
                        if pushed == Pushed::AfterCompletion {
                            self.stats.records_after_completion += 1;
                            let n = self.stats.records_after_completion;
                            if n.is_power_of_two() {
                                log::warn!(
                                    "a record of serial {} arrived after its event was completed without its EOE: the event is split ({n} such record(s) so far; raise events.timeout, or replay's --window)",
                                    h.serial
                                );
                            }
                        }
                        rtype
                    })
            }
            Err(_) => Err(DropReason::BadHeader),
        };
        match result {
            Ok(crate::types::EOE) => self.stats.records_eoe += 1,
            Ok(_) => self.stats.records_grouped += 1,
            Err(reason) => {
                if reason == DropReason::TypeOutOfRange {
                    self.note_range_drop(rtype);
                }
                self.drop_record(reason, payload);
            }
        }
        self.reassembler.expire(now, &mut self.completed);
        self.drain(out);
    }

    /// One auditd log line (without its newline). Blank and `#` lines are skipped uncounted.
    pub fn push_log_line(&mut self, line: &[u8], now: u64, out: &mut Vec<Event>) {
        let mut line = Some(line);
        while let Some(l) = line.take() {
            match logline::parse(l) {
                Ok(LogLine::Record(r)) => {
                    self.push_netlink(r.rtype, r.payload, now, out);
                    line = r.next;
                }
                Ok(LogLine::Ignorable) => {}
                Err(e) => {
                    self.stats.records += 1;
                    let reason = match e {
                        LogLineError::UnknownType => DropReason::UnknownType,
                        LogLineError::NoType | LogLineError::NoMsg => DropReason::NotARecord,
                    };
                    self.drop_record(reason, l);
                }
            }
        }
    }

    fn note_range_drop(&mut self, rtype: u16) {
        if !self
            .range_note
            .as_ref()
            .is_some_and(|(wanted, _)| wanted(rtype))
        {
            return;
        }
        if let Some((_, note)) = self.range_note.take() {
            let name = match crate::types::name_of(rtype) {
                Some(n) => format!("{n} ({rtype})"),
                None => format!("UNKNOWN[{rtype}]"),
            };
            log::warn!("{}", note.replace("{type}", &name));
        }
    }

    /// Count a record the reader had to discard before parsing (e.g. an overlong line).
    pub fn reject(&mut self, reason: DropReason, sample: &[u8]) {
        self.stats.records += 1;
        self.drop_record(reason, sample);
    }

    /// Complete events whose deadline has passed.
    pub fn expire(&mut self, now: u64, out: &mut Vec<Event>) {
        self.reassembler.expire(now, &mut self.completed);
        self.drain(out);
    }

    pub fn next_deadline(&mut self) -> Option<u64> {
        self.reassembler.next_deadline()
    }

    /// Complete every open event (end of input or shutdown).
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        self.reassembler.flush(&mut self.completed);
        self.drain(out);
        if let Some(t) = &self.tracker {
            if let Some(line) = t.summary() {
                log::info!("{line}");
            }
        }
    }

    fn drop_record(&mut self, reason: DropReason, sample: &[u8]) {
        let n = self.stats.count_drop(reason);
        log_drop(reason, n, sample);
    }

    fn drain(&mut self, out: &mut Vec<Event>) {
        for (mut event, by) in self.completed.drain(..) {
            match by {
                CompletedBy::Eoe => self.stats.events_by_eoe += 1,
                CompletedBy::Deadline => self.stats.events_by_timeout += 1,
                CompletedBy::Evicted => {
                    self.stats.events_by_timeout += 1;
                    self.stats.events_evicted += 1;
                    let n = self.stats.events_evicted;
                    if n.is_power_of_two() {
                        log::warn!(
                            "too many open events ({} bytes held): the oldest completed early ({n} so far); raise replay's --window less, or events.timeout",
                            self.reassembler.open_bytes()
                        );
                    }
                }
            }
            if event.uids_truncated() {
                self.stats.uid_maps_truncated += 1;
                let n = self.stats.uid_maps_truncated;
                if n.is_power_of_two() {
                    log::warn!(
                        "event {} has more than {} distinct uids: the rest are not in its uid_map ({n} such event(s) so far)",
                        event.serial,
                        crate::add_message::MAX_UIDS_PER_EVENT
                    );
                }
            }
            if event.rule_key().contains(&1u8) {
                // pauditd logs this per event; rate-limited here, and escaped (input text).
                self.multi_key_events += 1;
                if self.multi_key_events.is_power_of_two() {
                    log::info!(
                        "Found a rule key with more than one value: {} ({} such event(s) so far)",
                        escaped(event.rule_key(), 200),
                        self.multi_key_events
                    );
                }
            }
            let event_ms = crate::container::event_ms(event.timestamp());
            if let Some(cache) = &mut self.containers {
                let pid = event
                    .messages()
                    .find(|(t, _)| *t == crate::types::SYSCALL)
                    .and_then(|(_, d)| crate::record::get(d, b"pid"))
                    .and_then(|v| std::str::from_utf8(v.bytes()).ok()?.parse::<u32>().ok());
                if let Some(pid) = pid {
                    let a = cache.lookup(pid, event_ms).filter(|a| !a.is_empty());
                    event.set_attribution(a);
                }
            }
            if let Some(table) = &mut self.lineage {
                let parent = seen_in(&event).and_then(|mut s| {
                    s.event_ms = event_ms;
                    table.observe(&s)
                });
                event.set_parent(parent);
            }
            if self.filters.drops(&event) {
                self.stats.events_filtered += 1;
                self.reassembler.spares().recycle(event);
            } else {
                self.stats.events_emitted += 1;
                out.push(event);
            }
        }
    }
}

/// Processes whose container attribution is kept (then the cache starts over).
const CONTAINER_CACHE: usize = 16_384;
/// Processes the lineage table holds (the oldest go first).
const PROCESS_TABLE: usize = 32_768;
/// Bytes the lineage table holds at most (comm and exe counted, plus a fixed cost per
/// entry): 32,768 processes with typical names take ~7 MB; execs of 4 KiB paths stop here.
pub const PROCESS_TABLE_BYTES: usize = 16 << 20;

/// What an event's SYSCALL record says about its process, for the lineage table.
fn seen_in(e: &Event) -> Option<crate::lineage::Seen<'_>> {
    use crate::record::{get, split_enriched, Value};
    let data = split_enriched(
        e.messages()
            .find(|(t, _)| *t == crate::types::SYSCALL)
            .map(|(_, d)| d)?,
    )
    .0;
    let num = |k: &[u8]| -> Option<u64> {
        std::str::from_utf8(get(data, k)?.bytes())
            .ok()?
            .parse()
            .ok()
    };
    let arch = get(data, b"arch")
        .and_then(|v| u32::from_str_radix(std::str::from_utf8(v.bytes()).ok()?, 16).ok())
        .and_then(crate::arch::Arch::from_audit_arch);
    let name = num(b"syscall").and_then(|nr| arch?.syscall_name(nr as u32));
    let success = matches!(get(data, b"success"), Some(Value::Bare(b"yes")));
    let text = |k: &[u8]| match get(data, k)? {
        // Hex-encoded names are rare; they are kept as written here.
        Value::Quoted(b) | Value::Bare(b) => Some(b),
        _ => None,
    };
    Some(crate::lineage::Seen {
        pid: u32::try_from(num(b"pid")?).ok()?,
        ppid: num(b"ppid").and_then(|p| u32::try_from(p).ok()),
        comm: text(b"comm"),
        exe: text(b"exe"),
        exec: success && matches!(name, Some("execve" | "execveat")),
        exit: matches!(name, Some("exit" | "exit_group")),
        serial: e.serial,
        event_ms: None,
    })
}

/// A `CONFIG_CHANGE` record of a rule added or removed (`op=add_rule`, `op=remove_rule`).
fn is_rule_change(payload: &[u8]) -> bool {
    memchr::memmem::find(payload, b" op=add_rule").is_some()
        || memchr::memmem::find(payload, b" op=remove_rule").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoUsers;
    impl crate::UserResolver for NoUsers {
        fn resolve(&mut self, _uid: &[u8]) -> std::sync::Arc<[u8]> {
            std::sync::Arc::from(&b"UNKNOWN_USER"[..])
        }
    }

    #[test]
    fn a_range_note_is_said_once_and_daemon_serials_are_not_tracked() {
        let mut p = Processor::new(
            ProcessorConfig::replay_defaults(100),
            FilterSet::new(&[]).unwrap(),
            NoUsers,
        );
        p.note_range_drops(|t| t == 1112, "dropped {type}".into());
        let mut out = Vec::new();
        for (t, text) in [
            (1112, "audit(1.0:10): pid=1 msg='op=login res=success'"),
            (1112, "audit(1.0:11): pid=1 msg='op=login res=success'"),
            (1200, "audit(1.0:5000): op=start res=success"),
            (1300, "audit(1.0:12): arch=c000003e syscall=59"),
        ] {
            p.push_netlink(t, text.as_bytes(), 0, &mut out);
        }
        assert!(p.range_note.is_none(), "said, then forgotten");
        assert_eq!(p.stats().dropped(DropReason::TypeOutOfRange), 3);
        // 5000 (the daemon's own numbering) opened no gap.
        assert_eq!(
            p.stats().seq_missed + p.tracker.as_ref().unwrap().pending(),
            0
        );
    }

    #[test]
    fn rule_change_records_are_counted_for_the_drift_guard() {
        let mut p = Processor::new(
            ProcessorConfig::replay_defaults(100),
            FilterSet::new(&[]).unwrap(),
            NoUsers,
        );
        let mut out = Vec::new();
        for (rtype, text) in [
            (
                1305,
                "audit(1.0:1): auid=0 ses=1 op=add_rule key=\"k\" list=4 res=1",
            ),
            (
                1305,
                "audit(1.0:2): auid=0 ses=1 op=remove_rule key=(null) list=4 res=1",
            ),
            (
                1305,
                "audit(1.0:3): op=set audit_enabled=1 old=1 auid=0 ses=1 res=1",
            ),
            (
                1300,
                "audit(1.0:4): arch=c000003e syscall=59 comm=\"op=add_rule\"",
            ),
        ] {
            p.push_netlink(rtype, text.as_bytes(), 0, &mut out);
        }
        assert_eq!(p.stats().rule_changes, 2);
    }
}
