//! pauditd's event filters: `syscall` + `message_type` filters, then rule `key` filters.
//!
//! Owns the compiled filter table and the decision keep/drop for a completed event, in
//! pauditd's order: syscall/message-type filters are tried message by message (first match
//! decides); if they do not say drop, the key filters are tried in order against all the
//! event's data concatenated. Filters sit in one table indexed by their primary key (the
//! syscall, or the rule key when no syscall is given) and message type (0 for key filters),
//! exactly as pauditd indexes them, so corner cases behave the same. It must never change
//! events.

use regex::bytes::Regex;
use rustc_hash::FxHashMap;

use crate::event::Event;
pub use crate::event_filter::FilterAction;

/// One filter as configured (already validated by the config crate).
#[derive(Debug, Clone)]
pub struct FilterSpec {
    pub syscall: String,
    pub message_type: u16,
    pub key: String,
    pub regex: String,
    pub action: FilterAction,
}

/// Filters of one (primary key, message type), in config order.
type FilterList = Vec<(Regex, FilterAction)>;

#[derive(Debug, Default)]
pub struct FilterSet {
    /// primary key (syscall, else rule key) -> message type (0 for key filters) -> filters.
    table: FxHashMap<Box<[u8]>, FxHashMap<u16, FilterList>>,
    /// Ours, on decoded fields, tried after pauditd's ([`crate::event_filter`]).
    events: crate::event_filter::EventFilters,
}

impl FilterSet {
    pub fn new(specs: &[FilterSpec]) -> Result<Self, regex::Error> {
        let mut table: FxHashMap<Box<[u8]>, FxHashMap<u16, Vec<_>>> = FxHashMap::default();
        for s in specs {
            let primary = if s.syscall.is_empty() {
                &s.key
            } else {
                &s.syscall
            };
            table
                .entry(primary.as_bytes().into())
                .or_default()
                .entry(s.message_type)
                .or_default()
                .push((Regex::new(&s.regex)?, s.action));
        }
        Ok(FilterSet {
            table,
            events: Default::default(),
        })
    }

    /// Add filters on decoded fields, tried after pauditd's.
    pub fn with_event_filters(mut self, events: crate::event_filter::EventFilters) -> Self {
        self.events = events;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty() && self.events.is_empty()
    }

    /// `(name, matches)` of every filter on decoded fields.
    pub fn event_filter_hits(&self) -> Vec<(String, u64)> {
        self.events.hits()
    }

    /// Carry counters over from the set this one replaces (a reload).
    pub fn keep_counts_from(&mut self, old: &FilterSet) {
        self.events.keep_counts_from(&old.events);
    }

    /// Whether the event is dropped: pauditd's filters first (as pauditd decides), then,
    /// for what they keep, ours on decoded fields (the first that matches decides).
    pub fn drops(&mut self, event: &Event) -> bool {
        if !self.table.is_empty()
            && (self.by_syscall(event) == FilterAction::Drop
                || self.by_key(event) == FilterAction::Drop)
        {
            return true;
        }
        self.events.decide(event) == Some(FilterAction::Drop)
    }

    fn by_syscall(&self, event: &Event) -> FilterAction {
        let Some(by_type) = self.table.get(event.syscall()) else {
            return FilterAction::Keep;
        };
        for (rtype, data) in event.messages() {
            if let Some(filters) = by_type.get(&rtype) {
                if let Some((_, action)) = filters.iter().find(|(re, _)| re.is_match(data)) {
                    return *action;
                }
            }
        }
        FilterAction::Keep
    }

    fn by_key(&self, event: &Event) -> FilterAction {
        let Some(filters) = self.table.get(event.rule_key()).and_then(|t| t.get(&0)) else {
            return FilterAction::Keep;
        };
        let all = event.all_data();
        filters
            .iter()
            .find(|(re, _)| re.is_match(all))
            .map_or(FilterAction::Keep, |(_, a)| *a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::add_message::add_record;
    use crate::users::tests::FixedUsers;

    fn spec(syscall: &str, mt: u16, key: &str, re: &str, action: FilterAction) -> FilterSpec {
        FilterSpec {
            syscall: syscall.into(),
            message_type: mt,
            key: key.into(),
            regex: re.into(),
            action,
        }
    }

    fn event(records: &[(u16, &str)]) -> Event {
        let mut e = Event::new(1, b"1.0");
        for (t, d) in records {
            add_record(&mut e, *t, d.as_bytes(), &mut FixedUsers);
        }
        e
    }

    #[test]
    fn syscall_message_type_filter() {
        let mut f = FilterSet::new(&[spec(
            "49",
            1306,
            "",
            "saddr=(10..|0A..)",
            FilterAction::Drop,
        )])
        .unwrap();
        let hit = event(&[(1300, "syscall=49 key=(null)"), (1306, "saddr=0A00")]);
        let other_type = event(&[(1300, "syscall=49 key=(null)"), (1307, "saddr=0A00")]);
        let other_syscall = event(&[(1300, "syscall=42 key=(null)"), (1306, "saddr=0A00")]);
        assert!(f.drops(&hit));
        assert!(!f.drops(&other_type));
        assert!(!f.drops(&other_syscall));
    }

    #[test]
    fn key_filters_keep_then_drop_in_order() {
        // pauditd's own test: keep /srv/bindings/tmp/, drop everything else of the key.
        let mut f = FilterSet::new(&[
            spec(
                "",
                0,
                "test-key",
                r#"name="/srv/bindings/tmp/"#,
                FilterAction::Keep,
            ),
            spec("", 0, "test-key", ".*", FilterAction::Drop),
        ])
        .unwrap();
        let kept = event(&[
            (1300, "syscall=82 key=\"test-key\""),
            (1302, "item=0 name=\"/srv/bindings/tmp/\""),
        ]);
        let dropped = event(&[
            (1300, "syscall=87 key=\"test-key\""),
            (1302, "item=0 name=\"/srv/x/\""),
        ]);
        let other_key = event(&[
            (1300, "syscall=87 key=\"other\""),
            (1302, "item=0 name=\"/srv/x/\""),
        ]);
        assert!(!f.drops(&kept));
        assert!(f.drops(&dropped));
        assert!(!f.drops(&other_key));
    }

    #[test]
    fn key_filter_matches_across_concatenated_messages() {
        let mut f = FilterSet::new(&[spec("", 0, "k", "AB", FilterAction::Drop)]).unwrap();
        assert!(f.drops(&event(&[(1300, "syscall=1 key=k A"), (1302, "B")])));
    }

    #[test]
    fn syscall_keep_does_not_stop_key_filters() {
        let mut f = FilterSet::new(&[
            spec("1", 1300, "", "syscall", FilterAction::Keep),
            spec("", 0, "k", "x", FilterAction::Drop),
        ])
        .unwrap();
        assert!(f.drops(&event(&[(1300, "syscall=1 x key=k")])));
    }
}
