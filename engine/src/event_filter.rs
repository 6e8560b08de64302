//! Filters on what the enriched format decodes (`event_filters`, our extension).
//!
//! Owns the matching of a completed event against conditions on its decoded fields: the
//! SYSCALL record's `exe`, `comm`, syscall name (for the event's arch), `uid`/`auid` (number
//! or user name), the rule key (or no key), the container id (prefix) and systemd unit from
//! attribution (only what it trusts: a claim by a cgroup a user could have named never
//! matches, so it cannot make an event be dropped), and a SOCKADDR address (an address or a CIDR) and port. Every condition of
//! a filter must hold; filters are tried in order and the first that matches decides (`drop`
//! or `keep`); each counts its matches. They run after pauditd's own filters (an event those
//! drop never reaches them). It must never change events.

use std::net::IpAddr;

use crate::arch::Arch;
use crate::decode::{self, SockAddr};
use crate::event::Event;
use crate::record::{self, Value};
use crate::types;

/// What a filter decides for an event it matches, pauditd's filters ([`crate::filter`]) and
/// ours alike. Defined here, the leaf: [`crate::filter::FilterSet`] holds the event filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    Keep,
    Drop,
}

/// A string condition: exact, or a prefix when written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Exact(String),
    Prefix(String),
}

impl Text {
    pub fn parse(s: &str) -> Text {
        match s.strip_suffix('*') {
            Some(p) => Text::Prefix(p.to_string()),
            None => Text::Exact(s.to_string()),
        }
    }

    fn matches(&self, v: &[u8]) -> bool {
        match self {
            Text::Exact(s) => v == s.as_bytes(),
            Text::Prefix(p) => v.starts_with(p.as_bytes()),
        }
    }
}

/// One filter as configured (validated by the config crate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilterSpec {
    /// Its counter's name (`filters.<name>.matched`).
    pub name: String,
    pub keep: bool,
    pub exe: Option<Text>,
    pub comm: Option<Text>,
    /// `Some("")`: events with no rule key.
    pub key: Option<String>,
    pub syscall: Option<String>,
    pub uid: Option<String>,
    pub auid: Option<String>,
    /// A prefix of the container id.
    pub container: Option<String>,
    pub unit: Option<String>,
    /// An address and prefix length (a single address: the full length).
    pub addr: Option<(IpAddr, u8)>,
    pub port: Option<u16>,
}

/// Parse `10.0.0.0/8`, `::1`, `2001:db8::/32` for the tests (the operator's are parsed once, by the
/// config crate).
#[cfg(test)]
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let ip: IpAddr = a.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((ip, len))
}

fn in_cidr(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The compiled filters and their counters.
#[derive(Debug, Default)]
pub struct EventFilters {
    specs: Vec<EventFilterSpec>,
    hits: Vec<u64>,
}

/// What the filters look at, taken from the event once.
struct Facts<'e> {
    syscall_data: Option<&'e [u8]>,
    arch: Option<Arch>,
}

impl EventFilters {
    pub fn new(specs: Vec<EventFilterSpec>) -> Self {
        let hits = vec![0; specs.len()];
        EventFilters { specs, hits }
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// `(name, matches)` of every filter.
    pub fn hits(&self) -> Vec<(String, u64)> {
        self.specs
            .iter()
            .zip(&self.hits)
            .map(|(s, h)| (s.name.clone(), *h))
            .collect()
    }

    /// Carry the counts of filters with the same name over from `old` (a reload).
    pub fn keep_counts_from(&mut self, old: &EventFilters) {
        for (i, s) in self.specs.iter().enumerate() {
            if let Some(j) = old.specs.iter().position(|o| o.name == s.name) {
                self.hits[i] = old.hits[j];
            }
        }
    }

    /// The first matching filter's action (counted), `None` when no filter matches.
    pub fn decide(&mut self, e: &Event) -> Option<FilterAction> {
        if self.specs.is_empty() {
            return None;
        }
        let syscall_data = e
            .messages()
            .find(|(t, _)| *t == types::SYSCALL)
            .map(|(_, d)| record::split_enriched(d).0);
        let arch = syscall_data
            .and_then(|d| record::get(d, b"arch"))
            .and_then(|v| u32::from_str_radix(std::str::from_utf8(v.bytes()).ok()?, 16).ok())
            .and_then(Arch::from_audit_arch);
        let facts = Facts { syscall_data, arch };
        let i = self.specs.iter().position(|s| matches(s, e, &facts))?;
        self.hits[i] += 1;
        Some(if self.specs[i].keep {
            FilterAction::Keep
        } else {
            FilterAction::Drop
        })
    }
}

fn syscall_field<'e>(f: &Facts<'e>, name: &[u8]) -> Option<Value<'e>> {
    record::get(f.syscall_data?, name)
}

fn uid_matches(e: &Event, f: &Facts<'_>, field: &[u8], want: &str) -> bool {
    let Some(v) = syscall_field(f, field) else {
        return false;
    };
    let uid = v.bytes();
    if uid == want.as_bytes() {
        return true;
    }
    e.sorted_uids()
        .and_then(|mut it| it.find(|(u, _)| *u == uid))
        .is_some_and(|(_, name)| name == want.as_bytes())
}

fn matches(s: &EventFilterSpec, e: &Event, f: &Facts<'_>) -> bool {
    if let Some(t) = &s.exe {
        let ok = syscall_field(f, b"exe")
            .and_then(decode::untrusted)
            .is_some_and(|v| t.matches(&v));
        if !ok {
            return false;
        }
    }
    if let Some(t) = &s.comm {
        let ok = syscall_field(f, b"comm")
            .and_then(decode::untrusted)
            .is_some_and(|v| t.matches(&v));
        if !ok {
            return false;
        }
    }
    if let Some(k) = &s.key {
        let key = e.rule_key();
        let none = key.is_empty() || key == b"(null)";
        let ok = if k.is_empty() {
            none
        } else {
            !none && key == k.as_bytes()
        };
        if !ok {
            return false;
        }
    }
    if let Some(name) = &s.syscall {
        let nr = syscall_field(f, b"syscall")
            .and_then(|v| std::str::from_utf8(v.bytes()).ok()?.parse::<u32>().ok());
        let ok = nr.is_some_and(|nr| {
            name.parse::<u32>().ok() == Some(nr)
                || f.arch.and_then(|a| a.syscall_name(nr)) == Some(name.as_str())
        });
        if !ok {
            return false;
        }
    }
    if let Some(u) = &s.uid {
        if !uid_matches(e, f, b"uid", u) {
            return false;
        }
    }
    if let Some(u) = &s.auid {
        if !uid_matches(e, f, b"auid", u) {
            return false;
        }
    }
    if let Some(c) = &s.container {
        let ok = e
            .attribution()
            .and_then(|a| a.container_id.as_deref())
            .is_some_and(|id| id.starts_with(c.as_str()));
        if !ok {
            return false;
        }
    }
    if let Some(u) = &s.unit {
        let ok = e
            .attribution()
            .and_then(|a| a.unit.as_deref())
            .is_some_and(|unit| unit == u);
        if !ok {
            return false;
        }
    }
    if s.addr.is_some() || s.port.is_some() {
        let little_endian = f.arch.is_none_or(|a| a.audit_arch() & 0x4000_0000 != 0);
        let found = e
            .messages()
            .filter(|(t, _)| *t == types::SOCKADDR)
            .filter_map(|(_, d)| record::get(d, b"saddr"))
            .filter_map(|v| decode::hex(v.bytes()))
            .filter_map(|b| decode::sockaddr(&b, little_endian))
            .any(|sa| {
                let (ip, port) = match sa {
                    SockAddr::Inet { addr, port } => (IpAddr::V4(addr), port),
                    SockAddr::Inet6 { addr, port, .. } => (IpAddr::V6(addr), port),
                    _ => return false,
                };
                s.addr.is_none_or(|net| in_cidr(ip, net)) && s.port.is_none_or(|p| p == port)
            });
        if !found {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::add_message::add_record;
    use crate::users::tests::FixedUsers;

    fn event(records: &[(u16, &str)]) -> Event {
        let mut e = Event::new(1, b"1.0");
        for (t, d) in records {
            add_record(&mut e, *t, d.as_bytes(), &mut FixedUsers);
        }
        e.finish();
        e
    }

    const CURL: &str = "arch=c000003e syscall=42 success=no exit=-111 pid=5 auid=1000 uid=0 comm=\"curl\" exe=\"/usr/bin/curl\" key=(null)";
    // 10.1.2.3:443
    const SADDR: &str = "saddr=020001BB0A01020300000000000000000000";

    fn spec(f: impl FnOnce(&mut EventFilterSpec)) -> EventFilterSpec {
        let mut s = EventFilterSpec {
            name: "f".into(),
            ..Default::default()
        };
        f(&mut s);
        s
    }

    #[test]
    fn every_condition_of_a_filter_must_hold() {
        let e = event(&[(1300, CURL), (1306, SADDR)]);
        let yes = [
            spec(|s| s.exe = Some(Text::parse("/usr/bin/curl"))),
            spec(|s| s.exe = Some(Text::parse("/usr/bin/*"))),
            spec(|s| s.comm = Some(Text::parse("curl"))),
            spec(|s| s.key = Some(String::new())),
            spec(|s| s.syscall = Some("connect".into())),
            spec(|s| s.syscall = Some("42".into())),
            spec(|s| s.uid = Some("0".into())),
            spec(|s| s.uid = Some("root".into())),
            spec(|s| s.addr = parse_cidr("10.0.0.0/8")),
            spec(|s| s.port = Some(443)),
            spec(|s| {
                s.addr = parse_cidr("10.1.2.3");
                s.port = Some(443);
                s.syscall = Some("connect".into());
            }),
        ];
        for s in yes {
            let mut f = EventFilters::new(vec![s.clone()]);
            assert_eq!(f.decide(&e), Some(FilterAction::Drop), "{s:?}");
            assert_eq!(f.hits(), vec![("f".to_string(), 1)]);
        }
        let no = [
            spec(|s| s.exe = Some(Text::parse("/usr/bin/wget"))),
            spec(|s| s.key = Some("net".into())),
            spec(|s| s.syscall = Some("execve".into())),
            spec(|s| s.uid = Some("alice".into())),
            spec(|s| s.addr = parse_cidr("192.168.0.0/16")),
            spec(|s| {
                s.addr = parse_cidr("10.0.0.0/8");
                s.port = Some(80);
            }),
            spec(|s| s.container = Some("abc".into())),
            spec(|s| s.unit = Some("cron.service".into())),
        ];
        for s in no {
            let mut f = EventFilters::new(vec![s.clone()]);
            assert_eq!(f.decide(&e), None, "{s:?}");
            assert_eq!(f.hits(), vec![("f".to_string(), 0)]);
        }
    }

    #[test]
    fn the_first_matching_filter_decides_and_counts() {
        let e = event(&[(1300, CURL)]);
        let mut f = EventFilters::new(vec![
            spec(|s| {
                s.name = "keep-root".into();
                s.keep = true;
                s.uid = Some("root".into());
            }),
            spec(|s| {
                s.name = "drop-curl".into();
                s.comm = Some(Text::parse("curl"));
            }),
        ]);
        assert_eq!(f.decide(&e), Some(FilterAction::Keep));
        assert_eq!(
            f.hits(),
            vec![("keep-root".to_string(), 1), ("drop-curl".to_string(), 0)]
        );
        let mut again = EventFilters::new(vec![spec(|s| {
            s.name = "keep-root".into();
            s.keep = true;
        })]);
        again.keep_counts_from(&f);
        assert_eq!(again.hits(), vec![("keep-root".to_string(), 1)]);
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.0.0.0/8"),
            Some(("10.0.0.0".parse().unwrap(), 8))
        );
        assert_eq!(parse_cidr("::1"), Some(("::1".parse().unwrap(), 128)));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("nope"), None);
        assert!(in_cidr(
            "2001:db8::5".parse().unwrap(),
            parse_cidr("2001:db8::/32").unwrap()
        ));
        assert!(in_cidr(
            "1.2.3.4".parse().unwrap(),
            parse_cidr("0.0.0.0/0").unwrap()
        ));
        assert!(!in_cidr(
            "1.2.3.4".parse().unwrap(),
            parse_cidr("::/0").unwrap()
        ));
    }
}
