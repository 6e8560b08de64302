//! The buffer thread of a spooled output ([`Buffer`]): takes batches from the output's
//! queue, gives each the next id, passes it on in memory while nothing is spooled and the
//! window has room, appends it to the spool otherwise; opening the spool at start (or taking
//! it over from an output being retired) and counting what recovery found. It is the spool's
//! only writer; it must never send to the destination, and never let a batch go to memory
//! while anything older is spooled.

use super::*;

/// The spool as the output starts with it.
pub(super) enum SpoolStart {
    None,
    Open(Spool),
    /// Held by an output of this process being retired (a reload): taken over by the buffer
    /// thread once released.
    Wait(SpoolConfig),
}

pub(super) fn open_spool(
    name: &'static str,
    sc: &SpoolConfig,
    counters: &OutputCounters,
) -> Result<SpoolStart, SpoolError> {
    match Spool::open(sc.clone()) {
        Ok((spool, rec)) => {
            note_recovered(name, sc, &rec, counters);
            Ok(SpoolStart::Open(spool))
        }
        Err(SpoolError::Busy { ours: true, .. }) => Ok(SpoolStart::Wait(sc.clone())),
        Err(e) => Err(e),
    }
}

pub(super) fn note_recovered(
    name: &str,
    sc: &SpoolConfig,
    rec: &crate::spool::Recovered,
    counters: &OutputCounters,
) {
    if rec.events > 0 || rec.corrupt_bytes > 0 {
        log::info!(
            "output {name}: spool {} holds {} event(s) from an earlier run; delivering them first{}",
            sc.dir.display(),
            rec.events,
            if rec.corrupt_bytes > 0 {
                format!(
                    " ({} unreadable byte(s) skipped, {} event(s) known lost)",
                    rec.corrupt_bytes, rec.corrupt_events
                )
            } else {
                String::new()
            }
        );
    }
    counters.recovered.fetch_add(rec.events, Relaxed);
    counters
        .spool_corrupt_bytes
        .fetch_add(rec.corrupt_bytes, Relaxed);
    // Known lost events were received by an earlier run: counted as received and lost here,
    // so the accounting still balances.
    counters.recovered.fetch_add(rec.corrupt_events, Relaxed);
    counters.lose(LossReason::Corrupt, rec.corrupt_events);
}

/// The buffer thread of a spooled output: the only writer of its spool.
pub(super) struct Buffer {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: Receiver<Window>,
    pub(super) win: Sender<Window>,
    pub(super) write_ahead: bool,
}

impl Buffer {
    pub(super) fn run(self, start: SpoolStart, reader_tx: Sender<SpoolReader>) {
        let spool = match start {
            SpoolStart::Open(s) => Some(s),
            SpoolStart::Wait(sc) => self.take_over(&sc),
            SpoolStart::None => None,
        };
        let Some(spool) = spool else {
            // No spool after all (it could not be taken over): batches pass to the window.
            drop(reader_tx);
            for w in &self.rx {
                let sent = self.win.send(w);
                self.shared.ring();
                if let Err(e) = sent {
                    if let Window::Batch(_, b) = e.into_inner() {
                        self.shared
                            .counters
                            .lose(LossReason::Shutdown, b.len() as u64);
                    }
                }
            }
            return;
        };
        self.shared.publish_spool(spool.events(), spool.bytes());
        let (mut w, r) = spool.split();
        let _ = reader_tx.send(r);
        if !w.is_drained() {
            let _ = self.win.try_send(Window::Spooled);
            self.shared.ring();
        }
        let mut spooling = self.write_ahead || !w.is_drained();
        for msg in &self.rx {
            let Window::Batch(_, b) = msg else { continue };
            if self.shared.ended.load(Relaxed) {
                self.shared
                    .counters
                    .lose(LossReason::Closed, b.len() as u64);
                continue;
            }
            self.shared
                .counters
                .queued_batches
                .store(self.rx.len() as u64, Relaxed);
            if spooling && !self.write_ahead && w.is_drained() && !*self.shared.diverted() {
                spooling = false;
            }
            if !spooling && !*self.shared.diverted() {
                let id = w.assign_id();
                let sent = {
                    let diverted = self.shared.diverted();
                    if *diverted {
                        Err(b)
                    } else {
                        match self.win.try_send(Window::Batch(id, b)) {
                            Ok(()) => Ok(()),
                            Err(TrySendError::Full(Window::Batch(_, back)))
                            | Err(TrySendError::Disconnected(Window::Batch(_, back))) => Err(back),
                            // Only batches are sent here.
                            Err(_) => continue,
                        }
                    }
                };
                match sent {
                    Ok(()) => {
                        self.shared.ring();
                        continue;
                    }
                    Err(back) => {
                        // The window is full, or delivery diverted: from now on everything
                        // goes to disk until delivery has caught up with it (order: memory,
                        // then spool).
                        spooling = true;
                        self.append(&mut w, &back);
                    }
                }
                continue;
            }
            spooling = true;
            self.append(&mut w, &b);
        }
        self.shared.publish_spool(w.events(), w.bytes());
    }

    fn append(&self, w: &mut SpoolWriter, b: &Batch) {
        let n = b.len() as u64;
        match w.append(b, 0) {
            Ok(()) => {
                self.shared.counters.spooled.fetch_add(n, Relaxed);
                // A doorbell; when the window is full, delivery is busy and looks anyway.
                let _ = self.win.try_send(Window::Spooled);
                self.shared.ring();
            }
            Err(e) => {
                let why = match e {
                    SpoolError::Full { .. } => LossReason::SpoolFull,
                    _ => LossReason::SpoolError,
                };
                self.shared.lose_logged(why, n, &e);
            }
        }
        self.shared.publish_spool(w.events(), w.bytes());
    }

    /// Wait for a retiring output of this process to release the spool (a reload hands it
    /// over; never two owners). Gives up at the deadline.
    fn take_over(&self, sc: &SpoolConfig) -> Option<Spool> {
        let mut logged = false;
        loop {
            match Spool::open(sc.clone()) {
                Ok((s, rec)) => {
                    note_recovered(self.shared.name, sc, &rec, &self.shared.counters);
                    return Some(s);
                }
                Err(SpoolError::Busy { .. })
                    if !self.shared.past(Instant::now() + Duration::from_secs(3600)) =>
                {
                    if !logged {
                        log::info!(
                            "output {}: waiting for the previous output to release spool {}",
                            self.shared.name,
                            sc.dir.display()
                        );
                        logged = true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    log::error!("output {}: {e}; running without a spool", self.shared.name);
                    return None;
                }
            }
        }
    }
}
