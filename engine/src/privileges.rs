//! Least privilege: which capabilities the audit engine needs, and dropping to an
//! unprivileged user that keeps only those.
//!
//! Owns the capability bookkeeping of the process. What the kernel checks, and when:
//! - CAP_AUDIT_CONTROL: every `AUDIT_SET`/`AUDIT_GET` the daemon sends (claiming and releasing
//!   the audit pid, the 5 s keepalive) and `auditctl` (rules at start, `-D` at shutdown). The
//!   kernel checks the *sending thread's* effective set, so the thread that calls
//!   [`drop_to`] keeps it, and it is made ambient so the `auditctl` that thread spawns has it.
//! - CAP_AUDIT_READ: joining the read-only log multicast group (`netlink.mode: multicast`),
//!   checked at bind time only (start-up).
//! - CAP_NET_ADMIN: `SO_RCVBUFFORCE` (a `socket_buffer.receive` above `net.core.rmem_max`),
//!   start-up only.
//!
//! After [`drop_to`] the process runs as the given user; the calling thread keeps exactly
//! CAP_AUDIT_CONTROL, every other thread (receiver, reassembler, writer, HTTP workers) keeps
//! none: receiving and writing need no privilege once the sockets and files are open.
//! It must never widen privileges, and never run without checking each step worked.

use std::ffi::{CStr, CString};
use std::io;

use crate::users::nss_get;

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_AUDIT_CONTROL: u32 = 30;
pub const CAP_AUDIT_READ: u32 = 37;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_RAISE: libc::c_ulong = 2;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("unknown user {0:?} (privileges.user)")]
    NoSuchUser(String),
    #[error("unknown group {0:?} (privileges.group)")]
    NoSuchGroup(String),
    #[error("cannot drop privileges: {step} failed: {error}")]
    Step {
        step: &'static str,
        error: io::Error,
    },
}

/// A user to become, resolved before anything changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// Resolve `user` (name or number) and `group` (name or number; `None`: the user's primary
/// group) through the system database.
pub fn resolve(user: &str, group: Option<&str>) -> Result<Identity, PrivilegeError> {
    let (uid, primary) =
        lookup_user(user).ok_or_else(|| PrivilegeError::NoSuchUser(user.into()))?;
    let gid = match group {
        None => primary,
        Some(g) => lookup_group(g).ok_or_else(|| PrivilegeError::NoSuchGroup(g.into()))?,
    };
    Ok(Identity { uid, gid })
}

/// `(uid, primary gid)` of a user name, or of a numeric uid (as operators type them). The one
/// place the system's user database is asked by name (outputs and rules use it too).
pub fn lookup_user(user: &str) -> Option<(u32, u32)> {
    let name = CString::new(user).ok()?;
    let found = nss_get(|buf| {
        // SAFETY: `pwd` is plain old data that getpwnam_r fills; `name` and `buf` outlive the
        // call and `buf`'s length is passed; `pwd` is read only when `result` says it was
        // filled.
        unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (rc, (!result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid)))
        }
    });
    if found.is_some() {
        return found;
    }
    let uid: u32 = user.parse().ok()?;
    Some((uid, passwd_by_uid(uid).map_or(uid, |(gid, _)| gid)))
}

/// `(primary gid, name)` of `uid` in the system database.
fn passwd_by_uid(uid: u32) -> Option<(u32, String)> {
    nss_get(|buf| {
        // SAFETY: as in `lookup_user`, with getpwuid_r; the name is copied out of `buf` (where
        // getpwuid_r put it, NUL-terminated) before `buf` can change.
        unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            let found = (!result.is_null()).then(|| {
                let name = CStr::from_ptr(pwd.pw_name);
                (pwd.pw_gid, name.to_string_lossy().into_owned())
            });
            (rc, found)
        }
    })
}

/// The gid of a group name, or a numeric gid.
pub fn lookup_group(group: &str) -> Option<u32> {
    let name = CString::new(group).ok()?;
    let found = nss_get(|buf| {
        // SAFETY: as in `lookup_user`, with getgrnam_r and `libc::group`.
        unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            (rc, (!result.is_null()).then_some(grp.gr_gid))
        }
    });
    found.or_else(|| group.parse().ok())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn check(step: &'static str, r: libc::c_long) -> Result<(), PrivilegeError> {
    if r < 0 {
        Err(PrivilegeError::Step {
            step,
            error: io::Error::last_os_error(),
        })
    } else {
        Ok(())
    }
}

/// Become `id`, keeping `keep` (capability numbers) on the calling thread only, with
/// CAP_AUDIT_CONTROL also ambient for the programs it runs. Other threads end up with no
/// capabilities. Fails (changing nothing that matters) if any step is refused.
pub fn drop_to(id: Identity, keep: &[u32]) -> Result<(), PrivilegeError> {
    // SAFETY: plain syscalls with valid arguments; each result is checked.
    unsafe {
        check(
            "prctl(PR_SET_KEEPCAPS)",
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) as _,
        )?;
        let groups = [id.gid];
        check("setgroups", libc::setgroups(1, groups.as_ptr()) as _)?;
        // glibc applies these to every thread of the process.
        check("setgid", libc::setgid(id.gid) as _)?;
        check("setuid", libc::setuid(id.uid) as _)?;
        check(
            "prctl(PR_SET_KEEPCAPS, 0)",
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) as _,
        )?;
    }
    let mut data = [CapData::default(); 2];
    for &cap in keep {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        data[word].effective |= bit;
        data[word].permitted |= bit;
        if cap == CAP_AUDIT_CONTROL {
            data[word].inheritable |= bit;
        }
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset with a v3 header and two data words, as the kernel expects.
    unsafe {
        check(
            "capset",
            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
        )?;
        if keep.contains(&CAP_AUDIT_CONTROL) {
            check(
                "prctl(PR_CAP_AMBIENT_RAISE)",
                libc::prctl(
                    PR_CAP_AMBIENT,
                    PR_CAP_AMBIENT_RAISE,
                    CAP_AUDIT_CONTROL as libc::c_ulong,
                    0,
                    0,
                ) as _,
            )?;
        }
    }
    // Refuse to go on if the drop did not take (e.g. a setuid that silently kept root).
    // SAFETY: getters without arguments.
    let (ruid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
    if ruid != id.uid || euid != id.uid {
        return Err(PrivilegeError::Step {
            step: "verify uid",
            error: io::Error::other(format!("still uid {ruid}/{euid}")),
        });
    }
    Ok(())
}

/// The user name for log lines.
pub fn user_name(uid: u32) -> String {
    passwd_by_uid(uid).map_or_else(|| uid.to_string(), |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lookups by name go through the one NSS loop (`users::nss_get`, ERANGE retried; its own
    /// tests are in users.rs); names and numbers as operators type them.
    #[test]
    fn users_and_groups_by_name_or_number() {
        assert_eq!(lookup_user("root"), Some((0, 0)));
        assert_eq!(lookup_user("0"), Some((0, 0)));
        assert_eq!(lookup_group("root"), Some(0));
        assert_eq!(lookup_group("0"), Some(0));
        // A number nobody has: itself, and its own number as the primary gid.
        assert_eq!(
            lookup_user("3999999999"),
            Some((3_999_999_999, 3_999_999_999))
        );
        assert_eq!(lookup_group("3999999999"), Some(3_999_999_999));
        assert_eq!(lookup_user("no-such-user-pauditd"), None);
        assert_eq!(lookup_group("no-such-group-pauditd"), None);
        assert_eq!(lookup_user("ro\0ot"), None, "a NUL is never a name");
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(3_999_999_999), "3999999999");
    }
}
