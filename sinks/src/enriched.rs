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

use pauditd_engine::arch::Arch;
use pauditd_engine::decode::{self, Argv, SockAddr};
use pauditd_engine::record::{split_enriched, Field, Fields, Value};
use pauditd_engine::{types, Event};

use crate::json::write_str;

pub mod fields;
use fields::{Id, Kind};

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

/// Bytes written as they are: printable ASCII but `"`, `\\` and `%`.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0x20;
    while i < 0x7f {
        t[i] = i != b'"' as usize && i != b'\\' as usize && i != b'%' as usize;
        i += 1;
    }
    t
};

/// Whether all eight bytes of `x` are [`PLAIN`] (no false positives: a word it refuses is
/// looked at byte by byte).
#[inline]
fn plain_word(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0;
    x & HIGH == 0
        && !below_space
        && !has_zero(x ^ (ONES * u64::from(b'"')))
        && !has_zero(x ^ (ONES * u64::from(b'\\')))
        && !has_zero(x ^ (ONES * u64::from(b'%')))
        && !has_zero(x ^ (ONES * 0x7f))
}

/// Text that may not be UTF-8, as a JSON string, in one pass: valid UTF-8 as it is (JSON
/// escapes for quotes, backslashes and control bytes), `%` as `%25`, every byte of an invalid
/// sequence as `%XX` (the same as `decode::escape`, so `decode::unescape` undoes it).
fn write_text(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        // Eight plain bytes at a time: most text is plain ASCII.
        if let Some(w) = s.get(i..i + 8) {
            if plain_word(u64::from_le_bytes(w.try_into().expect("eight bytes"))) {
                i += 8;
                continue;
            }
        }
        let b = s[i];
        if PLAIN[b as usize] {
            i += 1;
            continue;
        }
        if b >= 0x80 {
            if let Some(n) = crate::json::utf8_char_len(&s[i..]) {
                i += n;
                continue;
            }
        }
        out.extend_from_slice(&s[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=0x1f | 0x7f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
            _ => out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]),
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// One JSON object being written, refusing a key twice (the ENRICHED part repeats ours).
/// Keys are remembered by hash in a stack shared with nested objects (no allocation once it
/// has grown).
struct Object<'o> {
    out: &'o mut Vec<u8>,
    keys: &'o mut Vec<u64>,
    /// This object's keys are `keys[start..]`.
    start: usize,
    /// One bit per key hash's top 6 bits: most new keys are told apart without a scan.
    seen: u64,
}

/// A key's hash for duplicate checks within one object (Fx-style, eight bytes at a time:
/// keys are short; equal hashes of different keys are as unlikely as with FxHasher).
#[inline]
fn key_hash(k: &[u8]) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mut h = k.len() as u64;
    let mut chunks = k.chunks_exact(8);
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

/// Bytes a key may hold to be written as it is: the kernel's keys (`[a-z0-9_-]`) and the
/// ENRICHED part's upper-case ones.
const KEY_PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        i += 1;
    }
    t
};

impl<'o> Object<'o> {
    fn new(out: &'o mut Vec<u8>, keys: &'o mut Vec<u64>) -> Self {
        out.push(b'{');
        let start = keys.len();
        Object {
            out,
            keys,
            start,
            seen: 0,
        }
    }

    /// An object nested in this one (its value being written).
    fn nested(&mut self) -> Object<'_> {
        Object::new(self.out, self.keys)
    }

    /// Start `key`'s value; false if the key was written already (skip the value).
    #[must_use]
    fn key(&mut self, key: &[u8]) -> bool {
        let h = key_hash(key);
        // The hash's top bits are its best mixed.
        let bit = 1u64 << (h >> 58);
        if self.seen & bit != 0 && self.keys[self.start..].contains(&h) {
            return false;
        }
        self.seen |= bit;
        if self.keys.len() > self.start {
            self.out.push(b',');
        }
        self.keys.push(h);
        if key.iter().all(|&b| KEY_PLAIN[b as usize]) {
            self.out.reserve(key.len() + 3);
            self.out.push(b'"');
            self.out.extend_from_slice(key);
            self.out.extend_from_slice(b"\":");
        } else {
            write_text(self.out, key);
            self.out.push(b':');
        }
        true
    }

    fn string(&mut self, key: &[u8], v: &[u8]) {
        if self.key(key) {
            write_text(self.out, v);
        }
    }

    fn raw(&mut self, key: &[u8], json: &[u8]) {
        if self.key(key) {
            self.out.extend_from_slice(json);
        }
    }

    /// `key`'s value as the field table types it in a record of type `rtype`; the value's
    /// text when it is not of its field's type (the field is then null; the caller keeps the
    /// text under `RAW`).
    fn value<'v>(
        &mut self,
        e: &Event,
        rtype: u16,
        key: &[u8],
        kind: Kind,
        v: Value<'v>,
    ) -> Option<&'v [u8]> {
        if !self.key(key) {
            return None;
        }
        if key == b"msg" && kind != Kind::Escaped {
            // A user-space record's message: always an object (its fields, its words under
            // `text`).
            match v {
                Value::Absent(_) => self.out.extend_from_slice(b"null"),
                Value::Nested(b) => {
                    let mut inner = self.nested();
                    inner.fields(e, rtype, b);
                    inner.close();
                }
                Value::Quoted(b) | Value::Bare(b) => {
                    let mut inner = self.nested();
                    inner.string(b"text", b);
                    inner.close();
                }
            }
            return None;
        }
        match (kind, v) {
            (_, Value::Absent(_)) => self.out.extend_from_slice(b"null"),
            (Kind::Int, v) => match fields::integer(v.bytes()) {
                Some(n) => self.out.extend_from_slice(n),
                None => {
                    self.out.extend_from_slice(b"null");
                    return Some(v.bytes());
                }
            },
            (Kind::Escaped, Value::Bare(b)) => DECODED.with(|d| {
                let mut d = d.borrow_mut();
                d.clear();
                if decode::hex_into(b, &mut d) {
                    write_text(self.out, &d);
                } else {
                    write_text(self.out, b);
                }
            }),
            (_, v) => write_text(self.out, v.bytes()),
        }
        None
    }

    /// The translation of id field `key` (its user or group name, under `KEY`), if known.
    fn translate(&mut self, e: &Event, id: Option<Id>, key: &[u8], v: Value<'_>) {
        let name = match id {
            Some(Id::User) => uid_name(e, v.bytes()),
            Some(Id::Group) => e.group_name(v.bytes()),
            None => None,
        };
        if let Some(name) = name {
            // Upper-cased on the stack: id keys are short.
            let mut buf = [0u8; 32];
            match buf.get_mut(..key.len()) {
                Some(b) => {
                    b.copy_from_slice(key);
                    b.make_ascii_uppercase();
                    self.string(b, name);
                }
                None => self.string(&key.to_ascii_uppercase(), name),
            }
        }
    }

    /// Every field of a user-space record's message (of a record of type `rtype`), with the
    /// translations of its ids; words without `=` (and a `text=` field's value) gathered
    /// under `text`; values not of their field's type under `RAW`.
    fn fields(&mut self, e: &Event, rtype: u16, data: &[u8]) {
        let mut text: Vec<u8> = Vec::new();
        let mut raw: Vec<(&[u8], &[u8])> = Vec::new();
        for f in Fields::new(data) {
            match f {
                // `text=?` adds nothing: `text` is always a string.
                Field::Pair(b"text", Value::Absent(_)) => {}
                Field::Pair(b"text", v) => add_word(&mut text, v.bytes()),
                Field::Pair(k, v) if RESERVED.contains(&k) => raw.push((k, v.bytes())),
                Field::Pair(k, v) => {
                    let (kind, id) = fields::lookup(rtype, k);
                    if let Some(r) = self.value(e, rtype, k, kind, v) {
                        raw.push((k, r));
                    }
                    self.translate(e, id, k, v);
                }
                Field::Text(w) => add_word(&mut text, w),
            }
        }
        if !text.is_empty() {
            self.string(b"text", &text);
        }
        self.raw_values(&raw);
    }

    /// auditd's ENRICHED part: its translations (upper-case keys), strings; keys already
    /// written (ours) are skipped, and a key of ours (`SADDR`, `ARGV`...) is never taken by
    /// one of its values (`SADDR={ saddr_fam=inet ... }` is a string, ours an object). A
    /// lower-case field there is typed as in the kernel's part.
    fn translations(&mut self, e: &Event, rtype: u16, data: &[u8]) {
        let mut text: Vec<u8> = Vec::new();
        for f in Fields::new(data) {
            match f {
                Field::Pair(k, _) if RESERVED.contains(&k) || k == b"text" => {}
                Field::Pair(k, Value::Absent(_)) => self.raw(k, b"null"),
                Field::Pair(k, v) if fields::kind(rtype, k) == Kind::Int => {
                    // Not of its type: left out (the kernel's part has the field itself).
                    let _ = self.value(e, rtype, k, Kind::Int, v);
                }
                Field::Pair(k, v) => self.string(k, v.bytes()),
                Field::Text(w) => add_word(&mut text, w),
            }
        }
        if !text.is_empty() {
            self.string(b"text", &text);
        }
    }

    /// `"RAW":{field: text}` for values that are not of their field's type.
    fn raw_values(&mut self, raw: &[(&[u8], &[u8])]) {
        if raw.is_empty() || !self.key(b"RAW") {
            return;
        }
        let mut inner = self.nested();
        for (k, v) in raw {
            inner.string(k, v);
        }
        inner.close();
    }

    fn close(self) {
        self.out.push(b'}');
        self.keys.truncate(self.start);
    }
}

/// `w` appended to free text, a space between words.
fn add_word(text: &mut Vec<u8>, w: &[u8]) {
    if !text.is_empty() {
        text.push(b' ');
    }
    text.extend_from_slice(w);
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

/// `SECONDS.MILLIS` as RFC 3339 in UTC (`2021-03-07T10:50:32.375Z`).
pub fn rfc3339(ts: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(32);
    write_rfc3339(&mut out, ts)?;
    String::from_utf8(out).ok()
}

/// [`rfc3339`] appended to `out` (nothing written when `ts` is not `SECONDS[.DIGITS]`).
pub fn write_rfc3339(out: &mut Vec<u8>, ts: &[u8]) -> Option<()> {
    let (secs, frac) = match ts.iter().position(|b| *b == b'.') {
        Some(dot) => (&ts[..dot], &ts[dot + 1..]),
        None => (ts, &b""[..]),
    };
    let secs: i64 = std::str::from_utf8(secs).ok()?.parse().ok()?;
    if !frac.iter().all(u8::is_ascii_digit) || frac.len() > 9 {
        return None;
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    if !(0..=9999).contains(&y) {
        return None;
    }
    let two = |out: &mut Vec<u8>, v: i64| {
        out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8])
    };
    two(out, y / 100);
    two(out, y % 100);
    out.push(b'-');
    two(out, m);
    out.push(b'-');
    two(out, d);
    out.push(b'T');
    two(out, rem / 3600);
    out.push(b':');
    two(out, rem % 3600 / 60);
    out.push(b':');
    two(out, rem % 60);
    if !frac.is_empty() {
        out.push(b'.');
        out.extend_from_slice(frac);
    }
    out.push(b'Z');
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_word_agrees_with_the_byte_table() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut w = *b"abcdefgh";
                w[pos] = b;
                let plain = w.iter().all(|&c| PLAIN[c as usize]);
                assert_eq!(
                    plain_word(u64::from_le_bytes(w)),
                    plain,
                    "byte {b:#x} at {pos}"
                );
            }
        }
    }

    fn encode(records: &[(u16, &[u8])]) -> serde_json::Value {
        let mut e = Event::new(7, b"1700000000.000");
        for (t, d) in records {
            e.push_message(*t, d);
        }
        e.finish();
        let mut out = Vec::new();
        encode_event(&e, &mut out);
        serde_json::from_slice(&out).unwrap_or_else(|err| panic!("{err}: {out:?}"))
    }

    #[test]
    fn a_key_repeated_in_a_record_is_written_once_and_the_json_stays_valid() {
        // Found by the fuzzer: two addresses in one record wrote two SADDR values.
        let v = encode(&[(
            SOCKADDR,
            b"saddr=020000167F000001 saddr=01002F746D7000 x=1 x=2\x1dX=\"a\" x=\"3\"",
        )]);
        let r = &v["records"]["SOCKADDR"];
        assert_eq!(r["SADDR"]["addr"], "127.0.0.1");
        assert_eq!(r["x"], "1", "an unknown field is a string");
        assert_eq!(r["X"], "a");
        let p = encode(&[(PROCTITLE, b"proctitle=6C73 proctitle=7077 ARGV=x")]);
        assert_eq!(p["records"]["PROCTITLE"]["ARGV"], serde_json::json!(["ls"]));
    }

    #[test]
    fn each_field_keeps_one_type_and_text_keeps_its_words() {
        let v = encode(&[(
            SYSCALL,
            b"arch=40000003 syscall=11 per=400000 auid=vagrant uid=0 n=7 text=? a0=0x1f",
        )]);
        let r = &v["records"]["SYSCALL"];
        assert_eq!(r["arch"], "40000003");
        assert_eq!(r["per"], "400000");
        assert_eq!(r["syscall"], 11);
        assert_eq!(r["n"], "7");
        assert!(r["auid"].is_null());
        assert_eq!(r["RAW"], serde_json::json!({"auid": "vagrant"}));
        assert!(r.get("text").is_none(), "text=? adds no text");
        assert_eq!(r["ARGV"], serde_json::json!(["0x1f"]));
        let v = encode(&[(
            1114,
            b"pid=1 uid=0 msg='op=add-user id=1002 text=job-7: activity start RAW=x res=success'",
        )]);
        let m = &v["records"]["ADD_USER"]["msg"];
        assert_eq!(m["id"], 1002, "a user id, not hex");
        assert_eq!(m["text"], "job-7: activity start");
        assert_eq!(m["RAW"], serde_json::json!({"RAW": "x"}));
        let v = encode(&[(SOCKADDR, b"saddr=1100\x1dSADDR={ saddr_fam=17 } text=x")]);
        assert_eq!(v["records"]["SOCKADDR"]["SADDR"]["family"], "17");
    }

    #[test]
    fn time_is_rfc3339_utc() {
        assert_eq!(
            rfc3339(b"1615114232.375").as_deref(),
            Some("2021-03-07T10:50:32.375Z")
        );
        assert_eq!(
            rfc3339(b"0.000").as_deref(),
            Some("1970-01-01T00:00:00.000Z")
        );
        assert_eq!(
            rfc3339(b"951782400.5").as_deref(),
            Some("2000-02-29T00:00:00.5Z")
        );
        assert_eq!(rfc3339(b"x.1"), None);
    }
}
