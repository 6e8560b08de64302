use super::*;
use crate::processor::ProcessorConfig;
use crate::users::tests::FixedUsers;

/// One netlink message (header + payload) as the kernel frames it.
fn nlmsg(rtype: u16, payload: &[u8]) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut m = Vec::with_capacity(len.next_multiple_of(4));
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&rtype.to_ne_bytes());
    m.extend_from_slice(&[0u8; 10]);
    m.extend_from_slice(payload);
    m.resize(len.next_multiple_of(4), 0);
    m
}

/// Batch sizes `emit` sees for 20,000 events read from one full ring, each a SYSCALL
/// record and, `with_eoe`, its EOE (without, they complete at the final flush).
fn handed_over(with_eoe: bool, batch: usize) -> (Vec<usize>, Stats) {
    let (mut producer, consumer) = ring::ring(8 << 20, MAX_DATAGRAM);
    // One message per datagram, as the kernel sends them.
    for serial in 1..=EVENTS {
        let syscall = format!("audit(1700000000.000:{serial}): arch=c000003e syscall=39 success=yes exit=1 pid=1 uid=0 key=\"k\"");
        let eoe = format!("audit(1700000000.000:{serial}): ");
        let mut msgs = vec![nlmsg(1300, syscall.as_bytes())];
        if with_eoe {
            msgs.push(nlmsg(1320, eoe.as_bytes()));
        }
        for d in msgs {
            let mut g = producer.reserve(&|| false).expect("room in the ring");
            g.slot()[..d.len()].copy_from_slice(&d);
            g.commit(d.len());
        }
    }
    drop(producer);
    let processor = Processor::new(
        ProcessorConfig::replay_defaults(1000),
        FilterSet::default(),
        FixedUsers,
    );
    let (_control_tx, control_rx) = mpsc::channel();
    let mut sizes = Vec::new();
    let stats = reassemble_loop(
        consumer,
        processor,
        |evs: Vec<Event>| sizes.push(evs.len()),
        batch,
        COALESCE,
        &AckBoard::default(),
        control_rx,
        &Mutex::new(Stats::default()),
        &AtomicU64::new(0),
        Instant::now(),
    );
    (sizes, stats)
}

const EVENTS: u32 = 20_000;

/// A ring full of completed events (thousands in one read) reaches `emit` in batches of
/// at most `batch`: the writer's queue, counted in batches, then bounds the events in it
/// (a storm with a slow format once queued hundreds of thousands).
#[test]
fn a_full_ring_is_handed_over_in_bounded_batches() {
    let (sizes, stats) = handed_over(true, 256);
    assert_eq!(stats.events_by_eoe, u64::from(EVENTS), "{stats:?}");
    assert_eq!(
        sizes.iter().sum::<usize>(),
        EVENTS as usize,
        "every event, once"
    );
    let max = sizes.iter().copied().max().unwrap();
    assert!(max <= 256, "a batch of {max} events (bound 256)");
    assert!(sizes.len() >= EVENTS as usize / 256);
}

/// The same bound when the events complete all at once (no EOE: the final flush, as a
/// mass expiry would).
#[test]
fn events_completed_at_once_are_handed_over_in_bounded_batches() {
    let (sizes, stats) = handed_over(false, 256);
    assert_eq!(stats.events_by_eoe, 0, "{stats:?}");
    assert_eq!(
        sizes.iter().sum::<usize>(),
        EVENTS as usize,
        "every event, once"
    );
    let max = sizes.iter().copied().max().unwrap();
    assert!(max <= 256, "a batch of {max} events (bound 256)");
}
