//! One record's fields as go-libaudit's `auparse` reads them, for the `ecs` format.
//!
//! Owns the reading auditbeat's documents are built from, reproduced rule for rule so that
//! an `ecs` event agrees with auditbeat's on the same records: the key=value scan (keys of
//! `[a-z0-9_-]`, values bare or quoted, `msg='...'` opened), the values dropped (`""`, `?`,
//! `?,`, `(null)`), and the enrichment (unset ids, SELinux contexts split, `success`/`res`
//! -> `result`, errno names, rule keys -> tags, upper-case hex decoded, arch and syscall
//! names, sockaddr, EXECVE arguments). A record it cannot read (a SYSCALL without `arch`,
//! an EXECVE without `argc`, ...) yields an error, as auparse's `Data()` does; the caller
//! reports it. It must never be used by the enriched or pauditd formats, which read records
//! their own (lossless) way.

use std::borrow::Cow;

use pauditd_engine::arch::Arch;
use pauditd_engine::record::split_enriched;
use pauditd_engine::syscall_table::ERRNO;

pub type Text<'a> = Cow<'a, [u8]>;

pub use pauditd_engine::types::{EOE, EXECVE, PATH, PROCTITLE, SOCKADDR, SYSCALL, TTY};
// Types only go-libaudit's reading treats specially.
const LOGIN: u16 = 1006;
const CRED_DISP: u16 = 1104;
const USER_START: u16 = 1105;
const USER_END: u16 = 1106;
const USER_LOGIN: u16 = 1112;
const USER_CMD: u16 = 1123;
const USER_TTY: u16 = 1124;
const SECCOMP: u16 = 1326;
const AVC: u16 = 1400;

/// A one-bit-of-64 summary of a key: if a key's bit is not in a map's `seen`, the key is not
/// in the map (records hold ~25 fields, so this spares most linear searches for duplicates).
fn key_bit(k: &[u8]) -> u64 {
    let h = k.len() as u32
        ^ (u32::from(k.first().copied().unwrap_or(0)) << 1)
        ^ (u32::from(k.last().copied().unwrap_or(0)) << 3);
    1 << (h.wrapping_mul(0x9E37_79B9) >> 26)
}

/// Key/value pairs in first-seen order; a key occurs once (a later value replaces it).
#[derive(Debug, Default, Clone)]
pub struct Kv<'a> {
    pairs: Vec<(Text<'a>, Text<'a>)>,
    /// Bits of every key in `pairs` ([`key_bit`]); may hold bits of removed keys.
    seen: u64,
}

impl<'a> Kv<'a> {
    pub fn with_capacity(n: usize) -> Self {
        Kv {
            pairs: Vec::with_capacity(n),
            seen: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn get(&self, k: &[u8]) -> Option<&[u8]> {
        if self.seen & key_bit(k) == 0 {
            return None;
        }
        self.pairs
            .iter()
            .find(|(key, _)| key.as_ref() == k)
            .map(|(_, v)| v.as_ref())
    }

    /// The value itself (a borrowed value is shared, not copied).
    pub fn get_text(&self, k: &[u8]) -> Option<Text<'a>> {
        if self.seen & key_bit(k) == 0 {
            return None;
        }
        self.pairs
            .iter()
            .find(|(key, _)| key.as_ref() == k)
            .map(|(_, v)| v.clone())
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        self.get(k).is_some()
    }

    pub fn set(&mut self, k: Text<'a>, v: Text<'a>) {
        let bit = key_bit(&k);
        if self.seen & bit != 0 {
            if let Some(slot) = self.pairs.iter_mut().find(|(key, _)| *key == k) {
                slot.1 = v;
                return;
            }
        }
        self.seen |= bit;
        self.pairs.push((k, v));
    }

    pub fn remove(&mut self, k: &[u8]) -> Option<Text<'a>> {
        if self.seen & key_bit(k) == 0 {
            return None;
        }
        let i = self.pairs.iter().position(|(key, _)| key.as_ref() == k)?;
        Some(self.pairs.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// Keys and values themselves (borrowed ones shared, not copied).
    pub fn iter_text(&self) -> impl Iterator<Item = (Text<'a>, Text<'a>)> + '_ {
        self.pairs.iter().cloned()
    }

    pub fn into_pairs(self) -> Vec<(Text<'a>, Text<'a>)> {
        self.pairs
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// A record read as auparse reads it.
#[derive(Debug)]
pub struct Message<'a> {
    pub rtype: u16,
    /// The enriched fields, or why the record could not be read.
    pub data: Result<Kv<'a>, String>,
    /// The rule keys (`key=`), split.
    pub tags: Vec<Text<'a>>,
}

/// A field while it is enriched: the value as written (quotes included) beside its value.
struct Field<'a> {
    key: Text<'a>,
    orig: Text<'a>,
    value: Text<'a>,
}

#[derive(Default)]
struct FieldMap<'a> {
    fields: Vec<Field<'a>>,
    /// Bits of every key in `fields` ([`key_bit`]).
    seen: u64,
}

impl<'a> FieldMap<'a> {
    fn find(&self, k: &[u8]) -> Option<&Field<'a>> {
        if self.seen & key_bit(k) == 0 {
            return None;
        }
        self.fields.iter().find(|f| f.key.as_ref() == k)
    }

    fn add(&mut self, key: Text<'a>, orig: Text<'a>, value: Text<'a>) {
        let bit = key_bit(&key);
        if self.seen & bit != 0 {
            if let Some(f) = self.fields.iter_mut().find(|f| f.key == key) {
                f.orig = orig;
                f.value = value;
                return;
            }
        }
        self.seen |= bit;
        self.fields.push(Field { key, orig, value });
    }

    fn add_derived(&mut self, key: Text<'a>, value: Text<'a>) {
        self.add(key, value.clone(), value);
    }

    fn set_value(&mut self, k: &[u8], value: Text<'a>) {
        if let Some(f) = self.fields.iter_mut().find(|f| f.key.as_ref() == k) {
            f.value = value;
        }
    }

    fn delete(&mut self, k: &[u8]) -> Option<Field<'a>> {
        if self.seen & key_bit(k) == 0 {
            return None;
        }
        let i = self.fields.iter().position(|f| f.key.as_ref() == k)?;
        Some(self.fields.remove(i))
    }
}

/// Read one record (`data` as the kernel sent it: `audit(...): fields`).
pub fn parse(rtype: u16, data: &[u8]) -> Message<'_> {
    let (data, _) = split_enriched(data);
    let msg = normalize_message(rtype, trim_space(data));
    // A SYSCALL record holds ~25 fields: room for them at once, not by doubling.
    let mut fields = FieldMap {
        fields: Vec::with_capacity(32),
        seen: 0,
    };
    match msg {
        Cow::Borrowed(m) => extract(m, &mut fields),
        Cow::Owned(m) => {
            // The rewritten message is owned: its fields must own their bytes too.
            let mut owned = FieldMap::default();
            extract(&m, &mut owned);
            for f in owned.fields {
                fields.add(
                    Cow::Owned(f.key.into_owned()),
                    Cow::Owned(f.orig.into_owned()),
                    Cow::Owned(f.value.into_owned()),
                );
            }
        }
    }
    let mut tags = Vec::new();
    let data = enrich(rtype, &mut fields, &mut tags).map(|()| Kv {
        pairs: fields
            .fields
            .into_iter()
            .map(|f| (f.key, f.value))
            .collect(),
        seen: fields.seen,
    });
    Message { rtype, data, tags }
}

fn trim_space(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// auparse's rewrites of messages that are not key=value as written.
fn normalize_message(rtype: u16, msg: &[u8]) -> Cow<'_, [u8]> {
    match rtype {
        AVC => match selinux_avc(msg) {
            Some((result, perms, rest)) => {
                let perms: Vec<&[u8]> = perms
                    .split(|b| is_space(*b))
                    .filter(|p| !p.is_empty())
                    .collect();
                let mut m = b"seresult=".to_vec();
                m.extend_from_slice(result);
                m.extend_from_slice(b" seperms=");
                m.extend_from_slice(&perms.join(&b','));
                m.push(b' ');
                m.extend_from_slice(rest);
                Cow::Owned(m)
            }
            None => Cow::Borrowed(msg),
        },
        LOGIN => {
            let m = replace_n(msg, b"old ", b"old_", 2);
            Cow::Owned(replace_n(&m, b"new ", b"new_", 2))
        }
        CRED_DISP | USER_START | USER_END => {
            let m = replace_n(msg, b" (hostname=", b" hostname=", 2);
            let end = m
                .iter()
                .rposition(|b| *b != b')' && *b != b'\'')
                .map_or(0, |i| i + 1);
            Cow::Owned(m[..end].to_vec())
        }
        _ => Cow::Borrowed(msg),
    }
}

fn replace_n(s: &[u8], from: &[u8], to: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let (mut i, mut done) = (0, 0);
    while i < s.len() {
        if done < n && s[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            done += 1;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// `avc:\s+(\w+)\s+\{\s*(.*)\s*\}\s+for\s+`: the result, the permissions, and what follows.
fn selinux_avc(m: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut from = 0;
    while let Some(p) = find(&m[from..], b"avc:") {
        let start = from + p;
        if let Some(r) = avc_at(m, start + 4) {
            return Some(r);
        }
        from = start + 1;
    }
    None
}

fn avc_at(m: &[u8], mut i: usize) -> Option<(&[u8], &[u8], &[u8])> {
    let spaces = |i: &mut usize| {
        let s = *i;
        while *i < m.len() && is_space(m[*i]) {
            *i += 1;
        }
        *i - s
    };
    if spaces(&mut i) == 0 {
        return None;
    }
    let w = i;
    while i < m.len() && (m[i].is_ascii_alphanumeric() || m[i] == b'_') {
        i += 1;
    }
    let result = &m[w..i];
    if result.is_empty() || spaces(&mut i) == 0 || m.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    spaces(&mut i);
    let perms_start = i;
    // `.*` is greedy and stops at a newline: the last `}\s+for\s+` on the line wins.
    let line_end = m[i..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(m.len(), |p| i + p);
    let mut best = None;
    for close in (perms_start..line_end).rev() {
        if m[close] != b'}' {
            continue;
        }
        let mut j = close + 1;
        if spaces(&mut j) == 0 || !m[j..].starts_with(b"for") {
            continue;
        }
        j += 3;
        if spaces(&mut j) == 0 {
            continue;
        }
        best = Some((close, j));
        break;
    }
    let (close, end) = best?;
    Some((result, &m[perms_start..close], &m[end..]))
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    memchr::memmem::find(h, n)
}

/// RE2's `\s`.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// `[a-z0-9_-]`, the bytes of a key.
const KEY: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-';
        i += 1;
    }
    t
};

#[inline]
fn is_key(b: u8) -> bool {
    KEY[b as usize]
}

/// `([a-z0-9_-]+)=((?:[^"'\s]+)|'(?:\\'|[^'])*'|"(?:\\"|[^"])*")`, every match left to right.
fn extract<'a>(msg: &'a [u8], out: &mut FieldMap<'a>) {
    let mut i = 0;
    while i < msg.len() {
        if !is_key(msg[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let mut j = i;
        while j < msg.len() && is_key(msg[j]) {
            j += 1;
        }
        // Every start inside this run ends at the same place: skip the run.
        if msg.get(j) != Some(&b'=') {
            i = j;
            continue;
        }
        let Some(end) = value_end(msg, j + 1) else {
            i = j + 1;
            continue;
        };
        let key = &msg[start..j];
        let orig = &msg[j + 1..end];
        let value = trim_quotes(orig);
        i = end;
        if matches!(value, b"" | b"?" | b"?," | b"(null)") {
            continue;
        }
        if key == b"msg" {
            extract(value, out);
            continue;
        }
        out.add(
            Cow::Borrowed(key),
            Cow::Borrowed(orig),
            Cow::Borrowed(value),
        );
    }
}

fn value_end(m: &[u8], v: usize) -> Option<usize> {
    let c = *m.get(v)?;
    if c == b'\'' || c == b'"' {
        let mut k = v + 1;
        let mut last_escaped = None;
        while k < m.len() {
            if m[k] == b'\\' && m.get(k + 1) == Some(&c) {
                last_escaped = Some(k + 1);
                k += 2;
            } else if m[k] == c {
                return Some(k + 1);
            } else {
                k += 1;
            }
        }
        // No closing quote: backtracking ends the match at the last escaped one, if any.
        return last_escaped.map(|q| q + 1);
    }
    if is_space(c) {
        return None;
    }
    let len = m[v..]
        .iter()
        .position(|b| *b == b'"' || *b == b'\'' || is_space(*b))
        .unwrap_or(m.len() - v);
    Some(v + len)
}

fn trim_quotes(v: &[u8]) -> &[u8] {
    let t = |b: &u8| matches!(*b, b'\'' | b'"' | b' ');
    let s = v.iter().position(|b| !t(b)).unwrap_or(v.len());
    let e = v.iter().rposition(|b| !t(b)).map_or(s, |i| i + 1);
    &v[s..e.max(s)]
}

/// Upper-case hex only (auparse's `decodeUppercaseHexString`).
pub fn upper_hex(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 == 1 {
        return None;
    }
    let n = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    s.chunks_exact(2)
        .map(|p| Some(n(p[0])? << 4 | n(p[1])?))
        .collect()
}

fn enrich<'a>(rtype: u16, fm: &mut FieldMap<'a>, tags: &mut Vec<Text<'a>>) -> Result<(), String> {
    for k in [&b"auid"[..], b"old-auid", b"ses"] {
        if matches!(
            fm.find(k).map(|f| f.value.as_ref()),
            Some(b"4294967295" | b"-1")
        ) {
            fm.set_value(k, Cow::Borrowed(b"unset"));
        }
    }
    selinux_context(fm, b"subj");
    result(fm);
    exit(fm);
    rule_key(fm, tags);
    let _ = hex_decode(fm, b"cwd");
    match rtype {
        SECCOMP | SYSCALL => {
            if rtype == SECCOMP {
                signal_name(fm)?;
            }
            arch(fm)?;
            syscall_name(fm)?;
            hex_decode(fm, b"exe")?;
        }
        SOCKADDR => saddr(fm)?,
        PROCTITLE => hex_decode(fm, b"proctitle")?,
        USER_CMD => hex_decode(fm, b"cmd")?,
        TTY | USER_TTY => hex_decode(fm, b"data")?,
        EXECVE => execve_args(fm)?,
        PATH => {
            selinux_context(fm, b"obj");
            let _ = hex_decode(fm, b"name");
        }
        USER_LOGIN => {
            let _ = hex_decode(fm, b"acct");
        }
        _ => {}
    }
    Ok(())
}

fn not_found(k: &[u8]) -> String {
    format!("{} key not found", String::from_utf8_lossy(k))
}

fn selinux_context(fm: &mut FieldMap<'_>, key: &[u8]) {
    let Some(f) = fm.delete(key) else { return };
    const PARTS: [&str; 5] = ["_user", "_role", "_domain", "_level", "_category"];
    let value = f.value;
    let mut parts = Vec::with_capacity(5);
    let mut rest: &[u8] = &value;
    for i in 0..PARTS.len() {
        match rest.iter().position(|b| *b == b':') {
            Some(p) if i + 1 < PARTS.len() => {
                parts.push(rest[..p].to_vec());
                rest = &rest[p + 1..];
            }
            _ => {
                parts.push(rest.to_vec());
                break;
            }
        }
    }
    for (suffix, part) in PARTS.iter().zip(parts) {
        let mut k = key.to_vec();
        k.extend_from_slice(suffix.as_bytes());
        fm.add_derived(Cow::Owned(k), Cow::Owned(part));
    }
}

fn result(fm: &mut FieldMap<'_>) {
    let f = match fm.delete(b"success") {
        Some(f) => f,
        None => match fm.delete(b"res") {
            Some(f) => f,
            None => return,
        },
    };
    let v = f.value.as_ref();
    let ok = v.eq_ignore_ascii_case(b"yes")
        || v == b"1"
        || v.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(b"suc"));
    fm.add_derived(
        Cow::Borrowed(b"result"),
        Cow::Borrowed(if ok { b"success" } else { b"fail" }),
    );
}

fn exit(fm: &mut FieldMap<'_>) {
    let Some(code) = fm
        .find(b"exit")
        .and_then(|f| std::str::from_utf8(&f.value).ok()?.parse::<i64>().ok())
    else {
        return;
    };
    if code >= 0 {
        return;
    }
    if let Some((name, _)) = ERRNO.iter().find(|(_, n)| i64::from(*n) == -code) {
        fm.set_value(b"exit", Cow::Borrowed(name.as_bytes()));
    }
}

fn rule_key<'a>(fm: &mut FieldMap<'a>, tags: &mut Vec<Text<'a>>) {
    let Some(f) = fm.delete(b"key") else { return };
    if let Some(decoded) = upper_hex(&f.orig) {
        tags.extend(
            decoded
                .split(|b| *b == 0x01)
                .map(|t| Cow::Owned(t.to_vec())),
        );
        return;
    }
    let tag = match f.value.iter().position(|b| *b == b'=') {
        None => f.value,
        Some(p) => match f.value {
            Cow::Borrowed(v) => Cow::Borrowed(&v[p + 1..]),
            Cow::Owned(v) => Cow::Owned(v[p + 1..].to_vec()),
        },
    };
    tags.push(tag);
}

/// Replace a field by its decoded hex (NULs become spaces); a missing key is an error, a
/// value that is not hex is left as it is.
fn hex_decode(fm: &mut FieldMap<'_>, key: &[u8]) -> Result<(), String> {
    let f = fm.find(key).ok_or_else(|| not_found(key))?;
    if let Some(mut d) = upper_hex(&f.orig) {
        for b in d.iter_mut() {
            if *b == 0 {
                *b = b' ';
            }
        }
        fm.set_value(key, Cow::Owned(d));
    }
    Ok(())
}

/// The text of `h` decoded up to its first NUL (auparse's `hexToString`).
fn hex_string(h: &[u8]) -> Option<Vec<u8>> {
    let mut d = upper_hex(h)?;
    if let Some(n) = d.iter().position(|b| *b == 0) {
        d.truncate(n);
    }
    Some(d)
}

fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn arch_value(fm: &FieldMap<'_>) -> Option<u32> {
    let f = fm.find(b"arch")?;
    // Names were set from a number: go back to it through the table.
    std::str::from_utf8(&f.orig)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
}

/// go-libaudit's names for the `AUDIT_ARCH_*` values.
pub fn arch_name(v: u32) -> Cow<'static, str> {
    match Arch::from_audit_arch(v) {
        // audit-userspace calls little-endian ARM "armeb"; go-libaudit calls it "arm".
        Some(Arch::Arm) => Cow::Borrowed("arm"),
        Some(a) => Cow::Borrowed(a.name()),
        None => match v {
            0x4000_0028 => Cow::Borrowed("arm"),
            0x0000_0028 => Cow::Borrowed("armeb"),
            0x0000_0016 => Cow::Borrowed("s390"),
            0x0000_0002 => Cow::Borrowed("sparc"),
            0x8000_002b => Cow::Borrowed("sparc64"),
            0xc000_0032 => Cow::Borrowed("ia64"),
            0x0000_0008 => Cow::Borrowed("mips"),
            0x4000_0008 => Cow::Borrowed("mipsel"),
            0x8000_0008 => Cow::Borrowed("mips64"),
            0xc000_0008 => Cow::Borrowed("mipsel64"),
            0x4000_00f3 => Cow::Borrowed("riscv32"),
            0xc000_0102 => Cow::Borrowed("loongarch64"),
            _ => Cow::Owned(format!("unknown[{v:x}]")),
        },
    }
}

fn arch(fm: &mut FieldMap<'_>) -> Result<(), String> {
    let f = fm.find(b"arch").ok_or_else(|| not_found(b"arch"))?;
    let v = std::str::from_utf8(&f.value)
        .ok()
        .and_then(|s| i64::from_str_radix(s, 16).ok())
        .ok_or_else(|| "failed to parse arch".to_string())?;
    let name = arch_name(v as u32);
    fm.set_value(b"arch", Cow::Owned(name.into_owned().into_bytes()));
    Ok(())
}

fn syscall_name(fm: &mut FieldMap<'_>) -> Result<(), String> {
    let f = fm.find(b"syscall").ok_or_else(|| not_found(b"syscall"))?;
    let nr: i64 = parse_num(&f.value).ok_or_else(|| "failed to parse syscall".to_string())?;
    let arch = arch_value(fm).and_then(Arch::from_audit_arch);
    if let Some(name) = arch.and_then(|a| a.syscall_name(u32::try_from(nr).ok()?)) {
        fm.set_value(b"syscall", Cow::Borrowed(name.as_bytes()));
    }
    Ok(())
}

fn signal_name(fm: &mut FieldMap<'_>) -> Result<(), String> {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    let f = fm.find(b"sig").ok_or_else(|| not_found(b"sig"))?;
    let n: i64 = parse_num(&f.value).ok_or_else(|| "failed to parse sig".to_string())?;
    if let Some(name) = usize::try_from(n - 1).ok().and_then(|i| NAMES.get(i)) {
        fm.set_value(b"sig", Cow::Borrowed(name.as_bytes()));
    }
    Ok(())
}

fn saddr(fm: &mut FieldMap<'_>) -> Result<(), String> {
    let f = fm.find(b"saddr").ok_or_else(|| not_found(b"saddr"))?;
    let s = f.value.clone().into_owned();
    if s.len() < 4 {
        return Err(format!("invalid family: too short: {}", s.len()));
    }
    let hex_num = |h: &[u8]| -> Result<i64, String> {
        std::str::from_utf8(h)
            .ok()
            .and_then(|h| i64::from_str_radix(h, 16).ok())
            .ok_or_else(|| "failed to parse saddr".to_string())
    };
    let mut fam_hex = s[2..4].to_vec();
    fam_hex.extend_from_slice(&s[0..2]);
    let family = hex_num(&fam_hex)?;
    let mut out: Vec<(&'static [u8], Vec<u8>)> = Vec::new();
    match family {
        1 => {
            let path = hex_string(&s[4..]).ok_or("failed to parse saddr")?;
            out.push((b"family", b"unix".to_vec()));
            out.push((b"path", path));
        }
        2 | 10 => {
            let (need, name) = if family == 2 {
                (16, "ipv4")
            } else {
                (48, "ipv6")
            };
            if s.len() < need {
                return Err(format!(
                    "invalid socket address size family={name}: {}",
                    s.len()
                ));
            }
            let port = hex_num(&s[4..8])?;
            let addr = ip_text(&s[if family == 2 { 8..16 } else { 16..48 }])
                .ok_or("failed to parse saddr")?;
            out.push((b"family", name.as_bytes().to_vec()));
            out.push((b"addr", addr.into_bytes()));
            out.push((b"port", port.to_string().into_bytes()));
            if family == 10 {
                let flow = hex_num(&s[8..16])? as i32;
                if flow > 0 {
                    out.push((b"flow", flow.to_string().into_bytes()));
                }
            }
        }
        16 => {
            out.push((b"family", b"netlink".to_vec()));
            out.push((b"saddr", s.clone()));
        }
        f => {
            out.push((b"family", f.to_string().into_bytes()));
            out.push((b"saddr", s.clone()));
        }
    }
    fm.delete(b"saddr");
    for (k, v) in out {
        fm.add_derived(Cow::Borrowed(k), Cow::Owned(v));
    }
    Ok(())
}

/// An address in network byte order, printed as Go's `net.IP` prints it (an IPv4-mapped
/// IPv6 address as IPv4).
fn ip_text(h: &[u8]) -> Option<String> {
    let b = upper_or_lower_hex(h)?;
    Some(match b.len() {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        16 => {
            let a = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b.as_slice()).ok()?);
            match a.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => a.to_string(),
            }
        }
        _ => return None,
    })
}

fn upper_or_lower_hex(h: &[u8]) -> Option<Vec<u8>> {
    pauditd_engine::decode::hex(h)
}

fn execve_args(fm: &mut FieldMap<'_>) -> Result<(), String> {
    let argc = fm.find(b"argc").ok_or_else(|| not_found(b"argc"))?;
    let count: u32 = parse_num(&argc.value).ok_or_else(|| {
        format!(
            "failed to convert argc='{}' to number",
            String::from_utf8_lossy(&argc.value)
        )
    })?;
    let mut key = Vec::with_capacity(8);
    for i in 0..count {
        key.clear();
        key.push(b'a');
        key.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
        let f = fm
            .find(&key)
            .ok_or_else(|| format!("failed to find arg a{i}"))?;
        if let Some(s) = hex_string(&f.orig) {
            fm.set_value(&key, Cow::Owned(s));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rtype: u16, s: &str) -> Vec<(String, String)> {
        let m = parse(rtype, s.as_bytes());
        m.data
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    fn get(d: &[(String, String)], k: &str) -> Option<String> {
        d.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn scan_opens_msg_and_drops_useless_values() {
        let d = data(
            1112,
            "audit(1.2:3): pid=1 uid=0 auid=4294967295 ses=4294967295 msg='op=login acct=\"root\" exe=\"/usr/sbin/sshd\" hostname=? addr=1.2.3.4 terminal=ssh res=failed'",
        );
        assert_eq!(get(&d, "acct").as_deref(), Some("root"));
        assert_eq!(get(&d, "auid").as_deref(), Some("unset"));
        assert_eq!(get(&d, "ses").as_deref(), Some("unset"));
        assert_eq!(get(&d, "hostname"), None);
        assert_eq!(get(&d, "result").as_deref(), Some("fail"));
        assert_eq!(get(&d, "res"), None);
    }

    #[test]
    fn syscall_names_exit_errno_and_tags() {
        let m = parse(
            1300,
            b"audit(1.2:3): arch=c000003e syscall=59 success=no exit=-2 a0=1 ppid=1 pid=2 comm=\"x\" exe=2F62696E2F6C73 subj=u:r:t:s0 key=\"k1\"",
        );
        let d = m.data.unwrap();
        assert_eq!(d.get(b"arch"), Some(&b"x86_64"[..]));
        assert_eq!(d.get(b"syscall"), Some(&b"execve"[..]));
        assert_eq!(d.get(b"exit"), Some(&b"ENOENT"[..]));
        assert_eq!(d.get(b"exe"), Some(&b"/bin/ls"[..]));
        assert_eq!(d.get(b"subj_domain"), Some(&b"t"[..]));
        assert_eq!(m.tags, vec![Cow::Borrowed(&b"k1"[..])]);
        // A hex key holds several tags separated by 0x01.
        let m = parse(
            1300,
            b"audit(1:2): arch=c000003e syscall=1 exe=\"/x\" key=6B31016B32",
        );
        assert_eq!(m.tags.len(), 2);
        assert_eq!(m.tags[1].as_ref(), b"k2");
    }

    #[test]
    fn unreadable_records_are_errors() {
        assert!(parse(1300, b"audit(1:2): syscall=1").data.is_err());
        assert!(parse(1309, b"audit(1:2): a0=\"x\"").data.is_err());
        assert!(parse(1309, b"audit(1:2): argc=2 a0=\"x\"").data.is_err());
        assert!(parse(1306, b"audit(1:2): saddr=02").data.is_err());
    }

    #[test]
    fn sockaddr_and_avc() {
        let d = data(1306, "audit(1:2): saddr=020000357F0000010000000000000000");
        assert_eq!(get(&d, "family").as_deref(), Some("ipv4"));
        assert_eq!(get(&d, "addr").as_deref(), Some("127.0.0.1"));
        assert_eq!(get(&d, "port").as_deref(), Some("53"));
        let d = data(
            1400,
            "audit(1:2): avc:  denied  { read write } for  pid=5 comm=\"x\" scontext=a:b:c:s0",
        );
        assert_eq!(get(&d, "seresult").as_deref(), Some("denied"));
        assert_eq!(get(&d, "seperms").as_deref(), Some("read,write"));
        assert_eq!(get(&d, "pid").as_deref(), Some("5"));
    }

    #[test]
    fn unterminated_quotes_and_upper_case_keys_are_skipped() {
        let d = data(
            1305,
            "audit(1:2): a='unterminated b=1 ARCH=x86_64 op=\"add\"",
        );
        assert_eq!(get(&d, "b").as_deref(), Some("1"));
        assert_eq!(get(&d, "op").as_deref(), Some("add"));
        assert_eq!(get(&d, "a"), None);
        assert!(get(&d, "arch").is_none());
    }
}
