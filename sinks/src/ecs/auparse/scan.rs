//! auparse's key=value scan of one record's text: the message normalised as go-libaudit
//! does (SELinux AVC text, `msg='...'` opened), keys of `[a-z0-9_-]`, values bare or quoted,
//! and the values it drops. It must never interpret a value (that is `interpret`'s).

use super::*;

pub(super) fn trim_space(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// auparse's rewrites of messages that are not key=value as written.
pub(super) fn normalize_message(rtype: u16, msg: &[u8]) -> Cow<'_, [u8]> {
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
pub(super) fn extract<'a>(msg: &'a [u8], out: &mut FieldMap<'a>) {
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
