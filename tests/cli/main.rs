//! The binary as an operator runs it: exit codes, one-line errors, bad input, outputs.
//!
//! By feature: the operator's commands (`operator`), bad input (`input`), filters and formats
//! (`filters`), outputs (`outputs`); here, what they share.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[path = "../support/bin.rs"]
mod bin;
use bin::{pauditd, run_with_stdin, stderr};

mod filters;
mod input;
mod operator;
mod outputs;

fn tempdir(tag: &str) -> PathBuf {
    bin::tempdir("cli", tag)
}

const EVENT: &str =
    "type=SYSCALL msg=audit(1.000:5): syscall=59 uid=0 key=\"k\"\ntype=EOE msg=audit(1.000:5): \n";

/// `pauditd replay` of tests/data/edge-cases.log with `cfg`, names from tests/data/passwd.
fn replay_edge_cases(cfg: &Path) -> Output {
    pauditd()
        .args([
            "replay",
            "--passwd",
            "tests/data/passwd",
            "tests/data/edge-cases.log",
            "--config",
        ])
        .arg(cfg)
        .current_dir(root())
        .output()
        .unwrap()
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("pauditd.yaml");
    std::fs::write(&p, body).unwrap();
    p
}

#[path = "../../sinks/tests/support/httpd.rs"]
mod httpd;

fn wait_for(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "condition not met in 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `n` whole events with serials 1..=n, as auditd log lines.
fn many_events(n: u64) -> Vec<u8> {
    let mut s = String::new();
    for i in 1..=n {
        s.push_str(&format!(
            "type=SYSCALL msg=audit(1.000:{i}): syscall=59 uid=0 key=\"k\"\ntype=EOE msg=audit(1.000:{i}): \n"
        ));
    }
    s.into_bytes()
}

/// The value of `name=` in the accounting line of output `output` in `log`.
fn accounting_field(log: &str, output: &str, name: &str) -> u64 {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(&format!("output {output}: written=")))
        .unwrap_or_else(|| panic!("no accounting for {output}: {log}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {line}"))
}

/// Wait for `child` at most `secs` (no timing claim: a bound so a hang fails instead of
/// stalling the suite).
fn wait_exit(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("still running after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether signal `signo` is still pending for process `pid` (not yet taken by any thread).
fn signal_pending(pid: u32, signo: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("ShdPnd:")
                .or_else(|| l.strip_prefix("SigPnd:"))
        })
        .filter_map(|v| u64::from_str_radix(v.trim(), 16).ok())
        .any(|mask| mask & (1 << (signo - 1)) != 0)
}
