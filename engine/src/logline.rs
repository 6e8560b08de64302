//! auditd log lines: `[node=NAME ]type=NAME msg=audit(SEC.MS:SERIAL): text[\x1dENRICHED]`.
//!
//! Owns turning one log line back into what the kernel sent over netlink: the numeric record
//! type and the `audit(...): text` payload. The `node=` prefix and the ENRICHED part after the
//! 0x1d byte are auditd's additions and are cut off here. It must never allocate and never
//! look at the payload beyond finding the enrichment separator.

use memchr::{memchr, memmem};

use crate::types;

/// One log line as the kernel's netlink message would have carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord<'a> {
    pub rtype: u16,
    pub payload: &'a [u8],
    /// A second record glued onto the same physical line (`... type=X msg=audit(...): ...`,
    /// seen in hand-edited and concatenated logs), to be parsed as a line of its own.
    pub next: Option<&'a [u8]>,
}

/// What a log line turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLine<'a> {
    Record(LogRecord<'a>),
    /// Blank lines and `#` comments, which test logs use for annotations.
    Ignorable,
}

/// Why a line is not an audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LogLineError {
    #[error("line does not start with `type=`")]
    NoType,
    #[error("unknown record type name")]
    UnknownType,
    #[error("no ` msg=` after the type")]
    NoMsg,
}

const ENRICHMENT_SEPARATOR: u8 = 0x1d;

/// Parse one line (without its trailing newline).
pub fn parse(line: &[u8]) -> Result<LogLine<'_>, LogLineError> {
    // CRLF logs: the carriage return is not part of the record.
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) || line.first() == Some(&b'#') {
        return Ok(LogLine::Ignorable);
    }
    let mut rest = line;
    if rest.starts_with(b"node=") {
        let space = memchr(b' ', rest).ok_or(LogLineError::NoType)?;
        rest = &rest[space + 1..];
    }
    let rest = rest.strip_prefix(b"type=").ok_or(LogLineError::NoType)?;
    let name_end = memchr(b' ', rest).ok_or(LogLineError::NoMsg)?;
    let rtype = types::number_of(&rest[..name_end]).ok_or(LogLineError::UnknownType)?;
    let after = &rest[name_end..];
    // Almost always right after the type name; the searcher is built once.
    let msg = if after.starts_with(b" msg=") {
        0
    } else {
        MSG.find(after).ok_or(LogLineError::NoMsg)?
    };
    let mut payload = &after[msg + 5..];
    let mut next = None;
    if let Some(at) = second_record(payload) {
        next = Some(&payload[at + 1..]);
        payload = &payload[..at];
    }
    if let Some(sep) = memchr(ENRICHMENT_SEPARATOR, payload) {
        payload = &payload[..sep];
    }
    Ok(LogLine::Record(LogRecord {
        rtype,
        payload,
        next,
    }))
}

static MSG: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(b" msg="));
static SECOND_TYPE: std::sync::LazyLock<memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memmem::Finder::new(b" type="));

/// Where a second record starts in `payload` (the space before its `type=`): a ` type=NAME`
/// directly followed by ` msg=audit(`.
fn second_record(payload: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = SECOND_TYPE.find(&payload[from..]) {
        let at = from + i;
        let rest = &payload[at + 6..];
        if let Some(sp) = memchr(b' ', rest) {
            if rest[sp..].starts_with(b" msg=audit(") && sp > 0 {
                return Some(at);
            }
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(line: &[u8]) -> LogRecord<'_> {
        match parse(line).unwrap() {
            LogLine::Record(r) => r,
            LogLine::Ignorable => panic!("ignorable"),
        }
    }

    #[test]
    fn plain_line() {
        let r = rec(b"type=CWD msg=audit(1.2:3): cwd=\"/\"");
        assert_eq!(r.rtype, 1307);
        assert_eq!(r.payload, b"audit(1.2:3): cwd=\"/\"");
    }

    #[test]
    fn node_prefix_and_enrichment_are_cut() {
        let r =
            rec(b"node=work type=SYSCALL msg=audit(1.2:3): key=(null)\x1dARCH=x86_64 UID=\"root\"");
        assert_eq!(r.rtype, 1300);
        assert_eq!(r.payload, b"audit(1.2:3): key=(null)");
    }

    #[test]
    fn crlf_and_two_records_on_one_line() {
        let r = rec(b"type=SYSCALL msg=audit(1.2:3): key=\"crlf\"\r");
        assert_eq!(r.payload, b"audit(1.2:3): key=\"crlf\"");
        let line =
            b"type=AVC msg=audit(1.2:3): avc: denied type=SYSCALL msg=audit(1.2:3): arch=c000003e";
        let r = rec(line);
        assert_eq!(
            (r.rtype, r.payload),
            (1400, &b"audit(1.2:3): avc: denied"[..])
        );
        let second = rec(r.next.unwrap());
        assert_eq!(second.rtype, 1300);
        assert_eq!(second.payload, b"audit(1.2:3): arch=c000003e");
        assert_eq!(second.next, None);
        // `type=` inside data that is not followed by ` msg=audit(` stays data.
        let r = rec(b"type=USER msg=audit(1.2:3): msg='op=x type=foo res=1'");
        assert_eq!(r.next, None);
        assert_eq!(r.payload, b"audit(1.2:3): msg='op=x type=foo res=1'");
    }

    #[test]
    fn unknown_numbered_type() {
        let r = rec(b"type=UNKNOWN[1420] msg=audit(1.2:3): subj_apparmor=unconfined");
        assert_eq!(r.rtype, 1420);
    }

    #[test]
    fn ignorable_and_garbage() {
        assert_eq!(parse(b"").unwrap(), LogLine::Ignorable);
        assert_eq!(parse(b"   ").unwrap(), LogLine::Ignorable);
        assert_eq!(parse(b"# comment").unwrap(), LogLine::Ignorable);
        assert_eq!(parse(b"hello world"), Err(LogLineError::NoType));
        assert_eq!(parse(b"node=x"), Err(LogLineError::NoType));
        assert_eq!(
            parse(b"type=BOGUS msg=audit(1.2:3): x"),
            Err(LogLineError::UnknownType)
        );
        assert_eq!(parse(b"type=SYSCALL"), Err(LogLineError::NoMsg));
        assert_eq!(parse(b"type=SYSCALL xmsg"), Err(LogLineError::NoMsg));
        assert_eq!(parse(&[0u8; 100]), Err(LogLineError::NoType));
    }
}
