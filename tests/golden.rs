//! Golden tests: real audit logs through `pauditd replay`, output pinned beside them.
//!
//! Inputs: every log of `../shared/corpus/` (read-only, public samples) and the project's own
//! fixtures `tests/data/*.log`. Expected output: `tests/data/corpus/NAME.json` and
//! `tests/data/NAME.json`. Regenerate with `make goldens` (UPDATE_GOLDENS=1) and review the
//! diff. User and group names come from `tests/data/passwd` and `tests/data/group`, so output
//! does not depend on the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[path = "support/corpus.rs"]
mod corpus;

fn corpus_dir() -> PathBuf {
    corpus::dir()
}

fn replay(input: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pauditd"))
        .arg("replay")
        .arg("--passwd")
        .arg(root().join("tests/data/passwd"))
        .arg("--group")
        .arg(root().join("tests/data/group"))
        .args(extra)
        .arg(input)
        .env("PAUDITD_LOG", "warn")
        .output()
        .expect("run pauditd")
}

fn check_golden(input: &Path, expected: &Path) {
    check_golden_with(input, expected, &[]);
}

fn check_golden_with(input: &Path, expected: &Path, extra: &[&str]) {
    let out = replay(input, extra);
    assert!(
        out.status.success(),
        "{} exited {:?}: {}",
        input.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if std::env::var_os("UPDATE_GOLDENS").is_some() {
        std::fs::create_dir_all(expected.parent().unwrap()).unwrap();
        std::fs::write(expected, &out.stdout).unwrap();
        return;
    }
    let want = std::fs::read(expected)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make goldens`)", expected.display()));
    if out.stdout != want {
        let got = String::from_utf8_lossy(&out.stdout);
        let want = String::from_utf8_lossy(&want);
        for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
            assert_eq!(g, w, "{}: line {} differs", input.display(), i + 1);
        }
        assert_eq!(
            got.lines().count(),
            want.lines().count(),
            "{}: line count",
            input.display()
        );
        panic!(
            "{}: output differs from {}",
            input.display(),
            expected.display()
        );
    }
}

fn logs_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn every_corpus_log_replays_to_its_golden() {
    if !corpus::present("the corpus goldens") {
        return;
    }
    let logs = logs_in(&corpus_dir(), "txt");
    assert!(
        logs.len() >= 30,
        "corpus not found at {}",
        corpus_dir().display()
    );
    for log in logs {
        let name = log.file_stem().unwrap().to_str().unwrap();
        check_golden(&log, &root().join(format!("tests/data/corpus/{name}.json")));
    }
}

#[test]
fn own_fixtures_replay_to_their_goldens() {
    let mut logs = logs_in(&root().join("tests/data"), "log");
    // Real logs kept in the repository (Apache-2.0, see tests/data/README.md).
    logs.extend(logs_in(&root().join("tests/data/go-libaudit"), "log"));
    assert!(logs.len() >= 12, "fixtures missing: {logs:?}");
    logs.push(root().join("examples/sample.log"));
    for log in logs {
        let golden = log.with_extension("json");
        check_golden(&log, &golden);
    }
}

#[test]
fn interleaved_events_stay_whole() {
    if !corpus::present("interleaved_events_stay_whole") {
        return;
    }
    // shell-proc-trace-reordered: every EOE comes after all events, in reverse order.
    let out = replay(&corpus_dir().join("shell-proc-trace-reordered.txt"), &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    let serials: Vec<&str> = text
        .lines()
        .map(|l| {
            l.split(',')
                .next()
                .unwrap()
                .trim_start_matches("{\"sequence\":")
        })
        .collect();
    assert_eq!(
        serials,
        ["29245", "29244", "29243", "29242", "29241", "29240", "29239", "29238", "29237"],
        "EOE order"
    );
    let exec = text
        .lines()
        .find(|l| l.starts_with("{\"sequence\":29238,"))
        .unwrap();
    assert_eq!(
        exec.matches("{\"type\":").count(),
        7,
        "all 7 records of 29238 in one event"
    );
}

#[test]
fn window_size_does_not_change_output_when_events_do_not_straddle_it() {
    if !corpus::present("the window-size test") {
        return;
    }
    for log in [
        "shell-proc-trace.txt",
        "proc-trace-dpkg-l.txt",
        "fork-sleep-exec.txt",
    ] {
        let input = corpus_dir().join(log);
        let base = replay(&input, &[]).stdout;
        for window in ["20", "100000"] {
            assert_eq!(
                replay(&input, &["--window", window]).stdout,
                base,
                "{log} window {window}"
            );
        }
    }
}

/// `--format enriched`: the project's decoding fixtures (EXECVE pieces over two records,
/// newline and non-ASCII arguments, inet6/unix socket addresses, an errno, text that is not
/// UTF-8, a nested user message, an unknown type) against their goldens
/// `tests/data/enriched/NAME.json`. All record types kept (`replay.yaml`).
#[test]
fn enriched_fixtures_replay_to_their_goldens() {
    format_fixtures("enriched", &["enriched"]);
}

/// Every `*.log` of `tests/data/<d>` for each `d` of `inputs`, replayed with `--format
/// format` and `tests/data/<format>/replay.yaml`, against `tests/data/<format>/NAME.json`.
fn format_fixtures(format: &str, inputs: &[&str]) {
    let dir = root().join("tests/data").join(format);
    let cfg = dir.join("replay.yaml");
    let logs: Vec<PathBuf> = inputs
        .iter()
        .flat_map(|d| logs_in(&root().join("tests/data").join(d), "log"))
        .collect();
    assert!(!logs.is_empty());
    for log in logs {
        let name = log.file_stem().unwrap().to_string_lossy().into_owned();
        check_golden_with(
            &log,
            &dir.join(format!("{name}.json")),
            &["--format", format, "-config", cfg.to_str().unwrap()],
        );
    }
}

/// `--format ecs`: the enriched decoding fixtures again, and the ECS fixtures, against
/// `tests/data/ecs/NAME.json` (all record types kept, as auditbeat reads them).
#[test]
fn ecs_fixtures_replay_to_their_goldens() {
    format_fixtures("ecs", &["enriched", "ecs"]);
}
