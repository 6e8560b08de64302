//! The audit netlink socket and its wire format.
//!
//! Owns talking to the kernel's audit subsystem: opening and binding a `NETLINK_AUDIT` socket
//! (unicast as the audit daemon, or joined to the read-only log multicast group), sizing its
//! receive buffer, `AUDIT_SET`/`AUDIT_GET` requests, and splitting received datagrams into
//! messages. Audit records carry a wrong `nlmsg_len` on unicast (the kernel stores the payload
//! length, without the 16-byte header), so a record is always taken as the rest of its
//! datagram, exactly as pauditd reads it; control messages (ACKs, status replies) are split by
//! their lengths. It must never interpret record text: that is the parser's job.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_AUDIT, Socket, SocketAddr};

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const AUDIT_GET: u16 = 1000;
pub const AUDIT_SET: u16 = 1001;
/// Rule changes and the rule listing (their payload: `rules::language::RuleData`).
pub const AUDIT_ADD_RULE: u16 = 1011;
pub const AUDIT_DEL_RULE: u16 = 1012;
pub const AUDIT_LIST_RULES: u16 = 1013;
/// Types below this are netlink/audit control messages; from here on they are records.
pub const FIRST_RECORD_TYPE: u16 = 1100;
/// The kernel's "are you alive?" probe to the current audit daemon (binary pid payload) when
/// someone asks to become the daemon; it is not a record.
pub const AUDIT_REPLACE: u16 = 1329;

/// Whether a message type carries an audit record (text) rather than control data.
pub fn is_record(rtype: u16) -> bool {
    rtype >= FIRST_RECORD_TYPE && rtype != AUDIT_REPLACE
}
/// The multicast group that carries a read-only copy of every record.
pub const AUDIT_NLGRP_READLOG: u32 = 1;
/// The largest record the kernel sends (`MAX_AUDIT_MESSAGE_LENGTH`) plus the header, with room.
pub const MAX_DATAGRAM: usize = 16 * 1024;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;

pub const STATUS_ENABLED: u32 = 1;
pub const STATUS_PID: u32 = 4;

/// `struct audit_status` (the fields every kernel since 3.x has).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditStatus {
    pub mask: u32,
    pub enabled: u32,
    pub failure: u32,
    pub pid: u32,
    pub rate_limit: u32,
    pub backlog_limit: u32,
    pub lost: u32,
    pub backlog: u32,
    pub feature_bitmap: u32,
    pub backlog_wait_time: u32,
    /// Time audited processes spent waiting for backlog room since the counter was reset
    /// (Linux >= 5.9; read only: 0 where the kernel does not report it).
    pub backlog_wait_time_actual: u32,
}

impl AuditStatus {
    const LEN: usize = 40;

    fn to_bytes(self) -> [u8; Self::LEN] {
        let f = [
            self.mask,
            self.enabled,
            self.failure,
            self.pid,
            self.rate_limit,
            self.backlog_limit,
            self.lost,
            self.backlog,
            self.feature_bitmap,
            self.backlog_wait_time,
        ];
        let mut out = [0u8; Self::LEN];
        for (i, v) in f.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        out
    }

    /// Parse a status reply payload (shorter payloads leave later fields 0).
    pub fn from_bytes(b: &[u8]) -> AuditStatus {
        let get = |i: usize| {
            b.get(i * 4..i * 4 + 4)
                .map_or(0, |s| u32::from_ne_bytes(s.try_into().unwrap()))
        };
        AuditStatus {
            mask: get(0),
            enabled: get(1),
            failure: get(2),
            pid: get(3),
            rate_limit: get(4),
            backlog_limit: get(5),
            lost: get(6),
            backlog: get(7),
            feature_bitmap: get(8),
            backlog_wait_time: get(9),
            backlog_wait_time_actual: get(10),
        }
    }
}

/// One message of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlMessage<'a> {
    pub rtype: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// A datagram too short for what its header claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

/// Split a received datagram into messages (see the module doc for the length rule).
pub fn split(dgram: &[u8]) -> impl Iterator<Item = Result<NlMessage<'_>, Truncated>> {
    let mut rest = dgram;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < NLMSG_HDRLEN {
            rest = &[];
            return Some(Err(Truncated));
        }
        let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        let rtype = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
        let seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
        if rtype >= FIRST_RECORD_TYPE {
            // One record per datagram; its nlmsg_len is not to be trusted (see module doc).
            let payload = &rest[NLMSG_HDRLEN..];
            rest = &[];
            return Some(Ok(NlMessage {
                rtype,
                seq,
                payload,
            }));
        }
        if len < NLMSG_HDRLEN || len > rest.len() {
            rest = &[];
            return Some(Err(Truncated));
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        Some(Ok(NlMessage {
            rtype,
            seq,
            payload,
        }))
    })
}

/// The errno of an NLMSG_ERROR payload (0 is a plain ACK).
pub fn ack_errno(payload: &[u8]) -> Option<i32> {
    payload
        .get(..4)
        // wrapping: a hostile i32::MIN must not panic (found by fuzz/netlink).
        .map(|b| i32::from_ne_bytes(b.try_into().unwrap()).wrapping_neg())
}

/// How the daemon listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Become the audit daemon (the kernel sends records to us alone).
    Unicast,
    /// Read the log multicast group beside whatever daemon holds the audit pid.
    Multicast,
}

pub struct AuditSocket {
    sock: Socket,
    next_seq: std::sync::atomic::AtomicU32,
}

impl std::os::fd::AsFd for AuditSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the descriptor is the socket's own, open for as long as `self` lives,
        // which the returned borrow cannot outlive.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.sock.as_raw_fd()) }
    }
}

impl AuditSocket {
    pub fn open(mode: Mode) -> io::Result<AuditSocket> {
        let mut sock = Socket::new(NETLINK_AUDIT)?;
        sock.bind(&SocketAddr::new(0, 0))?;
        if mode == Mode::Multicast {
            sock.add_membership(AUDIT_NLGRP_READLOG)?;
        }
        Ok(AuditSocket {
            sock,
            next_seq: std::sync::atomic::AtomicU32::new(1),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Set the receive buffer: SO_RCVBUFFORCE (may exceed `net.core.rmem_max`, needs
    /// CAP_NET_ADMIN), else SO_RCVBUF. Returns the size the kernel reports afterwards.
    pub fn set_receive_buffer(&self, bytes: u32) -> io::Result<usize> {
        let v = bytes as libc::c_int;
        if setsockopt(self.fd(), libc::SO_RCVBUFFORCE, v).is_err() {
            setsockopt(self.fd(), libc::SO_RCVBUF, v)?;
        }
        self.receive_buffer()
    }

    pub fn receive_buffer(&self) -> io::Result<usize> {
        self.sock.get_rx_buf_sz()
    }

    /// Make blocking receives return after `t` so the caller can check for shutdown.
    pub fn set_receive_timeout(&self, t: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: passes a valid timeval and its size for the socket we own.
        let rc = unsafe {
            libc::setsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Receive one datagram into `buf`; returns its full length (larger than `buf` when it
    /// was truncated). `nonblocking` returns WouldBlock instead of waiting.
    pub fn recv(&self, buf: &mut [u8], nonblocking: bool) -> io::Result<usize> {
        let flags = libc::MSG_TRUNC | if nonblocking { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
        let n = unsafe { libc::recv(self.fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn send(&self, rtype: u16, flags: u16, payload: &[u8]) -> io::Result<u32> {
        let seq = self
            .next_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let len = NLMSG_HDRLEN + payload.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&rtype.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(payload);
        let kernel = SocketAddr::new(0, 0);
        self.sock.send_to(&msg, &kernel, 0)?;
        Ok(seq)
    }

    /// AUDIT_SET with `status.mask` selecting the fields; the kernel ACKs on this socket
    /// (the returned sequence number identifies the ACK).
    pub fn set_status(&self, status: AuditStatus) -> io::Result<u32> {
        self.send(AUDIT_SET, NLM_F_REQUEST | NLM_F_ACK, &status.to_bytes())
    }

    /// Make this socket the audit daemon's (pid = ours), optionally enabling auditing.
    pub fn claim(&self, enable: bool) -> io::Result<u32> {
        let mut s = AuditStatus {
            mask: STATUS_PID,
            pid: std::process::id(),
            ..Default::default()
        };
        if enable {
            s.mask |= STATUS_ENABLED;
            s.enabled = 1;
        }
        self.set_status(s)
    }

    /// Give the audit daemon role back (pid 0).
    pub fn release(&self) -> io::Result<u32> {
        self.set_status(AuditStatus {
            mask: STATUS_PID,
            pid: 0,
            ..Default::default()
        })
    }

    /// Read replies to request `seq` until `f` returns a result; a negative ACK ends the
    /// wait with its errno, a positive one is passed to `f` like any other message. For a
    /// socket no receiver thread reads (requests made before the engine starts, or on a
    /// control socket of their own).
    fn replies<R>(
        &self,
        seq: u32,
        timeout: Duration,
        mut f: impl FnMut(&NlMessage<'_>) -> Option<R>,
    ) -> io::Result<R> {
        self.set_receive_timeout(timeout)?;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let n = self.recv(&mut buf, false)?;
            for m in split(&buf[..n.min(buf.len())]).flatten() {
                if m.seq != seq {
                    continue;
                }
                if m.rtype == NLMSG_ERROR {
                    if let Some(e) = ack_errno(m.payload).filter(|&e| e != 0) {
                        return Err(io::Error::from_raw_os_error(e));
                    }
                }
                if let Some(r) = f(&m) {
                    return Ok(r);
                }
            }
        }
    }

    /// AUDIT_GET on this socket, waiting for the reply. Meant for a separate control socket,
    /// so records never need to be read here.
    pub fn get_status(&self, timeout: Duration) -> io::Result<AuditStatus> {
        let seq = self.send(AUDIT_GET, NLM_F_REQUEST, &[])?;
        self.replies(seq, timeout, |m| {
            (m.rtype == AUDIT_GET).then(|| AuditStatus::from_bytes(m.payload))
        })
    }

    /// Every rule in the kernel, as `struct audit_rule_data` payloads in list order
    /// (`AUDIT_LIST_RULES`).
    pub fn list_rules(&self, timeout: Duration) -> io::Result<Vec<Vec<u8>>> {
        let seq = self.send(AUDIT_LIST_RULES, NLM_F_REQUEST | NLM_F_ACK, &[])?;
        let mut rules = Vec::new();
        self.replies(seq, timeout, |m| match m.rtype {
            AUDIT_LIST_RULES => {
                rules.push(m.payload.to_vec());
                None
            }
            NLMSG_DONE => Some(()),
            _ => None,
        })?;
        Ok(rules)
    }

    /// Add (`AUDIT_ADD_RULE`) or delete (`AUDIT_DEL_RULE`) one rule and wait for the kernel's
    /// answer.
    /// `AUDIT_SET_FEATURE`: turn on and lock the features in `mask` (`struct
    /// audit_features`, version 1); locked features stay until reboot.
    pub fn set_feature_locked(&self, mask: u32, timeout: Duration) -> io::Result<()> {
        const AUDIT_SET_FEATURE: u16 = 1018;
        let mut payload = Vec::with_capacity(16);
        for v in [1u32, mask, mask, mask] {
            payload.extend_from_slice(&v.to_ne_bytes());
        }
        let seq = self.send(AUDIT_SET_FEATURE, NLM_F_REQUEST | NLM_F_ACK, &payload)?;
        self.wait_ack(seq, timeout)
    }

    pub fn change_rule(&self, rtype: u16, rule: &[u8], timeout: Duration) -> io::Result<()> {
        let seq = self.send(rtype, NLM_F_REQUEST | NLM_F_ACK, rule)?;
        self.wait_ack(seq, timeout)
    }

    /// The same change (`AUDIT_ADD_RULE` / `AUDIT_DEL_RULE`) for many rules: packed up to
    /// 64 KiB of requests per datagram (the kernel handles each message of a datagram in
    /// turn and ACKs each), the ACKs of one datagram read before the next is sent so they
    /// never overflow the receive buffer. One answer per rule, in order; `Err` for the whole
    /// call only when the socket fails or an ACK does not come within `timeout`.
    pub fn change_rules(
        &self,
        rtype: u16,
        rules: &[Vec<u8>],
        timeout: Duration,
    ) -> io::Result<Vec<io::Result<()>>> {
        const BATCH_BYTES: usize = 64 * 1024;
        let mut answers: Vec<Option<io::Result<()>>> = (0..rules.len()).map(|_| None).collect();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut next = 0;
        while next < rules.len() {
            let mut msg = Vec::with_capacity(BATCH_BYTES + 4096);
            let first_seq = self.next_seq.load(std::sync::atomic::Ordering::Relaxed);
            let start = next;
            while next < rules.len()
                && (next == start || msg.len() + rules[next].len() + NLMSG_HDRLEN <= BATCH_BYTES)
            {
                let seq = self
                    .next_seq
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let len = NLMSG_HDRLEN + rules[next].len();
                msg.extend_from_slice(&(len as u32).to_ne_bytes());
                msg.extend_from_slice(&rtype.to_ne_bytes());
                msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
                msg.extend_from_slice(&seq.to_ne_bytes());
                msg.extend_from_slice(&0u32.to_ne_bytes());
                msg.extend_from_slice(&rules[next]);
                msg.resize(msg.len().next_multiple_of(4), 0);
                next += 1;
            }
            self.sock.send_to(&msg, &SocketAddr::new(0, 0), 0)?;
            self.set_receive_timeout(timeout)?;
            let mut waiting = next - start;
            while waiting > 0 {
                let n = self.recv(&mut buf, false)?;
                for m in split(&buf[..n.min(buf.len())]).flatten() {
                    let i = m.seq.wrapping_sub(first_seq) as usize;
                    if m.rtype != NLMSG_ERROR || i >= next - start || answers[start + i].is_some() {
                        continue;
                    }
                    answers[start + i] = Some(match ack_errno(m.payload) {
                        Some(e) if e != 0 => Err(io::Error::from_raw_os_error(e)),
                        _ => Ok(()),
                    });
                    waiting -= 1;
                }
            }
        }
        Ok(answers.into_iter().map(|a| a.unwrap_or(Ok(()))).collect())
    }

    /// Wait on this socket for the ACK of request `seq` (before a receiver thread owns it).
    pub fn wait_ack(&self, seq: u32, timeout: Duration) -> io::Result<()> {
        self.replies(seq, timeout, |m| (m.rtype == NLMSG_ERROR).then_some(()))
    }
}

fn setsockopt(fd: RawFd, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a valid c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(len_field: u32, rtype: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&len_field.to_ne_bytes());
        v.extend_from_slice(&rtype.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn all(d: &[u8]) -> Vec<Result<(u16, Vec<u8>), Truncated>> {
        split(d)
            .map(|r| r.map(|m| (m.rtype, m.payload.to_vec())))
            .collect()
    }

    #[test]
    fn unicast_record_with_payload_only_length_quirk() {
        let text = b"audit(1.2:3): arch=c000003e syscall=59";
        let d = msg(text.len() as u32, 1300, 0, text);
        assert_eq!(all(&d), vec![Ok((1300, text.to_vec()))]);
    }

    #[test]
    fn multicast_record_with_correct_length() {
        let text = b"audit(1.2:3): cwd=\"/\"";
        let d = msg((16 + text.len()) as u32, 1307, 0, text);
        assert_eq!(all(&d), vec![Ok((1307, text.to_vec()))]);
    }

    #[test]
    fn record_with_garbage_length_still_takes_the_datagram() {
        let text = b"audit(1.2:3): x";
        assert_eq!(
            all(&msg(0xffff_ffff, 1300, 0, text)),
            vec![Ok((1300, text.to_vec()))]
        );
        assert_eq!(all(&msg(3, 1300, 0, text)), vec![Ok((1300, text.to_vec()))]);
    }

    #[test]
    fn control_messages_split_by_aligned_length() {
        let mut d = msg(20, NLMSG_ERROR, 7, &0i32.to_ne_bytes());
        d.extend(msg(17, NLMSG_DONE, 8, b"x"));
        d.extend_from_slice(&[0, 0, 0]); // alignment padding
        d.extend(msg(20, NLMSG_ERROR, 9, &(-17i32).to_ne_bytes()));
        let got: Vec<_> = split(&d).collect();
        assert_eq!(got.len(), 3);
        let m = got[2].unwrap();
        assert_eq!(
            (m.rtype, m.seq, ack_errno(m.payload)),
            (NLMSG_ERROR, 9, Some(17))
        );
        assert_eq!(got[1].unwrap().payload, b"x");
    }

    #[test]
    fn truncated_datagrams_are_errors_not_panics() {
        assert_eq!(all(&[1, 2, 3]), vec![Err(Truncated)]);
        assert_eq!(all(&msg(100, NLMSG_ERROR, 1, b"ab")), vec![Err(Truncated)]);
        assert_eq!(all(&msg(4, NLMSG_ERROR, 1, b"")), vec![Err(Truncated)]);
        assert!(all(&[]).is_empty());
    }

    #[test]
    fn ack_errno_of_any_payload_is_an_answer_not_a_panic() {
        assert_eq!(ack_errno(&(-13i32).to_ne_bytes()), Some(13));
        assert_eq!(ack_errno(&0i32.to_ne_bytes()), Some(0));
        // fuzz/artifacts finding: i32::MIN has no negation.
        assert_eq!(ack_errno(&i32::MIN.to_ne_bytes()), Some(i32::MIN));
        assert_eq!(ack_errno(b"ab"), None);
    }

    #[test]
    fn status_round_trip() {
        let s = AuditStatus {
            mask: 5,
            enabled: 1,
            pid: 42,
            lost: 9,
            backlog_limit: 8192,
            ..Default::default()
        };
        assert_eq!(AuditStatus::from_bytes(&s.to_bytes()), s);
        assert_eq!(AuditStatus::from_bytes(&[1, 0, 0, 0]).mask, 1);
    }
}
