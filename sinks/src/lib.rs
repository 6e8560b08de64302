//! pauditd's outputs: the encoders and the sinks events are written to.
//!
//! Owns the wire forms of an event (formats: [`pauditd_json`] for pauditd's, [`enriched`], [`ecs`]),
//! delivery ([`writer`], [`fanout`], [`encode`], [`output`], [`spool`], [`retry`]), every
//! transport ([`stdout`], [`file`](mod@file), [`syslog`], [`http`], [`kafka`]) and metrics export ([`metrics`],
//! [`prometheus`]). Sinks take whole batches of encoded lines, so each transport can write a
//! batch with as few system calls as its protocol allows. It must never know where events
//! come from (netlink, replay) nor hold mutable global state: the only statics are read-only
//! tables built once (`enriched::fields`, `ecs::normalize`, `json`'s byte classes) and
//! per-thread scratch arenas.

pub mod delivery;
pub mod ecs;
pub mod encode;
pub mod enriched;
pub mod fanout;
pub mod file;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod pauditd_json;
pub mod prometheus;
pub mod retry;
pub mod stdout;
pub mod syslog;
pub mod writer;

// The per-output delivery component, at the paths the rest of the workspace uses.
pub use delivery::{output, spool};

use std::ops::Range;

/// Run the calling thread under `SCHED_BATCH`: a thread woken by another of the pipeline does
/// not preempt the thread that woke it (which then finishes its turn and sleeps, instead of
/// being switched out and back in: two context switches per hand-over instead of one). Used
/// by the threads that only ever apply back-pressure when they fall behind (the engine's
/// reassembler, the writer, encoder workers). Not by the receiver (the kernel's socket is
/// drained as before) nor by outputs: an output that falls behind drops (`overflow: drop`),
/// and under `SCHED_BATCH` a storm starved the file output's delivery thread long enough to
/// fill its queue (853 events of 1.5 M counted `queue_full`; scripts/cpu-switches, plain
/// `recv`). Failure (a seccomp profile refusing it) changes nothing else.
pub fn batch_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread (pid 0) with a valid parameter.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}

use pauditd_engine::Event;

/// How events are written (`format`, per output; `replay --format`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// pauditd's JSON, byte for byte (the default).
    #[default]
    Pauditd,
    /// Every record decoded ([`enriched`], schema v2).
    Enriched,
    /// Elastic Common Schema, as auditbeat's auditd module writes it ([`ecs`]).
    Ecs,
}

/// How many formats there are (the length of per-format arrays).
pub const FORMATS: usize = 3;

impl Format {
    pub const ALL: [Format; FORMATS] = [Format::Pauditd, Format::Enriched, Format::Ecs];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn encode(self, e: &Event, out: &mut Vec<u8>) {
        match self {
            Format::Pauditd => pauditd_json::encode_event(e, out),
            Format::Enriched => enriched::encode_event(e, out),
            Format::Ecs => ecs::encode_event(e, out),
        }
    }
}

/// Encoded events, one JSON line each, back to back in one buffer.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    buf: Vec<u8>,
    /// `ends[i]` is the end of line `i` in `buf` (newline included); ascending.
    ends: Vec<usize>,
}

impl Batch {
    pub fn push_event(&mut self, e: &Event) {
        self.push_event_as(e, Format::Pauditd);
    }

    pub fn push_event_as(&mut self, e: &Event, format: Format) {
        format.encode(e, &mut self.buf);
        self.ends.push(self.buf.len());
    }

    /// Append one already encoded line (newline included).
    pub fn push_line(&mut self, line: &[u8]) {
        self.buf.extend_from_slice(line);
        self.ends.push(self.buf.len());
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// All lines, as one byte string.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Lines `from..`, as one byte string.
    pub fn bytes_from(&self, from: usize) -> &[u8] {
        if from >= self.len() {
            return &[];
        }
        &self.buf[self.line_range(from).start..]
    }

    pub fn line_range(&self, i: usize) -> Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        start..self.ends[i]
    }

    pub fn lines(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| &self.buf[self.line_range(i)])
    }

    /// How many lines end after byte `offset`, i.e. were not completely written when a write
    /// stopped there.
    pub fn lines_after(&self, offset: usize) -> usize {
        self.ends.len() - self.ends.partition_point(|&e| e <= offset)
    }
}

/// A failed write.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The last `lost` lines of the batch were not written; trying again may work.
    #[error(
        "{sink}: write failed after {attempts} attempt(s), {lost} event(s) not written: {error}"
    )]
    Write {
        sink: &'static str,
        attempts: u32,
        lost: usize,
        error: std::io::Error,
    },
    /// The destination is gone for good (stdout's reader exited): the last `lost` lines
    /// and everything after them cannot be written.
    #[error("{sink}: the destination closed ({error}), {lost} event(s) not written")]
    Closed {
        sink: &'static str,
        lost: usize,
        error: std::io::Error,
    },
    /// Some lines were not delivered: `retry` (indices, ascending) may succeed later,
    /// `rejected` were refused by the destination and must not be sent again.
    #[error("{sink}: {} event(s) not delivered, {rejected} refused: {error}", retry.len())]
    Undelivered {
        sink: &'static str,
        retry: Vec<usize>,
        rejected: usize,
        error: String,
    },
    #[error("{sink}: cannot open {path}: {error}")]
    Open {
        sink: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("{sink}: {message}")]
    Setup { sink: &'static str, message: String },
}

/// What a failed write of a batch of `len` lines left undone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Failure {
    /// Lines worth trying again, ascending.
    pub retry: Vec<usize>,
    pub rejected: usize,
    pub closed: bool,
}

impl SinkError {
    /// Events this error did not write.
    pub fn lost(&self) -> usize {
        match self {
            SinkError::Write { lost, .. } | SinkError::Closed { lost, .. } => *lost,
            SinkError::Undelivered {
                retry, rejected, ..
            } => retry.len() + rejected,
            _ => 0,
        }
    }

    /// Which lines of a batch of `len` failed, and how.
    pub fn failure(&self, len: usize) -> Failure {
        let suffix = |lost: usize| (len - lost.min(len)..len).collect();
        match self {
            SinkError::Write { lost, .. } => Failure {
                retry: suffix(*lost),
                ..Default::default()
            },
            SinkError::Closed { lost, .. } => Failure {
                retry: suffix(*lost),
                closed: true,
                ..Default::default()
            },
            SinkError::Undelivered {
                retry, rejected, ..
            } => Failure {
                retry: retry.clone(),
                rejected: *rejected,
                closed: false,
            },
            SinkError::Open { .. } | SinkError::Setup { .. } => Failure {
                retry: (0..len).collect(),
                ..Default::default()
            },
        }
    }
}

/// Where events go.
pub trait Sink: Send {
    fn name(&self) -> &'static str;
    /// One try at writing every line of `batch`, in order; fail fast (bounded by the
    /// transport's timeouts). Retrying, backing off and spooling are the output's job
    /// ([`output`]), on the output's own thread.
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError>;
    /// Reopen the destination (SIGUSR1, after log rotation). Most sinks have nothing to do.
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Release the destination (called once, on the output's thread, when it stops).
    fn close(&mut self) {}
    /// The transport's own counters (HTTP codes, latency, topics), read live by the metrics
    /// reporter. Most sinks have none.
    fn live_counters(&self) -> Option<std::sync::Arc<dyn LiveCounters>> {
        None
    }
}

/// Counters a sink keeps itself because it delivers asynchronously.
pub trait LiveCounters: Send + Sync + std::fmt::Debug {
    /// `(statsd name, cumulative value)`.
    fn counters(&self, out: &mut Vec<(String, u64)>);
    /// `(statsd name, current value)`.
    fn gauges(&self, _out: &mut Vec<(String, u64)>) {}
    /// Timing samples since the last call.
    fn take_timings(&self, _out: &mut Vec<(&'static str, std::time::Duration)>) {}
    /// Events deliberately not sent (a transformer skipped them).
    fn skipped(&self) -> u64 {
        0
    }
}

/// The host's name, as Go's `os.Hostname` gives it ("localhost" if it cannot be read).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The hostname up to its first dot (pauditd's metric prefix uses it).
pub fn short_hostname() -> String {
    hostname()
        .split('.')
        .next()
        .unwrap_or("localhost")
        .to_string()
}
