//! The JSON encoder, byte for byte what pauditd's Go `encoding/json` prints.
//!
//! Owns the event's wire form: field order `sequence, timestamp, messages[{type, data}],
//! uid_map, rule_key`, uid_map keys sorted bytewise, and Go's string escaping (>= 1.22):
//! `\"` `\\` `\n` `\r` `\t` `\b` `\f`, other control bytes as `\u00xx`, the HTML-unsafe `<`
//! `>` `&` as `\u003c` `\u003e` `\u0026`, U+2028/U+2029 escaped, and every byte that is not
//! part of a valid UTF-8 sequence as `\ufffd` (Go decodes one byte at a time on error). It
//! must never allocate beyond growing the caller's buffer for a finished event (one built by
//! hand and never finished has its uid map sorted into a temporary list).

use pauditd_engine::Event;

/// What each byte needs: 0 copy as is, 1 ASCII escape, 2 start of a non-ASCII sequence.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let html = i == b'<' as usize || i == b'>' as usize || i == b'&' as usize;
        t[i] = if i < 0x20 || i == b'"' as usize || i == b'\\' as usize || html {
            1
        } else if i >= 0x80 {
            2
        } else {
            0
        };
        i += 1;
    }
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether any of the 8 bytes of `w` is not class 0 (a control, `"`, `\\`, `<`, `>`, `&`, or
/// not ASCII): the word-at-a-time test that lets clean runs skip the per-byte table (under a
/// storm the byte loop was a tenth of the daemon's CPU). Exact: the zero-byte test
/// `(v - 0x01..) & !v & 0x80..` only sees a borrow coming from a byte that is itself zero.
#[inline]
fn special(w: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    // Bytes below 0x20 (`w` with its high bits cleared, less 0x20 each, borrows into bit 7)
    // or with bit 7 set.
    let low = (w & !HI).wrapping_sub(LO * 0x20) & !w & HI;
    (low | (w & HI)
        | zero(w ^ (LO * b'"' as u64))
        | zero(w ^ (LO * b'\\' as u64))
        | zero(w ^ (LO * b'<' as u64))
        | zero(w ^ (LO * b'>' as u64))
        | zero(w ^ (LO * b'&' as u64)))
        != 0
}

/// Append `s` as a JSON string (with quotes).
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        // Clean runs 8 bytes at a time; the byte that ends one goes through the table.
        while let Some(chunk) = s.get(i..i + 8) {
            if special(u64::from_le_bytes(chunk.try_into().expect("8 bytes"))) {
                break;
            }
            i += 8;
        }
        let Some(&b) = s.get(i) else { break };
        match CLASS[b as usize] {
            0 => i += 1,
            1 => {
                out.extend_from_slice(&s[start..i]);
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    0x08 => out.extend_from_slice(b"\\b"),
                    0x0c => out.extend_from_slice(b"\\f"),
                    _ => out.extend_from_slice(&[
                        b'\\',
                        b'u',
                        b'0',
                        b'0',
                        HEX[(b >> 4) as usize],
                        HEX[(b & 0xf) as usize],
                    ]),
                }
                i += 1;
                start = i;
            }
            _ => match utf8_char_len(&s[i..]) {
                Some(3)
                    if s[i] == 0xe2
                        && s[i + 1] == 0x80
                        && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9) =>
                {
                    out.extend_from_slice(&s[start..i]);
                    out.extend_from_slice(if s[i + 2] == 0xa8 {
                        b"\\u2028"
                    } else {
                        b"\\u2029"
                    });
                    i += 3;
                    start = i;
                }
                Some(n) => i += n,
                None => {
                    out.extend_from_slice(&s[start..i]);
                    out.extend_from_slice(b"\\ufffd");
                    i += 1;
                    start = i;
                }
            },
        }
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// The length of the valid UTF-8 sequence starting `s`, or `None` if it is not one (overlong
/// forms, surrogates and values past U+10FFFF included, as Go rejects them).
pub(crate) fn utf8_char_len(s: &[u8]) -> Option<usize> {
    let n = match s[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let seq = s.get(..n)?;
    std::str::from_utf8(seq).ok().map(|_| n)
}

/// Append one event as a JSON line (with the trailing newline pauditd writes).
pub fn encode_event(e: &Event, out: &mut Vec<u8>) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"{\"sequence\":");
    out.extend_from_slice(num.format(e.serial).as_bytes());
    out.extend_from_slice(b",\"timestamp\":");
    write_str(out, e.timestamp());
    out.extend_from_slice(b",\"messages\":[");
    for (i, (rtype, data)) in e.messages().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"type\":");
        out.extend_from_slice(num.format(rtype).as_bytes());
        out.extend_from_slice(b",\"data\":");
        write_str(out, data);
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"uid_map\":{");
    // A finished event's uids are in order already: no allocation. (An event built by
    // hand and never finished is sorted into a temporary list.)
    match e.sorted_uids() {
        Some(uids) => write_uids(out, uids),
        None => write_uids(out, e.uid_map().into_iter()),
    }
    out.extend_from_slice(b"},\"rule_key\":");
    write_str(out, e.rule_key());
    out.extend_from_slice(b"}\n");
}

fn write_uids<'a>(out: &mut Vec<u8>, uids: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
    for (i, (uid, name)) in uids.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, uid);
        out.push(b':');
        write_str(out, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word test agrees with the byte table: every byte value, at every position, in a
    /// word of clean bytes, and next to each other special byte (borrows between bytes).
    #[test]
    fn the_word_test_flags_exactly_the_words_with_a_special_byte() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                for fill in [b'a', b' ', b'~', 0x7f, b'0'] {
                    let mut w = [fill; 8];
                    w[pos] = b;
                    assert_eq!(
                        special(u64::from_le_bytes(w)),
                        CLASS[b as usize] != 0,
                        "byte {b:#x} at {pos} among {fill:#x}"
                    );
                }
                for c in 0..=255u8 {
                    let mut w = [b'a'; 8];
                    w[pos] = b;
                    w[(pos + 1) % 8] = c;
                    let want = CLASS[b as usize] != 0 || CLASS[c as usize] != 0;
                    assert_eq!(special(u64::from_le_bytes(w)), want, "{b:#x} then {c:#x}");
                }
            }
        }
    }

    fn s(input: &[u8]) -> String {
        let mut v = vec![];
        write_str(&mut v, input);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn go_escapes() {
        assert_eq!(s(b"plain"), r#""plain""#);
        assert_eq!(s(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(s(b"\n\r\t\x08\x0c"), r#""\n\r\t\b\f""#);
        assert_eq!(
            s(b"\x00\x01\x1b\x1f\x7f"),
            "\"\\u0000\\u0001\\u001b\\u001f\x7f\""
        );
        assert_eq!(s(b"<a>&"), r#""\u003ca\u003e\u0026""#);
        assert_eq!(s("\u{2028}x\u{2029}".as_bytes()), r#""\u2028x\u2029""#);
        assert_eq!(s("é日本🎉".as_bytes()), "\"é日本🎉\"");
    }

    #[test]
    fn invalid_utf8_is_one_replacement_per_byte() {
        assert_eq!(s(b"a\xffb"), r#""a\ufffdb""#);
        // A truncated 3-byte sequence: two bytes, two replacements (Go), not one (Rust lossy).
        assert_eq!(s(b"\xe2\x82A"), r#""\ufffd\ufffdA""#);
        // An encoded surrogate and an overlong slash are invalid byte by byte.
        assert_eq!(s(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
        assert_eq!(s(b"\xc0\xaf"), r#""\ufffd\ufffd""#);
        assert_eq!(s(b"\xf4\x90\x80\x80"), r#""\ufffd\ufffd\ufffd\ufffd""#);
        assert_eq!(s(b"end\xe2"), r#""end\ufffd""#);
    }

    #[test]
    fn whole_event_layout() {
        let mut e = Event::new(1, b"10000001");
        pauditd_engine::add_message::add_record(&mut e, 1300, b"hi there", &mut NoUsers);
        pauditd_engine::add_message::add_record(&mut e, 1301, b"hi there", &mut NoUsers);
        let mut out = vec![];
        encode_event(&e, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"sequence\":1,\"timestamp\":\"10000001\",\"messages\":[{\"type\":1300,\"data\":\"hi there\"},{\"type\":1301,\"data\":\"hi there\"}],\"uid_map\":{},\"rule_key\":\"\"}\n"
        );
    }

    #[test]
    fn design_example_line() {
        let mut e = Event::new(880575, b"1524242704.387");
        let mut users = NoUsers;
        pauditd_engine::add_message::add_record(
            &mut e,
            1300,
            b"arch=c000003e syscall=2 auid=4294967295 uid=10005 key=\"binding-file-ops\"",
            &mut users,
        );
        pauditd_engine::add_message::add_record(&mut e, 1307, b"cwd=\"/srv/code\"", &mut users);
        let mut out = vec![];
        encode_event(&e, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"sequence\":880575,\"timestamp\":\"1524242704.387\",\"messages\":[{\"type\":1300,\"data\":\"arch=c000003e syscall=2 auid=4294967295 uid=10005 key=\\\"binding-file-ops\\\"\"},{\"type\":1307,\"data\":\"cwd=\\\"/srv/code\\\"\"}],\"uid_map\":{\"10005\":\"alice\",\"4294967295\":\"UNKNOWN_USER\"},\"rule_key\":\"binding-file-ops\"}\n"
        );
    }

    struct NoUsers;
    impl pauditd_engine::UserResolver for NoUsers {
        fn resolve(&mut self, uid: &[u8]) -> std::sync::Arc<[u8]> {
            std::sync::Arc::from(if uid == b"10005" {
                &b"alice"[..]
            } else {
                b"UNKNOWN_USER"
            })
        }
    }
}
