//! Loading audit rules: through `auditctl`, as pauditd does, or natively over netlink.
//!
//! Owns the loading order (delete everything, then each configured rule in turn, stopping at
//! the first failure with the rule's number and the reason) for both loaders: `auditctl` runs
//! once per rule, each rule split on whitespace into an argument vector (never through a
//! shell), with auditctl's own message on failure; the native loader encodes each rule
//! ([`crate::auditrule`]) and sends it on a socket of its own, explaining the kernel's errno.
//! It must never keep state about which rules are loaded: the caller does.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("cannot run {path}: {error} (is the auditd package installed?)")]
    Spawn { path: String, error: std::io::Error },
    #[error("Failed to flush existing audit rules: {0}")]
    Flush(String),
    #[error("failed to add rule #{number}: {message}")]
    Rule { number: usize, message: String },
    #[error("No audit rules found")]
    Empty,
}

/// Where auditctl is: on PATH, or in the sbin directories sudo's PATH may lack.
pub fn find_auditctl() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("auditctl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("auditctl"))
}

fn run(auditctl: &Path, args: &[&str]) -> Result<Result<(), String>, RuleError> {
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

/// Delete every rule (at shutdown: auditing with no daemon only costs the host).
pub fn flush(auditctl: &Path) -> Result<(), RuleError> {
    run(auditctl, &["-D"])?.map_err(RuleError::Flush)
}

/// Flush the kernel's rules and load `rules` in order. Returns how many were added.
pub fn load(auditctl: &Path, rules: &[String]) -> Result<usize, RuleError> {
    if rules.iter().all(|r| r.trim().is_empty()) {
        return Err(RuleError::Empty);
    }
    run(auditctl, &["-D"])?.map_err(RuleError::Flush)?;
    log::info!("Flushed existing audit rules");
    let mut added = 0;
    for (i, rule) in rules.iter().enumerate() {
        let args: Vec<&str> = rule.split_whitespace().collect();
        if args.is_empty() {
            continue;
        }
        run(auditctl, &args)?.map_err(|message| RuleError::Rule {
            number: i + 1,
            message,
        })?;
        log::info!("Added audit rule #{}", i + 1);
        added += 1;
    }
    Ok(added)
}

/// How rules reach the kernel (`rules_loader`).
pub enum RuleLoader {
    /// One `auditctl` run per rule (pauditd's way; needs the auditd package).
    Auditctl(PathBuf),
    /// Our own encoding over netlink ([`crate::auditrule`]), on a socket of its own so the
    /// kernel's answers come back here and not through the receiver.
    Native(crate::netlink::AuditSocket),
}

/// The kernel's answer to a rule, in words.
fn explain(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EEXIST) => "the kernel already has this rule (duplicate)".into(),
        Some(libc::EINVAL) => {
            "the kernel refused it (EINVAL: a field or syscall it does not know for this arch)"
                .into()
        }
        Some(libc::ENOENT) => "a path it names (exe=, dir=) does not exist (ENOENT)".into(),
        Some(libc::EPERM) => {
            "not permitted (EPERM): the rules are locked (`-e 2` was set) or CAP_AUDIT_CONTROL is missing".into()
        }
        _ => e.to_string(),
    }
}

const ACK: std::time::Duration = std::time::Duration::from_secs(3);

impl RuleLoader {
    pub fn native() -> std::io::Result<RuleLoader> {
        Ok(RuleLoader::Native(crate::netlink::AuditSocket::open(
            crate::netlink::Mode::Unicast,
        )?))
    }

    /// Delete every rule.
    pub fn flush(&self) -> Result<(), RuleError> {
        match self {
            RuleLoader::Auditctl(p) => flush(p),
            RuleLoader::Native(s) => delete_all(s).map_err(|e| RuleError::Flush(explain(&e))),
        }
    }

    /// Flush the kernel's rules and load `rules` in order. Returns how many were added.
    pub fn load(&self, rules: &[String]) -> Result<usize, RuleError> {
        let s = match self {
            RuleLoader::Auditctl(p) => return load(p, rules),
            RuleLoader::Native(s) => s,
        };
        if rules.iter().all(|r| r.trim().is_empty()) {
            return Err(RuleError::Empty);
        }
        delete_all(s).map_err(|e| RuleError::Flush(explain(&e)))?;
        log::info!("Flushed existing audit rules");
        let mut added = 0;
        for (i, rule) in rules.iter().enumerate() {
            let args: Vec<&str> = rule.split_whitespace().collect();
            let fail = |message: String| RuleError::Rule {
                number: i + 1,
                message: format!("{rule}: {message}"),
            };
            match args.as_slice() {
                [] | ["-i"] | ["-c"] => continue,
                ["-D"] => delete_all(s).map_err(|e| fail(explain(&e)))?,
                [opt, v] if status_field(opt).is_some() => {
                    let n: u32 = v
                        .parse()
                        .map_err(|_| fail(format!("{v:?} is not a number")))?;
                    let mut st = crate::netlink::AuditStatus {
                        mask: status_field(opt).expect("checked"),
                        ..Default::default()
                    };
                    match *opt {
                        "-e" => st.enabled = n,
                        "-f" => st.failure = n,
                        "-r" => st.rate_limit = n,
                        "-b" => st.backlog_limit = n,
                        _ => st.backlog_wait_time = n,
                    }
                    let seq = s.set_status(st).map_err(|e| fail(explain(&e)))?;
                    s.wait_ack(seq, ACK).map_err(|e| fail(explain(&e)))?;
                }
                _ => {
                    let data = crate::auditrule::parse(&args).map_err(|e| fail(e.to_string()))?;
                    s.change_rule(crate::auditrule::AUDIT_ADD_RULE, &data.to_bytes(), ACK)
                        .map_err(|e| fail(explain(&e)))?;
                    added += 1;
                }
            }
            log::info!("Added audit rule #{}", i + 1);
        }
        Ok(added)
    }
}

/// The `AUDIT_SET` mask bit of a control option (`-e`, `-f`, `-r`, `-b`,
/// `--backlog_wait_time`).
fn status_field(opt: &str) -> Option<u32> {
    Some(match opt {
        "-e" => 1,
        "-f" => 2,
        "-r" => 8,
        "-b" => 16,
        "--backlog_wait_time" => 32,
        _ => return None,
    })
}

/// Delete every rule the kernel lists.
fn delete_all(s: &crate::netlink::AuditSocket) -> std::io::Result<()> {
    for rule in s.list_rules(ACK)? {
        s.change_rule(crate::auditrule::AUDIT_DEL_RULE, &rule, ACK)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in auditctl (a real executable) that records each invocation's argv, one
    /// argument per line, so we see exactly what reached it.
    fn recorder(dir: &Path) -> (PathBuf, PathBuf) {
        let log = dir.join("argv.log");
        let exe = dir.join("auditctl");
        std::fs::write(
            &exe,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> {}; done\necho -- >> {}\n",
                log.display(),
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        (exe, log)
    }

    #[test]
    fn rules_reach_auditctl_as_argument_vectors_never_through_a_shell() {
        let dir = std::env::temp_dir().join(format!("pauditd-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (exe, log) = recorder(&dir);
        let pwned = dir.join("pwned");
        let rules = vec![
            "-a exit,always  -S execve\t-k exec".to_string(),
            format!(
                "-w /etc/passwd;touch {} -k $(touch {})",
                pwned.display(),
                pwned.display()
            ),
        ];
        assert_eq!(load(&exe, &rules).unwrap(), 2);
        let argv = std::fs::read_to_string(&log).unwrap();
        let p = pwned.display();
        assert_eq!(
            argv,
            format!(
                "-D\n--\n-a\nexit,always\n-S\nexecve\n-k\nexec\n--\n-w\n/etc/passwd;touch\n{p}\n-k\n$(touch\n{p})\n--\n"
            )
        );
        assert!(!pwned.exists(), "a shell ran the rule");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
