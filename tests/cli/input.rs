//! Bad input to `replay`: garbage, NUL and random bytes, a missing file; never a panic, one
//! line of error, drops counted.

use super::*;

#[test]
fn replay_from_stdin_with_garbage_counts_drops_and_keeps_going() {
    let mut input = Vec::new();
    input.extend_from_slice(b"\x00\x00\x00garbage\xff\xfe\n");
    input.extend(std::iter::repeat_n(b'A', 10 << 20)); // a 10 MB line
    input.push(b'\n');
    input.extend_from_slice(b"type=SYSCALL msg=audit(1.0\n");
    input.extend_from_slice(EVENT.as_bytes());
    let o = run_with_stdin(&["replay", "-"], &input);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert_eq!(out.lines().count(), 1);
    assert!(out.starts_with("{\"sequence\":5,"));
    let e = stderr(&o);
    assert!(e.contains("dropped.not_a_record=1"), "{e}");
    assert!(e.contains("dropped.line_too_long=1"), "{e}");
    assert!(e.contains("dropped.bad_header=1"), "{e}");
    assert!(!e.contains("panicked"));
}

#[test]
fn replay_of_nul_bytes_and_random_bytes_never_panics() {
    let o = run_with_stdin(&["replay"], &vec![0u8; 1 << 20]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("dropped.not_a_record=1"));

    // Deterministic pseudo-random bytes with record-like fragments mixed in.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut input = Vec::new();
    for i in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match i % 1000 {
            0 => input.extend_from_slice(b"\ntype=SYSCALL msg=audit("),
            1 => input.extend_from_slice(b"):"),
            _ => input.push(x as u8),
        }
    }
    let o = run_with_stdin(&["replay"], &input);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn replay_missing_file_is_one_line_error() {
    let o = pauditd()
        .args(["replay", "/nonexistent/audit.log"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot open /nonexistent/audit.log"));
}
