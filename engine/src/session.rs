//! The audit session: being the kernel's audit daemon, from claiming the pid to giving it back.
//!
//! Owns the audit-protocol steps and their order: refuse to start while another live daemon
//! holds the pid (naming it), claim the pid (enabling auditing if it was off), re-assert it
//! every keepalive (the kernel's EEXIST means "you still have it"), and at the end release it
//! only if it is still ours, then restore `enabled` if we turned it on. Rules are the caller's
//! (they are deleted before [`AuditSession::end`]). A session that is dropped without `end`
//! (an error path, a panic unwinding) still releases the pid: the kernel must never be left
//! pointing at a daemon that is gone. [`StatusPoller`] reads the kernel's status on a socket of
//! its own each keepalive and notices another process holding the pid. It must never touch
//! rules, outputs or signals.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::live::Live;
use crate::netlink::{self, AuditSocket, AuditStatus, Mode, STATUS_ENABLED};

/// The command name of a running process, if it exists.
pub fn comm_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Why we cannot become the audit daemon.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("another audit daemon ({comm}, pid {pid}) holds the audit pid; stop it, or read beside it with `netlink: {{ mode: multicast }}`")]
    Taken { pid: u32, comm: String },
    #[error("cannot become the audit daemon (AUDIT_SET pid): {0}")]
    Claim(io::Error),
}

/// Fail if a live process other than us holds the audit pid.
pub fn check_free(status: &AuditStatus) -> Result<(), SessionError> {
    let ours = std::process::id();
    if status.pid != 0 && status.pid != ours {
        if let Some(comm) = comm_of(status.pid) {
            return Err(SessionError::Taken {
                pid: status.pid,
                comm,
            });
        }
    }
    Ok(())
}

pub struct AuditSession {
    socket: Arc<AuditSocket>,
    /// We switched auditing on at claim (it was off): switch it off again at the end.
    enabled_by_us: bool,
    ended: bool,
}

impl AuditSession {
    /// Become the audit daemon on `live`'s socket; `initial` is the status read before.
    pub fn claim(
        live: &Live,
        initial: &AuditStatus,
        timeout: Duration,
    ) -> Result<AuditSession, SessionError> {
        check_free(initial)?;
        let enabled_by_us = initial.enabled == 0;
        // The guard exists before the request: a claim the kernel took but whose ACK was lost
        // is still released.
        let session = AuditSession {
            socket: live.socket_handle(),
            enabled_by_us,
            ended: false,
        };
        live.request(|s| s.claim(enabled_by_us), timeout)
            .map_err(SessionError::Claim)?;
        Ok(session)
    }

    /// Re-assert the pid (as pauditd does every 5 s). The kernel answers EEXIST while a live
    /// daemon holds it (normally us; the status poll says whether it is someone else);
    /// success means it had let go and we are the daemon again.
    pub fn keepalive(&self, live: &Live, timeout: Duration) {
        match live.request(|s| s.claim(false), timeout) {
            Ok(()) => log::debug!("audit pid re-asserted"),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => log::error!("Error occurred while trying to keep the connection: {e}"),
        }
    }

    /// Give the pid back if it is still ours, and restore `enabled`.
    pub fn end(mut self, poller: &StatusPoller) {
        let ours = std::process::id();
        let holder = poller.status().map(|s| s.pid).unwrap_or(ours);
        self.release(holder == ours);
    }

    fn release(&mut self, still_ours: bool) {
        self.ended = true;
        if still_ours {
            if let Err(e) = self.socket.release() {
                log::error!("could not release the audit pid: {e}");
            }
        }
        if self.enabled_by_us {
            let _ = self.socket.set_status(AuditStatus {
                mask: STATUS_ENABLED,
                enabled: 0,
                ..Default::default()
            });
        }
    }
}

impl Drop for AuditSession {
    fn drop(&mut self) {
        if !self.ended {
            // No poll here (it could fail too): releasing a pid that is not ours is refused
            // by the kernel, so trying is safe.
            self.release(true);
        }
    }
}

/// Polls the kernel's audit status on its own socket and reports what changed.
pub struct StatusPoller {
    socket: AuditSocket,
    last_lost: Option<u32>,
    /// Times another process was found holding the audit pid.
    pub pid_stolen: u64,
}

/// What one poll found.
#[derive(Debug, Clone, Copy)]
pub struct StatusReport {
    pub status: netlink::AuditStatus,
    /// Records the kernel lost since the previous poll.
    pub lost_delta: u32,
    /// The pid holding the audit daemon role when it is not us (unicast only).
    pub foreign_pid: Option<u32>,
}

impl StatusPoller {
    pub fn new() -> io::Result<StatusPoller> {
        Ok(StatusPoller {
            socket: AuditSocket::open(Mode::Unicast)?,
            last_lost: None,
            pid_stolen: 0,
        })
    }

    pub fn status(&self) -> io::Result<netlink::AuditStatus> {
        self.socket.get_status(Duration::from_secs(2))
    }

    pub fn poll(&mut self, expect_our_pid: bool) -> io::Result<StatusReport> {
        let status = self.status()?;
        let lost_delta = self.last_lost.map_or(0, |l| status.lost.wrapping_sub(l));
        self.last_lost = Some(status.lost);
        let ours = std::process::id();
        let foreign_pid = (expect_our_pid && status.pid != ours).then_some(status.pid);
        if foreign_pid.is_some() {
            self.pid_stolen += 1;
        }
        Ok(StatusReport {
            status,
            lost_delta,
            foreign_pid,
        })
    }
}
