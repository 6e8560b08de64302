//! A single-producer single-consumer lock-free byte ring for raw netlink datagrams.
//!
//! Contract: capacity is fixed at start (a power of two, at least four maximum-size entries)
//! and never grows; nothing is allocated per message. The producer (the receiver thread)
//! reserves room for the largest possible datagram ([`Producer::reserve`] returns a
//! [`Grant`], the only way to write), has the kernel write straight into it (`recv` into the
//! ring: the one copy), and commits the length it got by consuming the grant
//! ([`Grant::commit`], or [`Grant::stage`] to publish a batch later with
//! [`Producer::publish`]). The consumer (the reassembly thread) reads every published entry
//! in one batch and releases them together.
//! When the ring is full the producer waits for the consumer: nothing is dropped here, the
//! socket buffer and the kernel's backlog take the back-pressure (and the receiver counts the
//! waits). There is no compare-and-swap: head and tail each have exactly one writer.
//!
//! Layout: entries are `[len: u32][flags: u32][bytes, padded to 8]` at monotonically growing
//! positions (indexed modulo capacity). An entry never wraps: when the contiguous room before
//! the end is too small, a WRAP marker sends the reader back to the start.

use std::cell::UnsafeCell;
use std::time::Duration;

use sync::{fence, thread, Arc, AtomicBool, AtomicUsize, Ordering, ThreadSlot};

use crossbeam_utils::CachePadded;

/// The ring's synchronisation primitives: std's, or loom's when built with `--cfg loom` so
/// the model in `loom_tests` explores every interleaving of the real code.
mod sync {
    #[cfg(loom)]
    pub use loom::{
        sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering},
        sync::Arc,
        thread::{self, Thread},
    };
    #[cfg(not(loom))]
    pub use std::{
        sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering},
        sync::Arc,
        thread::{self, Thread},
    };

    /// The consumer's thread, set once by the consumer, read by the producer to unpark it.
    #[cfg(not(loom))]
    #[derive(Default)]
    pub struct ThreadSlot(std::sync::OnceLock<Thread>);
    #[cfg(not(loom))]
    impl ThreadSlot {
        pub fn set(&self, t: Thread) {
            let _ = self.0.set(t);
        }
        pub fn unpark(&self) {
            if let Some(t) = self.0.get() {
                t.unpark();
            }
        }
    }

    #[cfg(loom)]
    #[derive(Default)]
    pub struct ThreadSlot(loom::sync::Mutex<Option<Thread>>);
    #[cfg(loom)]
    impl ThreadSlot {
        pub fn set(&self, t: Thread) {
            let mut slot = self.0.lock().unwrap();
            if slot.is_none() {
                *slot = Some(t);
            }
        }
        pub fn unpark(&self) {
            if let Some(t) = self.0.lock().unwrap().as_ref() {
                t.unpark();
            }
        }
    }

    /// Wait for an unpark, or `timeout` (loom has no timeout: a lost wake-up is then a
    /// deadlock, which it reports).
    pub fn park_timeout(timeout: std::time::Duration) {
        #[cfg(loom)]
        {
            let _ = timeout;
            loom::thread::park();
        }
        #[cfg(not(loom))]
        std::thread::park_timeout(timeout);
    }

    /// Let the consumer run while the ring is full.
    pub fn backoff() {
        #[cfg(loom)]
        loom::thread::yield_now();
        #[cfg(not(loom))]
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

const HEADER: usize = 8;
const ALIGN: usize = 8;
const FLAG_WRAP: u32 = 1;

struct Shared {
    /// The bytes. Invariant: the producer only writes `[head, tail + cap)`, the consumer only
    /// reads `[tail, head)` (positions modulo `cap`), so no byte is ever accessed by both.
    buf: Box<[UnsafeCell<u8>]>,
    cap: usize,
    /// Total bytes published by the producer. Written only by the producer (Release).
    head: CachePadded<AtomicUsize>,
    /// Total bytes released by the consumer. Written only by the consumer (Release).
    tail: CachePadded<AtomicUsize>,
    /// Set by the consumer before it parks, so the producer knows to unpark it. The store of
    /// `head` and the load of this flag (producer), and the store of this flag and the load
    /// of `head` (consumer), are separated by SeqCst fences: at least one side sees the other
    /// (no lost wake-up).
    consumer_parked: CachePadded<AtomicBool>,
    consumer_thread: ThreadSlot,
    /// Set (Release) by the producer's `Drop` after its final publish: once the consumer
    /// sees it (Acquire), `head` is final.
    closed: AtomicBool,
}

// SAFETY: the byte buffer is shared between exactly one producer and one consumer, which
// access disjoint regions (see `buf`'s invariant) synchronised by the Release/Acquire pairs on
// `head` and `tail`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    /// The byte at `pos` (modulo the capacity). Derived from the whole buffer's base pointer,
    /// so it may be used for any range inside the buffer that starts there.
    fn ptr(&self, pos: usize) -> *mut u8 {
        // SAFETY: `pos & (cap - 1) < cap == buf.len()`, so the offset stays in the buffer.
        UnsafeCell::raw_get(unsafe { self.buf.as_ptr().add(pos & (self.cap - 1)) })
    }
}

/// Create a ring of `capacity` bytes (rounded up to a power of two) for entries of at most
/// `max_entry` bytes.
pub fn ring(capacity: usize, max_entry: usize) -> (Producer, Consumer) {
    let max_slot = slot_size(max_entry);
    let cap = capacity.max(4 * max_slot).next_power_of_two();
    let buf = (0..cap).map(|_| UnsafeCell::new(0)).collect();
    let shared = Arc::new(Shared {
        buf,
        cap,
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        consumer_parked: CachePadded::new(AtomicBool::new(false)),
        consumer_thread: ThreadSlot::default(),
        closed: AtomicBool::new(false),
    });
    (
        Producer {
            shared: shared.clone(),
            head: 0,
            cached_tail: 0,
            max_entry,
            full_waits: 0,
        },
        Consumer {
            shared,
            tail: 0,
            cached_head: 0,
        },
    )
}

fn slot_size(len: usize) -> usize {
    HEADER + len.div_ceil(ALIGN) * ALIGN
}

/// The writing end (one thread).
pub struct Producer {
    shared: Arc<Shared>,
    /// Our head (published or staged); only we write it. Invariant: `head - tail <= cap`
    /// for the consumer's `tail`, kept because only a [`Grant`] (made by `reserve`, which
    /// checked the room) can advance it.
    head: usize,
    /// Last tail we read; refreshed only when the ring looks full.
    cached_tail: usize,
    max_entry: usize,
    /// Times `reserve` found the ring full and had to wait for the consumer.
    pub full_waits: u64,
}

impl Producer {
    pub fn capacity(&self) -> usize {
        self.shared.cap
    }

    fn free(&self) -> usize {
        self.shared.cap - (self.head - self.cached_tail)
    }

    /// Room for one entry of up to `max_entry` bytes, waiting while the ring is full (until
    /// `give_up` says stop). The grant's slot is where the entry's bytes go; dropping the
    /// grant without committing abandons the entry.
    pub fn reserve(&mut self, give_up: &dyn Fn() -> bool) -> Option<Grant<'_>> {
        let need = slot_size(self.max_entry);
        loop {
            let to_end = self.shared.cap - (self.head & (self.shared.cap - 1));
            // If the entry cannot fit before the end, we also need room for the WRAP marker.
            let required = if to_end < need { to_end + need } else { need };
            if self.free() < required {
                self.cached_tail = self.shared.tail.load(Ordering::Acquire);
                if self.free() < required {
                    self.full_waits += 1;
                    if give_up() {
                        return None;
                    }
                    // Staged entries must become visible, or a full ring of them would
                    // never drain.
                    self.shared.head.store(self.head, Ordering::Release);
                    fence(Ordering::SeqCst);
                    self.wake_consumer();
                    sync::backoff();
                    continue;
                }
            }
            if to_end < need {
                // SAFETY: `to_end >= HEADER` (positions and sizes are multiples of 8 and the
                // capacity is a multiple of 8) and these bytes are in our free region.
                unsafe { write_header(self.shared.ptr(self.head), 0, FLAG_WRAP) };
                self.head += to_end;
            }
            return Some(Grant { producer: self });
        }
    }

    /// Make every staged entry visible to the consumer (one release store, and a wake-up
    /// only if the consumer is parked).
    pub fn publish(&mut self) {
        self.shared.head.store(self.head, Ordering::Release);
        fence(Ordering::SeqCst);
        if self.shared.consumer_parked.load(Ordering::Relaxed) {
            self.wake_consumer();
        }
    }

    fn wake_consumer(&self) {
        self.shared.consumer_thread.unpark();
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // Staged entries are published, then the ring is closed: the consumer reads them all
        // before it sees the end.
        self.shared.head.store(self.head, Ordering::Release);
        self.shared.closed.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        self.wake_consumer();
    }
}

/// The right to write one entry, from [`Producer::reserve`]. Its slot is `max_entry` bytes
/// of free ring space that only this grant can touch.
pub struct Grant<'a> {
    producer: &'a mut Producer,
}

impl<'a> Grant<'a> {
    /// Where the entry's bytes go (`max_entry` of them).
    pub fn slot(&mut self) -> &mut [u8] {
        let p = &*self.producer;
        // SAFETY: `reserve` checked that `[head, head + HEADER + max_entry)` is free and does
        // not cross the end of the buffer; free space is touched only by the producer, which
        // this grant borrows mutably, and the pointer is derived from the whole buffer.
        unsafe { std::slice::from_raw_parts_mut(p.shared.ptr(p.head + HEADER), p.max_entry) }
    }

    /// Commit the entry's first `len` bytes and make it visible to the consumer.
    pub fn commit(self, len: usize) {
        let p = self.write(len);
        p.publish();
    }

    /// Commit the entry's first `len` bytes without publishing it yet: staged entries become
    /// visible together at the next [`Producer::publish`].
    pub fn stage(self, len: usize) {
        self.write(len);
    }

    fn write(self, len: usize) -> &'a mut Producer {
        let p = self.producer;
        assert!(len <= p.max_entry, "entry longer than reserved");
        // SAFETY: the header bytes at `head` are in the slot `reserve` found free.
        unsafe { write_header(p.shared.ptr(p.head), len as u32, 0) };
        p.head += slot_size(len);
        p
    }
}

/// # Safety
/// `p` must be valid for writing `HEADER` bytes that no other thread accesses.
unsafe fn write_header(p: *mut u8, len: u32, flags: u32) {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&len.to_ne_bytes());
    h[4..].copy_from_slice(&flags.to_ne_bytes());
    std::ptr::copy_nonoverlapping(h.as_ptr(), p, HEADER);
}

/// # Safety
/// `p` must be valid for reading `HEADER` bytes that no other thread writes.
unsafe fn read_header(p: *const u8) -> (usize, u32) {
    let mut h = [0u8; HEADER];
    std::ptr::copy_nonoverlapping(p, h.as_mut_ptr(), HEADER);
    (
        u32::from_ne_bytes(h[..4].try_into().unwrap()) as usize,
        u32::from_ne_bytes(h[4..].try_into().unwrap()),
    )
}

/// The reading end (one thread).
pub struct Consumer {
    shared: Arc<Shared>,
    tail: usize,
    cached_head: usize,
}

impl Consumer {
    /// Bytes committed and not yet released.
    pub fn pending_bytes(&self) -> usize {
        self.shared.head.load(Ordering::Acquire) - self.tail
    }

    /// Whether the producer has been dropped (nothing more will come once empty; everything
    /// it staged is published).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Call `f` on every entry committed so far, in order, then release them all at once.
    /// Returns how many entries were read.
    pub fn read_batch(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        self.cached_head = self.shared.head.load(Ordering::Acquire);
        let mut n = 0;
        while self.tail < self.cached_head {
            // SAFETY: `[tail, cached_head)` was published by the producer (Acquire above) and
            // will not be written again until we release it.
            let (len, flags) = unsafe { read_header(self.shared.ptr(self.tail)) };
            if flags & FLAG_WRAP != 0 {
                self.tail += self.shared.cap - (self.tail & (self.shared.cap - 1));
                continue;
            }
            // SAFETY: as above; entries never cross the end of the buffer.
            let bytes =
                unsafe { std::slice::from_raw_parts(self.shared.ptr(self.tail + HEADER), len) };
            f(bytes);
            n += 1;
            self.tail += slot_size(len);
        }
        self.shared.tail.store(self.tail, Ordering::Release);
        n
    }

    /// Park until the producer commits something, closes, or `timeout` passes.
    pub fn wait(&mut self, timeout: Duration) {
        self.shared.consumer_thread.set(thread::current());
        self.shared.consumer_parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.shared.head.load(Ordering::Acquire) == self.tail && !self.is_closed() {
            sync::park_timeout(timeout);
        }
        self.shared.consumer_parked.store(false, Ordering::Relaxed);
    }
}

/// The handshake, the close and the wrap-around under loom's model checker, which runs the
/// real code above over every interleaving its scheduler can produce (and every outcome the
/// C++11 memory model allows for the atomics): `make loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    fn never() -> bool {
        false
    }

    /// Read until `n` entries arrived, parking in between: a lost wake-up is a deadlock.
    fn consume(mut c: Consumer, n: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < n {
            c.read_batch(|e| got.push(e.to_vec()));
            if got.len() < n {
                c.wait(Duration::from_secs(3600));
            }
        }
        got
    }

    #[test]
    fn publish_wakes_a_parked_consumer() {
        loom::model(|| {
            let (mut p, c) = ring(64, 8);
            let consumer = thread::spawn(move || consume(c, 2));
            let mut g = p.reserve(&never).unwrap();
            g.slot()[0] = 1;
            g.commit(1);
            let mut g = p.reserve(&never).unwrap();
            g.slot()[0] = 2;
            g.stage(1);
            p.publish();
            assert_eq!(consumer.join().unwrap(), vec![vec![1], vec![2]]);
            drop(p);
        });
    }

    #[test]
    fn close_publishes_what_was_staged_and_ends_the_consumer() {
        loom::model(|| {
            let (mut p, mut c) = ring(64, 8);
            let consumer = thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    c.read_batch(|e| got.push(e.to_vec()));
                    // Closed means head is final: one more read sees every entry.
                    if c.is_closed() {
                        c.read_batch(|e| got.push(e.to_vec()));
                        break;
                    }
                    c.wait(Duration::from_secs(3600));
                }
                got
            });
            let mut g = p.reserve(&never).unwrap();
            g.slot()[..2].copy_from_slice(&[7, 8]);
            g.stage(2);
            drop(p);
            assert_eq!(consumer.join().unwrap(), vec![vec![7, 8]]);
        });
    }

    #[test]
    fn a_full_ring_wraps_and_loses_nothing() {
        let mut b = loom::model::Builder::new();
        // The full-ring wait is a yield loop: bound the schedules it can add.
        b.preemption_bound = Some(2);
        b.check(|| {
            // 4 slots of 16 bytes: the fifth entry waits for room, then wraps.
            let (mut p, c) = ring(64, 8);
            let consumer = thread::spawn(move || consume(c, 6));
            for i in 0..6u8 {
                let len = 1 + (i as usize % 8);
                let mut g = p.reserve(&never).unwrap();
                g.slot()[..len].fill(i);
                g.commit(len);
            }
            let got = consumer.join().unwrap();
            let expected: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 1 + (i as usize % 8)]).collect();
            assert_eq!(got, expected);
            drop(p);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
