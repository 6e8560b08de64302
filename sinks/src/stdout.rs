//! The stdout sink: one JSON line per event on standard output.
//!
//! Owns writing batches to fd 1 (one write per batch when the pipe takes it). A reader that
//! has gone (EPIPE) ends the output: reported as [`SinkError::Closed`], never retried. It must
//! never print anything but event lines: the daemon's own logs go to stderr.

use std::io;

use crate::retry::{write_all_with_attempts, Attempts};
use crate::{Batch, Sink, SinkError};

pub struct StdoutSink {
    out: io::Stdout,
    policy: Attempts,
}

impl StdoutSink {
    pub fn new(policy: Attempts) -> Self {
        StdoutSink {
            out: io::stdout(),
            policy,
        }
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let mut lock = self.out.lock();
        // A reader that has gone (EPIPE) comes back as `SinkError::Closed`.
        write_all_with_attempts("stdout", &mut lock, batch, self.policy)
    }
}
