use super::*;
use crate::ring;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

fn datagram(i: u32) -> Vec<u8> {
    let len = 4 + (i as usize * 37) % 700;
    let mut d = i.to_le_bytes().to_vec();
    d.extend((4..len).map(|j| (i as usize + j) as u8));
    d
}

/// Whether io_uring works here (a receiver can be set up); outside CI a test skips
/// without it, in CI it must work.
fn uring_available(sock: &UnixDatagram) -> bool {
    match UringReceiver::new(sock.as_fd(), 4, 256) {
        Ok(_) => true,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("io_uring unavailable here ({e}); skipping");
            false
        }
        Err(e) => panic!("io_uring unavailable in CI: {e}"),
    }
}

/// Far more datagrams than provided buffers, sent before and while the receiver runs:
/// every one arrives once, in order, intact, and pool exhaustion is not counted as a
/// socket overflow.
#[test]
#[cfg_attr(miri, ignore = "sockets and io_uring are outside Miri")]
fn delivers_every_datagram_in_order_through_buffer_exhaustion() {
    const N: u32 = 20_000;
    let (tx, rx) = UnixDatagram::pair().unwrap();
    // A receiver that stops early fails the test instead of hanging it.
    tx.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    // The pool is only 8 buffers, the socket queues more: the pool runs dry again and again.
    if !uring_available(&rx) {
        return;
    }
    let (mut producer, mut consumer) = ring::ring(1 << 16, 1024);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            tx.send(&datagram(i)).unwrap();
        }
    });
    let stop_rx = stop.clone();
    let receiver = std::thread::spawn(move || {
        // Built on the thread that drives it (a single-issuer ring).
        let mut recv = UringReceiver::new(rx.as_fd(), 8, 1024).unwrap();
        let stop = stop_rx;
        let mut c = ReceiverStats::default();
        let never = || false;
        let mut publishes = 0u64;
        let s = recv.run(
            &mut producer,
            &stop,
            &never,
            Duration::ZERO,
            &mut c,
            &mut |_| publishes += 1,
        );
        (s, c, publishes)
    });
    let mut next = 0u32;
    // Stop once everything arrived (the condition, not a sleep); a receiver that loses
    // one makes this wait until the sender's timeout fails the test.
    while next < N {
        let n = consumer.read_batch(|d| {
            let i = u32::from_le_bytes(d[..4].try_into().unwrap());
            assert_eq!(i, next, "order");
            assert_eq!(d, datagram(i).as_slice(), "content of {i}");
            next += 1;
        });
        if n == 0 {
            assert!(
                !consumer.is_closed(),
                "the receiver stopped at {next} of {N}"
            );
            consumer.wait(Duration::from_millis(10));
        }
    }
    stop.store(true, Ordering::Release);
    sender.join().unwrap();
    let (stopped, c, publishes) = receiver.join().unwrap();
    assert!(matches!(stopped, Stopped::Requested), "{stopped:?}");
    assert_eq!(next, N);
    assert_eq!(c.received, N as u64);
    assert_eq!((c.enobufs, c.truncated, c.recv_errors), (0, 0, 0));
    // Batches, not one hand-off per datagram.
    assert!(
        publishes < N as u64,
        "{publishes} publishes for {N} datagrams"
    );
}

/// 200 datagrams wait before the first wait for completions: 200 buffers complete in one
/// go, more completions than the old 128-entry completion queue held. Every datagram
/// still arrives once, in order.
#[test]
#[cfg_attr(miri, ignore = "sockets and io_uring are outside Miri")]
fn a_burst_filling_every_buffer_at_once_overflows_nothing() {
    let (tx, rx) = UnixDatagram::pair().unwrap();
    tx.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    if !uring_available(&rx) {
        return;
    }
    // Small datagrams, so 200 fit in the socket's default queue.
    const N: u32 = 200;
    for i in 0..N {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    let (mut producer, mut consumer) = ring::ring(1 << 20, 512);
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut recv = UringReceiver::new(rx.as_fd(), 256, 512).unwrap();
            let mut c = ReceiverStats::default();
            let never = || false;
            let s = recv.run(
                &mut producer,
                &stop,
                &never,
                Duration::ZERO,
                &mut c,
                &mut |_| {},
            );
            (s, c)
        })
    };
    let mut got = 0u32;
    while got < N {
        let n = consumer.read_batch(|d| {
            assert_eq!(d, got.to_le_bytes().as_slice(), "order");
            got += 1;
        });
        if n == 0 {
            consumer.wait(Duration::from_millis(10));
        }
    }
    stop.store(true, Ordering::Release);
    let (stopped, c) = receiver.join().unwrap();
    assert!(matches!(stopped, Stopped::Requested), "{stopped:?}");
    assert_eq!(c.received, N as u64);
    assert_eq!((c.enobufs, c.recv_errors), (0, 0));
}

#[test]
#[cfg_attr(miri, ignore = "sockets and io_uring are outside Miri")]
fn oversized_datagram_is_counted_truncated_and_the_rest_flow() {
    let (tx, rx) = UnixDatagram::pair().unwrap();
    let Ok(mut recv) = UringReceiver::new(rx.as_fd(), 4, 256) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "io_uring unavailable in CI"
        );
        return;
    };
    tx.send(&[1u8; 100]).unwrap();
    tx.send(&[2u8; 300]).unwrap();
    tx.send(&[3u8; 50]).unwrap();
    let (mut producer, mut consumer) = ring::ring(1 << 12, 256);
    let stop = AtomicBool::new(false);
    let mut c = ReceiverStats::default();
    let stop_after_first = &mut |c: &ReceiverStats| {
        if c.received + c.truncated >= 3 {
            stop.store(true, Ordering::Release);
        }
    };
    recv.run(
        &mut producer,
        &stop,
        &|| false,
        Duration::ZERO,
        &mut c,
        stop_after_first,
    );
    drop(producer);
    let mut got = vec![];
    consumer.read_batch(|d| got.push((d[0], d.len())));
    assert_eq!(got, vec![(1, 100), (3, 50)]);
    assert_eq!((c.received, c.truncated), (2, 1));
}
