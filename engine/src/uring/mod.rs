//! The io_uring receive path: one multishot `recv` on the audit socket, filling buffers the
//! kernel picks from a provided-buffer ring.
//!
//! Owns the io_uring instance, the provided-buffer ring and its slab, and the loop that moves
//! each received datagram into the SPSC ring. Where the plain path makes one `recv` syscall
//! per datagram, here one `io_uring_enter` returns every datagram that arrived since the last
//! one (a batch): each is copied once, from its provided buffer into the ring, staged, and the
//! batch is published to the reassembler with one release store; the buffers go back to the
//! kernel together. When all buffers are out the kernel ends the multishot request (the data
//! waits in the socket buffer) and we re-arm it after the batch: nothing is lost here.
//! It must never parse what it receives, and never outlive the socket it was given.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, IoUring};

use crate::receiver::{Budget, ReceiverStats, BUDGET_DATAGRAMS};
use crate::ring::Producer;

/// The buffer group id of our provided-buffer ring (the only one on this io_uring).
const BGID: u16 = 0;
const RECV: u64 = 1;
const CANCEL: u64 = 2;
/// How long one wait for completions lasts before the stop flag is looked at again.
const WAIT: Duration = Duration::from_millis(200);
/// How many waits the shutdown cancel may take before the slab is leaked rather than freed
/// under a request the kernel might still complete.
const CANCEL_WAITS: usize = 10;

/// Why the io_uring path stopped.
#[derive(Debug)]
pub enum Stopped {
    /// The stop flag was set; the multishot request is cancelled and reaped.
    Requested,
    /// The reassembler is gone; nothing can be handed over any more.
    ConsumerGone,
    /// The kernel refused the request type (e.g. multishot recv on this socket): use the
    /// plain path. Only returned before the first datagram.
    Unsupported(io::Error),
}

/// A multishot receiver on one datagram socket.
pub struct UringReceiver {
    ring: IoUring,
    /// Our own descriptor of the socket (a duplicate), so the request can never outlive it.
    fd: OwnedFd,
    /// `count` entries shared with the kernel (page-aligned mmap); entry `i & mask` is where
    /// the next returned buffer goes. The kernel reads entries up to `tail`.
    entries: *mut BufRingEntry,
    entries_len: usize,
    /// Buffer `bid` is `slab[bid * buf_size..][..buf_size]`: memory the kernel writes into
    /// while we hold the receiver, so it is a raw allocation we only ever read through a
    /// slice of one *completed* buffer (never a reference to the whole slab). Freed in `Drop`
    /// unless the kernel may still write into it (then leaked).
    slab: *mut u8,
    slab_len: usize,
    buf_size: usize,
    count: u16,
    /// Our copy of the ring tail (published to the kernel by `replenish`).
    tail: u16,
    /// The socket's drop counter when last read: an ENOBUFS completion is a socket overflow
    /// only if it grew (io_uring reports an empty buffer pool with the same errno).
    socket_drops: u32,
    /// Whether the multishot request is live in the kernel.
    armed: bool,
    /// Whether any datagram came through this path (after that, no fallback).
    delivered: bool,
    /// Buffer ids seen in the current batch, given back after it (kept to avoid an
    /// allocation per batch).
    done: Vec<u16>,
}

// SAFETY: the raw pointers are to our own mapping and slab, used only by the thread that owns
// the receiver; moving them to that thread is sound.
unsafe impl Send for UringReceiver {}

impl UringReceiver {
    /// Set up an io_uring with `count` provided buffers of `buf_size` bytes on `socket` (we
    /// keep a duplicate of its descriptor). Fails where io_uring is unavailable (old kernel,
    /// `kernel.io_uring_disabled`, seccomp). Build it on the thread that will drive it: the
    /// ring is then set up for a single issuer with deferred task running where the kernel
    /// has them (6.1+), else without.
    pub fn new(socket: BorrowedFd<'_>, count: u16, buf_size: usize) -> io::Result<UringReceiver> {
        assert!(
            count.is_power_of_two(),
            "buffer count must be a power of two"
        );
        let fd = socket.try_clone_to_owned()?;
        let drops = socket_drops(fd.as_raw_fd()).unwrap_or(0);
        // The completion queue holds twice the buffer pool: a burst that fills every buffer
        // must not overflow it (an overflow ends the multishot request); and the kernel wants
        // it at least as large as the submission queue (64). SINGLE_ISSUER | DEFER_TASKRUN:
        // completions are processed when we wait for them, on this thread, not by interrupting
        // it (needs the ring built on the thread that submits: the caller's promise).
        let cq = (2 * u32::from(count)).max(128);
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(cq)
            .build(64)
            .or_else(|_| {
                IoUring::builder()
                    .setup_coop_taskrun()
                    .setup_cqsize(cq)
                    .build(64)
            })
            .or_else(|_| IoUring::builder().setup_cqsize(cq).build(64))?;
        let entries_len = (count as usize * std::mem::size_of::<BufRingEntry>()).max(4096);
        // SAFETY: an anonymous private mapping; checked for failure below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                entries_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut r = UringReceiver {
            ring,
            fd,
            entries: map.cast(),
            entries_len,
            slab: Box::into_raw(vec![0u8; count as usize * buf_size].into_boxed_slice()).cast(),
            slab_len: count as usize * buf_size,
            buf_size,
            count,
            tail: 0,
            socket_drops: drops,
            armed: false,
            delivered: false,
            done: Vec::with_capacity(count as usize),
        };
        // SAFETY: the mapping is page aligned, holds `count` entries, and lives until Drop,
        // which unregisters it first.
        unsafe {
            r.ring
                .submitter()
                .register_buf_ring_with_flags(map as u64, count, BGID, 0)?;
        }
        for bid in 0..count {
            r.give_back(bid);
        }
        r.replenish();
        Ok(r)
    }

    /// Receive until `stop` is set (then cancel and reap what is in flight), the consumer goes
    /// away, or the kernel refuses multishot receive. `publish` is called after every batch.
    pub fn run(
        &mut self,
        producer: &mut Producer,
        stop: &AtomicBool,
        give_up: &dyn Fn() -> bool,
        max_delay: Duration,
        c: &mut ReceiverStats,
        publish: &mut dyn FnMut(&ReceiverStats),
    ) -> Stopped {
        let mut budget = Budget::new(max_delay);
        let mut staged = 0usize;
        loop {
            if stop.load(Ordering::Acquire) {
                return self.cancel(producer, give_up, c);
            }
            if !self.armed {
                if let Err(e) = self.arm() {
                    return Stopped::Unsupported(e);
                }
            }
            // Idle: wait for one completion. Within the budget's window: for enough to fill a
            // batch, or the window's end, whichever comes first (on this DEFER_TASKRUN ring
            // the kernel wakes us only then, not per completion).
            let (want, wait) = match budget.wait(Instant::now()) {
                None => (1, WAIT),
                Some(d) => ((BUDGET_DATAGRAMS.saturating_sub(staged)).max(1), d),
            };
            let ts = Timespec::from(wait);
            let args = SubmitArgs::new().timespec(&ts);
            let waited = if wait.is_zero() {
                Ok(0)
            } else {
                self.ring.submitter().submit_with_args(want, &args)
            };
            if let Err(e) = waited {
                match e.raw_os_error() {
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => {}
                    // A single-issuer ring driven by another thread than the one that built
                    // it: a bug of ours; the plain path still works.
                    Some(libc::EEXIST) => return Stopped::Unsupported(e),
                    _ => {
                        c.recv_errors += 1;
                        log::error!("io_uring wait failed: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            let before = c.received;
            if let Err(s) = self.reap(producer, give_up, c) {
                producer.publish();
                return s;
            }
            staged += (c.received - before) as usize;
            if budget.publish(Instant::now(), staged) {
                producer.publish();
                staged = 0;
            }
            self.replenish();
            c.ring_full_waits = producer.full_waits;
            publish(c);
        }
    }

    fn arm(&mut self) -> io::Result<()> {
        let sqe = opcode::RecvMulti::new(Fd(self.fd.as_raw_fd()), BGID)
            .flags(libc::MSG_TRUNC)
            .build()
            .user_data(RECV);
        // SAFETY: the request refers to the socket (kept open by our owner) and the
        // registered buffer group, both valid until the request ends (see `Drop`).
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        self.ring.submit()?;
        self.armed = true;
        Ok(())
    }

    /// Move every completed datagram into the ring (staged, not yet published).
    fn reap(
        &mut self,
        producer: &mut Producer,
        give_up: &dyn Fn() -> bool,
        c: &mut ReceiverStats,
    ) -> Result<(), Stopped> {
        let mut done = std::mem::take(&mut self.done);
        let mut outcome = Ok(());
        // SAFETY (for `completion_shared`): only this thread touches the completion queue.
        for cqe in unsafe { self.ring.completion_shared() } {
            if cqe.user_data() != RECV {
                continue;
            }
            let flags = cqe.flags();
            if !cqueue::more(flags) {
                self.armed = false;
            }
            let res = cqe.result();
            // Any completion that carries a buffer hands it back to us, errors included;
            // one not returned would shrink the pool for good.
            let buffer = cqueue::buffer_select(flags);
            if let Some(bid) = buffer {
                done.push(bid);
            }
            if res >= 0 {
                let Some(bid) = buffer else {
                    continue; // a zero-length completion without a buffer
                };
                let len = res as usize;
                if len > self.buf_size {
                    c.truncated += 1;
                    log::error!(
                        "dropped a {len}-byte netlink datagram (larger than {} bytes)",
                        self.buf_size
                    );
                    continue;
                }
                if outcome.is_err() {
                    continue;
                }
                let Some(mut grant) = producer.reserve(give_up) else {
                    outcome = Err(Stopped::ConsumerGone);
                    continue;
                };
                let start = bid as usize * self.buf_size;
                // SAFETY: buffer `bid` is complete (the kernel handed it back with this
                // completion and gets it again only after the batch), `len <= buf_size`, and
                // the range lies inside the slab.
                let data = unsafe { std::slice::from_raw_parts(self.slab.add(start), len) };
                grant.slot()[..len].copy_from_slice(data);
                grant.stage(len);
                c.received += 1;
                self.delivered = true;
                continue;
            }
            match -res {
                libc::ENOBUFS if !drops_grew(self.fd.as_raw_fd(), &mut self.socket_drops) => {
                    // Our pool ran dry: re-armed after the batch, the data waits in the
                    // socket buffer meanwhile.
                }
                libc::ENOBUFS => {
                    c.enobufs += 1;
                    if c.enobufs.is_power_of_two() {
                        log::warn!(
                            "netlink socket buffer overflowed ({} times so far): raise socket_buffer.receive; the kernel's lost counter says whether records were lost",
                            c.enobufs
                        );
                    }
                }
                libc::EINTR | libc::EAGAIN | libc::ECANCELED => {}
                libc::EINVAL | libc::EOPNOTSUPP if !self.delivered => {
                    outcome = Err(Stopped::Unsupported(io::Error::from_raw_os_error(-res)));
                }
                e => {
                    c.recv_errors += 1;
                    log::error!(
                        "Error during message receive: {}",
                        io::Error::from_raw_os_error(e)
                    );
                }
            }
        }
        for &bid in &done {
            self.give_back(bid);
        }
        done.clear();
        self.done = done;
        outcome
    }

    /// Queue buffer `bid` for the kernel again (visible at the next `replenish`).
    fn give_back(&mut self, bid: u16) {
        // `struct io_uring_buf { u64 addr; u32 len; u16 bid; u16 resv; }`: entry 0's `resv`
        // *is* the ring's tail, which the kernel reads at any time, so entries are written
        // field by field through raw pointers, never through a `&mut` to a whole entry.
        const _: () = assert!(std::mem::size_of::<BufRingEntry>() == 16);
        let addr = self.slab as u64 + (bid as usize * self.buf_size) as u64;
        let idx = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `idx < count` indexes one of the entries of our mapping; the kernel only
        // reads entries below the published tail, and this one is at or above it; the three
        // fields written are at their ABI offsets and never overlap `resv`.
        unsafe {
            let e = self.entries.add(idx).cast::<u8>();
            e.cast::<u64>().write(addr);
            e.add(8).cast::<u32>().write(self.buf_size as u32);
            e.add(12).cast::<u16>().write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publish the tail: every buffer given back so far belongs to the kernel again.
    fn replenish(&mut self) {
        // SAFETY: the tail field lives inside our mapping, is 2-byte aligned, and the kernel
        // reads it with acquire semantics; this release store orders the entry writes first.
        unsafe {
            let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Cancel the multishot request and reap until its last completion, handing over what
    /// it still delivered.
    fn cancel(
        &mut self,
        producer: &mut Producer,
        give_up: &dyn Fn() -> bool,
        c: &mut ReceiverStats,
    ) -> Stopped {
        if self.armed {
            let sqe = opcode::AsyncCancel::new(RECV).build().user_data(CANCEL);
            // SAFETY: a cancel request carries no buffers.
            let _ = unsafe { self.ring.submission().push(&sqe) };
        }
        let ts = Timespec::from(WAIT);
        let args = SubmitArgs::new().timespec(&ts);
        for _ in 0..CANCEL_WAITS {
            if !self.armed {
                break;
            }
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let r = self.reap(producer, give_up, c);
            producer.publish();
            self.replenish();
            if let Err(s) = r {
                return s;
            }
        }
        Stopped::Requested
    }
}

/// Whether the socket's drop counter moved since `last` (updated).
fn drops_grew(fd: RawFd, last: &mut u32) -> bool {
    let now = socket_drops(fd).unwrap_or(*last);
    let grew = now != *last;
    *last = now;
    grew
}

/// `sk_drops` of a socket (`SO_MEMINFO`): netlink counts every overrun there.
fn socket_drops(fd: RawFd) -> Option<u32> {
    const SK_MEMINFO_VARS: usize = 9;
    const SK_MEMINFO_DROPS: usize = 8;
    let mut info = [0u32; SK_MEMINFO_VARS];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes; the kernel writes at most that much.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (r == 0 && len as usize > SK_MEMINFO_DROPS * 4).then_some(info[SK_MEMINFO_DROPS])
}

impl Drop for UringReceiver {
    fn drop(&mut self) {
        if self.armed {
            // The kernel may still write into the slab: leaking it is the only safe choice.
            log::error!("io_uring receive request still live at shutdown; leaking its buffers");
            return;
        }
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
        // SAFETY: our own mapping, unregistered above; nothing refers to it any more.
        unsafe { libc::munmap(self.entries.cast(), self.entries_len) };
        // SAFETY: the slab came from `Box::into_raw` of a boxed slice of `slab_len` bytes,
        // and no request can write into it any more (not armed, buffers unregistered).
        drop(unsafe {
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.slab, self.slab_len))
        });
    }
}

#[cfg(test)]
mod tests;
