//! Counters of what happened to every record and event, and the one enum of drop reasons.
//!
//! Owns the accounting: each record read is either part of an event, an EOE, or dropped for
//! exactly one [`DropReason`]; each completed event is either kept or filtered. Counters are
//! plain fields owned by the thread that does the work (no atomics on the hot path); whoever
//! exports them reads a copy. It must never log per record: [`DropLog`] rate-limits.

/// Why a record was not added to any event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A log line that is not an audit record (no `type=`, no ` msg=`).
    NotARecord,
    /// A `type=` name that is neither known nor `UNKNOWN[n]`.
    UnknownType,
    /// A log line longer than the reader's limit.
    LineTooLong,
    /// No `audit(SEC.MS:SERIAL)` header, or one without the `:`.
    BadHeader,
    /// Serial 0 (pauditd treats the record as invalid).
    SerialZero,
    /// Type outside `events.min..=events.max`.
    TypeOutOfRange,
    /// The event already holds `max_event_bytes`.
    EventTooLarge,
    /// A netlink message shorter than its header or length field.
    Truncated,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::NotARecord,
        DropReason::UnknownType,
        DropReason::LineTooLong,
        DropReason::BadHeader,
        DropReason::SerialZero,
        DropReason::TypeOutOfRange,
        DropReason::EventTooLarge,
        DropReason::Truncated,
    ];

    /// The metric-friendly name.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NotARecord => "not_a_record",
            DropReason::UnknownType => "unknown_type",
            DropReason::LineTooLong => "line_too_long",
            DropReason::BadHeader => "bad_header",
            DropReason::SerialZero => "serial_zero",
            DropReason::TypeOutOfRange => "type_out_of_range",
            DropReason::EventTooLarge => "event_too_large",
            DropReason::Truncated => "truncated",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Whether dropping this is normal operation (pauditd drops these silently) rather than
    /// a sign of bad input worth a log line.
    pub fn is_routine(self) -> bool {
        matches!(self, DropReason::TypeOutOfRange)
    }
}

/// Counters kept by the processing thread.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Every record (netlink message or log line that is not blank/comment) seen.
    pub records: u64,
    /// Records added to an event.
    pub records_grouped: u64,
    /// EOE records consumed.
    pub records_eoe: u64,
    drops: [u64; DropReason::ALL.len()],
    /// Events completed by their EOE.
    pub events_by_eoe: u64,
    /// Events completed by the timeout/window or at shutdown.
    pub events_by_timeout: u64,
    /// Completed events dropped by filters (pauditd's `messages.filtered`).
    pub events_filtered: u64,
    /// Completed events handed on for output.
    pub events_emitted: u64,
    /// Serials the sequence tracker declared missed / saw late.
    pub seq_missed: u64,
    pub seq_late: u64,
    /// Events completed early because open events reached their bound (count or bytes).
    pub events_evicted: u64,
    /// Records (EOE included) for a serial whose event had already completed without its EOE:
    /// each is a split event (raise `events.timeout` or replay's `--window`).
    pub records_after_completion: u64,
    /// Events whose distinct uids passed the per-event bound (the rest were not mapped).
    pub uid_maps_truncated: u64,
    /// `CONFIG_CHANGE` records that add or remove an audit rule (ours or anyone's): the
    /// daemon's drift guard compares the kernel's rules when this moves.
    pub rule_changes: u64,
    /// Attribution / lineage lookups whose process was already gone.
    pub container_misses: u64,
    pub lineage_misses: u64,
    /// Attribution / lineage lookups whose pid had been reused by a process started after
    /// the event (nothing attached).
    pub pid_reused: u64,
    /// Events whose cgroup path claimed a container or unit only a non-root-owned cgroup
    /// named (reported as untrusted, never attributed).
    pub untrusted_attributions: u64,
    /// `(name, matches)` of each filter on decoded fields (`event_filters`).
    pub event_filter_hits: Vec<(String, u64)>,
}

impl Stats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) -> u64 {
        let c = &mut self.drops[reason.index()];
        *c += 1;
        *c
    }

    /// One line for the log at exit or periodically.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "records={} grouped={} eoe={} dropped={} events_emitted={} events_filtered={} by_eoe={} by_timeout={} seq_missed={} seq_late={}",
            self.records,
            self.records_grouped,
            self.records_eoe,
            self.dropped_total(),
            self.events_emitted,
            self.events_filtered,
            self.events_by_eoe,
            self.events_by_timeout,
            self.seq_missed,
            self.seq_late,
        );
        for (name, n) in [
            ("events_evicted", self.events_evicted),
            ("records_after_completion", self.records_after_completion),
            ("uid_maps_truncated", self.uid_maps_truncated),
            ("container_misses", self.container_misses),
            ("lineage_misses", self.lineage_misses),
            ("pid_reused", self.pid_reused),
            ("untrusted_attributions", self.untrusted_attributions),
        ] {
            if n > 0 {
                s.push_str(&format!(" {name}={n}"));
            }
        }
        for r in DropReason::ALL {
            let n = self.dropped(r);
            if n > 0 {
                s.push_str(&format!(" dropped.{}={n}", r.name()));
            }
        }
        for (name, n) in &self.event_filter_hits {
            s.push_str(&format!(" filter.{name}={n}"));
        }
        s
    }
}

/// Logs a dropped record when its reason's count is a power of two, so bad input is always
/// visible but a flood of it costs a bounded number of lines.
pub(crate) fn log_drop(reason: DropReason, count: u64, sample: &[u8]) {
    if reason.is_routine() || !count.is_power_of_two() {
        return;
    }
    log::warn!(
        "dropped record ({}, {} so far): {}",
        reason.name(),
        count,
        escaped(sample, 120)
    );
}

/// Input-derived text made safe for a log line: at most `max` bytes, quoted, with control
/// bytes, quotes, backslashes and invalid UTF-8 escaped, so input can never forge a log line
/// or drive a terminal.
pub fn escaped(text: &[u8], max: usize) -> String {
    let shown = &text[..text.len().min(max)];
    let mut s = format!("{:?}", String::from_utf8_lossy(shown));
    if text.len() > max {
        s.push_str("...");
    }
    s
}
