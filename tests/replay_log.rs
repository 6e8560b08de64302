//! What `pauditd replay` says on stderr about its input: one line per serial gap (not one per
//! missing serial), a bounded sample and a summary for a filtered log full of gaps, and one
//! note when `--format ecs` drops records auditbeat would read.

use std::io::Write;
use std::process::{Command, Stdio};

/// `pauditd replay ARGS -` with `input` on stdin: (stdout, stderr).
fn replay(args: &[&str], input: &str) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pauditd"))
        .arg("replay")
        .args(args)
        .arg("-")
        .env("PAUDITD_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let text = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn syscall(serial: u64) -> String {
    format!(
        "type=SYSCALL msg=audit(1700000000.{:03}:{serial}): arch=c000003e syscall=59 success=yes exit=0 pid=1 uid=0 auid=0 key=\"k\"\n",
        serial % 1000
    )
}

fn lines_with<'a>(stderr: &'a str, needle: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn one_gap_is_one_line_however_its_serials_expire() {
    // Serial 100, then 1101..=2000: a gap of 1000 behind a window of 500, whose first 500
    // are declared missed at once and the other 500 one by one.
    let mut input = syscall(100);
    for s in 1101..=2000 {
        input.push_str(&syscall(s));
    }
    let (out, err) = replay(&[], &input);
    assert_eq!(out.lines().count(), 901);
    let gaps = lines_with(&err, "missed sequence");
    assert_eq!(gaps.len(), 1, "{err}");
    assert!(
        gaps[0].contains("sequences 101 to 600 (500)")
            && gaps[0].contains("500 more up to 1100 still awaited"),
        "{}",
        gaps[0]
    );
    assert!(
        err.contains("serial gaps: 1 gap(s), 1000 serial(s) never seen, 0 seen late"),
        "{err}"
    );
    assert!(err.contains("seq_missed=1000"), "{err}");
}

#[test]
fn a_filtered_log_logs_a_sample_of_its_gaps_and_a_summary() {
    // 300 events, every other serial missing (what `ausearch -k` leaves), then the window.
    let mut input = String::new();
    for i in 0..300u64 {
        input.push_str(&syscall(1000 + 2 * i));
    }
    for s in 1599..2200 {
        input.push_str(&syscall(s));
    }
    let (_, err) = replay(&[], &input);
    let sampled = lines_with(&err, "missed sequence");
    // Gaps 1, 2, 4, ..., 256 of 299.
    assert_eq!(sampled.len(), 9, "{err}");
    assert!(sampled.iter().all(|l| l.contains("WARN: ")), "{err}");
    assert_eq!(lines_with(&err, "ERROR").len(), 0, "{err}");
    assert!(
        err.contains("serial gaps: 299 gap(s), 299 serial(s) never seen"),
        "{err}"
    );
}

#[test]
fn replay_format_ecs_says_once_that_the_range_drops_user_space_records() {
    let mut input = String::new();
    for s in 1..=50 {
        input.push_str(&format!(
            "type=USER_LOGIN msg=audit(1700000000.000:{s}): pid=7 uid=0 auid=1000 ses=1 msg='op=login id=1000 exe=\"/usr/sbin/sshd\" hostname=? addr=10.0.0.1 terminal=ssh res=success'\n"
        ));
    }
    input.push_str(&syscall(51));
    let (out, err) = replay(&["--format", "ecs"], &input);
    assert_eq!(out.lines().count(), 1, "only the SYSCALL event");
    let notes = lines_with(&err, "format ecs: records such as USER_LOGIN (1112)");
    assert_eq!(notes.len(), 1, "{err}");
    assert!(
        notes[0].contains("events: {min: 1006, max: 2999}"),
        "{}",
        notes[0]
    );
    assert!(err.contains("dropped.type_out_of_range=50"), "{err}");
    // The pauditd format drops them as pauditd does, without a note.
    let (_, err) = replay(&[], &input);
    assert!(lines_with(&err, "format ecs").is_empty(), "{err}");
}
