//! Hostile input and hostile configs (issue #12), through the binary as a user runs it: each
//! reproduction gives a bounded result with a clear message or a counted drop. Sizes are the
//! ones that showed the problem where that stays fast; bounds are on counts, never on time.

use std::path::{Path, PathBuf};
use std::process::Output;

#[path = "support/bin.rs"]
mod bin;
use bin::{run_with_stdin as run, stderr};

fn tempdir(tag: &str) -> PathBuf {
    bin::tempdir("hostile", tag)
}

fn config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("c.yaml");
    std::fs::write(&p, body).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// One line on stderr, exit 1: the shape every error of the CLI has.
fn assert_one_line_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("pauditd: "), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

#[test]
fn deeply_nested_yaml_is_refused_before_parsing() {
    let dir = tempdir("deep");
    for text in [
        "[".repeat(100_000) + &"]".repeat(100_000),
        "x: ".to_string() + &"{a: ".repeat(40_000),
    ] {
        let c = config(&dir, &text);
        let o = run(&["check-config", c.to_str().unwrap()], b"");
        assert_one_line_error(&o, "nested more than 64 deep");
    }
    let c = config(&dir, &"# padding\n".repeat(200_000));
    let o = run(&["check-config", c.to_str().unwrap()], b"");
    assert_one_line_error(&o, "at most 1048576 are read");
}

#[test]
fn a_config_in_a_directory_anyone_can_write_is_refused() {
    let dir = tempdir("openparent");
    let open = dir.join("open");
    std::fs::create_dir(&open).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let c = config(&open, "output: {stdout: {enabled: true}}\n");
    let o = run(&["replay", "--config", c.to_str().unwrap(), "-"], b"");
    assert_one_line_error(&o, "which anyone may write");
    // With the sticky bit (like /tmp) only the owner can replace it: accepted.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let o = run(&["replay", "--config", c.to_str().unwrap(), "-"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_huge_integer_is_out_of_range_reported_with_every_other_error() {
    let dir = tempdir("bigint");
    let c = config(
        &dir,
        "events:\n  max: 99999999999999999999\n  min: -5\noutput:\n  file: {enabled: true, mode: 0}\n",
    );
    let o = run(&["check-config", c.to_str().unwrap()], b"");
    let err = stderr(&o);
    assert_one_line_error(&o, "events.max: 99999999999999999999 is out of range");
    for e in [
        "events.min: -5 is out of range",
        "output.file.mode: 0 is out of range",
        "output.file.path: must be set",
    ] {
        assert!(err.contains(e), "{e} not in {err}");
    }
}

#[test]
fn check_config_fails_for_what_would_not_start() {
    let dir = tempdir("preflight");
    let c = config(
        &dir,
        &format!(
            "rules: ['-a exit,always -S execve']\noutput:\n  file: {{enabled: true, path: {}/missing/x.log}}\nparser: {{password_file_path: {}/no-passwd}}\n",
            dir.display(),
            dir.display()
        ),
    );
    let o = run(&["check-config", c.to_str().unwrap()], b"");
    assert_one_line_error(&o, "invalid config (2 errors)");
    let err = stderr(&o);
    assert!(err.contains("output.file.path: the directory"), "{err}");
    assert!(err.contains("parser.password_file_path:"), "{err}");
    let c = config(
        &dir,
        &format!(
            "rules: ['-a exit,always -S execve']\noutput:\n  file: {{enabled: true, path: {}}}\n",
            dir.display()
        ),
    );
    let o = run(&["check-config", c.to_str().unwrap()], b"");
    assert_one_line_error(&o, "is a directory");
}

#[test]
fn too_many_filters_is_a_clear_error() {
    let dir = tempdir("filters");
    let mut text = String::from("output: {stdout: {enabled: true}}\nfilters:\n");
    for i in 0..1001 {
        text.push_str(&format!("  - {{key: k{i}, regex: x}}\n"));
    }
    let c = config(&dir, &text);
    let o = run(&["check-config", c.to_str().unwrap()], b"");
    assert_one_line_error(&o, "filters: 1001 filters; at most 1000");
}

#[test]
fn input_cannot_forge_a_log_line() {
    // A key hex-encoding "a", 0x01, "\nERROR: forged\x1b[2J": pauditd logs multi-key events.
    let key: String = b"a\x01\nERROR: forged\x1b[2J"
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let input = format!(
        "type=SYSCALL msg=audit(1.000:5): syscall=59 key={key}\ntype=EOE msg=audit(1.000:5): \n"
    );
    let o = run(&["replay", "-"], input.as_bytes());
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("more than one value"), "{err}");
    assert!(
        !err.lines().any(|l| l.starts_with("ERROR: forged")),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "{err}");
}

#[test]
fn split_events_are_counted_and_said() {
    // 300 interleaved 3-record events whose records are 400 lines apart, with --window 100:
    // each event completes before its next record arrives, so it is split. Say so.
    let mut lines = Vec::new();
    for part in 0..3 {
        for s in 1..=300 {
            lines.push(format!(
                "type=PATH msg=audit(1.000:{s}): item={part} name=\"/x\""
            ));
        }
        lines.extend((0..100).map(|i| {
            format!(
                "type=PATH msg=audit(1.000:{}): pad",
                10_000 + part * 100 + i
            )
        }));
    }
    let o = run(
        &["replay", "--window", "100", "-"],
        lines.join("\n").as_bytes(),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("records_after_completion=600"), "{err}");
    assert!(err.contains("the event is split"), "{err}");
}

#[test]
fn two_records_on_one_line_are_two_records_and_crlf_is_stripped() {
    let input = b"type=CWD msg=audit(1.000:5): cwd=\"/\" type=SYSCALL msg=audit(1.000:5): syscall=2 key=\"two\"\r\ntype=EOE msg=audit(1.000:5): \r\n";
    let o = run(&["replay", "-"], input);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let out = String::from_utf8(o.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let types: Vec<u64> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_u64().unwrap())
        .collect();
    assert_eq!(types, [1307, 1300]);
    assert_eq!(v["rule_key"], "two");
    assert_eq!(v["messages"][0]["data"], "cwd=\"/\"");
    assert!(!out.contains("\\r"), "{out}");
    assert!(err.contains("records=3 grouped=2 eoe=1"), "{err}");
}

#[test]
fn cli_errors_are_one_line_and_exit_1() {
    for (args, needle) in [
        (&["replay", "--window", "0"][..], "--window"),
        (&["--bogus"][..], "--bogus"),
        (&["replay", "a.log", "b.log"][..], "'b.log'"),
        (&["check-config"][..], "<FILE>"),
    ] {
        let o = run(args, b"");
        assert_one_line_error(&o, needle);
    }
    let o = run(&["--help"], b"");
    assert!(o.status.success());
}

#[test]
fn a_huge_replay_window_is_bounded_by_the_open_event_limit() {
    // 150,000 events without EOE and a window larger than the input: the open-event bound
    // (100,000) completes the oldest early, counted and said.
    let mut input = String::new();
    for s in 1..=150_000 {
        input.push_str(&format!(
            "type=SYSCALL msg=audit(1.000:{s}): syscall=1 key=k\n"
        ));
    }
    let o = run(&["replay", "--window", "100000000", "-"], input.as_bytes());
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("events_evicted=50000"), "{err}");
    assert!(err.contains("too many open events"), "{err}");
    assert_eq!(o.stdout.iter().filter(|&&b| b == b'\n').count(), 150_000);
}
