//! Writing a batch with pauditd's `attempts`: on error, log, pause, and try again.
//!
//! Owns resuming after a partial write (a retry never duplicates bytes already written) and
//! counting what could not be written. It must never retry forever: `attempts` bounds it.

use std::io::{self, Write};
use std::time::Duration;

use crate::{Batch, SinkError};

/// Retry policy: total attempts (>= 1) and the pause between them (pauditd: 1 s).
#[derive(Debug, Clone, Copy)]
pub struct Attempts {
    pub attempts: u32,
    pub pause: Duration,
}

impl Attempts {
    pub fn new(attempts: u32) -> Self {
        Attempts {
            attempts: attempts.max(1),
            pause: Duration::from_secs(1),
        }
    }
}

/// Write all of `batch` to `w`, flushing at the end.
pub fn write_all_with_attempts(
    sink: &'static str,
    w: &mut dyn Write,
    batch: &Batch,
    policy: Attempts,
) -> Result<(), SinkError> {
    let bytes = batch.bytes();
    let mut off = 0;
    let mut failures = 0;
    loop {
        let res = (|| -> io::Result<()> {
            while off < bytes.len() {
                match w.write(&bytes[off..]) {
                    Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
                    Ok(n) => off += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            w.flush()
        })();
        match res {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                // A reader that has gone does not come back: the destination has ended.
                return Err(SinkError::Closed {
                    sink,
                    lost: batch.lines_after(off),
                    error: e,
                });
            }
            Err(e) => {
                failures += 1;
                if failures >= policy.attempts {
                    return Err(SinkError::Write {
                        sink,
                        attempts: failures,
                        lost: batch.lines_after(off),
                        error: e,
                    });
                }
                log::error!(
                    "{sink}: Failed to write message, retrying in {:?}. Error: {e}",
                    policy.pause
                );
                std::thread::sleep(policy.pause);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pauditd_engine::Event;

    /// Accepts `budget` bytes per call, fails every `fail_every`-th call.
    struct Flaky {
        out: Vec<u8>,
        calls: u32,
        fail_on: Vec<u32>,
        budget: usize,
    }
    impl Write for Flaky {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.fail_on.contains(&self.calls) {
                return Err(io::Error::other("disk says no"));
            }
            let n = b.len().min(self.budget);
            self.out.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn batch(n: i64) -> Batch {
        let mut b = Batch::default();
        for s in 1..=n {
            b.push_event(&Event::new(s, b"1.0"));
        }
        b
    }

    const FAST: Attempts = Attempts {
        attempts: 3,
        pause: Duration::ZERO,
    };

    #[test]
    fn resumes_after_partial_write_without_duplicates() {
        let b = batch(3);
        let mut w = Flaky {
            out: vec![],
            calls: 0,
            fail_on: vec![2, 3],
            budget: 10,
        };
        write_all_with_attempts("t", &mut w, &b, FAST).unwrap();
        assert_eq!(w.out, b.bytes());
    }

    #[test]
    fn gives_up_after_attempts_and_counts_unwritten_lines() {
        let b = batch(3);
        let first = b.line_range(0).end;
        let mut w = Flaky {
            out: vec![],
            calls: 0,
            fail_on: vec![2, 3, 4],
            budget: first,
        };
        let err = write_all_with_attempts("t", &mut w, &b, FAST).unwrap_err();
        assert_eq!(err.lost(), 2);
        assert_eq!(w.out, &b.bytes()[..first]);
    }
}
