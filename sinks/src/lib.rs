//! pauditd's outputs: the JSON encoder and the sinks events are written to.
//!
//! Owns the wire form of an event ([`json`]) and every transport ([`stdout`], [`file`]).
//! Sinks take whole batches of encoded lines, so each transport can write a batch with as few
//! system calls as its protocol allows. It must never know where events come from (netlink,
//! replay) nor hold any global state.

pub mod fanout;
pub mod file;
pub mod http;
pub mod json;
pub mod metrics;
pub mod retry;
pub mod spool;
pub mod stdout;
pub mod syslog;
pub mod writer;

use std::ops::Range;

use pauditd_engine::Event;

/// Encoded events, one JSON line each, back to back in one buffer.
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
    /// `ends[i]` is the end of line `i` in `buf` (newline included); ascending.
    ends: Vec<usize>,
}

impl Batch {
    pub fn push_event(&mut self, e: &Event) {
        json::encode_event(e, &mut self.buf);
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

/// A failed write, after the configured attempts.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(
        "{sink}: write failed after {attempts} attempt(s), {lost} event(s) not written: {error}"
    )]
    Write {
        sink: &'static str,
        attempts: u32,
        lost: usize,
        error: std::io::Error,
    },
    #[error("{sink}: cannot open {path}: {error}")]
    Open {
        sink: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("{sink}: {message}")]
    Setup { sink: &'static str, message: String },
    /// Events the sink refused without trying (a full queue).
    #[error("{sink}: {reason}: {lost} event(s) dropped")]
    Dropped {
        sink: &'static str,
        lost: usize,
        reason: String,
    },
}

impl SinkError {
    /// Events this error lost.
    pub fn lost(&self) -> usize {
        match self {
            SinkError::Write { lost, .. } | SinkError::Dropped { lost, .. } => *lost,
            _ => 0,
        }
    }
}

/// Where events go.
pub trait Sink: Send {
    fn name(&self) -> &'static str;
    /// Write every line of `batch`, in order, retrying as configured.
    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError>;
    /// Reopen the destination (SIGUSR1, after log rotation). Most sinks have nothing to do.
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Finish what was accepted (queued requests) before the sink goes away.
    fn close(&mut self) {}
    /// Counters of a sink whose work finishes after `write_batch` returns (the HTTP
    /// workers), read live by the metrics reporter. Synchronous sinks have none.
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
    /// Events accepted by the sink that never reached their destination (or were refused).
    fn undelivered(&self) -> u64;
    /// Events that reached their destination.
    fn delivered(&self) -> u64;
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
