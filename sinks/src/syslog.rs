//! The syslog sink: each event as one syslog message, in Go `log/syslog`'s format.
//!
//! Owns the wire format pauditd produces through Go's `log/syslog`: over unix sockets
//! (`unixgram`, `unix`) `<PRI>Jan _2 15:04:05 TAG[PID]: MSG` (no hostname, as Go does for local
//! sockets); over the network (`udp`, `tcp`) `<PRI>2006-01-02T15:04:05Z HOSTNAME TAG[PID]: MSG`.
//! MSG is the event's JSON line and ends with its newline, which is also the frame delimiter
//! on TCP (non-transparent framing, RFC 6587 3.4.2, what Go writes and rsyslog's imtcp reads).
//! Timestamps are UTC. On a failed send it reconnects and retries, up to `attempts`. It must
//! never split an event across messages.

use std::io::{self, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::retry::Attempts;
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
    pub policy: Attempts,
}

enum Conn {
    UnixDgram(UnixDatagram),
    UnixStream(UnixStream),
    Udp(UdpSocket),
    Tcp(TcpStream),
}

impl Conn {
    fn open(cfg: &SyslogConfig) -> io::Result<Conn> {
        let timeout = Some(Duration::from_secs(5));
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
                let s = TcpStream::connect(&cfg.address)?;
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

    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match self {
            Conn::UnixDgram(s) => s.send(msg).map(drop),
            Conn::Udp(s) => s.send(msg).map(drop),
            Conn::UnixStream(s) => s.write_all(msg),
            Conn::Tcp(s) => s.write_all(msg),
        }
    }
}

pub struct SyslogSink {
    cfg: SyslogConfig,
    conn: Option<Conn>,
    pid: u32,
    msg: Vec<u8>,
}

impl SyslogSink {
    /// Connect now, so a bad address fails at start-up as in pauditd.
    pub fn connect(cfg: SyslogConfig) -> Result<SyslogSink, SinkError> {
        let conn = Conn::open(&cfg).map_err(|error| SinkError::Open {
            sink: "syslog",
            path: format!("{} {}", cfg.network, cfg.address),
            error,
        })?;
        Ok(SyslogSink {
            cfg,
            conn: Some(conn),
            pid: std::process::id(),
            msg: Vec::with_capacity(4096),
        })
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

    fn send_line(&mut self, line: &[u8]) -> io::Result<()> {
        let mut failures = 0;
        loop {
            let res = (|| {
                if self.conn.is_none() {
                    self.conn = Some(Conn::open(&self.cfg)?);
                }
                let local = self.conn.as_ref().is_some_and(Conn::is_local);
                self.format(line, local, SystemTime::now());
                let msg = std::mem::take(&mut self.msg);
                let r = self.conn.as_mut().expect("connected above").send(&msg);
                self.msg = msg;
                r
            })();
            match res {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // Reconnect on the next try (the receiver may have restarted).
                    self.conn = None;
                    failures += 1;
                    if failures >= self.cfg.policy.attempts {
                        return Err(e);
                    }
                    log::error!(
                        "syslog: send failed, retrying in {:?}: {e}",
                        self.cfg.policy.pause
                    );
                    std::thread::sleep(self.cfg.policy.pause);
                }
            }
        }
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
        let mut lost = 0;
        let mut last_err = None;
        for i in 0..batch.len() {
            let line = &batch.bytes()[batch.line_range(i)];
            if let Err(e) = self.send_line(line) {
                lost += 1;
                last_err = Some(e);
            }
        }
        match last_err {
            None => Ok(()),
            Some(error) => Err(SinkError::Write {
                sink: "syslog",
                attempts: self.cfg.policy.attempts,
                lost,
                error,
            }),
        }
    }
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

    #[test]
    fn go_timestamp_layouts() {
        assert_eq!(stamp(0), "Jan  1 00:00:00");
        assert_eq!(stamp(1_795_587_912), "Nov 25 06:25:12");
        assert_eq!(rfc3339(1_795_587_912), "2026-11-25T06:25:12Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
