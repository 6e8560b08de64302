//! The `filters` and `event_filters` sections: pauditd's record filters and our filters on
//! decoded fields, read and checked (regexes compiled, CIDRs and names validated).
//!
//! It must never touch the system.

use crate::gore;
use crate::value::{Reader, Section};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    Keep,
    Drop,
}

/// One entry of `filters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub syscall: String,
    pub message_type: u16,
    pub key: String,
    /// The pattern in `regex` crate syntax (Go's literal `{` escaped, see `gore`).
    pub regex: String,
    pub action: FilterAction,
}

/// One of `event_filters` (our extension): conditions on decoded fields, all of which must
/// hold. Strings as written (a trailing `*` on `exe`/`comm` means a prefix); `key: ''`
/// means "no rule key".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub name: String,
    pub keep: bool,
    pub exe: Option<String>,
    pub comm: Option<String>,
    pub key: Option<String>,
    pub syscall: Option<String>,
    pub uid: Option<String>,
    pub auid: Option<String>,
    pub container: Option<String>,
    pub unit: Option<String>,
    /// An address or a CIDR, parsed here once: the network and its prefix length (a lone
    /// address is a full-length prefix).
    pub addr: Option<(std::net::IpAddr, u8)>,
    pub port: Option<u16>,
}

pub(crate) fn read_event_filter(r: &mut Reader, mut f: Section<'_>) -> Option<EventFilter> {
    let errors_before = r.errors.len();
    let index = f
        .path
        .rsplit('[')
        .next()
        .unwrap_or("")
        .trim_end_matches(']')
        .to_string();
    let name = r.string(&mut f, "name", &format!("filter{index}"));
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        r.report(
            f.key_path("name"),
            format!("{name:?} must be letters, digits, - or _ (it names a metric)"),
        );
    }
    let keep = match r.string(&mut f, "action", "drop").as_str() {
        "drop" => false,
        "keep" => true,
        other => {
            r.report(
                f.key_path("action"),
                format!("{other:?} must be keep or drop"),
            );
            false
        }
    };
    let opt =
        |r: &mut Reader, f: &mut Section<'_>, k: &'static str| f.has(k).then(|| r.string(f, k, ""));
    let exe = opt(r, &mut f, "exe");
    let comm = opt(r, &mut f, "comm");
    let key = opt(r, &mut f, "key");
    let syscall = opt(r, &mut f, "syscall");
    let uid = opt(r, &mut f, "uid");
    let auid = opt(r, &mut f, "auid");
    let container = opt(r, &mut f, "container");
    let unit = opt(r, &mut f, "unit");
    // Present but unreadable still counts as a condition given (its own error says why).
    let addr_given = f.has("addr");
    let addr = opt(r, &mut f, "addr").and_then(|a| {
        let net = parse_cidr(&a);
        if net.is_none() {
            r.report(
                f.key_path("addr"),
                format!("{a:?} is not an IP address or CIDR (10.0.0.0/8, ::1)"),
            );
        }
        net
    });
    let port = f
        .has("port")
        .then(|| r.int(&mut f, "port", 0, 0, 65535) as u16);
    let filter = EventFilter {
        name,
        keep,
        exe,
        comm,
        key,
        syscall,
        uid,
        auid,
        container,
        unit,
        addr,
        port,
    };
    if !addr_given
        && filter
            == (EventFilter {
                name: filter.name.clone(),
                keep: filter.keep,
                ..Default::default()
            })
    {
        r.report(
            f.path.clone(),
            "needs at least one of exe, comm, key, syscall, uid, auid, container, unit, addr, port",
        );
    }
    r.finish(f);
    (r.errors.len() == errors_before).then_some(filter)
}

pub(crate) fn read_filter(r: &mut Reader, mut f: Section<'_>) -> Option<Filter> {
    let errors_before = r.errors.len();
    let syscall = r.string(&mut f, "syscall", "");
    let message_type = r.int(&mut f, "message_type", 0, 0, 65535) as u16;
    let key = r.string(&mut f, "key", "");
    let action = match r.string(&mut f, "action", "drop").as_str() {
        "drop" => FilterAction::Drop,
        "keep" => FilterAction::Keep,
        other => {
            r.report(
                f.path.clone() + ".action",
                format!("{other:?} must be keep or drop"),
            );
            FilterAction::Drop
        }
    };
    let regex = if f.has("regex") {
        let re = r.string(&mut f, "regex", "");
        let translated = gore::translate(&re);
        if let Err(e) = regex::bytes::Regex::new(&translated) {
            r.report(
                f.path.clone() + ".regex",
                format!("{re:?} does not compile: {e}"),
            );
        }
        Some(translated)
    } else {
        r.string(&mut f, "regex", "");
        r.report(
            f.path.clone() + ".regex",
            "is missing (every filter needs a regex)",
        );
        None
    };
    if key.is_empty() && message_type == 0 {
        r.report(
            f.path.clone(),
            "needs either `key`, or `syscall` and `message_type`",
        );
    }
    r.finish(f);
    (r.errors.len() == errors_before).then(|| Filter {
        syscall,
        message_type,
        key,
        regex: regex.unwrap_or_default(),
        action,
    })
}

/// `10.0.0.0/8`, `::1`: the network and its prefix length (a lone address: a full-length
/// prefix); `None` for anything else, a prefix longer than the address included.
pub fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let ip: std::net::IpAddr = a.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((ip, len))
}
