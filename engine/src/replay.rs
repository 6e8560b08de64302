//! Driving the processor from an auditd log (`pauditd replay`).
//!
//! Owns the replay loop: read lines, feed them with the line count as the clock (so an event
//! without EOE completes once `window` later lines have gone by, whatever the timestamps say),
//! hand completed events on in batches, and complete everything at end of input. It must never
//! write events itself: the caller's `on_batch` does.

use std::io::{self, BufReader, Read};
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
#[derive(Debug, Default, Clone)]
pub struct ReplayOptions {
    /// Events collected before they are handed to `on_batch` (one record can complete several
    /// events, so a batch may exceed it by a few).
    pub batch: usize,
    /// Set (by a signal, or when no output can take events any more) to stop reading: the
    /// events of lines already read are completed and handed on, then `run` returns.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Set to the number of lines read so far before each hand-over (for a progress line).
    pub lines_read: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

/// Run `input` through `processor`; `on_batch` receives completed events (and must drain the
/// vector, or take it: an empty vector left without capacity is replaced by a recycled one). A batch is handed on when full, and whenever reading on would wait for input, so
/// events from a slow stream (`tail -f | pauditd replay`) are not held back.
fn publish_lines(opts: &ReplayOptions, lines: u64) {
    if let Some(c) = &opts.lines_read {
        c.store(lines, std::sync::atomic::Ordering::Relaxed);
    }
}

pub fn run<U: UserResolver>(
    input: BufReader<impl Read>,
    processor: &mut Processor<U>,
    opts: &ReplayOptions,
    mut on_batch: impl FnMut(&mut Vec<Event>),
) -> io::Result<()> {
    let mut reader = LineReader::new(input, MAX_LINE);
    let mut events = processor.batch_vec(opts.batch);
    let mut tick: u64 = 0;
    processor.users_mut().begin_batch(Instant::now());
    loop {
        if !events.is_empty() && !reader.has_buffered_input() {
            publish_lines(opts, tick);
            on_batch(&mut events);
            refill(processor, &mut events, opts.batch);
        }
        if opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        {
            break;
        }
        let Some(line) = reader.next_line()? else {
            break;
        };
        tick += 1;
        match line {
            Line::Text(t) => processor.push_log_line(t, tick, &mut events),
            Line::TooLong { sample, .. } => processor.reject(DropReason::LineTooLong, sample),
        }
        if events.len() >= opts.batch {
            publish_lines(opts, tick);
            on_batch(&mut events);
            refill(processor, &mut events, opts.batch);
            processor.users_mut().begin_batch(Instant::now());
        }
    }
    processor.finish(&mut events);
    if !events.is_empty() {
        on_batch(&mut events);
    }
    Ok(())
}

/// After `on_batch` took the vector (to recycle it with its events), the next one.
fn refill<U: UserResolver>(processor: &mut Processor<U>, events: &mut Vec<Event>, batch: usize) {
    if events.capacity() == 0 {
        *events = processor.batch_vec(batch);
    }
}
