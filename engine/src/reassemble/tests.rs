use super::*;
use crate::header;
use crate::users::tests::FixedUsers;

fn reassembler(after: u64, restart: bool) -> Reassembler {
    Reassembler::new(ReassemblerConfig {
        min_type: 1100,
        max_type: 1399,
        completion: Completion {
            after,
            restart_on_record: restart,
            apart_by_time_and_origin: restart,
        },
        max_event_bytes: 1 << 20,
        max_open_events: DEFAULT_MAX_OPEN_EVENTS,
        max_open_bytes: DEFAULT_MAX_OPEN_BYTES,
    })
}

fn push(
    r: &mut Reassembler,
    rtype: u16,
    payload: &str,
    now: u64,
    out: &mut Vec<(Event, CompletedBy)>,
) -> Result<Pushed, DropReason> {
    let h = header::parse(payload.as_bytes()).unwrap();
    r.push(rtype, &h, now, &mut FixedUsers, out)
}

fn serials(out: &[(Event, CompletedBy)]) -> Vec<(i64, CompletedBy)> {
    out.iter().map(|(e, c)| (e.serial, *c)).collect()
}

#[test]
fn eoe_completes_its_serial_only() {
    let mut r = reassembler(2000, false);
    let mut out = vec![];
    push(&mut r, 1300, "audit(10000001:1): hi there", 0, &mut out).unwrap();
    push(&mut r, 1301, "audit(10000001:1): hi there", 0, &mut out).unwrap();
    push(&mut r, 1300, "audit(10000001:2): other", 0, &mut out).unwrap();
    push(&mut r, 1320, "audit(10000001:1): ", 0, &mut out).unwrap();
    assert_eq!(serials(&out), vec![(1, CompletedBy::Eoe)]);
    assert_eq!(out[0].0.message_count(), 2);
    assert_eq!(r.open_events(), 1);
}

#[test]
fn range_and_serial_zero_are_dropped() {
    let mut r = reassembler(2000, false);
    let mut out = vec![];
    assert_eq!(
        push(&mut r, 1099, "audit(1:2): x", 0, &mut out),
        Err(DropReason::TypeOutOfRange)
    );
    assert_eq!(
        push(&mut r, 1400, "audit(1:3): x", 0, &mut out),
        Err(DropReason::TypeOutOfRange)
    );
    assert_eq!(
        push(&mut r, 1300, "audit(1:0): x", 0, &mut out),
        Err(DropReason::SerialZero)
    );
    assert_eq!(r.open_events(), 0);
}

#[test]
fn timeout_runs_from_creation_and_never_needs_sleep() {
    let mut r = reassembler(2000, false);
    let mut out = vec![];
    push(&mut r, 1300, "audit(1:4): a", 100, &mut out).unwrap();
    push(&mut r, 1302, "audit(1:4): b", 1500, &mut out).unwrap();
    push(&mut r, 1300, "audit(1:5): c", 1000, &mut out).unwrap();
    assert_eq!(r.next_deadline(), Some(2100));
    r.expire(2099, &mut out);
    assert!(out.is_empty());
    r.expire(2100, &mut out);
    assert_eq!(serials(&out), vec![(4, CompletedBy::Deadline)]);
    assert_eq!(out[0].0.message_count(), 2);
    assert_eq!(r.next_deadline(), Some(3000));
    r.expire(5000, &mut out);
    assert_eq!(serials(&out)[1], (5, CompletedBy::Deadline));
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn window_restarts_on_each_record_and_orders_by_last_record() {
    let mut r = reassembler(3, true);
    let mut out = vec![];
    // Interleaved: 10's last record comes after 11's.
    push(&mut r, 1300, "audit(1:10): a", 0, &mut out).unwrap();
    push(&mut r, 1300, "audit(1:11): b", 1, &mut out).unwrap();
    push(&mut r, 1302, "audit(1:10): c", 2, &mut out).unwrap();
    r.expire(3, &mut out);
    assert!(out.is_empty());
    r.expire(4, &mut out);
    assert_eq!(serials(&out), vec![(11, CompletedBy::Deadline)]);
    r.flush(&mut out);
    assert_eq!(serials(&out)[1], (10, CompletedBy::Deadline));
    assert_eq!(out[1].0.message_count(), 2);
}

#[test]
fn replay_keeps_daemon_records_and_far_apart_times_out_of_kernel_events() {
    // auditd's DAEMON_START numbered 48 by the daemon; a kernel event 48 13 s later, whose
    // records interleave with a second DAEMON record of serial 48 and its own EOE.
    let mut r = reassembler(100, true);
    let mut out = vec![];
    push(
        &mut r,
        1200,
        "audit(1700000000.000:48): op=start ver=3.0 res=success",
        0,
        &mut out,
    )
    .unwrap();
    push(
        &mut r,
        1300,
        "audit(1700000013.250:48): arch=c000003e syscall=59",
        1,
        &mut out,
    )
    .unwrap();
    push(
        &mut r,
        1203,
        "audit(1700000013.250:48): op=reconfigure",
        2,
        &mut out,
    )
    .unwrap();
    push(
        &mut r,
        1302,
        "audit(1700000013.250:48): item=0 name=\"/bin/ls\"",
        3,
        &mut out,
    )
    .unwrap();
    push(&mut r, 1320, "audit(1700000013.250:48): ", 4, &mut out).unwrap();
    // The same serial again hours later (serials restart with the daemon).
    push(
        &mut r,
        1300,
        "audit(1700090000.000:48): arch=c000003e syscall=2",
        5,
        &mut out,
    )
    .unwrap();
    r.flush(&mut out);
    let got: Vec<(i64, String, Vec<u16>)> = out
        .iter()
        .map(|(e, _)| {
            (
                e.serial,
                String::from_utf8_lossy(e.timestamp()).into_owned(),
                e.messages().map(|(t, _)| t).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (48, "1700000013.250".into(), vec![1300, 1302]),
            (48, "1700000000.000".into(), vec![1200]),
            (48, "1700000013.250".into(), vec![1203]),
            (48, "1700090000.000".into(), vec![1300]),
        ]
    );
    // Timestamps longer than a key holds are told apart too (by their hash).
    let mut r = reassembler(100, true);
    let mut out = vec![];
    let long = "1".repeat(30);
    push(&mut r, 1300, &format!("audit({long}.1:7): a"), 0, &mut out).unwrap();
    push(&mut r, 1300, &format!("audit({long}.2:7): b"), 0, &mut out).unwrap();
    push(&mut r, 1302, &format!("audit({long}.1:7): c"), 0, &mut out).unwrap();
    r.flush(&mut out);
    let counts: Vec<usize> = out.iter().map(|(e, _)| e.message_count()).collect();
    assert_eq!(counts, vec![2, 1]);
    // Live (pauditd), the serial alone groups.
    let mut r = reassembler(100, false);
    let mut out = vec![];
    push(&mut r, 1300, "audit(1.000:48): a", 0, &mut out).unwrap();
    push(&mut r, 1302, "audit(2.000:48): b", 0, &mut out).unwrap();
    r.flush(&mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.message_count(), 2);
}

#[test]
fn eoe_then_straggler_makes_a_new_event() {
    let mut r = reassembler(3, true);
    let mut out = vec![];
    push(&mut r, 1300, "audit(1:7): a", 0, &mut out).unwrap();
    push(&mut r, 1320, "audit(1:7): ", 1, &mut out).unwrap();
    push(&mut r, 1302, "audit(1:7): late", 2, &mut out).unwrap();
    r.flush(&mut out);
    assert_eq!(
        serials(&out),
        vec![(7, CompletedBy::Eoe), (7, CompletedBy::Deadline)]
    );
}

#[test]
fn oversized_event_drops_records_not_memory() {
    // One record of 10 data bytes fits (with its record cost), a second does not.
    let mut r = Reassembler::new(ReassemblerConfig {
        max_event_bytes: 16 + RECORD_COST,
        max_open_events: DEFAULT_MAX_OPEN_EVENTS,
        max_open_bytes: DEFAULT_MAX_OPEN_BYTES,
        ..reassembler(3, true).cfg
    });
    let mut out = vec![];
    push(&mut r, 1300, "audit(1:7): 0123456789", 0, &mut out).unwrap();
    assert_eq!(
        push(&mut r, 1302, "audit(1:7): 0123456789", 1, &mut out),
        Err(DropReason::EventTooLarge)
    );
}

#[test]
fn empty_records_count_against_the_event_cap() {
    let mut r = reassembler(100, false);
    r.cfg.max_event_bytes = 10 * RECORD_COST;
    let mut out = vec![];
    let mut accepted = 0;
    for _ in 0..1000 {
        if push(&mut r, 1300, "audit(1.0:5): ", 0, &mut out).is_ok() {
            accepted += 1;
        }
    }
    assert!(accepted < 10, "{accepted} empty records held");
    assert!(r.open_bytes() <= 10 * RECORD_COST);
}

#[test]
fn open_events_are_bounded_and_the_oldest_completes_first() {
    let mut r = reassembler(1_000_000, true);
    r.cfg.max_open_events = 100;
    let mut out = vec![];
    for s in 1..=1000 {
        push(&mut r, 1300, &format!("audit(1.0:{s}): x=1"), s, &mut out).unwrap();
    }
    assert_eq!(r.open_events(), 100);
    assert_eq!(out.len(), 900);
    assert!(out.iter().all(|(_, by)| *by == CompletedBy::Evicted));
    assert_eq!(
        out.iter().map(|(e, _)| e.serial).collect::<Vec<_>>(),
        (1..=900).collect::<Vec<_>>()
    );
    // Bytes too: one big event pushes the others out.
    let mut r = reassembler(1_000_000, true);
    r.cfg.max_open_bytes = 4096;
    let mut out = vec![];
    for s in 1..=100 {
        push(
            &mut r,
            1300,
            &format!("audit(1.0:{s}): {}", "y".repeat(100)),
            s,
            &mut out,
        )
        .unwrap();
    }
    assert!(r.open_bytes() <= 4096);
    assert!(out.len() > 60);
}

#[test]
fn a_record_after_its_event_completed_is_reported_as_a_split() {
    let mut r = reassembler(2, true);
    let mut out = vec![];
    assert_eq!(
        push(&mut r, 1300, "audit(1.0:7): a=1", 0, &mut out),
        Ok(Pushed::Joined)
    );
    r.expire(5, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        push(&mut r, 1302, "audit(1.0:7): b=2", 6, &mut out),
        Ok(Pushed::AfterCompletion)
    );
    r.expire(100, &mut out);
    assert_eq!(
        push(&mut r, 1320, "audit(1.0:7): ", 101, &mut out),
        Ok(Pushed::AfterCompletion)
    );
    // A serial completed by its EOE is not remembered: nothing follows an EOE.
    push(&mut r, 1300, "audit(1.0:8): a=1", 102, &mut out).unwrap();
    push(&mut r, 1320, "audit(1.0:8): ", 102, &mut out).unwrap();
    assert_eq!(
        push(&mut r, 1320, "audit(1.0:9): ", 102, &mut out),
        Ok(Pushed::Joined)
    );
}
