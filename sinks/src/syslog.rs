//! The syslog sink: each event as one syslog message, in Go `log/syslog`'s format.
//!
//! Owns the wire format pauditd produces through Go's `log/syslog`: over unix sockets
//! (`unixgram`, `unix`) `<PRI>Jan _2 15:04:05 TAG[PID]: MSG` (no hostname, as Go does for local
//! sockets); over the network (`udp`, `tcp`) `<PRI>2006-01-02T15:04:05Z HOSTNAME TAG[PID]: MSG`.
//! MSG is the event's JSON line and ends with its newline, which is also the frame delimiter
//! on TCP (non-transparent framing, RFC 6587 3.4.2, what Go writes and rsyslog's imtcp reads).
//! Timestamps are UTC. The sink is built without connecting ([`SyslogSink::new`]): a receiver
//! that is down when the daemon starts (or reloads) is a failing write like any other, so
//! the output's policy (spool, backoff) covers it instead of start-up failing; only a
//! malformed `network`/`address` is refused up front. Each `write_batch` is one try, bounded
//! by `timeout` (connect and send): on stream transports the whole batch goes out in one write; on a failure the
//! connection is dropped (the next try reconnects) and the lines not sent are reported, so
//! the output backs off, spools or counts them. Over `udp` and `unixgram`, "written" means
//! accepted by the local kernel: a receiver that is not listening is only reported
//! (ECONNREFUSED) on a later send, so the line before the failing one is sent again. It must
//! never split an event across messages.

use std::io::{self, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Batch, Sink, SinkError};

#[derive(Debug, Clone)]
pub struct SyslogConfig {
    /// `unixgram`, `unix`, `udp`, `udp4`, `udp6`, `tcp`, `tcp4`, `tcp6`.
    pub network: String,
    pub address: String,
    pub priority: u8,
    pub tag: String,
    /// Printed in network messages (Go: the OS hostname).
    pub hostname: String,
    /// Bound on connecting and on each send.
    pub timeout: Duration,
}

enum Conn {
    UnixDgram(UnixDatagram),
    UnixStream(UnixStream),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Conn {
    fn open(cfg: &SyslogConfig) -> io::Result<Conn> {
        let timeout = Some(cfg.timeout);
        Ok(match cfg.network.as_str() {
            "unixgram" => {
                let s = UnixDatagram::unbound()?;
                s.connect(&cfg.address)?;
                s.set_write_timeout(timeout)?;
                Conn::UnixDgram(s)
            }
            "unix" => {
                let s = UnixStream::connect(&cfg.address)?;
                s.set_write_timeout(timeout)?;
                Conn::UnixStream(s)
            }
            "udp" | "udp4" | "udp6" => {
                let bind = if cfg.network == "udp6" || cfg.address.starts_with('[') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                };
                let s = UdpSocket::bind(bind)?;
                s.connect(&cfg.address)?;
                Conn::Udp(s)
            }
            "tcp" | "tcp4" | "tcp6" => {
                use std::net::ToSocketAddrs;
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                let mut conn = None;
                for a in cfg.address.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&a, cfg.timeout) {
                        Ok(s) => {
                            conn = Some(s);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let s = conn.ok_or(last)?;
                s.set_write_timeout(timeout)?;
                s.set_nodelay(true)?;
                Conn::Tcp(s)
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unknown network {other}"),
                ))
            }
        })
    }

    /// Whether a stream peer has closed or reset the connection (a non-blocking peek reads
    /// EOF or an error). Syslog has no acknowledgements: a line written into a connection the
    /// peer already closed would vanish without an error, so this is checked before writing.
    fn peer_closed(&self) -> bool {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Conn::UnixStream(s) => s.as_raw_fd(),
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::UnixDgram(_) | Conn::Udp(_) => return false,
        };
        let mut b = [0u8; 1];
        // SAFETY: `b` is valid for one byte; MSG_PEEK leaves the stream as it is.
        let n = unsafe {
            libc::recv(
                fd,
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n == 0 || (n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock)
    }

    fn is_local(&self) -> bool {
        matches!(self, Conn::UnixDgram(_) | Conn::UnixStream(_))
    }

    fn is_stream(&self) -> bool {
        matches!(self, Conn::UnixStream(_) | Conn::Tcp(_))
    }

    /// One datagram.
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match self {
            Conn::UnixDgram(s) => s.send(msg).map(drop),
            Conn::Udp(s) => s.send(msg).map(drop),
            Conn::UnixStream(s) => s.write_all(msg),
            Conn::Tcp(s) => s.write_all(msg),
        }
    }

    /// As much of `buf` as the stream takes; returns how far it got and the error, if any.
    fn write_stream(&mut self, buf: &[u8]) -> (usize, Option<io::Error>) {
        let mut off = 0;
        while off < buf.len() {
            let r = match self {
                Conn::UnixStream(s) => s.write(&buf[off..]),
                Conn::Tcp(s) => s.write(&buf[off..]),
                _ => unreachable!("datagram sockets are sent line by line"),
            };
            match r {
                Ok(0) => return (off, Some(io::ErrorKind::WriteZero.into())),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (off, Some(e)),
            }
        }
        (off, None)
    }
}

pub struct SyslogSink {
    cfg: SyslogConfig,
    conn: Option<Conn>,
    pid: u32,
    msg: Vec<u8>,
    /// A batch's messages back to back (stream transports), and where each one ends.
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl SyslogSink {
    /// Check the settings and build the sink without connecting: the first write connects
    /// (and a failure there is the output's to handle: spool, back off, retry). A receiver
    /// that is down never stops start-up or a reload.
    pub fn new(cfg: SyslogConfig) -> Result<SyslogSink, SinkError> {
        check(&cfg).map_err(|error| SinkError::Open {
            sink: "syslog",
            path: format!("{} {}", cfg.network, cfg.address),
            error,
        })?;
        Ok(SyslogSink {
            cfg,
            conn: None,
            pid: std::process::id(),
            msg: Vec::with_capacity(4096),
            out: Vec::new(),
            ends: Vec::new(),
        })
    }

    /// Connect now (a receiver that is down is an error here).
    pub fn connect(cfg: SyslogConfig) -> Result<SyslogSink, SinkError> {
        let mut sink = SyslogSink::new(cfg)?;
        let conn = Conn::open(&sink.cfg).map_err(|error| SinkError::Open {
            sink: "syslog",
            path: format!("{} {}", sink.cfg.network, sink.cfg.address),
            error,
        })?;
        sink.conn = Some(conn);
        Ok(sink)
    }

    /// Format one message for `line` (an event's JSON line, newline included) at `now`.
    fn format(&mut self, line: &[u8], local: bool, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        self.msg.clear();
        let ts = if local { stamp(secs) } else { rfc3339(secs) };
        let _ = write!(self.msg, "<{}>{ts} ", self.cfg.priority);
        if !local {
            let _ = write!(self.msg, "{} ", self.cfg.hostname);
        }
        let _ = write!(self.msg, "{}[{}]: ", self.cfg.tag, self.pid);
        self.msg.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            self.msg.push(b'\n');
        }
    }

    fn fail(&mut self, lost: usize, error: io::Error) -> Result<(), SinkError> {
        // The next try reconnects (the receiver may have restarted).
        self.conn = None;
        Err(SinkError::Write {
            sink: "syslog",
            attempts: 1,
            lost,
            error,
        })
    }
}

impl Sink for SyslogSink {
    fn name(&self) -> &'static str {
        "syslog"
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if self.conn.as_ref().is_some_and(Conn::peer_closed) {
            log::warn!("syslog: the receiver closed the connection; reconnecting");
            self.conn = None;
        }
        let mut from = 0;
        // A connection from an earlier batch may have gone stale (the receiver restarted):
        // one fresh connection is tried at once before the failure is reported.
        let mut fresh = self.conn.is_none();
        loop {
            if self.conn.is_none() {
                match Conn::open(&self.cfg) {
                    Ok(c) => self.conn = Some(c),
                    Err(e) => return self.fail(batch.len() - from, e),
                }
            }
            match self.send_from(batch, from) {
                Ok(()) => return Ok(()),
                Err((done, e)) => {
                    from = done;
                    if fresh {
                        return self.fail(batch.len() - from, e);
                    }
                    self.conn = None;
                    fresh = true;
                }
            }
        }
    }
}

impl SyslogSink {
    /// Send lines `from..` over the open connection; on failure, how many lines are known
    /// sent and the error.
    fn send_from(&mut self, batch: &Batch, from: usize) -> Result<(), (usize, io::Error)> {
        let conn = self.conn.as_ref().expect("connected by the caller");
        let (local, stream) = (conn.is_local(), conn.is_stream());
        let now = SystemTime::now();
        if stream {
            self.out.clear();
            self.ends.clear();
            for i in from..batch.len() {
                self.format(&batch.bytes()[batch.line_range(i)], local, now);
                self.out.extend_from_slice(&self.msg);
                self.ends.push(self.out.len());
            }
            let out = std::mem::take(&mut self.out);
            let (written, err) = self.conn.as_mut().expect("connected").write_stream(&out);
            self.out = out;
            return match err {
                None => Ok(()),
                // Whole lines written count; a torn one is sent again whole.
                Some(e) => Err((from + self.ends.partition_point(|&end| end <= written), e)),
            };
        }
        for i in from..batch.len() {
            self.format(&batch.bytes()[batch.line_range(i)], local, now);
            let msg = std::mem::take(&mut self.msg);
            let r = self.conn.as_mut().expect("connected").send(&msg);
            self.msg = msg;
            if let Err(e) = r {
                // ECONNREFUSED reports an earlier datagram that found no listener.
                let sent = if e.kind() == io::ErrorKind::ConnectionRefused {
                    i.saturating_sub(1).max(from)
                } else {
                    i
                };
                return Err((sent, e));
            }
        }
        Ok(())
    }
}

/// What can be refused without reaching the receiver: the network and the address's shape
/// (`host:port` for `udp`/`tcp`, a path for `unix`/`unixgram`).
fn check(cfg: &SyslogConfig) -> io::Result<()> {
    let bad = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    match cfg.network.as_str() {
        "unixgram" | "unix" => {
            if cfg.address.is_empty() {
                return bad("an empty socket path".into());
            }
        }
        "udp" | "udp4" | "udp6" | "tcp" | "tcp4" | "tcp6" => {
            let port = cfg.address.rsplit_once(':');
            match port {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
                _ => return bad(format!("{:?} is not host:port", cfg.address)),
            }
        }
        other => return bad(format!("unknown network {other}")),
    }
    Ok(())
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since the Unix epoch to UTC `(year, month, day, hour, minute, second)` (Howard
/// Hinnant's days-to-civil algorithm).
pub fn civil(secs: i64) -> (i64, u32, u32, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, tod / 3600, tod % 3600 / 60, tod % 60)
}

/// Go's `time.Stamp`: `Jan _2 15:04:05`.
fn stamp(secs: i64) -> String {
    let (_, m, d, h, mi, s) = civil(secs);
    format!("{} {d:>2} {h:02}:{mi:02}:{s:02}", MONTHS[m as usize - 1])
}

/// Go's `time.RFC3339` in UTC: `2006-01-02T15:04:05Z`.
fn rfc3339(secs: i64) -> String {
    let (y, m, d, h, mi, s) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(network: &str, address: &str) -> SyslogConfig {
        SyslogConfig {
            network: network.into(),
            address: address.into(),
            priority: 132,
            tag: "pauditd".into(),
            hostname: "h".into(),
            timeout: Duration::from_millis(500),
        }
    }

    #[test]
    fn a_receiver_that_is_down_does_not_stop_the_sink_from_starting() {
        // Nobody listens on these: built anyway, the write fails (the output's policy then).
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        for (net, addr) in [
            ("tcp", format!("127.0.0.1:{port}")),
            ("unixgram", "/nonexistent/pauditd-test.sock".to_string()),
            ("unix", "/nonexistent/pauditd-test.sock".to_string()),
        ] {
            let mut s = SyslogSink::new(cfg(net, &addr)).unwrap_or_else(|e| panic!("{net}: {e}"));
            let mut b = Batch::default();
            b.push_line(b"{}\n");
            let e = s.write_batch(&b).expect_err(net);
            assert_eq!(e.lost(), 1, "{net}: {e}");
            assert!(SyslogSink::connect(cfg(net, &addr)).is_err(), "{net}");
        }
    }

    #[test]
    fn a_malformed_address_or_network_is_refused_at_start() {
        for (net, addr) in [
            ("tcp", "127.0.0.1"),
            ("udp", "localhost:notaport"),
            ("tcp", ":514"),
            ("unixgram", ""),
            ("carrier-pigeon", "x:1"),
        ] {
            assert!(SyslogSink::new(cfg(net, addr)).is_err(), "{net} {addr}");
        }
        assert!(SyslogSink::new(cfg("udp", "[::1]:514")).is_ok());
        assert!(SyslogSink::new(cfg("tcp", "logs.example:6514")).is_ok());
    }

    #[test]
    fn go_timestamp_layouts() {
        assert_eq!(stamp(0), "Jan  1 00:00:00");
        assert_eq!(stamp(1_795_587_912), "Nov 25 06:25:12");
        assert_eq!(rfc3339(1_795_587_912), "2026-11-25T06:25:12Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
