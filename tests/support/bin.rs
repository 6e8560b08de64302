//! Running the built binary as a user would, shared by the CLI and hostile-input tests.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub fn pauditd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pauditd"));
    c.env("PAUDITD_LOG", "info");
    c
}

/// Run with `args`, `input` on stdin (written from another thread so a full pipe cannot
/// deadlock), and collect stdout and stderr.
pub fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = pauditd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh directory under the system temp dir, named after the test binary and `tag`.
pub fn tempdir(binary: &str, tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pauditd-{binary}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
