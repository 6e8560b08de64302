//! `format: enriched`: one JSON object per event with every record decoded (schema v2).
//!
//! Owns the enriched schema (documented in the README and `docs/formats.md`, checked by the
//! JSON Schema `docs/enriched.schema.json`): `version`, `sequence`, `timestamp` (as the
//! kernel wrote it), `time` (RFC 3339, UTC), `rule_key`, and `records`: one key per record
//! type, in first-seen order; an object per record, or an array when the type occurs more
//! than once (always for `PATH`). Each field has one JSON type whatever its value
//! ([`fields`]: numbers for decimal fields, strings for the rest, `(null)`, `(none)`, `?` as
//! null, a value that is not of its field's type under `RAW`); escaped strings are decoded
//! from hex; translations are added in
//! UPPERCASE beside the raw value, as auditd's ENRICHED format and laurel do (`ARCH`,
//! `SYSCALL`, `EXIT`, `UID`, `AUID`, ..., and group names `GID`, `EGID`, ... when groups
//! are resolved; `unset` for 4294967295); EXECVE and PROCTITLE give
//! an `ARGV` array (EXECVE's rebuilt from every piece; both bounded, `ARGV_TRUNCATED` when cut),
//! SYSCALL's `a0`-`a3` an `ARGV` of hex strings, SOCKADDR a decoded `SADDR`. Bytes that are
//! not UTF-8 are escaped reversibly (`%XX`, and `%` as `%25`). It must never change the
//! pauditd format (that is `json`), and never look anything up itself: names come from the
//! event's uid and gid maps.
//!
//! Modules: the field table (`fields`), JSON writing (`object`), timestamps (`time`).

use pauditd_engine::arch::Arch;
use pauditd_engine::decode::{self, Argv, SockAddr};
use pauditd_engine::record::{split_enriched, Field, Fields, Value};
use pauditd_engine::{types, Event};

use crate::pauditd_json::write_str;

pub mod fields;
use fields::{Id, Kind};
mod object;
mod time;
use object::{add_word, write_text, Object};
pub use time::{rfc3339, write_rfc3339};

/// The schema's version, written in every event. 2: every field has one type (version 1
/// wrote decimal-looking values of any field as numbers, and hex-decoded `id`).
pub const VERSION: u32 = 2;
/// EXECVE arguments kept per event (and PROCTITLE's), in bytes, each argument counting 3
/// more (`decode::ARG_COST`): at most 21,845 arguments (the kernel allows up to 128 KiB per
/// argument and 2 MiB in all). See `decode::Argv` for the other bounds.
pub const ARGV_LIMIT: usize = 64 << 10;

use pauditd_engine::types::{EXECVE, PATH, PROCTITLE, SOCKADDR, SYSCALL};

/// Keys of the structures we write (`ARGV` arrays, the `SADDR` object, the `RAW` object): a
/// field of the input with one of these names goes under `RAW`, so each keeps its one type.
const RESERVED: &[&[u8]] = &[b"ARGV", b"ARGV_TRUNCATED", b"SADDR", b"RAW"];

thread_local! {
    /// Keys of the objects being written (by hash), reused from event to event.
    static KEYS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Decoded bytes of one value, reused.
    static DECODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Append one event as an enriched JSON line.
pub fn encode_event(e: &Event, out: &mut Vec<u8>) {
    KEYS.with(|k| encode_with(e, out, &mut k.borrow_mut()));
}

fn encode_with(e: &Event, out: &mut Vec<u8>, keys: &mut Vec<u64>) {
    keys.clear();
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"{\"version\":");
    out.extend_from_slice(num.format(VERSION).as_bytes());
    out.extend_from_slice(b",\"sequence\":");
    out.extend_from_slice(num.format(e.serial).as_bytes());
    out.extend_from_slice(b",\"timestamp\":");
    write_str(out, e.timestamp());
    let mark = out.len();
    out.extend_from_slice(b",\"time\":\"");
    match write_rfc3339(out, e.timestamp()) {
        Some(()) => out.push(b'"'),
        None => out.truncate(mark),
    }
    out.extend_from_slice(b",\"rule_key\":");
    // pauditd's rule key keeps `(null)` as text; here no key is null.
    if e.rule_key().is_empty() || e.rule_key() == b"(null)" {
        out.extend_from_slice(b"null");
    } else {
        write_text(out, e.rule_key());
    }
    if let Some(a) = e.attribution() {
        write_attribution(out, keys, a);
    }
    if let Some(p) = e.parent() {
        out.extend_from_slice(b",\"parent\":");
        write_parent(out, keys, p);
    }
    out.extend_from_slice(b",\"records\":{");
    // The arch decides the byte order of socket addresses.
    let little_endian = e
        .messages()
        .find(|(t, _)| *t == SYSCALL)
        .and_then(|(_, d)| arch_of(d))
        .is_none_or(|a| a & 0x4000_0000 != 0);
    let mut seen: Vec<u16> = Vec::new();
    for (rtype, _) in e.messages() {
        if seen.contains(&rtype) {
            continue;
        }
        seen.push(rtype);
        if seen.len() > 1 {
            out.push(b',');
        }
        match types::name_of(rtype) {
            Some(n) => write_str(out, n.as_bytes()),
            None => write_str(out, format!("UNKNOWN[{rtype}]").as_bytes()),
        }
        out.push(b':');
        let of_type = || e.messages().filter(move |(t, _)| *t == rtype);
        match rtype {
            EXECVE => write_execve(out, keys, of_type().map(|(_, d)| d)),
            _ if rtype == PATH || of_type().count() > 1 => {
                out.push(b'[');
                for (i, (_, data)) in of_type().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_record(out, keys, e, rtype, data, little_endian);
                }
                out.push(b']');
            }
            _ => {
                let (_, data) = of_type().next().expect("seen once");
                write_record(out, keys, e, rtype, data, little_endian);
            }
        }
    }
    out.extend_from_slice(b"}}\n");
}

fn arch_of(syscall: &[u8]) -> Option<u32> {
    match pauditd_engine::record::get(syscall, b"arch")? {
        Value::Bare(b) => u32::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok(),
        _ => None,
    }
}

fn write_record(
    out: &mut Vec<u8>,
    keys: &mut Vec<u64>,
    e: &Event,
    rtype: u16,
    data: &[u8],
    little_endian: bool,
) {
    let (kernel, enriched) = split_enriched(data);
    let mut obj = Object::new(out, keys);
    let mut args: Vec<&[u8]> = Vec::new();
    let mut arch: Option<Arch> = None;
    let mut text: Vec<u8> = Vec::new();
    let mut raw: Vec<(&[u8], &[u8])> = Vec::new();
    for f in Fields::new(kernel) {
        let (k, v) = match f {
            // `text=job-7: activity start`: the field's value and the words after it.
            Field::Pair(b"text", v) => {
                if !matches!(v, Value::Absent(_)) {
                    add_word(&mut text, v.bytes());
                }
                continue;
            }
            Field::Pair(k, v) if RESERVED.contains(&k) => {
                raw.push((k, v.bytes()));
                continue;
            }
            Field::Pair(k, v) => (k, v),
            Field::Text(w) => {
                add_word(&mut text, w);
                continue;
            }
        };
        match (rtype, k) {
            (SYSCALL, b"a0" | b"a1" | b"a2" | b"a3") => {
                args.push(v.bytes());
                continue;
            }
            (PROCTITLE, b"proctitle") => {
                let (argv, cut) = decode::proctitle_argv(v, ARGV_LIMIT);
                if obj.key(b"ARGV") {
                    write_argv(obj.out, &argv);
                }
                if cut {
                    obj.raw(b"ARGV_TRUNCATED", b"true");
                }
                continue;
            }
            _ => {}
        }
        let (kind, id) = fields::lookup(rtype, k);
        if let Some(r) = obj.value(e, rtype, k, kind, v) {
            raw.push((k, r));
        }
        let b = v.bytes();
        match (rtype, k) {
            (SYSCALL, b"arch") => {
                arch = std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| u32::from_str_radix(s, 16).ok())
                    .and_then(Arch::from_audit_arch);
                if let Some(a) = arch {
                    obj.string(b"ARCH", a.name().as_bytes());
                }
            }
            (SYSCALL, b"syscall") => {
                let name = std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .and_then(|nr| arch.and_then(|a| a.syscall_name(nr)));
                if let Some(n) = name {
                    obj.string(b"SYSCALL", n.as_bytes());
                }
            }
            (SYSCALL, b"exit") => {
                let errno = std::str::from_utf8(b)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .filter(|&n| (-4095..0).contains(&n))
                    .and_then(|n| {
                        pauditd_engine::syscall_table::ERRNO
                            .iter()
                            .find(|(_, v)| i64::from(*v) == -n)
                            .map(|(name, _)| *name)
                    });
                if let Some(name) = errno {
                    obj.string(b"EXIT", name.as_bytes());
                }
            }
            (SOCKADDR, b"saddr") => {
                if let Some(sa) = decode::hex(b).and_then(|h| decode::sockaddr(&h, little_endian)) {
                    // A record holds one address; a repeated saddr keeps the first.
                    if obj.key(b"SADDR") {
                        let mut inner = obj.nested();
                        write_sockaddr(&mut inner, &sa);
                        inner.close();
                    }
                }
            }
            _ => obj.translate(e, id, k, v),
        }
    }
    if !args.is_empty() && obj.key(b"ARGV") {
        obj.out.push(b'[');
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                obj.out.push(b',');
            }
            // `ausearch -i` logs already write `0x1fd05c0`.
            let mut s = b"0x".to_vec();
            s.extend_from_slice(a.strip_prefix(b"0x").unwrap_or(a));
            write_text(obj.out, &s);
        }
        obj.out.push(b']');
    }
    if !text.is_empty() {
        obj.string(b"text", &text);
    }
    obj.raw_values(&raw);
    if let Some(extra) = enriched {
        obj.translations(e, rtype, extra);
    }
    obj.close();
}

/// The user name of `uid` (from the event's uid map, or the names of `id=` values);
/// `unset` for 4294967295 (and -1).
fn uid_name<'e>(e: &'e Event, uid: &[u8]) -> Option<&'e [u8]> {
    if uid == b"4294967295" || uid == b"-1" {
        return Some(b"unset");
    }
    e.user_name(uid)
}

fn write_argv(out: &mut Vec<u8>, argv: &[Vec<u8>]) {
    out.push(b'[');
    for (i, a) in argv.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_text(out, a);
    }
    out.push(b']');
}

fn write_execve<'a>(
    out: &mut Vec<u8>,
    keys: &mut Vec<u64>,
    records: impl Iterator<Item = &'a [u8]>,
) {
    let mut argv = Argv::default();
    for r in records {
        argv.add_record(split_enriched(r).0, ARGV_LIMIT);
    }
    let mut obj = Object::new(out, keys);
    if let Some(n) = argv.argc {
        obj.raw(b"argc", itoa::Buffer::new().format(n).as_bytes());
    }
    if obj.key(b"ARGV") {
        write_argv(obj.out, &argv.args);
    }
    if argv.truncated {
        obj.raw(b"ARGV_TRUNCATED", b"true");
    }
    obj.close();
}

fn write_sockaddr(obj: &mut Object<'_>, sa: &SockAddr) {
    let mut num = itoa::Buffer::new();
    match sa {
        SockAddr::Inet { addr, port } => {
            obj.string(b"family", b"inet");
            obj.string(b"addr", addr.to_string().as_bytes());
            obj.raw(b"port", num.format(*port).as_bytes());
        }
        SockAddr::Inet6 {
            addr,
            port,
            flowinfo,
            scope_id,
        } => {
            obj.string(b"family", b"inet6");
            obj.string(b"addr", addr.to_string().as_bytes());
            obj.raw(b"port", num.format(*port).as_bytes());
            obj.raw(b"flowinfo", num.format(*flowinfo).as_bytes());
            obj.raw(b"scope_id", num.format(*scope_id).as_bytes());
        }
        SockAddr::Unix { path } => {
            obj.string(b"family", b"unix");
            obj.string(b"path", path);
        }
        SockAddr::Netlink { pid, groups } => {
            obj.string(b"family", b"netlink");
            obj.raw(b"pid", num.format(*pid).as_bytes());
            obj.raw(b"groups", num.format(*groups).as_bytes());
        }
        // The family's number, as a string: `family` is a string whatever the family.
        SockAddr::Other { family, .. } => {
            obj.string(b"family", num.format(*family).as_bytes());
        }
    }
}

/// `"container":{id, runtime, pod_uid, qos}` and `"service"` (the systemd unit), each
/// only when known and trusted; `"untrusted_attribution":{container_id, runtime, service}`
/// for what only a cgroup someone other than root could have made claims.
fn write_attribution(
    out: &mut Vec<u8>,
    keys: &mut Vec<u64>,
    a: &pauditd_engine::container::Attribution,
) {
    if a.container_id.is_some() || a.pod_uid.is_some() {
        out.extend_from_slice(b",\"container\":");
        let mut obj = Object::new(out, keys);
        if let Some(id) = &a.container_id {
            obj.string(b"id", id.as_bytes());
        }
        if let Some(r) = a.runtime {
            obj.string(b"runtime", r.as_bytes());
        }
        if let Some(p) = &a.pod_uid {
            obj.string(b"pod_uid", p.as_bytes());
        }
        if let Some(q) = a.qos {
            obj.string(b"qos", q.as_bytes());
        }
        obj.close();
    }
    if let Some(unit) = &a.unit {
        out.extend_from_slice(b",\"service\":");
        write_text(out, unit.as_bytes());
    }
    if let Some(u) = &a.untrusted {
        // A cgroup a user could have named claims these: said, never taken as the truth.
        out.extend_from_slice(b",\"untrusted_attribution\":");
        let mut obj = Object::new(out, keys);
        if let Some(id) = &u.container_id {
            obj.string(b"container_id", id.as_bytes());
        }
        if let Some(r) = u.runtime {
            obj.string(b"runtime", r.as_bytes());
        }
        if let Some(unit) = &u.unit {
            obj.string(b"service", unit.as_bytes());
        }
        obj.close();
    }
}

/// `{pid, ppid, comm, exe, start_time, exec_event}`, each only when known.
fn write_parent(out: &mut Vec<u8>, keys: &mut Vec<u64>, p: &pauditd_engine::lineage::ProcessInfo) {
    let mut num = itoa::Buffer::new();
    let mut obj = Object::new(out, keys);
    obj.raw(b"pid", num.format(p.pid).as_bytes());
    if let Some(pp) = p.ppid {
        obj.raw(b"ppid", num.format(pp).as_bytes());
    }
    if let Some(c) = &p.comm {
        obj.string(b"comm", c.as_bytes());
    }
    if let Some(x) = &p.exe {
        obj.string(b"exe", x.as_bytes());
    }
    obj.raw(b"start_time", num.format(p.start_time).as_bytes());
    if let Some(s) = p.exec_event {
        obj.raw(b"exec_event", num.format(s).as_bytes());
    }
    obj.close();
}

#[cfg(test)]
mod tests;
