//! Live ingestion: the receiver and reassembly threads around the ring.
//!
//! Owns the engine's threads. The receiver (pinned to one core) only receives: through one
//! io_uring multishot request ([`crate::uring`], a batch per wake-up) or, where io_uring is
//! unavailable or off, a plain `recv` straight into the SPSC ring; either way the socket is
//! drained as fast as the kernel fills it.
//! When the ring is full the receiver waits (the kernel's socket buffer absorbs the burst and
//! ENOBUFS is counted as `netlink_dropped`); it never waits on anything further downstream.
//! The reassembly thread drains the ring in batches, splits datagrams, routes ACKs to whoever
//! waits for them, runs records through the [`Processor`] with a millisecond clock, and hands
//! completed events to the caller's `emit` in batches (blocking there is the only back-pressure
//! it applies). The latency budget and counters both receive paths share are
//! [`crate::receiver`]'s; the kernel's status poll is [`crate::session::StatusPoller`]. It must
//! never write events or touch configuration files.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::event::Event;
use crate::filter::FilterSet;
use crate::netlink::{self, AuditSocket, Mode, NlMessage, MAX_DATAGRAM};
use crate::processor::Processor;
use crate::receiver::{Budget, ReceiverCounters, ReceiverStats, BUDGET_DATAGRAMS};
use crate::ring::{self, Consumer, Producer};
use crate::stats::{DropReason, Stats};
use crate::uring::{Stopped, UringReceiver};
use crate::users::UserResolver;
use std::os::fd::AsFd;

/// Which receive path to use (`engine.io_uring`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoUringMode {
    /// io_uring where the kernel allows it, else the plain `recv` loop (logged).
    Auto,
    /// io_uring or fail to start.
    On,
    /// The plain `recv` loop.
    Off,
}

/// Provided buffers of the io_uring path: 256 x 16 KiB reserved, of which only the pages
/// records actually touch become resident.
const URING_BUFFERS: u16 = 256;

#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub mode: Mode,
    /// Core to pin the receiver to; `None` leaves it to the scheduler.
    pub receiver_core: Option<usize>,
    /// Ring capacity in bytes.
    pub ring_bytes: usize,
    /// Events per batch handed to `emit` (sooner when the ring runs dry).
    pub batch: usize,
    pub io_uring: IoUringMode,
    /// `engine.max_delay`: the latency budget within which the receiver gathers datagrams
    /// before publishing them (one wake-up of the reassembler, and so of the writer and the
    /// outputs, per budget instead of per datagram); zero publishes every datagram at once.
    pub max_delay: Duration,
}

/// Requests waiting for their netlink ACK, by sequence number.
#[derive(Default)]
struct AckBoard {
    waiting: Mutex<Vec<(u32, SyncSender<i32>)>>,
}

impl AckBoard {
    fn deliver(&self, seq: u32, errno: i32) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = w.iter().position(|(s, _)| *s == seq) {
            let (_, tx) = w.swap_remove(i);
            let _ = tx.send(errno);
        } else if errno != 0 {
            log::error!(
                "netlink request {seq} failed: {}",
                io::Error::from_raw_os_error(errno)
            );
        }
    }
}

enum Control {
    Filters(FilterSet),
    GroupNames(bool),
}

/// The running engine.
pub struct Live {
    socket: Arc<AuditSocket>,
    stop: Arc<AtomicBool>,
    receiver: JoinHandle<()>,
    reassembler: JoinHandle<Stats>,
    control: Sender<Control>,
    acks: Arc<AckBoard>,
    counters: Arc<ReceiverCounters>,
    /// The reassembler's counters, republished every [`STATS_EVERY`].
    stats: Arc<Mutex<Stats>>,
    /// Milliseconds since `started` at the reassembler's latest loop turn (at least every
    /// 250 ms when it is healthy, idle or not).
    heartbeat: Arc<AtomicU64>,
    started: Instant,
}

/// How often the reassembly thread republishes its counters.
const STATS_EVERY: Duration = Duration::from_millis(250);

impl Live {
    /// Start both threads on `socket`. `emit` runs on the reassembly thread.
    pub fn start<U, E>(
        socket: AuditSocket,
        cfg: LiveConfig,
        processor: Processor<U>,
        emit: E,
    ) -> io::Result<Live>
    where
        U: UserResolver + Send + 'static,
        E: FnMut(Vec<Event>) + Send + 'static,
    {
        socket.set_receive_timeout(Duration::from_millis(200))?;
        let socket = Arc::new(socket);
        let (producer, consumer) = ring::ring(cfg.ring_bytes, MAX_DATAGRAM);
        let stop = Arc::new(AtomicBool::new(false));
        let consumer_gone = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(ReceiverCounters::default());
        let acks = Arc::new(AckBoard::default());
        let (control, control_rx) = mpsc::channel();

        let receiver = {
            let (socket, stop, gone, counters) = (
                socket.clone(),
                stop.clone(),
                consumer_gone.clone(),
                counters.clone(),
            );
            let core = cfg.receiver_core;
            let mode = cfg.io_uring;
            let max_delay = cfg.max_delay;
            // The io_uring is built on the thread that drives it (so it can be a single
            // issuer); whether that worked comes back before `start` returns.
            let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<()>>(1);
            let thread = std::thread::Builder::new()
                .name("pauditd-recv".into())
                .spawn(move || {
                    if let Some(c) = core {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
                            log::warn!("could not pin the receiver to core {c}");
                        }
                    }
                    let uring = match mode {
                        IoUringMode::Off => None,
                        mode => {
                            match UringReceiver::new(socket.as_fd(), URING_BUFFERS, MAX_DATAGRAM) {
                                Ok(u) => Some(u),
                                Err(e) if mode == IoUringMode::On => {
                                    let _ = ready_tx.send(Err(io::Error::new(
                                        e.kind(),
                                        format!(
                                        "engine.io_uring is on but io_uring is unavailable: {e}"
                                    ),
                                    )));
                                    return;
                                }
                                Err(e) => {
                                    log::info!("io_uring unavailable ({e}); receiving with recv");
                                    None
                                }
                            }
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    receive_loop(&socket, max_delay, uring, producer, &stop, &gone, &counters)
                })?;
            match ready_rx.recv() {
                Ok(Ok(())) => thread,
                Ok(Err(e)) => {
                    let _ = thread.join();
                    return Err(e);
                }
                Err(_) => {
                    let _ = thread.join();
                    return Err(io::Error::other("the receiver thread died while starting"));
                }
            }
        };
        let stats = Arc::new(Mutex::new(Stats::default()));
        let heartbeat = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let reassembler = {
            let acks = acks.clone();
            let shared = stats.clone();
            let beat = heartbeat.clone();
            let batch = cfg.batch.max(1);
            // With a budget the receiver already gathers datagrams per window: a coalescing
            // sleep here would only add a second wake-up per window.
            let coalesce = if cfg.max_delay.is_zero() {
                COALESCE
            } else {
                Duration::ZERO
            };
            std::thread::Builder::new()
                .name("pauditd-reasm".into())
                .spawn(move || {
                    batch_scheduling();
                    let _gone = SetOnDrop(consumer_gone);
                    reassemble_loop(
                        consumer, processor, emit, batch, coalesce, &acks, control_rx, &shared,
                        &beat, started,
                    )
                })?
        };
        Ok(Live {
            socket,
            stop,
            receiver,
            reassembler,
            control,
            acks,
            counters,
            stats,
            heartbeat,
            started,
        })
    }

    /// How long since the reassembler last turned its loop: seconds mean it is stuck (in an
    /// `emit` that does not return, or worse), and the socket is not being drained.
    pub fn stalled_for(&self) -> Duration {
        let beat = Duration::from_millis(self.heartbeat.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(beat)
    }

    /// The reassembler's counters as of its last republish.
    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// An engine thread that has stopped while the engine runs (a panic): the socket is no
    /// longer drained.
    pub fn failed_thread(&self) -> Option<&'static str> {
        if self.receiver.is_finished() {
            Some("receiver")
        } else if self.reassembler.is_finished() {
            Some("reassembler")
        } else {
            None
        }
    }

    pub fn socket(&self) -> &AuditSocket {
        &self.socket
    }

    /// The data socket, shared (for a guard that must outlive a borrow of the engine).
    pub fn socket_handle(&self) -> Arc<AuditSocket> {
        self.socket.clone()
    }

    /// Send a request on the data socket and wait for its ACK (which arrives through the
    /// receiver like everything else).
    pub fn request(
        &self,
        send: impl FnOnce(&AuditSocket) -> io::Result<u32>,
        timeout: Duration,
    ) -> io::Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        let mut w = self.acks.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let seq = send(&self.socket)?;
        w.push((seq, tx));
        drop(w);
        match rx.recv_timeout(timeout) {
            Ok(0) => Ok(()),
            Ok(errno) => Err(io::Error::from_raw_os_error(errno)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no ACK from the kernel",
            )),
        }
    }

    /// Replace the filters; events completed after this point use the new ones.
    /// Resolve gids to group names from now on, or stop (a reload changed the formats).
    pub fn set_group_names(&self, on: bool) {
        let _ = self.control.send(Control::GroupNames(on));
    }

    pub fn set_filters(&self, filters: FilterSet) {
        let _ = self.control.send(Control::Filters(filters));
    }

    pub fn receiver_stats(&self) -> ReceiverStats {
        self.counters.snapshot()
    }

    /// Stop receiving, drain what the socket already holds, complete every open event and
    /// hand it to `emit`, then join. Release the audit pid first, so the kernel stops
    /// sending to us before the final drain.
    pub fn shutdown(self) -> (Stats, ReceiverStats) {
        self.stop.store(true, Ordering::Release);
        if self.receiver.join().is_err() {
            log::error!("receiver thread panicked");
        }
        let stats = self.reassembler.join().unwrap_or_else(|_| {
            log::error!("reassembly thread panicked");
            Stats::default()
        });
        (stats, self.counters.snapshot())
    }

    /// [`shutdown`](Self::shutdown), waiting for the threads until `limit` at most; the last
    /// value is false when one was still stuck then (left behind, the process is about to
    /// exit; the counters are those last published).
    pub fn shutdown_by(self, limit: Instant) -> (Stats, ReceiverStats, bool) {
        self.stop.store(true, Ordering::Release);
        while !(self.receiver.is_finished() && self.reassembler.is_finished()) {
            if Instant::now() >= limit {
                let stats = self.stats();
                return (stats, self.counters.snapshot(), false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (s, r) = self.shutdown();
        (s, r, true)
    }
}

/// Run the calling thread under `SCHED_BATCH`: woken by the receiver, the reassembler does
/// not preempt it (one context switch per hand-over instead of two); the receiver keeps the
/// normal policy. The same as `pauditd_sinks::batch_scheduling` for the threads after it.
fn batch_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread (pid 0) with a valid parameter.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}

struct SetOnDrop(Arc<AtomicBool>);
impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn receive_loop(
    socket: &AuditSocket,
    max_delay: Duration,
    uring: Option<UringReceiver>,
    mut producer: Producer,
    stop: &AtomicBool,
    consumer_gone: &AtomicBool,
    counters: &ReceiverCounters,
) {
    let mut c = ReceiverStats::default();
    let give_up = || consumer_gone.load(Ordering::Acquire);
    if let Some(mut u) = uring {
        counters.io_uring.store(true, Ordering::Relaxed);
        log::info!("receiving with io_uring (multishot recv, {URING_BUFFERS} provided buffers)");
        let stopped = u.run(&mut producer, stop, &give_up, max_delay, &mut c, &mut |c| {
            counters.publish(c)
        });
        counters.io_uring.store(false, Ordering::Relaxed);
        match stopped {
            // The plain loop below drains what the socket still holds.
            Stopped::Requested => {}
            Stopped::ConsumerGone => {
                log::error!("reassembly thread gone; receiver stops");
                return;
            }
            Stopped::Unsupported(e) => {
                log::warn!(
                    "io_uring multishot receive refused by the kernel ({e}); receiving with recv"
                )
            }
        }
    }
    let mut budget = Budget::new(max_delay);
    let (mut staged, mut since_sleep) = (0usize, 0usize);
    loop {
        let draining = stop.load(Ordering::Acquire);
        // Within an open window, take what the socket holds without blocking, then sleep out
        // the window (datagrams meanwhile wait in the socket buffer, as they do while the
        // ring is full): one wake-up per window instead of one per datagram.
        let window = budget.wait(Instant::now());
        let Some(mut grant) = producer.reserve(&give_up) else {
            log::error!("reassembly thread gone; receiver stops");
            break;
        };
        let room = grant.slot().len();
        match socket.recv(grant.slot(), draining || window.is_some()) {
            Ok(n) if n > room => {
                c.truncated += 1;
                log::error!("dropped a {n}-byte netlink datagram (larger than {room} bytes)");
            }
            Ok(n) => {
                grant.stage(n);
                staged += 1;
                since_sleep += 1;
                c.received += 1;
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) if !draining => {
                    if since_sleep >= BUDGET_DATAGRAMS {
                        // Datagrams come faster than a batch per budget: a sleep has no early
                        // wake-up here (io_uring's wait has), and under a storm it would let
                        // the socket buffer overflow. Publish and block for the next one.
                        budget.close();
                        if staged > 0 {
                            producer.publish();
                            staged = 0;
                        }
                    } else if let Some(w) = window.filter(|w| !w.is_zero()) {
                        std::thread::sleep(w);
                    }
                    since_sleep = 0;
                }
                Some(libc::EAGAIN) => break,
                Some(libc::EINTR) => {}
                Some(libc::ENOBUFS) => {
                    c.enobufs += 1;
                    if c.enobufs.is_power_of_two() {
                        log::warn!(
                            "netlink socket buffer overflowed ({} times so far): raise socket_buffer.receive; the kernel's lost counter says whether records were lost",
                            c.enobufs
                        );
                    }
                }
                _ => {
                    c.recv_errors += 1;
                    log::error!("Error during message receive: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            },
        }
        if budget.publish(Instant::now(), staged) {
            producer.publish();
            staged = 0;
        }
        c.ring_full_waits = producer.full_waits;
        counters.publish(&c);
    }
}

/// How long the reassembler lets records accumulate after a wake-up, unless this much is
/// already waiting.
const COALESCE: Duration = Duration::from_micros(500);
/// The longest the reassembler waits idle (its heartbeat's period, and 4 wake-ups a second
/// when nothing happens).
const IDLE_WAIT_MS: u64 = 250;
const COALESCE_BYTES: usize = 64 << 10;

#[allow(clippy::too_many_arguments)]
fn reassemble_loop<U: UserResolver, E: FnMut(Vec<Event>)>(
    mut consumer: Consumer,
    mut processor: Processor<U>,
    mut emit: E,
    batch: usize,
    coalesce: Duration,
    acks: &AckBoard,
    control: Receiver<Control>,
    shared: &Mutex<Stats>,
    heartbeat: &AtomicU64,
    started: Instant,
) -> Stats {
    let start = Instant::now();
    let mut published = start;
    let mut events: Vec<Event> = processor.batch_vec(batch);
    loop {
        while let Ok(c) = control.try_recv() {
            match c {
                Control::Filters(f) => {
                    // Tests: armed with `pause`, a reload (SIGHUP) stalls the reassembler.
                    fail::fail_point!("reassembler-new-filters");
                    processor.set_filters(f)
                }
                Control::GroupNames(on) => processor.users_mut().set_resolves_groups(on),
            }
        }
        let now = start.elapsed().as_millis() as u64;
        heartbeat.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        processor.users_mut().begin_batch(Instant::now());
        let n = consumer.read_batch(|dgram| {
            for m in netlink::split(dgram) {
                match m {
                    Ok(m) if netlink::is_record(m.rtype) => {
                        processor.push_netlink(m.rtype, m.payload, now, &mut events)
                    }
                    Ok(m) => control_message(&m, acks),
                    Err(netlink::Truncated) => processor.reject(DropReason::Truncated, dgram),
                }
            }
            // A full ring holds thousands of events: hand them over as they fill a batch.
            if events.len() >= batch {
                hand_over(&mut events, batch, &mut processor, &mut emit);
            }
        });
        processor.expire(now, &mut events);
        if published.elapsed() >= STATS_EVERY {
            published = Instant::now();
            *shared.lock().unwrap_or_else(|e| e.into_inner()) = processor.stats();
        }
        if !events.is_empty() && (n == 0 || events.len() >= batch) {
            hand_over(&mut events, batch, &mut processor, &mut emit);
        }
        if n == 0 {
            if consumer.is_closed() && consumer.pending_bytes() == 0 {
                break;
            }
            let wait = processor
                .next_deadline()
                .map_or(IDLE_WAIT_MS, |d| d.saturating_sub(now))
                .clamp(1, IDLE_WAIT_MS);
            consumer.wait(Duration::from_millis(wait));
            // Woken by a first datagram: let a few more land before draining. The receiver
            // keeps emptying the socket meanwhile (the kernel never waits on this), and one
            // wake-up per COALESCE instead of per datagram cut the reassembler's scheduling
            // cost under load (scripts/loadbench).
            let pending = consumer.pending_bytes();
            if !coalesce.is_zero()
                && pending > 0
                && pending < COALESCE_BYTES
                && !consumer.is_closed()
            {
                std::thread::sleep(coalesce);
            }
        }
    }
    processor.finish(&mut events);
    hand_over(&mut events, batch, &mut processor, &mut emit);
    processor.stats()
}

/// Hand `events` to `emit` in batches of at most `batch`, leaving it empty. The writer's
/// queue counts batches, so this is what bounds the events waiting in it, however many one
/// ring read, one expiry or the final flush completes.
fn hand_over<U: UserResolver>(
    events: &mut Vec<Event>,
    batch: usize,
    processor: &mut Processor<U>,
    emit: &mut impl FnMut(Vec<Event>),
) {
    if !events.is_empty() {
        // Tests: `pause` stalls the reassembler here, `panic` kills it.
        fail::fail_point!("reassembler-hand-over");
    }
    while events.len() > batch {
        let rest = events.split_off(batch);
        emit(std::mem::replace(events, rest));
    }
    if !events.is_empty() {
        let next = processor.batch_vec(batch);
        emit(std::mem::replace(events, next));
    }
}

fn control_message(m: &NlMessage<'_>, acks: &AckBoard) {
    if m.rtype == netlink::NLMSG_ERROR {
        acks.deliver(m.seq, netlink::ack_errno(m.payload).unwrap_or(0));
    }
}

#[cfg(test)]
mod tests;
