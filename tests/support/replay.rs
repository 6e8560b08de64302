//! `pauditd replay` as a user runs it, its stdout read back as one JSON value per line, for
//! the tests that compare our formats with other tools' expected output.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// `pauditd replay --format FORMAT -config tests/data/FORMAT/replay.yaml --passwd PASSWD
/// --group GROUP INPUT`; fails the test if replay fails.
pub fn json_lines(format: &str, passwd: &Path, group: &Path, input: &Path) -> Vec<Value> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_pauditd"))
        .arg("replay")
        .arg("-config")
        .arg(root.join("tests/data").join(format).join("replay.yaml"))
        .args(["--format", format])
        .arg("--passwd")
        .arg(passwd)
        .arg("--group")
        .arg(group)
        .arg(input)
        .env("PAUDITD_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
