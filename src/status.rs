//! `pauditd status`: the daemon's side (a root-only unix socket answering with a JSON
//! snapshot) and the client's (ask, then print a few readable lines or the JSON).
//!
//! Owns the socket and the rendering. The socket is private from its first instant: bound
//! inside a fresh 0700 directory, made 0600 there, then renamed into place; and it is
//! removed at exit, also after a privilege drop (the directory we made is handed to the
//! dropped user, who then may unlink it). The snapshot itself is built by the main loop once a
//! second from counters it already reads for metrics, so answering costs the pipeline
//! nothing. It must never block the main loop: the socket has its own thread, and a client
//! that does not read is cut off after a second.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The daemon's end: serves the latest snapshot to every connection.
pub struct StatusServer {
    path: PathBuf,
    /// The socket's directory, when we created it (then it is ours to hand over).
    created_dir: Option<PathBuf>,
    latest: Arc<Mutex<String>>,
}

impl StatusServer {
    /// Listen on `path` (its directory made 0700 when we create it, the socket 0600 before
    /// anyone can see it: audit state is root's). A stale socket from a crashed daemon is
    /// replaced; a live one is refused.
    pub fn start(path: &Path) -> Result<StatusServer> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let created_dir = if dir.exists() {
            None
        } else {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            Some(dir.clone())
        };
        if path.symlink_metadata().is_ok() {
            if UnixStream::connect(path).is_ok() {
                bail!("{} is in use by another running daemon", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale {}", path.display()))?;
        }
        // Bound where only we can reach it, made 0600, then renamed into place (atomic):
        // there is no moment at which the socket is visible with another mode.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let staging = dir.join(format!(".pauditd-status.{}.{nanos}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        let bound = (|| -> Result<UnixListener> {
            let inner = staging.join("s");
            let listener = UnixListener::bind(&inner)
                .with_context(|| format!("binding {}", path.display()))?;
            std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&inner, path)
                .with_context(|| format!("moving the socket to {}", path.display()))?;
            Ok(listener)
        })();
        let _ = std::fs::remove_file(staging.join("s"));
        let _ = std::fs::remove_dir(&staging);
        let listener = bound?;
        let latest = Arc::new(Mutex::new(String::from("{}")));
        let shared = latest.clone();
        std::thread::Builder::new()
            .name("pauditd-status".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut conn) = conn else { continue };
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                    let body = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let _ = conn.write_all(body.as_bytes());
                }
            })?;
        Ok(StatusServer {
            path: path.to_path_buf(),
            created_dir,
            latest,
        })
    }

    /// Before dropping privileges to `uid`/`gid`: so that the socket can still be removed at
    /// exit, hand them the directory we created for it (root reaches it whatever its owner;
    /// the socket itself stays root's, 0600). A directory we did not create is left alone,
    /// and then a stale socket may stay after exit (the next start replaces it).
    pub fn allow_removal_by(&self, uid: u32, gid: u32) {
        let Some(dir) = &self.created_dir else {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            if std::fs::metadata(dir).is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid)
            {
                return; // already theirs (handed over by a previous run)
            }
            log::info!(
                "status socket: {} was not created by us; after the privilege drop the socket cannot be removed at exit (the next start replaces it)",
                self.path.parent().map_or(String::new(), |d| d.display().to_string())
            );
            return;
        };
        if let Err(e) = std::os::unix::fs::chown(dir, Some(uid), Some(gid)) {
            log::warn!(
                "status socket: cannot hand {} to uid {uid}: {e}",
                dir.display()
            );
        }
    }

    pub fn publish(&self, snapshot: &Value) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = snapshot.to_string();
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("status socket: cannot remove {}: {e}", self.path.display());
            }
        }
    }
}

/// The client: ask the daemon at `socket`.
pub fn query(socket: &Path) -> Result<Value> {
    let mut conn = UnixStream::connect(socket).with_context(|| {
        format!(
            "no pauditd daemon answers at {} (not running, or status.socket differs)",
            socket.display()
        )
    })?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut body = String::new();
    conn.read_to_string(&mut body)?;
    serde_json::from_str(&body).context("the daemon's answer is not JSON")
}

/// A few readable lines.
pub fn render(v: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let k = &v["kernel"];
    let e = &v["events"];
    let mut s = format!(
        "pauditd {} (pid {}), up {} s\n",
        v["version"].as_str().unwrap_or("?"),
        n(&v["pid"]),
        n(&v["uptime_s"])
    );
    s += &format!(
        "kernel: audit pid {}, enabled {}, lost {}, backlog {}/{}, backlog_wait_time_actual {}\n",
        n(&k["pid"]),
        n(&k["enabled"]),
        n(&k["lost"]),
        n(&k["backlog"]),
        n(&k["backlog_limit"]),
        n(&k["backlog_wait_time_actual"])
    );
    let drift = &v["rules_drift"];
    s += &format!(
        "receive: {} ({} netlink messages, {} ENOBUFS); rules: {} in force, drift {}{}\n",
        v["receiver"]["path"].as_str().unwrap_or("?"),
        n(&v["receiver"]["received"]),
        n(&v["receiver"]["enobufs"]),
        n(&v["rules"]),
        n(&drift["count"]),
        match drift["last_s_ago"].as_u64() {
            Some(ago) => format!(" (last {ago} s ago)"),
            None => String::new(),
        }
    );
    if let Some(l) = v["rules_locked"].as_object() {
        s += &format!(
            "rules: LOCKED by the kernel (enabled 2, `-e 2`, until reboot): none applied; the config's differ by {} missing, {} unexpected\n",
            l.get("missing").map_or(0, n),
            l.get("unexpected").map_or(0, n)
        );
    }
    let mut dropped = String::new();
    if let Some(m) = e["dropped"].as_object() {
        for (reason, c) in m {
            if n(c) > 0 {
                dropped += &format!(" {reason}={}", n(c));
            }
        }
    }
    s += &format!(
        "events: {} records in, {} events out, {} filtered, {} records dropped{}\n",
        n(&e["records"]),
        n(&e["emitted"]),
        n(&e["filtered"]),
        n(&e["dropped_total"]),
        if dropped.is_empty() {
            String::new()
        } else {
            format!(" ({})", dropped.trim())
        }
    );
    if let Some(outs) = v["outputs"].as_array() {
        for o in outs {
            s += &format!(
                "output {} ({}): delivered {}, queued {}, spooled {}, lost {}\n",
                o["name"].as_str().unwrap_or("?"),
                o["overflow"].as_str().unwrap_or("?"),
                n(&o["delivered"]),
                n(&o["in_flight"]),
                n(&o["spooled"]),
                n(&o["lost"])
            );
        }
    }
    s
}

/// `pauditd status`: the daemon's answer; without one, the kernel's own status (AUDIT_GET, as
/// `auditctl -s` shows it), saying that no daemon answered, and exit 1.
pub fn client(socket: &Path, json: bool) -> Result<std::process::ExitCode> {
    let why = if socket.as_os_str().is_empty() {
        anyhow::anyhow!("the status socket is off (status.socket is empty)")
    } else {
        match query(socket) {
            Ok(v) => {
                if json {
                    println!("{v}");
                } else {
                    print!("{}", render(&v));
                }
                return Ok(std::process::ExitCode::SUCCESS);
            }
            Err(e) => e,
        }
    };
    let kernel = pauditd_engine::session::StatusPoller::new().and_then(|p| p.status());
    if json {
        let k = kernel.as_ref().ok().map(kernel_json);
        println!(
            "{}",
            serde_json::json!({
                "daemon": null,
                "error": format!("{why:#}"),
                "kernel": k,
            })
        );
    } else {
        eprintln!("pauditd: no daemon answered: {why:#}");
        if let Ok(k) = &kernel {
            print!("{}", render_kernel(k));
        }
    }
    if let Err(e) = kernel {
        eprintln!(
            "pauditd: cannot read the kernel's audit status either: {e} (needs root or CAP_AUDIT_CONTROL)"
        );
    }
    Ok(std::process::ExitCode::FAILURE)
}

fn kernel_json(k: &pauditd_engine::netlink::AuditStatus) -> Value {
    serde_json::json!({
        "pid": k.pid,
        "enabled": k.enabled,
        "failure": k.failure,
        "rate_limit": k.rate_limit,
        "lost": k.lost,
        "backlog": k.backlog,
        "backlog_limit": k.backlog_limit,
        "backlog_wait_time": k.backlog_wait_time,
        "backlog_wait_time_actual": k.backlog_wait_time_actual,
    })
}

/// The kernel's status when no daemon answered; names the process holding the audit pid.
fn render_kernel(k: &pauditd_engine::netlink::AuditStatus) -> String {
    let holder = match k.pid {
        0 => " (no audit daemon: records go to the kernel log)".to_string(),
        pid => match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(c) => format!(" ({})", c.trim()),
            Err(_) => String::new(),
        },
    };
    format!(
        "kernel: audit pid {}{holder}, enabled {}, failure {}, rate_limit {}, lost {}, backlog {}/{}, backlog_wait_time {}, backlog_wait_time_actual {}\n",
        k.pid,
        k.enabled,
        k.failure,
        k.rate_limit,
        k.lost,
        k.backlog,
        k.backlog_limit,
        k.backlog_wait_time,
        k.backlog_wait_time_actual
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The socket is 0600 in a 0700 directory we made, nothing else is left beside it, it
    /// answers, a second daemon is refused, and it is gone when the server is dropped.
    #[test]
    fn the_socket_is_private_answers_and_goes_away() {
        let base = std::env::temp_dir().join(format!("pauditd-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let path = base.join("run/status.sock");
        let server = StatusServer::start(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(
            std::fs::metadata(base.join("run")).unwrap().mode() & 0o7777,
            0o700
        );
        let names: Vec<_> = std::fs::read_dir(base.join("run"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("status.sock")]);
        server.publish(&serde_json::json!({"pid": 7}));
        assert_eq!(query(&path).unwrap()["pid"], 7);
        let again = StatusServer::start(&path).err().unwrap().to_string();
        assert!(
            again.contains("in use by another running daemon"),
            "{again}"
        );
        drop(server);
        assert!(std::fs::symlink_metadata(&path).is_err(), "removed at exit");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
