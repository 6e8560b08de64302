//! The delivery thread of an output ([`Delivery`]): sends the memory window, then the spool,
//! oldest first, with retries and a circuit breaker; on a failing destination moves what it
//! holds to the spool; at the deadline keeps or counts the rest. It must never reorder, never
//! retry past the deadline, and never lose an event uncounted.

use super::*;

/// Where a batch being delivered came from.
pub(super) enum Held {
    /// From memory (with its id, 0 without a spool).
    Memory(u64, Arc<Batch>),
    /// From the spool: acknowledged once delivered.
    Spooled(Spooled),
}

impl Held {
    fn batch(&self) -> &Batch {
        match self {
            Held::Memory(_, b) => b,
            Held::Spooled(r) => &r.batch,
        }
    }
}

/// What one delivery attempt did.
pub(super) struct Outcome {
    delivered: usize,
    rejected: usize,
    /// Lines that failed and may succeed later (in order).
    retry: Batch,
    /// The destination is gone for good; `retry` is what it did not take.
    closed: bool,
    error: String,
}

/// How delivering one batch ended.
pub(super) enum Done {
    /// Delivered, or settled per the policy: take the next.
    Next,
    /// The destination failed while this batch came from memory, and there is a spool:
    /// move it (`rest` of it) and the window to the spool, and go on from there.
    Divert { rest: Option<Batch> },
    /// Stop (deadline or closed destination); `rest` is what is still held of it (`None`:
    /// all of it).
    Stop { rest: Option<Batch> },
}

/// The delivery thread: sends the window, then the spool, oldest first.
pub(super) struct Delivery {
    pub(super) sink: Box<dyn Sink>,
    pub(super) cfg: OutputConfig,
    pub(super) shared: Arc<Shared>,
    pub(super) win: Receiver<Window>,
    pub(super) spool: Option<SpoolReader>,
    pub(super) last_progress: Instant,
    pub(super) backoff: Duration,
    /// Breaker open: no attempt before this instant.
    pub(super) open_until: Option<Instant>,
    pub(super) failures: u64,
}

/// The longest an idle delivery thread sleeps without being rung.
const IDLE_PARK: Duration = Duration::from_secs(10);

impl Delivery {
    fn counters(&self) -> &OutputCounters {
        &self.shared.counters
    }

    fn past_deadline(&self) -> bool {
        self.shared.past(self.last_progress)
    }

    fn closing(&self) -> bool {
        self.shared.deadline().is_some()
    }

    pub(super) fn run(&mut self) {
        let mut stopped: Option<(Held, Option<Batch>)> = None;
        loop {
            if self.past_deadline() {
                break;
            }
            // The window holds batches older than anything spooled: it goes first.
            let held = match self.win.try_recv() {
                Ok(Window::Batch(id, b)) => Held::Memory(id, b),
                Ok(Window::Spooled) => continue,
                Err(empty) => {
                    if let Some(r) = self.next_spooled() {
                        Held::Spooled(r)
                    } else if empty == TryRecvError::Disconnected {
                        // Closed, drained, and nothing spooled: done.
                        break;
                    } else {
                        // Idle: block until rung (a batch, a spool notice, the window's close
                        // or a new deadline; see `Shared::ring`). While closing, look again
                        // every 250 ms (a `Stalled` deadline passes without a ring); otherwise
                        // the timeout only bounds the cost of a missed ring, which would be a
                        // bug.
                        std::thread::park_timeout(if self.closing() {
                            Duration::from_millis(250)
                        } else {
                            IDLE_PARK
                        });
                        continue;
                    }
                }
            };
            if self.shared.reopen.swap(false, Relaxed) {
                if let Err(e) = self.sink.reopen() {
                    log::error!("Error re-opening output: {e}");
                }
            }
            match self.deliver(&held) {
                Done::Next => {}
                Done::Divert { rest } => self.divert(held, rest),
                Done::Stop { rest } => {
                    stopped = Some((held, rest));
                    break;
                }
            }
        }
        self.keep_the_rest(stopped);
        self.counters().queued_batches.store(0, Relaxed);
        self.sink.close();
    }

    /// The oldest spooled record (corrupt ones skipped and counted).
    fn next_spooled(&mut self) -> Option<Spooled> {
        let s = self.spool.as_mut()?;
        let r = match s.peek() {
            Ok(r) => r,
            Err(e) => {
                log::error!("output {}: {e}", self.shared.name);
                None
            }
        };
        if r.is_none() {
            // Read empty: the buffer may pass batches in memory again.
            *self.shared.diverted() = false;
        }
        let corrupt = s.take_corrupt_events();
        self.shared.publish_spool(s.events(), s.bytes());
        if corrupt > 0 {
            self.shared
                .lose_logged(LossReason::Corrupt, corrupt, &"unreadable in the spool");
        }
        r
    }

    /// The destination failed: what is held in memory (this batch, then the window) goes to
    /// the spool now, so an outage costs no memory and a `kill -9` loses none of it.
    fn divert(&mut self, held: Held, rest: Option<Batch>) {
        let Held::Memory(id, b) = held else { return };
        let mut keep = vec![(id, rest.map_or(b, Arc::new))];
        {
            let mut diverted = self.shared.diverted();
            *diverted = true;
            keep.extend(self.win.try_iter().filter_map(|w| match w {
                Window::Batch(id, b) => Some((id, b)),
                Window::Spooled => None,
            }));
        }
        self.write_held(keep, LossReason::SpoolError);
    }

    fn write_held(&mut self, held: Vec<(u64, Arc<Batch>)>, why: LossReason) {
        let n: u64 = held.iter().map(|(_, b)| b.len() as u64).sum();
        if n == 0 {
            return;
        }
        match self.spool.as_mut() {
            Some(s) => {
                let refs: Vec<(u64, &Batch)> = held.iter().map(|(i, b)| (*i, &**b)).collect();
                match s.write_held(&refs) {
                    Ok(k) => {
                        self.shared.counters.spooled.fetch_add(k, Relaxed);
                    }
                    Err(e) => self.shared.lose_logged(LossReason::SpoolError, n, &e),
                }
                self.shared.publish_spool(s.events(), s.bytes());
            }
            None => self.shared.lose_logged(why, n, &"still held at the end"),
        }
    }

    /// Past the deadline or ended: what is still held in memory (the batch being sent, with
    /// what is left of it, then the window) goes to the spool with its ids, else is counted.
    fn keep_the_rest(&mut self, stopped: Option<(Held, Option<Batch>)>) {
        let ended = self.shared.ended.load(Relaxed);
        let mut held: Vec<(u64, Arc<Batch>)> = Vec::new();
        match stopped {
            Some((Held::Memory(id, b), rest)) => {
                held.push((id, rest.map_or(b, Arc::new)));
            }
            // Not acknowledged: it stays first in the spool (sent whole again next time).
            Some((Held::Spooled(_), _)) | None => {}
        }
        {
            // As for a divert: once this is set (under the lock the buffer sends under), the
            // buffer never sends to the window again; it appends what it still gets.
            let mut diverted = self.shared.diverted();
            *diverted = true;
            for w in self.win.try_iter() {
                if let Window::Batch(id, b) = w {
                    held.push((id, b));
                }
            }
        }
        if ended {
            let n: u64 = held.iter().map(|(_, b)| b.len() as u64).sum();
            self.shared
                .lose_logged(LossReason::Closed, n, &"the destination ended");
            return;
        }
        self.write_held(held, LossReason::Shutdown);
    }

    /// Deliver one held batch, per the policy.
    fn deliver(&mut self, held: &Held) -> Done {
        let mut rest: Option<Batch> = None;
        let mut tries = 0u32;
        loop {
            if self.past_deadline() {
                return Done::Stop { rest };
            }
            let open = self.open_until.filter(|t| Instant::now() < *t);
            if open.is_some() && self.closing() && self.spool.is_some() {
                // Closing while the destination is down: keep it all for the next start now
                // rather than wait out the deadline.
                return Done::Stop { rest };
            }
            if let Some(until) = open {
                // Breaker open: fail fast (drop) or wait (spool, block): with a spool the
                // window fills meanwhile and the buffer spools behind this batch.
                if self.cfg.give_up {
                    let cur = rest.as_ref().unwrap_or_else(|| held.batch()).len();
                    self.settle(held, cur, LossReason::Failed);
                    return Done::Next;
                }
                self.sleep_until(until);
                continue;
            }
            tries += 1;
            let o = self.attempt(rest.as_ref().unwrap_or_else(|| held.batch()));
            let c = self.shared.counters.clone();
            c.delivered.fetch_add(o.delivered as u64, Relaxed);
            if matches!(held, Held::Spooled(_)) {
                c.unspooled.fetch_add(o.delivered as u64, Relaxed);
            }
            c.lose(LossReason::Rejected, o.rejected as u64);
            if o.delivered + o.rejected > 0 {
                self.last_progress = Instant::now();
            }
            if o.closed {
                self.shared.ended.store(true, Relaxed);
                log::error!(
                    "output {}: {}; the output has ended, its events are counted lost from now on",
                    self.shared.name,
                    o.error
                );
                self.settle(held, o.retry.len(), LossReason::Closed);
                // Counted just now: nothing of it is left to keep.
                return Done::Stop {
                    rest: Some(Batch::default()),
                };
            }
            if o.retry.is_empty() {
                if self.open_until.take().is_some() || self.backoff > Duration::ZERO {
                    log::info!("output {}: delivering again", self.shared.name);
                }
                self.backoff = Duration::ZERO;
                self.settle(held, 0, LossReason::Failed);
                return Done::Next;
            }
            self.failures += 1;
            if worth_logging(self.failures) {
                log::error!(
                    "output {}: {} event(s) not delivered: {} ({} failed attempt(s) so far)",
                    self.shared.name,
                    o.retry.len(),
                    o.error,
                    self.failures
                );
            }
            let left = o.retry.len();
            rest = Some(o.retry);
            if self.cfg.give_up && tries < self.cfg.attempts {
                self.sleep_until(Instant::now() + self.cfg.pause);
                continue;
            }
            self.open_breaker();
            if self.cfg.give_up {
                self.settle(held, left, LossReason::Failed);
                return Done::Next;
            }
            if matches!(held, Held::Memory(..)) && self.spool.is_some() {
                return Done::Divert { rest };
            }
        }
    }

    fn open_breaker(&mut self) {
        let (first, max) = self.cfg.backoff;
        self.backoff = if self.backoff.is_zero() {
            first
        } else {
            (self.backoff * 2).min(max)
        };
        if self.open_until.is_none() {
            self.counters().breaker_opened.fetch_add(1, Relaxed);
            log::warn!(
                "output {}: failing; trying again every {:?} at most (policy {})",
                self.shared.name,
                self.backoff,
                self.cfg.overflow.name()
            );
        }
        self.open_until = Some(Instant::now() + self.backoff);
    }

    /// One try of the sink on `b`.
    fn attempt(&mut self, b: &Batch) -> Outcome {
        match self.sink.write_batch(b) {
            Ok(()) => Outcome {
                delivered: b.len(),
                rejected: 0,
                retry: Batch::default(),
                closed: false,
                error: String::new(),
            },
            Err(e) => {
                let f = e.failure(b.len());
                let mut retry = Batch::default();
                for &i in &f.retry {
                    retry.push_line(&b.bytes()[b.line_range(i)]);
                }
                Outcome {
                    delivered: b.len() - f.retry.len() - f.rejected,
                    rejected: f.rejected,
                    retry,
                    closed: f.closed,
                    error: e.to_string(),
                }
            }
        }
    }

    /// Sleep until `t`, waking early when the deadline passes.
    fn sleep_until(&self, t: Instant) {
        while !self.past_deadline() {
            let left = t.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    /// `held` is done with: `undelivered` events of it are lost for `why`.
    fn settle(&mut self, held: &Held, undelivered: usize, why: LossReason) {
        self.shared.counters.lose(why, undelivered as u64);
        if let (Held::Spooled(r), Some(s)) = (held, self.spool.as_mut()) {
            if let Err(e) = s.ack(r) {
                log::error!("output {}: {e}", self.shared.name);
            }
            self.shared.publish_spool(s.events(), s.bytes());
        }
    }
}
