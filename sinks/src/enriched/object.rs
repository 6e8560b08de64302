//! How the enriched format writes JSON: text escaped reversibly (`%XX` for bytes that are not
//! UTF-8), and [`Object`], which refuses a key it already wrote (the first value stands) and
//! keeps nested objects' keys apart. It must never decide which fields an event has (that is
//! the record writer's, in the parent module), only how they are written.

use super::*;

/// Bytes written as they are: printable ASCII but `"`, `\\` and `%`.
pub(super) const PLAIN: [bool; 256] = {
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
pub(super) fn plain_word(x: u64) -> bool {
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
pub(super) fn write_text(out: &mut Vec<u8>, s: &[u8]) {
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
            if let Some(n) = crate::pauditd_json::utf8_char_len(&s[i..]) {
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
pub(super) struct Object<'o> {
    pub(super) out: &'o mut Vec<u8>,
    pub(super) keys: &'o mut Vec<u64>,
    /// This object's keys are `keys[start..]`.
    pub(super) start: usize,
    /// One bit per key hash's top 6 bits: most new keys are told apart without a scan.
    pub(super) seen: u64,
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
pub(super) const KEY_PLAIN: [bool; 256] = {
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
    pub(super) fn new(out: &'o mut Vec<u8>, keys: &'o mut Vec<u64>) -> Self {
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
    pub(super) fn nested(&mut self) -> Object<'_> {
        Object::new(self.out, self.keys)
    }

    /// Start `key`'s value; false if the key was written already (skip the value).
    #[must_use]
    pub(super) fn key(&mut self, key: &[u8]) -> bool {
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

    pub(super) fn string(&mut self, key: &[u8], v: &[u8]) {
        if self.key(key) {
            write_text(self.out, v);
        }
    }

    pub(super) fn raw(&mut self, key: &[u8], json: &[u8]) {
        if self.key(key) {
            self.out.extend_from_slice(json);
        }
    }

    /// `key`'s value as the field table types it in a record of type `rtype`; the value's
    /// text when it is not of its field's type (the field is then null; the caller keeps the
    /// text under `RAW`).
    pub(super) fn value<'v>(
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
    pub(super) fn translate(&mut self, e: &Event, id: Option<Id>, key: &[u8], v: Value<'_>) {
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
    pub(super) fn translations(&mut self, e: &Event, rtype: u16, data: &[u8]) {
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
    pub(super) fn raw_values(&mut self, raw: &[(&[u8], &[u8])]) {
        if raw.is_empty() || !self.key(b"RAW") {
            return;
        }
        let mut inner = self.nested();
        for (k, v) in raw {
            inner.string(k, v);
        }
        inner.close();
    }

    pub(super) fn close(self) {
        self.out.push(b'}');
        self.keys.truncate(self.start);
    }
}

/// `w` appended to free text, a space between words.
pub(super) fn add_word(text: &mut Vec<u8>, w: &[u8]) {
    if !text.is_empty() {
        text.push(b' ');
    }
    text.extend_from_slice(w);
}
