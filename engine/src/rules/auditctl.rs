//! pauditd's way to load rules: the `auditctl` binary, flush then one run per line. Owns
//! finding `auditctl` and running it. It must never pass a line through a shell, and never
//! carry on past a failing line unless `-c`/`-i` came before it.

use super::{RuleError, RuleSource};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where auditctl is: on PATH, or in the sbin directories sudo's PATH may lack.
pub fn find_auditctl() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("auditctl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("auditctl"))
}

pub(super) fn run(auditctl: &Path, args: &[&str]) -> Result<Result<(), String>, RuleError> {
    let out = Command::new(auditctl)
        .args(args)
        .output()
        .map_err(|error| RuleError::Spawn {
            path: auditctl.display().to_string(),
            error,
        })?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if msg.is_empty() {
        msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    if msg.is_empty() {
        msg = format!("auditctl exited with {}", out.status);
    }
    Ok(Err(msg.replace('\n', "; ")))
}

/// pauditd's way: flush, then each line through auditctl in turn, stopping at the first
/// failure with the line's origin and auditctl's message; after a `-i` or `-c` line a line
/// that fails is logged and skipped instead (each line is its own auditctl run, so auditctl
/// cannot carry the option from one line to the next: we do). Returns how many ran, and the
/// skipped lines (`origin: text: auditctl's message`).
pub(super) fn auditctl_load(
    auditctl: &Path,
    sources: &[RuleSource],
) -> Result<(usize, Vec<String>), RuleError> {
    if sources.is_empty() {
        return Err(RuleError::Empty);
    }
    run(auditctl, &["-D"])?.map_err(RuleError::Flush)?;
    log::info!("Flushed existing audit rules");
    let (mut added, mut skipped, mut tolerant) = (0, Vec::new(), false);
    for src in sources {
        let args = src.args();
        if matches!(args.as_slice(), ["-i"] | ["-c"]) {
            tolerant = true;
        }
        match run(auditctl, &args)? {
            Ok(()) => {
                log::info!("Added audit {}", src.origin);
                added += 1;
            }
            Err(message) if tolerant => {
                let why = format!("{}: {}: {message}", src.origin, src.text);
                log::warn!("{why}; skipped (-c/-i)");
                skipped.push(why);
            }
            Err(message) => {
                return Err(RuleError::Rule {
                    origin: src.origin.clone(),
                    message,
                })
            }
        }
    }
    Ok((added, skipped))
}
