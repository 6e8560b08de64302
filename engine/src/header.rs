//! The `audit(SEC.MS:SERIAL): ` header at the front of every audit record's text.
//!
//! Owns the split of a record's payload into timestamp, serial and data, with exactly the
//! semantics of pauditd's `parseAuditHeader` (so events are grouped and printed as pauditd
//! would), but where pauditd would panic on a malformed header this returns an error. It must
//! never allocate or copy: every output borrows from the input.

use memchr::memchr;

/// A record's payload split at its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The text between `audit(` and the first `:`, printed as the event's `timestamp`.
    pub timestamp: &'a [u8],
    /// The serial, parsed as Go's `strconv.Atoi` would (0 when it does not parse).
    pub serial: i64,
    /// The record text after `): `, the `data` of a message.
    pub data: &'a [u8],
}

/// Why a payload has no usable header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no `audit(...)` header")]
    Missing,
    #[error("header has no `:` between timestamp and serial")]
    NoSeparator,
}

/// pauditd requires the `)` to sit at least this far into the payload.
const HEADER_MIN_LENGTH: usize = 7;
const PREFIX: &[u8] = b"audit(";

/// Split `payload` (`audit(1.2:3): text`) into its header fields and data.
///
/// As pauditd: the header ends at the first `)`, the data starts three bytes later (`): `),
/// clamped here to the payload's end (auditd trims the trailing space of empty records).
pub fn parse(payload: &[u8]) -> Result<Header<'_>, HeaderError> {
    let stop = match memchr(b')', payload) {
        Some(p) if p >= HEADER_MIN_LENGTH => p,
        _ => return Err(HeaderError::Missing),
    };
    let header = &payload[..stop];
    if !header.starts_with(PREFIX) {
        return Err(HeaderError::Missing);
    }
    let sep = memchr(b':', header).ok_or(HeaderError::NoSeparator)?;
    let data_start = (stop + 3).min(payload.len());
    Ok(Header {
        timestamp: &header[PREFIX.len()..sep],
        serial: go_atoi(&header[sep + 1..]),
        data: &payload[data_start..],
    })
}

/// Go's `strconv.Atoi` with the error discarded, as pauditd uses it: an optional sign and
/// decimal digits; a syntax error gives 0, an out-of-range value saturates.
pub fn go_atoi(s: &[u8]) -> i64 {
    go_atoi_checked(s).unwrap_or_else(|| saturated(s))
}

/// Go's `strconv.Atoi` with its error: `None` for a syntax or range error.
pub fn go_atoi_checked(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        let digit = i64::from(d - b'0');
        v = v.checked_mul(10).and_then(|v| {
            if neg {
                v.checked_sub(digit)
            } else {
                v.checked_add(digit)
            }
        })?;
    }
    Some(v)
}

/// What Atoi returns alongside a range error (the saturated value), or 0 for a syntax error.
fn saturated(s: &[u8]) -> i64 {
    let digits = s
        .strip_prefix(b"-")
        .or_else(|| s.strip_prefix(b"+"))
        .unwrap_or(s);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        0
    } else if s.first() == Some(&b'-') {
        i64::MIN
    } else {
        i64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_kernel_header() {
        let h = parse(b"audit(1524242704.387:880575): arch=c000003e syscall=2").unwrap();
        assert_eq!(h.timestamp, b"1524242704.387");
        assert_eq!(h.serial, 880575);
        assert_eq!(h.data, b"arch=c000003e syscall=2");
    }

    #[test]
    fn empty_data_with_and_without_trailing_space() {
        assert_eq!(parse(b"audit(1.2:3): ").unwrap().data, b"");
        let h = parse(b"audit(1.2:3):").unwrap();
        assert_eq!((h.serial, h.data), (3, &b""[..]));
        assert_eq!(parse(b"audit(1.2:3)").unwrap().data, b"");
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        assert_eq!(parse(b""), Err(HeaderError::Missing));
        assert_eq!(parse(b"audit("), Err(HeaderError::Missing));
        assert_eq!(parse(b"a)"), Err(HeaderError::Missing));
        assert_eq!(parse(b"hello(1.2:3): x"), Err(HeaderError::Missing));
        assert_eq!(parse(b"audit(12345): x"), Err(HeaderError::NoSeparator));
        assert_eq!(parse(&[0u8; 64]), Err(HeaderError::Missing));
    }

    #[test]
    fn serial_follows_go_atoi() {
        assert_eq!(go_atoi(b"42"), 42);
        assert_eq!(go_atoi(b"+42"), 42);
        assert_eq!(go_atoi(b"-42"), -42);
        assert_eq!(go_atoi(b""), 0);
        assert_eq!(go_atoi(b"4x"), 0);
        assert_eq!(go_atoi(b"-"), 0);
        assert_eq!(go_atoi(b"99999999999999999999"), i64::MAX);
        assert_eq!(go_atoi(b"-99999999999999999999"), i64::MIN);
        assert_eq!(parse(b"audit(1.2:abc): x").unwrap().serial, 0);
    }
}
