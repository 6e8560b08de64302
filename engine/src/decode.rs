//! Decoding what the kernel encodes: hex strings, process titles, EXECVE arguments spread
//! over records, socket addresses, and bytes that are not UTF-8.
//!
//! Owns the meaning of a value given its field: which fields the kernel hex-encodes when
//! they hold a space, a quote or a control byte ([`is_untrusted`], the kernel's
//! `audit_log_untrustedstring` callers), how `aN`, `aN_len` and `aN[i]` pieces make an
//! argument vector ([`Argv`]), and the layout of `struct sockaddr_*` ([`SockAddr`], in the
//! byte order of the record's arch). Text that is not UTF-8 is escaped reversibly
//! ([`escape`]: `%XX` for each invalid byte and for `%` itself). It must never allocate on
//! the pauditd path: there only [`hex_into`] runs (the rule key, in `add_message`, into the
//! event's reused buffer); the rest serves the enriched and ecs formats and `event_filters`.

use crate::record::{Field, Fields, Value};

/// Fields the kernel writes with `audit_log_untrustedstring`: quoted when plain, hex when
/// they hold a space, a quote, a control byte or a byte above 0x7e.
pub fn is_untrusted(field: &[u8]) -> bool {
    matches!(
        field,
        b"comm"
            | b"exe"
            | b"name"
            | b"cwd"
            | b"proctitle"
            | b"path"
            | b"data"
            | b"key"
            | b"cmd"
            | b"acct"
            | b"old-chardev"
            | b"new-chardev"
            | b"root_dir"
            | b"new_group"
            | b"grp"
            // Not `id`: a user (or group) id in decimal (audit-userspace's typetab.h).
            | b"ocomm"
            | b"watch"
            | b"vm"
            | b"device"
            | b"old_vol"
            | b"new_vol"
            | b"dev"
            | b"fs"
            | b"sw"
            | b"ifname"
            | b"profile"
            | b"label"
    ) || is_arg(field)
}

/// `a0`, `a1`, ... (EXECVE arguments; also SYSCALL's a0-a3, which are plain hex numbers).
fn is_arg(field: &[u8]) -> bool {
    field.len() > 1 && field[0] == b'a' && field[1..].iter().all(u8::is_ascii_digit)
}

/// Hex to bytes; `None` if it is not even-length hex.
pub fn hex(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 2);
    hex_into(s, &mut out).then_some(out)
}

fn nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Append `s` decoded to `out`; false (and `out` unchanged) if it is not even-length hex.
pub fn hex_into(s: &[u8], out: &mut Vec<u8>) -> bool {
    if !s.len().is_multiple_of(2) || !s.iter().all(|&b| nibble(b).is_some()) {
        return false;
    }
    out.extend(
        s.chunks_exact(2)
            .map(|p| nibble(p[0]).unwrap_or(0) << 4 | nibble(p[1]).unwrap_or(0)),
    );
    true
}

/// An untrusted field's bytes: quoted as written, bare decoded from hex (bare values that are
/// not hex are kept as written); `None` for `(null)`/`(none)`/`?`.
pub fn untrusted(v: Value<'_>) -> Option<std::borrow::Cow<'_, [u8]>> {
    match v {
        Value::Quoted(b) | Value::Nested(b) => Some(b.into()),
        Value::Bare(b) => Some(hex(b).map_or(b.into(), Into::into)),
        Value::Absent(_) => None,
    }
}

/// What each argument costs against an argument vector's byte limit beyond its own bytes:
/// what an empty one costs in the JSON (`"",`). So a vector of `limit` bytes holds at most
/// `limit / 3` arguments, however they are written.
pub const ARG_COST: usize = 3;

/// Arguments an EXECVE argument vector may hold that no record carried (the gaps a record
/// with `a0` and `a5` leaves): at most this many in all, then indices past them are cut.
pub const MAX_ARGV_GAPS: usize = 1024;

/// A process title: the command line with NUL between arguments (decoded from hex), at most
/// `limit` bytes counted as [`Argv`] counts them (each argument's bytes plus [`ARG_COST`]);
/// the second value says whether it was cut.
pub fn proctitle_argv(v: Value<'_>, limit: usize) -> (Vec<Vec<u8>>, bool) {
    let Some(bytes) = untrusted(v) else {
        return (Vec::new(), false);
    };
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(&bytes);
    let mut out = Vec::new();
    let mut used = 0usize;
    for arg in bytes.split(|&b| b == 0) {
        let room = limit.saturating_sub(used + ARG_COST);
        if used + ARG_COST > limit {
            return (out, true);
        }
        let take = arg.len().min(room);
        out.push(arg[..take].to_vec());
        used += ARG_COST + take;
        if take < arg.len() {
            return (out, true);
        }
    }
    (out, false)
}

/// An EXECVE argument vector being rebuilt from one or more EXECVE records.
///
/// Bounded whatever the records say: an index at or past `argc` (once `argc` is known; the
/// kernel writes it first) is cut; arguments no record carried (gaps below a higher index)
/// are made up to [`MAX_ARGV_GAPS`] in all; and every argument counts its bytes plus
/// [`ARG_COST`] against the `limit` of [`Argv::add_record`]. So the vector holds at most
/// `limit` bytes and `limit / ARG_COST` arguments (with 64 KiB: 21,845), and its JSON is at
/// most `limit` plus the escaping of those bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Argv {
    /// `argc=` as the kernel counted.
    pub argc: Option<u64>,
    /// Arguments by index; an argument split into `aN[i]` pieces grows piece by piece.
    pub args: Vec<Vec<u8>>,
    /// Bytes counted against the limit: every argument's bytes plus [`ARG_COST`] each.
    bytes: usize,
    /// Arguments made up for gaps so far.
    gaps: usize,
    pub truncated: bool,
}

impl Argv {
    /// Add one EXECVE record's fields, keeping at most `limit` bytes of arguments in all
    /// (counted as the type says).
    pub fn add_record(&mut self, data: &[u8], limit: usize) {
        for f in Fields::new(data) {
            let Field::Pair(key, value) = f else { continue };
            if key == b"argc" {
                self.argc = std::str::from_utf8(value.bytes())
                    .ok()
                    .and_then(|s| s.parse().ok());
                continue;
            }
            let Some(rest) = key.strip_prefix(b"a") else {
                continue;
            };
            // aN, aN_len, aN[i]
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let Some(index) = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            else {
                continue;
            };
            let suffix = &rest[digits..];
            let piece: Option<std::borrow::Cow<'_, [u8]>> = match suffix {
                b"" => untrusted(value),
                // A piece of a long argument: always hex.
                s if s.first() == Some(&b'[') => match value {
                    Value::Bare(b) => hex(b).map(Into::into),
                    other => Some(other.bytes().into()),
                },
                _ => None, // aN_len: the kernel's length, not needed to rebuild
            };
            let Some(piece) = piece else { continue };
            // Bounded: a hostile index cannot make us allocate a huge vector, nor many
            // arguments no record carried.
            if index >= self.args.len() {
                let beyond_argc = self.argc.is_some_and(|n| index as u64 >= n);
                let gaps = index - self.args.len();
                let cost = (gaps + 1).saturating_mul(ARG_COST);
                if beyond_argc
                    || self.gaps + gaps > MAX_ARGV_GAPS
                    || self.bytes.saturating_add(cost) > limit
                {
                    self.truncated = true;
                    continue;
                }
                self.gaps += gaps;
                self.bytes += cost;
                self.args.resize(index + 1, Vec::new());
            }
            let room = limit.saturating_sub(self.bytes);
            let take = piece.len().min(room);
            if take < piece.len() {
                self.truncated = true;
            }
            self.args[index].extend_from_slice(&piece[..take]);
            self.bytes += take;
        }
    }
}

/// A decoded `struct sockaddr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockAddr {
    Inet {
        addr: std::net::Ipv4Addr,
        port: u16,
    },
    Inet6 {
        addr: std::net::Ipv6Addr,
        port: u16,
        flowinfo: u32,
        scope_id: u32,
    },
    /// A path; an abstract socket's name starts with NUL, shown as `@`.
    Unix {
        path: Vec<u8>,
    },
    Netlink {
        pid: u32,
        groups: u32,
    },
    /// Another family: its number and the raw bytes after it.
    Other {
        family: u16,
        data: Vec<u8>,
    },
}

/// Decode a `saddr=` value (hex of a `struct sockaddr_*`). `little_endian`: the record's
/// arch (`sa_family` and the netlink fields are in host order; ports and addresses are in
/// network order).
pub fn sockaddr(bytes: &[u8], little_endian: bool) -> Option<SockAddr> {
    let u16h = |b: &[u8]| {
        let a = [b[0], b[1]];
        if little_endian {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    };
    let u32h = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if little_endian {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    if bytes.len() < 2 {
        return None;
    }
    let family = u16h(bytes);
    let rest = &bytes[2..];
    Some(match family {
        1 => {
            let path = match rest.first() {
                // Abstract: the name is every byte after the NUL.
                Some(0) => {
                    let mut p = b"@".to_vec();
                    p.extend_from_slice(&rest[1..]);
                    p
                }
                _ => rest.split(|&b| b == 0).next().unwrap_or(&[]).to_vec(),
            };
            SockAddr::Unix { path }
        }
        2 if rest.len() >= 6 => SockAddr::Inet {
            port: u16::from_be_bytes([rest[0], rest[1]]),
            addr: std::net::Ipv4Addr::new(rest[2], rest[3], rest[4], rest[5]),
        },
        10 if rest.len() >= 22 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&rest[6..22]);
            SockAddr::Inet6 {
                port: u16::from_be_bytes([rest[0], rest[1]]),
                flowinfo: u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]),
                addr: std::net::Ipv6Addr::from(a),
                scope_id: if rest.len() >= 26 {
                    u32h(&rest[22..26])
                } else {
                    0
                },
            }
        }
        16 if rest.len() >= 10 => SockAddr::Netlink {
            pid: u32h(&rest[2..6]),
            groups: u32h(&rest[6..10]),
        },
        _ => SockAddr::Other {
            family,
            data: rest.to_vec(),
        },
    })
}

/// Bytes as text, reversibly: valid UTF-8 as it is, except `%` written `%25`; every byte of
/// an invalid sequence as `%XX` (upper-case hex). Undo with [`unescape`].
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' {
                out.push_str("%25");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The bytes [`escape`] was given.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(nibble),
                b.get(i + 2).copied().and_then(nibble),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::get;

    #[test]
    fn untrusted_values_are_decoded_only_when_bare_hex() {
        assert_eq!(
            untrusted(Value::Bare(b"2F62696E2F6C73")).unwrap().as_ref(),
            b"/bin/ls"
        );
        assert_eq!(untrusted(Value::Quoted(b"ls")).unwrap().as_ref(), b"ls");
        assert_eq!(untrusted(Value::Bare(b"xyz")).unwrap().as_ref(), b"xyz");
        assert_eq!(untrusted(Value::Absent(b"(null)")), None);
        assert!(is_untrusted(b"a12") && is_untrusted(b"proctitle") && !is_untrusted(b"pid"));
        assert!(
            !is_untrusted(b"id"),
            "id=1002 is a uid, not the bytes 0x10 0x02"
        );
    }

    #[test]
    fn proctitle_splits_on_nul() {
        // laurel's record-bind-ipv4-bigendian: proctitle=6E63002D6C002D70003535353535
        let argv = proctitle_argv(Value::Bare(b"6E63002D6C002D70003535353535"), 1 << 20).0;
        assert_eq!(
            argv,
            vec![
                b"nc".to_vec(),
                b"-l".to_vec(),
                b"-p".to_vec(),
                b"55555".to_vec()
            ]
        );
        assert_eq!(
            proctitle_argv(Value::Quoted(b"whoami"), 1 << 20).0,
            vec![b"whoami".to_vec()]
        );
    }

    #[test]
    fn execve_arguments_come_together_across_records_and_pieces() {
        let mut a = Argv::default();
        a.add_record(
            b"argc=3 a0=\"/bin/echo\" a1_len=6 a1[0]=616263 a1[1]=646566",
            1 << 20,
        );
        a.add_record(b"a2=68656C6C6F20776F726C64", 1 << 20);
        assert_eq!(a.argc, Some(3));
        assert_eq!(
            a.args,
            vec![
                b"/bin/echo".to_vec(),
                b"abcdef".to_vec(),
                b"hello world".to_vec()
            ]
        );
        assert!(!a.truncated);
        let mut small = Argv::default();
        // 9 + 3 for a0, 3 for a1 and 3 of its bytes: 18.
        small.add_record(b"argc=2 a0=\"/bin/echo\" a1=\"0123456789\"", 18);
        assert_eq!(small.args, vec![b"/bin/echo".to_vec(), b"012".to_vec()]);
        assert!(small.truncated);
        // A hostile index does not allocate a huge vector.
        let mut hostile = Argv::default();
        hostile.add_record(b"a4000000000=\"x\"", 1 << 20);
        assert!(hostile.args.is_empty() && hostile.truncated);
    }

    /// The record that made the enriched encoder use 2.1 GB: `aN=""` with indices stepping
    /// by 1,025 (each step was allowed, and made 1,024 empty arguments no record carried).
    #[test]
    fn stepped_indices_make_up_at_most_the_gap_limit() {
        let mut rec = b"argc=999999999".to_vec();
        for i in (0..100_000).map(|i| i * 1025) {
            rec.extend_from_slice(format!(" a{i}=\"\"").as_bytes());
        }
        let mut a = Argv::default();
        a.add_record(&rec, 1 << 20);
        assert!(a.truncated);
        assert_eq!(
            a.args.len(),
            MAX_ARGV_GAPS + 2,
            "a0, the 1,024 between, a1025"
        );
        // Indices at or past argc are cut.
        let mut b = Argv::default();
        b.add_record(b"argc=2 a0=\"x\" a1=\"y\" a2=\"z\" a3=\"w\"", 1 << 20);
        assert_eq!(b.args, vec![b"x".to_vec(), b"y".to_vec()]);
        assert!(b.truncated);
        // Many carried arguments: at most limit / ARG_COST of them.
        let mut rec = b"argc=999999999".to_vec();
        for i in 0..100_000 {
            rec.extend_from_slice(format!(" a{i}=\"\"").as_bytes());
        }
        let mut c = Argv::default();
        c.add_record(&rec, 64 << 10);
        assert_eq!(c.args.len(), (64 << 10) / ARG_COST);
        assert!(c.truncated);
        // A process title of NULs: bounded the same way.
        let nuls = "00".repeat(100_000);
        let (t, cut) = proctitle_argv(Value::Bare(nuls.as_bytes()), 64 << 10);
        assert!(cut && t.len() <= (64 << 10) / ARG_COST);
    }

    #[test]
    fn socket_addresses_in_each_family() {
        // AF_INET 127.0.0.1:22, little-endian host (x86_64).
        let inet = hex(b"020000167F000001").unwrap();
        assert_eq!(
            sockaddr(&inet, true),
            Some(SockAddr::Inet {
                addr: "127.0.0.1".parse().unwrap(),
                port: 22
            })
        );
        // laurel's record-bind-ipv4-bigendian (ppc64): 0.0.0.0:55555.
        let be = hex(b"0002D903000000000000000000000000").unwrap();
        assert_eq!(
            sockaddr(&be, false),
            Some(SockAddr::Inet {
                addr: "0.0.0.0".parse().unwrap(),
                port: 55555
            })
        );
        let inet6 = hex(b"0A000050000000000000000000000000000000000000000100000000").unwrap();
        assert_eq!(
            sockaddr(&inet6, true),
            Some(SockAddr::Inet6 {
                addr: "::1".parse().unwrap(),
                port: 80,
                flowinfo: 0,
                scope_id: 0
            })
        );
        let unix = hex(b"01002F72756E2F7379736C6F6700").unwrap();
        assert_eq!(
            sockaddr(&unix, true),
            Some(SockAddr::Unix {
                path: b"/run/syslog".to_vec()
            })
        );
        let abstract_ = hex(b"0100006162").unwrap();
        assert_eq!(
            sockaddr(&abstract_, true),
            Some(SockAddr::Unix {
                path: b"@ab".to_vec()
            })
        );
        let nl = hex(b"1000000000000000FFFFFFFF").unwrap();
        assert_eq!(
            sockaddr(&nl, true),
            Some(SockAddr::Netlink {
                pid: 0,
                groups: u32::MAX
            })
        );
        assert_eq!(sockaddr(b"\x02", true), None);
        assert!(matches!(
            sockaddr(b"\x02\x00\x01", true),
            Some(SockAddr::Other { family: 2, .. })
        ));
    }

    #[test]
    fn escaping_is_reversible_and_leaves_utf8_alone() {
        for bytes in [
            &b"plain"[..],
            "gr\u{fc}n 100%".as_bytes(),
            b"\xff\xfe bad %41",
            b"",
            b"%",
            b"a\x00b\n",
        ] {
            assert_eq!(unescape(&escape(bytes)), bytes, "{bytes:?}");
        }
        assert_eq!(escape("gr\u{fc}n".as_bytes()), "gr\u{fc}n");
        assert_eq!(escape(b"\xff%"), "%FF%25");
    }

    #[test]
    fn a_nested_user_message_decodes_its_untrusted_fields() {
        let data =
            b"msg='op=PAM:accounting acct=\"root\" exe=2F7573722F62696E2F7375646F res=success'";
        let Some(Value::Nested(inner)) = get(data, b"msg") else {
            panic!()
        };
        assert_eq!(
            untrusted(get(inner, b"exe").unwrap()).unwrap().as_ref(),
            b"/usr/bin/sudo"
        );
    }
}
