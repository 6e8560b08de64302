//! The parsed record model: a record's data as `key=value` fields, each with its kind.
//!
//! Owns the grammar of a record's text as the kernel and auditd write it: fields separated by
//! spaces; a value is `"quoted"` (no escapes: the kernel hex-encodes anything a quote would
//! not hold), `'single-quoted'` (the nested `msg='...'` of user-space records, itself fields
//! again, sometimes with free text), bare (numbers, hex-encoded bytes, names), or one of the
//! placeholders `(null)`, `(none)`, `?`. auditd's ENRICHED translations after a 0x1d byte are
//! kept apart ([`split_enriched`]). Parsing is lazy: [`Fields`] is an iterator over borrowed
//! slices that allocates nothing, and the pauditd format never calls it (it prints the data
//! as received). It must never decide what a value means (hex or text, which arch): that is
//! [`crate::decode`]'s, with the field's name.

use memchr::memchr;

/// The separator auditd puts between the kernel's text and its translations.
pub const ENRICHED_SEPARATOR: u8 = 0x1d;

/// How a value was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// `"text"`: the bytes between the quotes.
    Quoted(&'a [u8]),
    /// `'text'`: the nested message of a user-space record (parse it with [`Fields`]).
    Nested(&'a [u8]),
    /// Anything else: a number, a name, or hex-encoded bytes (the field says which).
    Bare(&'a [u8]),
    /// `(null)`, `(none)` or `?`: no value.
    Absent(&'a [u8]),
}

impl<'a> Value<'a> {
    /// The value's bytes without quotes.
    pub fn bytes(&self) -> &'a [u8] {
        match *self {
            Value::Quoted(b) | Value::Nested(b) | Value::Bare(b) | Value::Absent(b) => b,
        }
    }
}

/// One `key=value`, or a word with no `=` (free text inside some nested messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    Pair(&'a [u8], Value<'a>),
    Text(&'a [u8]),
}

/// The kernel's part and auditd's ENRICHED part (after 0x1d), if any.
pub fn split_enriched(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr(ENRICHED_SEPARATOR, data) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    }
}

/// The fields of a record's data (or of a nested message), in order, borrowed.
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(data: &'a [u8]) -> Fields<'a> {
        Fields { rest: data }
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\n'
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let start = self.rest.iter().position(|&b| !is_space(b))?;
        let s = &self.rest[start..];
        // The kernel separates fields with single spaces; a key runs to `=` unless a space
        // (or tab, or newline) comes first: then it is a word of free text. One pass: fields
        // are short, and a plain loop beats a vectorised search's set-up on them.
        let stop = s
            .iter()
            .position(|&b| b == b'=' || is_space(b))
            .unwrap_or(s.len());
        if s.get(stop) != Some(&b'=') {
            self.rest = &s[stop..];
            return Some(Field::Text(&s[..stop]));
        }
        let eq = stop;
        let key = &s[..eq];
        let v = &s[eq + 1..];
        let (value, used) = match v.first() {
            Some(&q @ (b'"' | b'\'')) => match memchr(q, &v[1..]) {
                Some(close) => {
                    let inner = &v[1..1 + close];
                    let value = if q == b'"' {
                        Value::Quoted(inner)
                    } else {
                        Value::Nested(inner)
                    };
                    (value, close + 2)
                }
                // An unterminated quote (a truncated record): the rest, as written.
                None => (Value::Bare(v), v.len()),
            },
            _ => {
                let end = v.iter().position(|&b| is_space(b)).unwrap_or(v.len());
                let raw = &v[..end];
                let value = match raw {
                    b"(null)" | b"(none)" | b"?" => Value::Absent(raw),
                    _ => Value::Bare(raw),
                };
                (value, end)
            }
        };
        self.rest = &v[used..];
        Some(Field::Pair(key, value))
    }
}

/// The value of the first field named `key`.
pub fn get<'a>(data: &'a [u8], key: &[u8]) -> Option<Value<'a>> {
    Fields::new(data).find_map(|f| match f {
        Field::Pair(k, v) if k == key => Some(v),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(data: &[u8]) -> Vec<Field<'_>> {
        Fields::new(data).collect()
    }

    #[test]
    fn values_keep_their_kind() {
        let f = pairs(b"arch=c000003e syscall=59 comm=\"ls -l\" key=(null) tty=(none) res=? proctitle=2F62696E");
        assert_eq!(
            f,
            vec![
                Field::Pair(b"arch", Value::Bare(b"c000003e")),
                Field::Pair(b"syscall", Value::Bare(b"59")),
                Field::Pair(b"comm", Value::Quoted(b"ls -l")),
                Field::Pair(b"key", Value::Absent(b"(null)")),
                Field::Pair(b"tty", Value::Absent(b"(none)")),
                Field::Pair(b"res", Value::Absent(b"?")),
                Field::Pair(b"proctitle", Value::Bare(b"2F62696E")),
            ]
        );
    }

    #[test]
    fn a_nested_message_is_fields_again_with_free_text() {
        let data = b"pid=1 uid=0 auid=4294967295 ses=4294967295 msg='op=PAM:session_open acct=\"root\" exe=\"/usr/sbin/cron\" hostname=? res=success'";
        let Some(Value::Nested(inner)) = get(data, b"msg") else {
            panic!("no nested msg")
        };
        assert_eq!(get(inner, b"acct"), Some(Value::Quoted(b"root")));
        assert_eq!(get(inner, b"res"), Some(Value::Bare(b"success")));
        let free = b"avc: denied { read } for pid=5 comm=\"x\"";
        assert_eq!(
            pairs(free)[..3],
            [
                Field::Text(b"avc:"),
                Field::Text(b"denied"),
                Field::Text(b"{")
            ]
        );
        assert_eq!(get(free, b"pid"), Some(Value::Bare(b"5")));
    }

    #[test]
    fn enriched_translations_are_kept_apart() {
        let data = b"item=0 ouid=0 ogid=0\x1dOUID=\"root\" OGID=\"root\"";
        let (kernel, enriched) = split_enriched(data);
        assert_eq!(kernel, b"item=0 ouid=0 ogid=0");
        assert_eq!(
            get(enriched.unwrap(), b"OUID"),
            Some(Value::Quoted(b"root"))
        );
        assert_eq!(split_enriched(b"a=1"), (&b"a=1"[..], None));
    }

    #[test]
    fn truncated_and_odd_input_never_panics() {
        for data in [
            &b""[..],
            b"   ",
            b"a=",
            b"=",
            b"a=\"unterminated",
            b"msg='",
            b"x y=z ===",
            b"\xff\xfe=\x00",
        ] {
            let _ = pairs(data);
        }
        assert_eq!(pairs(b"a="), vec![Field::Pair(b"a", Value::Bare(b""))]);
        assert_eq!(
            pairs(b"a=\"open"),
            vec![Field::Pair(b"a", Value::Bare(b"\"open"))]
        );
    }
}
