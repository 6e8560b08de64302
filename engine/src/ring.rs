//! A single-producer single-consumer lock-free byte ring for raw netlink datagrams.
//!
//! Contract: capacity is fixed at start (a power of two, at least four maximum-size entries)
//! and never grows; nothing is allocated per message. The producer (the receiver thread)
//! reserves room for the largest possible datagram, has the kernel write straight into it
//! (`recv` into the ring: the one copy), and commits the length it got. The consumer (the
//! reassembly thread) reads every committed entry in one batch and releases them together.
//! When the ring is full the producer waits for the consumer: nothing is dropped here, the
//! socket buffer and the kernel's backlog take the back-pressure (and the receiver counts the
//! waits). There is no compare-and-swap: head and tail each have exactly one writer.
//!
//! Layout: entries are `[len: u32][flags: u32][bytes, padded to 8]` at monotonically growing
//! positions (indexed modulo capacity). An entry never wraps: when the contiguous room before
//! the end is too small, a WRAP marker sends the reader back to the start.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use crossbeam_utils::CachePadded;

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
    /// Set by the consumer before it parks, so the producer knows to unpark it.
    consumer_parked: CachePadded<AtomicBool>,
    consumer_thread: OnceLock<Thread>,
}

// SAFETY: the byte buffer is shared between exactly one producer and one consumer, which
// access disjoint regions (see `buf`'s invariant) synchronised by the Release/Acquire pairs on
// `head` and `tail`.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    fn ptr(&self, pos: usize) -> *mut u8 {
        self.buf[pos & (self.cap - 1)].get()
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
        consumer_thread: OnceLock::new(),
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
    /// Our head (published or about to be); only we write it.
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
    /// `give_up` says stop). The returned slice is where the entry's bytes go.
    pub fn reserve(&mut self, give_up: &dyn Fn() -> bool) -> Option<&mut [u8]> {
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
                    self.wake_consumer();
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
            }
            if to_end < need {
                // SAFETY: `to_end >= HEADER` (positions and sizes are multiples of 8 and the
                // capacity is a multiple of 8) and these bytes are in our free region.
                unsafe { write_header(self.shared.ptr(self.head), 0, FLAG_WRAP) };
                self.head += to_end;
            }
            let start = self.head + HEADER;
            // SAFETY: `[head, head + need)` is free (checked above), contiguous (does not cross
            // the end), and only the producer touches free space.
            return Some(unsafe {
                std::slice::from_raw_parts_mut(self.shared.ptr(start), self.max_entry)
            });
        }
    }

    /// Commit the entry written into the last reserved slot (its first `len` bytes) and make
    /// it visible to the consumer.
    pub fn commit(&mut self, len: usize) {
        self.stage(len);
        self.publish();
    }

    /// Commit the entry written into the last reserved slot without publishing it yet: a
    /// batch of staged entries becomes visible at the next [`Producer::publish`] (one release
    /// store and at most one wake-up per batch).
    pub fn stage(&mut self, len: usize) {
        assert!(len <= self.max_entry, "entry longer than reserved");
        // SAFETY: the header bytes at `head` are in the slot reserved by `reserve`.
        unsafe { write_header(self.shared.ptr(self.head), len as u32, 0) };
        self.head += slot_size(len);
    }

    /// Make every staged entry visible to the consumer.
    pub fn publish(&mut self) {
        self.shared.head.store(self.head, Ordering::Release);
        if self.shared.consumer_parked.load(Ordering::SeqCst) {
            self.wake_consumer();
        }
    }

    fn wake_consumer(&self) {
        if let Some(t) = self.shared.consumer_thread.get() {
            t.unpark();
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The consumer learns the producer is gone via `is_closed`; wake it to notice.
        self.wake_consumer();
    }
}

unsafe fn write_header(p: *mut u8, len: u32, flags: u32) {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&len.to_ne_bytes());
    h[4..].copy_from_slice(&flags.to_ne_bytes());
    std::ptr::copy_nonoverlapping(h.as_ptr(), p, HEADER);
}

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

    /// Whether the producer has been dropped (nothing more will come once empty).
    pub fn is_closed(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
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
        let _ = self.shared.consumer_thread.set(std::thread::current());
        self.shared.consumer_parked.store(true, Ordering::SeqCst);
        if self.shared.head.load(Ordering::SeqCst) == self.tail && !self.is_closed() {
            std::thread::park_timeout(timeout);
        }
        self.shared.consumer_parked.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> bool {
        false
    }

    #[test]
    fn entries_round_trip_across_wraps() {
        let (mut p, mut c) = ring(256, 40);
        assert_eq!(p.capacity(), 256);
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for i in 0..200u32 {
            let len = (i as usize * 7) % 41;
            let slot = p.reserve(&never).unwrap();
            for (j, b) in slot[..len].iter_mut().enumerate() {
                *b = (i as usize + j) as u8;
            }
            p.commit(len);
            expected.push((0..len).map(|j| (i as usize + j) as u8).collect::<Vec<_>>());
            if i % 3 == 0 {
                c.read_batch(|e| got.push(e.to_vec()));
            }
        }
        c.read_batch(|e| got.push(e.to_vec()));
        assert_eq!(got, expected);
    }

    #[test]
    fn full_ring_makes_the_producer_wait_not_drop() {
        let (mut p, mut c) = ring(64, 8); // 4 slots of 16
        let stop = std::cell::Cell::new(false);
        let give_up = || {
            stop.set(true);
            true
        };
        let mut committed = 0;
        while let Some(s) = p.reserve(&give_up) {
            s[0] = committed;
            p.commit(1);
            committed += 1;
        }
        assert!(stop.get());
        assert_eq!(committed, 4);
        assert!(p.full_waits > 0);
        let mut seen = vec![];
        c.read_batch(|e| seen.push(e[0]));
        assert_eq!(seen, vec![0, 1, 2, 3]);
        assert!(p.reserve(&never).is_some());
    }

    #[test]
    fn stress_two_threads_preserve_order_and_content() {
        const N: u64 = 300_000;
        let (mut p, mut c) = ring(4096, 300);
        let producer = std::thread::spawn(move || {
            let mut x: u64 = 1;
            for i in 0..N {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let len = 8 + (x % 293) as usize;
                let s = p.reserve(&never).unwrap();
                s[..8].copy_from_slice(&i.to_le_bytes());
                for (j, b) in s[8..len].iter_mut().enumerate() {
                    *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
                }
                // Mixed single commits and staged batches (published later, or by a full
                // ring inside `reserve`), as the two receive paths use them.
                match x % 3 {
                    0 => p.commit(len),
                    1 => p.stage(len),
                    _ => {
                        p.stage(len);
                        p.publish();
                    }
                }
            }
            p.publish();
        });
        let mut next = 0u64;
        loop {
            let n = c.read_batch(|e| {
                let i = u64::from_le_bytes(e[..8].try_into().unwrap());
                assert_eq!(i, next, "order");
                for (j, b) in e[8..].iter().enumerate() {
                    assert_eq!(
                        *b,
                        (i as usize).wrapping_mul(31).wrapping_add(j) as u8,
                        "content"
                    );
                }
                next += 1;
            });
            if n == 0 {
                if c.is_closed() && c.pending_bytes() == 0 {
                    break;
                }
                c.wait(Duration::from_millis(10));
            }
        }
        producer.join().unwrap();
        assert_eq!(next, N);
    }
}
