//! systemd's readiness protocol (`sd_notify`): `READY=1`, `RELOADING=1`, `STOPPING=1`,
//! `STATUS=`, and the watchdog's `WATCHDOG=1`.
//!
//! Owns the datagrams to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace) and
//! the watchdog interval from `$WATCHDOG_USEC` (honoured only when `$WATCHDOG_PID`, if set,
//! is ours). Without `NOTIFY_SOCKET` every call is a no-op. It must never block or fail the
//! daemon: a notification that cannot be sent is logged once.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    /// Half of `WatchdogSec`: how often the main loop must say it is alive.
    pub watchdog: Option<Duration>,
    failed: bool,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|p| {
            let p = p.to_string_lossy().into_owned();
            let addr = if let Some(name) = p.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            } else {
                SocketAddr::from_pathname(&p).ok()?
            };
            let sock = UnixDatagram::unbound().ok()?;
            sock.set_nonblocking(true).ok()?;
            Some((sock, addr))
        });
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(|u| Duration::from_micros(u / 2));
        Notifier {
            target,
            watchdog,
            failed: false,
        }
    }

    pub fn send(&mut self, msg: &str) {
        let Some((sock, addr)) = &self.target else {
            return;
        };
        if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
            if !self.failed {
                log::warn!("cannot notify the service manager: {e}");
                self.failed = true;
            }
        }
    }

    pub fn ready(&mut self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// Before a reload: systemd (Type=notify-reload) needs the monotonic time with it.
    pub fn reloading(&mut self) {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into `ts`, which is valid and ours.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    pub fn stopping(&mut self) {
        self.send("STOPPING=1");
    }

    pub fn watchdog(&mut self) {
        self.send("WATCHDOG=1");
    }
}
