//! Loading audit rules through `auditctl`, as pauditd does.
//!
//! Owns running `auditctl -D` and then one `auditctl` per configured rule, each rule split on
//! whitespace into an argument vector (never through a shell), stopping at the first failure
//! with the rule's number and auditctl's own message. It must never edit rules itself.

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
