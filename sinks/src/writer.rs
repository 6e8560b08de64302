//! The output thread: encodes batches of events and writes them to every sink, in order.
//!
//! Owns the one place events are serialized and written in the live daemon, so each sink sees
//! lines in completion order and never interleaved. Control messages (reopen after SIGUSR1,
//! new outputs after SIGHUP) travel in the same queue as events, so they apply exactly between
//! two batches. The queue is bounded: when it is full the sender waits (the reassembler, and
//! behind it the ring and the kernel's socket buffer, absorb the wait). It must never drop an
//! event it was given: losses happen only inside a sink, after its attempts, and are counted.

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pauditd_engine::Event;

use crate::fanout::{Fanout, SinkStats};

pub enum WriterMsg {
    /// Completed events and when they were handed over (for the `latency` timing).
    Events(Vec<Event>, Instant),
    /// SIGUSR1: reopen file outputs.
    Reopen,
    /// SIGHUP: switch to new outputs (the old ones are dropped after the switch).
    Replace(Fanout),
}

/// Timing samples kept between two metric reports.
const MAX_LATENCY_SAMPLES: usize = 4096;

/// What the writer tells the metrics reporter.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Counters of every sink used so far.
    pub sinks: Vec<SinkStats>,
    /// Per batch: from hand-over to every sink done with it (pauditd's `latency`, which
    /// timed the same encode-and-write step per message). Taken by the reporter.
    pub latency: Vec<Duration>,
}

/// Run the writer until every sender is gone; returns the counters of every sink it used.
/// `shared` is updated after each message (for metrics).
pub fn spawn(
    mut out: Fanout,
    rx: Receiver<WriterMsg>,
    shared: Arc<Mutex<WriterReport>>,
) -> std::io::Result<JoinHandle<Vec<SinkStats>>> {
    std::thread::Builder::new()
        .name("pauditd-write".into())
        .spawn(move || {
            let mut retired: Vec<SinkStats> = Vec::new();
            for msg in rx {
                let mut took = None;
                match msg {
                    WriterMsg::Events(mut events, handed) => {
                        out.write(&mut events);
                        took = Some(handed.elapsed());
                    }
                    WriterMsg::Reopen => out.reopen(),
                    WriterMsg::Replace(new) => {
                        out.close();
                        retired.extend_from_slice(out.stats());
                        out = new;
                    }
                }
                // One lock per message; the report's vector is reused, not reallocated.
                let mut r = shared.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(d) = took.filter(|_| r.latency.len() < MAX_LATENCY_SAMPLES) {
                    r.latency.push(d);
                }
                r.sinks.clear();
                r.sinks.extend_from_slice(&retired);
                r.sinks.extend_from_slice(out.stats());
            }
            out.close();
            retired.extend_from_slice(out.stats());
            retired
        })
}
