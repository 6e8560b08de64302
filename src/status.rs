//! `pauditd status`: the daemon's side (a root-only unix socket answering with a JSON
//! snapshot) and the client's (ask, then print a few readable lines or the JSON).
//!
//! Owns the socket and the rendering. The snapshot itself is built by the main loop once a
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
    latest: Arc<Mutex<String>>,
}

impl StatusServer {
    /// Listen on `path` (its directory made 0700, the socket 0600: audit state is root's).
    /// A stale socket from a crashed daemon is replaced; a live one is refused.
    pub fn start(path: &Path) -> Result<StatusServer> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                bail!("{} is in use by another running daemon", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale {}", path.display()))?;
        }
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
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
            latest,
        })
    }

    pub fn publish(&self, snapshot: &Value) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = snapshot.to_string();
    }
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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
