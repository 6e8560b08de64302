use super::*;
use std::os::unix::fs::PermissionsExt;

use pauditd_engine::Event;

/// Failpoints are process-wide: while a crash-window test has one armed, no other spool test
/// may run (its acknowledgements would hit it). Every test here holds this lock.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn batch(first: i64, n: i64) -> Batch {
    let mut b = Batch::default();
    for s in first..first + n {
        b.push_event(&Event::new(s, b"1.0"));
    }
    b
}

fn seqs(b: &Batch) -> Vec<i64> {
    b.lines()
        .map(|l| {
            let s = std::str::from_utf8(l).unwrap();
            let i = s.find("\"sequence\":").unwrap() + 11;
            s[i..].split(',').next().unwrap().parse().unwrap()
        })
        .collect()
}

fn cfg(dir: &Path, max: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: max,
        fsync: false,
        owner: None,
        write_ahead: false,
        dirs: Default::default(),
    }
}

fn open(dir: &Path) -> (Spool, Recovered) {
    Spool::open(cfg(dir, 1 << 30)).unwrap()
}

fn drain(s: &mut Spool) -> Vec<i64> {
    let mut out = vec![];
    while let Some(r) = s.peek().unwrap() {
        out.extend(seqs(&r.batch));
        s.ack(&r).unwrap();
    }
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn records_come_back_in_order_and_survive_reopen() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("spool");
    let (mut s, rec) = open(&dir);
    assert_eq!(rec, Recovered::default());
    s.append(&batch(1, 3), 0).unwrap();
    s.append(&batch(4, 4), 2).unwrap(); // 6, 7
    assert_eq!(s.events(), 5);
    let first = s.peek().unwrap().unwrap();
    assert_eq!(seqs(&first.batch), vec![1, 2, 3]);
    s.ack(&first).unwrap();
    drop(s);
    let (mut s, rec) = open(&dir);
    assert_eq!(rec.events, 2);
    assert_eq!(drain(&mut s), vec![6, 7]);
    assert!(s.is_empty());
    let mode = fs::metadata(&dir).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn ids_only_grow_across_memory_batches_and_restarts() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (s, _) = open(t.path());
    let (mut w, mut r) = s.split();
    w.append(&batch(1, 1), 0).unwrap(); // id 1
    let mem = w.assign_id(); // id 2, in memory
    assert_eq!(mem, 2);
    w.append(&batch(3, 1), 0).unwrap(); // id 3: a new segment (ids consecutive per segment)
    assert_eq!(segments(t.path()).len(), 2);
    let a = r.peek().unwrap().unwrap();
    assert_eq!(a.id, 1);
    r.ack(&a).unwrap();
    drop((w, r));
    let (s, rec) = open(t.path());
    assert_eq!(rec.events, 1);
    let (mut w, _) = s.split();
    assert_eq!(w.assign_id(), 4, "never below anything written before");
}

#[test]
fn unacknowledged_record_is_sent_again_after_a_crash() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (mut s, _) = open(t.path());
    s.append(&batch(1, 2), 0).unwrap();
    s.append(&batch(3, 2), 0).unwrap();
    let r = s.peek().unwrap().unwrap();
    assert_eq!(seqs(&r.batch), vec![1, 2]);
    drop(s); // crash before ack
    let (mut s, rec) = open(t.path());
    assert_eq!(rec.events, 4);
    assert_eq!(drain(&mut s), vec![1, 2, 3, 4]);
}

#[test]
fn held_batches_written_at_shutdown_come_before_later_spooled_ones() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (s, _) = open(t.path());
    let (mut w, mut r) = s.split();
    // Two batches went to the output in memory, then the queue filled and two were spooled.
    let (a, b) = (batch(1, 2), batch(3, 2));
    let ids = [w.assign_id(), w.assign_id()];
    w.append(&batch(5, 2), 0).unwrap();
    w.append(&batch(7, 1), 0).unwrap();
    // Shutdown while the destination is down: the held ones go to disk with their own ids.
    assert_eq!(r.write_held(&[(ids[0], &a), (ids[1], &b)]).unwrap(), 4);
    drop((w, r));
    let (mut s, rec) = open(t.path());
    assert_eq!(rec.events, 7);
    assert_eq!(drain(&mut s), vec![1, 2, 3, 4, 5, 6, 7]);
}

#[test]
fn a_flipped_byte_mid_segment_costs_only_its_record() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (mut s, _) = open(t.path());
    for i in 0..5 {
        s.append(&batch(i * 10, 3), 0).unwrap();
    }
    drop(s);
    let seg = &segments(t.path())[0];
    let mut bytes = fs::read(seg).unwrap();
    let rec_len = bytes.len() / 5;
    bytes[2 * rec_len + 40] ^= 0x55; // inside the third record's payload
    let third = HEADER as usize + batch(20, 3).bytes().len();
    fs::write(seg, &bytes).unwrap();
    let (mut s, rec) = open(t.path());
    assert_eq!(rec.events, 12, "four records of five recovered: {rec:?}");
    assert_eq!(
        rec.corrupt_events, 3,
        "the bad record's events are known: {rec:?}"
    );
    assert_eq!(rec.corrupt_regions, 1);
    assert_eq!(rec.corrupt_bytes, third as u64);
    assert_eq!(
        drain(&mut s),
        vec![0, 1, 2, 10, 11, 12, 30, 31, 32, 40, 41, 42]
    );
}

#[test]
fn a_huge_length_field_allocates_nothing_and_the_rest_is_read() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (mut s, _) = open(t.path());
    s.append(&batch(1, 2), 0).unwrap();
    s.append(&batch(3, 2), 0).unwrap();
    drop(s);
    let seg = &segments(t.path())[0];
    let mut bytes = fs::read(seg).unwrap();
    bytes[4..8].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    fs::write(seg, &bytes).unwrap();
    let (mut s, rec) = open(t.path());
    assert_eq!(rec.events, 2, "{rec:?}");
    assert_eq!(drain(&mut s), vec![3, 4]);
}

#[test]
fn torn_tails_are_skipped_and_counted() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (mut s, _) = open(t.path());
    s.append(&batch(1, 2), 0).unwrap();
    drop(s);
    let seg = &segments(t.path())[0];
    let mut f = fs::OpenOptions::new().append(true).open(seg).unwrap();
    f.write_all(&MAGIC.to_le_bytes()).unwrap();
    f.write_all(&[9; 30]).unwrap();
    drop(f);
    let (mut s, rec) = open(t.path());
    assert_eq!(rec.events, 2);
    assert_eq!(rec.corrupt_bytes, 34);
    assert_eq!(drain(&mut s), vec![1, 2]);
}

#[test]
fn a_ledger_past_everything_on_disk_is_ignored_not_obeyed() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (mut s, _) = open(t.path());
    s.append(&batch(1, 2), 0).unwrap();
    s.append(&batch(3, 2), 0).unwrap();
    drop(s);
    fs::write(t.path().join("ledger"), "999999\n").unwrap();
    let (mut s, rec) = open(t.path());
    assert!(rec.ledger_ignored);
    assert_eq!(rec.events, 4);
    assert_eq!(drain(&mut s), vec![1, 2, 3, 4]);
}

#[test]
fn garbage_and_strays_named_like_segments_do_not_disable_the_spool() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (mut s, _) = open(t.path());
    s.append(&batch(1, 2), 0).unwrap();
    drop(s);
    fs::create_dir(t.path().join(seg_name(500))).unwrap();
    fs::write(t.path().join(seg_name(600)), b"not a spool at all").unwrap();
    let (mut s, rec) = open(t.path());
    assert_eq!(rec.stray_entries, 1);
    assert_eq!(rec.corrupt_bytes, 18);
    assert!(
        t.path().join(format!("{}.corrupt", seg_name(600))).exists(),
        "an unreadable segment is kept aside, not deleted"
    );
    assert_eq!(drain(&mut s), vec![1, 2]);
    s.append(&batch(3, 1), 0).unwrap();
    assert_eq!(drain(&mut s), vec![3]);
}

#[test]
fn a_spool_of_the_previous_format_is_converted_from_its_cursor_on() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o700)).unwrap();
    // Two v1 segments (16-byte headers: magic, length, events, CRC-32 of the payload); the
    // cursor says the first record of the second one was delivered.
    let v1 = |batches: &[Batch]| -> (Vec<u8>, Vec<u64>) {
        let (mut out, mut offs) = (Vec::new(), Vec::new());
        for b in batches {
            offs.push(out.len() as u64);
            out.extend_from_slice(&V1_MAGIC.to_le_bytes());
            out.extend_from_slice(&(b.bytes().len() as u32).to_le_bytes());
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(&crc32fast::hash(b.bytes()).to_le_bytes());
            out.extend_from_slice(b.bytes());
        }
        (out, offs)
    };
    let first = 1u64 << 40;
    let (a, _) = v1(&[batch(1, 2)]);
    let (b, offs) = v1(&[batch(3, 2), batch(5, 2)]);
    fs::write(t.path().join(seg_name(first - 1)), a).unwrap();
    fs::write(t.path().join(seg_name(first)), b).unwrap();
    fs::write(t.path().join("cursor"), format!("{first} {}\n", offs[1])).unwrap();
    let (mut s, rec) = open(t.path());
    assert_eq!(rec.events, 2, "{rec:?}");
    assert!(!t.path().join("cursor").exists());
    assert_eq!(drain(&mut s), vec![5, 6]);
    drop(s);
    let (mut s, rec) = open(t.path());
    assert_eq!(rec.events, 0, "converted once: {rec:?}");
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_second_instance_is_refused_and_names_the_holder() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let (_s, _) = open(t.path());
    let err = Spool::open(cfg(t.path(), 1 << 30)).unwrap_err();
    match &err {
        SpoolError::Busy { holder, ours, .. } => {
            assert!(*ours);
            assert!(holder.contains(&std::process::id().to_string()), "{err}");
        }
        e => panic!("{e}"),
    }
}

#[test]
fn full_spool_refuses_appends_and_takes_them_again_after_delivery() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let one = batch(1, 4);
    let size = HEADER + one.bytes().len() as u64;
    let (mut s, _) = Spool::open(cfg(t.path(), size * 2)).unwrap();
    s.append(&one, 0).unwrap();
    s.append(&one, 0).unwrap();
    assert!(matches!(s.append(&one, 0), Err(SpoolError::Full { .. })));
    drain(&mut s);
    // The drained tail is deleted once sealed (the next append starts a new segment).
    s.writer.assign_id();
    s.append(&one, 0).unwrap();
    assert_eq!(s.events(), 4);
}

#[test]
fn a_directory_others_can_write_or_a_symlink_is_refused() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("open");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let err = Spool::open(cfg(&dir, 1 << 20)).unwrap_err();
    assert!(err.to_string().contains("writable by others"), "{err}");
    let real = t.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = Spool::open(cfg(&link, 1 << 20)).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
}

#[test]
fn links_planted_in_the_directory_are_never_followed() {
    let _serial = serial();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("spool");
    let victim = t.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    for name in [seg_name(1).as_str(), "ledger", "ledger.tmp"] {
        std::os::unix::fs::symlink(&victim, dir.join(name)).unwrap();
    }
    let (mut s, rec) = open(&dir);
    assert_eq!(rec.stray_entries, 1, "the segment link is ignored");
    s.append(&batch(1, 1), 0).unwrap_err(); // its id's name is taken by the link: refused
    s.append(&batch(2, 1), 0).unwrap(); // the next id works
    assert_eq!(drain(&mut s), vec![2]);
    drop(s);
    let _ = open(&dir);
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert_eq!(fs::metadata(&victim).unwrap().mode() & 0o777, 0o600);
}

/// Crash windows, forced with failpoints: after each, a restart delivers every event
/// (duplicates allowed), in order, and nothing is deleted unread.
#[cfg(feature = "failpoints")]
mod crash_windows {
    use super::*;

    /// Arm `name` for `f` (the caller holds [`serial`]).
    fn with_failpoint(name: &str, action: &str, f: impl FnOnce()) {
        let scenario = fail::FailScenario::setup();
        fail::cfg(name, action).unwrap();
        f();
        fail::remove(name);
        scenario.teardown();
    }

    /// Everything comes back once, in order, apart from duplicates of what was resent.
    fn assert_all_once_in_order(got: &[i64], want: &[i64]) {
        let mut dedup = got.to_vec();
        dedup.dedup();
        let mut seen = std::collections::BTreeSet::new();
        let firsts: Vec<i64> = got.iter().copied().filter(|s| seen.insert(*s)).collect();
        assert_eq!(firsts, want, "every event, in order: {got:?}");
    }

    #[test]
    fn torn_append() {
        let _serial = serial();
        let t = tempfile::tempdir().unwrap();
        let (mut s, _) = open(t.path());
        s.append(&batch(1, 2), 0).unwrap();
        with_failpoint("spool-append-torn", "return", || {
            s.append(&batch(3, 2), 0).unwrap_err();
        });
        // The writer cut the torn bytes; even if it had not (a real crash), recovery skips them.
        drop(s);
        let seg = &segments(t.path())[0];
        let mut f = fs::OpenOptions::new().append(true).open(seg).unwrap();
        f.write_all(&super::record::header(b"x\n", 1, 2)[..12])
            .unwrap();
        drop(f);
        let (mut s, rec) = open(t.path());
        assert_eq!(rec.events, 2);
        s.append(&batch(3, 2), 0).unwrap();
        assert_all_once_in_order(&drain(&mut s), &[1, 2, 3, 4]);
    }

    #[test]
    fn written_but_not_published() {
        let _serial = serial();
        let t = tempfile::tempdir().unwrap();
        let (mut s, _) = open(t.path());
        s.append(&batch(1, 2), 0).unwrap();
        with_failpoint("spool-append-written", "return", || {
            // Reported failed: the caller counts it (or keeps it); the data was cut.
            s.append(&batch(3, 2), 0).unwrap_err();
        });
        drop(s);
        let (mut s, _) = open(t.path());
        assert_all_once_in_order(&drain(&mut s), &[1, 2]);
    }

    fn ack_window(point: &str) {
        let t = tempfile::tempdir().unwrap();
        let (mut s, _) = open(t.path());
        s.append(&batch(1, 2), 0).unwrap();
        s.append(&batch(3, 2), 0).unwrap();
        s.writer.assign_id(); // seal: its segment may be deleted once delivered
        s.append(&batch(5, 2), 0).unwrap(); // never delivered before the crash
        let r = s.peek().unwrap().unwrap();
        s.ack(&r).unwrap();
        let r = s.peek().unwrap().unwrap();
        assert_eq!(seqs(&r.batch), vec![3, 4]);
        with_failpoint(point, "return", || {
            let _ = s.ack(&r);
        });
        drop(s); // the crash
        let (mut s, _) = open(t.path());
        // 1..=4 were delivered before the crash; 3, 4 may come again (at-least-once).
        let again = drain(&mut s);
        assert!(
            again == vec![5, 6] || again == vec![3, 4, 5, 6],
            "nothing undelivered lost, nothing out of order: {again:?}"
        );
        let mut got = vec![1, 2, 3, 4];
        got.extend(again);
        assert_all_once_in_order(&got, &[1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn between_ack_and_ledger() {
        let _serial = serial();
        ack_window("spool-ack-before-ledger");
    }

    #[test]
    fn between_ledger_write_and_rename() {
        let _serial = serial();
        ack_window("spool-ledger-rename");
    }

    #[test]
    fn between_ledger_and_delete() {
        let _serial = serial();
        ack_window("spool-delete");
    }

    #[test]
    fn directory_sync_failure() {
        let _serial = serial();
        ack_window("spool-dir-sync");
    }
}
