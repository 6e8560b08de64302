//! The kernel's `SECONDS.MILLIS` timestamp as RFC 3339 in UTC, for the enriched and ecs
//! formats. It must never read a clock or a time zone: the text is all it has.

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
