//! Driving the processor from an auditd log (`pauditd replay`).
//!
//! Owns the replay loop: read lines, feed them with the line count as the clock (so an event
//! without EOE completes once `window` later lines have gone by, whatever the timestamps say),
//! hand completed events on in batches, and complete everything at end of input. It must never
//! write events itself: the caller's `on_batch` does.

use std::io::{self, BufRead};
use std::time::Instant;

use crate::event::Event;
use crate::processor::Processor;
use crate::reader::{Line, LineReader};
use crate::stats::DropReason;
use crate::users::UserResolver;

/// Lines longer than this are dropped (auditd's own limit is 8 KiB per record plus its
/// enrichment; 1 MiB leaves ample room for long EXECVE records).
pub const MAX_LINE: usize = 1 << 20;

/// Options of one replay run.
pub struct ReplayOptions {
    /// Events handed to `on_batch` at once (at most; the last batch may be smaller).
    pub batch: usize,
}

/// Run `input` through `processor`; `on_batch` receives completed events (and must drain the
/// vector); `between_batches` runs after each batch (signal checks).
pub fn run<U: UserResolver>(
    input: impl BufRead,
    processor: &mut Processor<U>,
    opts: &ReplayOptions,
    mut on_batch: impl FnMut(&mut Vec<Event>),
) -> io::Result<()> {
    let mut reader = LineReader::new(input, MAX_LINE);
    let mut events = Vec::with_capacity(opts.batch);
    let mut tick: u64 = 0;
    processor.users_mut().begin_batch(Instant::now());
    while let Some(line) = reader.next_line()? {
        tick += 1;
        match line {
            Line::Text(t) => processor.push_log_line(t, tick, &mut events),
            Line::TooLong { sample, .. } => processor.reject(DropReason::LineTooLong, sample),
        }
        if events.len() >= opts.batch {
            on_batch(&mut events);
            processor.users_mut().begin_batch(Instant::now());
        }
    }
    processor.finish(&mut events);
    if !events.is_empty() {
        on_batch(&mut events);
    }
    Ok(())
}
