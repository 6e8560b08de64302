//! Recycling of events, so the steady state allocates nothing per event.
//!
//! Owns the way back for written events: the writer (or an encoder thread) hands a batch,
//! events inside, to the [`EventPool`] (one lock-free push per batch); the reassembler's
//! [`Spares`] takes batches back when it runs out, keeps their events as spares (their
//! buffers keep the capacity they grew to) and the emptied vector as its next batch. The
//! pool is bounded: when full, a returned batch is simply freed; an event whose buffer grew
//! past [`MAX_KEPT_BYTES`] is freed rather than kept, so one huge event never pins memory.
//! It must never hold an event that is still being written: only what the writer is done with
//! comes back.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::event::Event;

/// Batches waiting to be reused (beyond this, returned batches are freed).
const POOL_BATCHES: usize = 16;
/// Spare events the reassembler keeps at hand (filtered events go straight here).
const MAX_SPARES: usize = 1024;
/// An event whose buffer grew beyond this is freed instead of recycled.
pub const MAX_KEPT_BYTES: usize = 64 << 10;

/// The shared way back (cheap to clone).
#[derive(Clone)]
pub struct EventPool {
    batches: Arc<ArrayQueue<Vec<Event>>>,
}

impl Default for EventPool {
    fn default() -> Self {
        EventPool {
            batches: Arc::new(ArrayQueue::new(POOL_BATCHES)),
        }
    }
}

impl EventPool {
    /// A batch whose events are written: they (and the vector) come back for reuse.
    pub fn give_back(&self, mut batch: Vec<Event>) {
        if batch.capacity() == 0 {
            return;
        }
        batch.retain(|e| e.capacity() <= MAX_KEPT_BYTES);
        // Full: dropped here, on the returning thread.
        let _ = self.batches.push(batch);
    }

    fn take(&self) -> Option<Vec<Event>> {
        self.batches.pop()
    }
}

/// The reassembler's spare events and batch vectors.
#[derive(Default)]
pub struct Spares {
    pool: EventPool,
    events: Vec<Event>,
    vecs: Vec<Vec<Event>>,
}

impl Spares {
    /// The pool the writer returns batches to.
    pub fn pool(&self) -> EventPool {
        self.pool.clone()
    }

    /// A fresh event: a recycled one when there is one (no allocation), else a new one.
    pub fn event(&mut self, serial: i64, timestamp: &[u8]) -> Event {
        if self.events.is_empty() {
            if let Some(mut batch) = self.pool.take() {
                self.events.append(&mut batch);
                self.keep_vec(batch);
            }
        }
        match self.events.pop() {
            Some(mut e) => {
                e.reset(serial, timestamp);
                e
            }
            None => Event::new(serial, timestamp),
        }
    }

    /// An event that will not be written (filtered): kept as a spare.
    pub fn recycle(&mut self, e: Event) {
        if self.events.len() < MAX_SPARES && e.capacity() <= MAX_KEPT_BYTES {
            self.events.push(e);
        }
    }

    /// An empty vector for the next batch, with room for `capacity` events.
    pub fn batch(&mut self, capacity: usize) -> Vec<Event> {
        if self.vecs.is_empty() {
            if let Some(mut batch) = self.pool.take() {
                self.events.append(&mut batch);
                self.keep_vec(batch);
            }
        }
        match self.vecs.pop() {
            Some(v) => v,
            None => Vec::with_capacity(capacity),
        }
    }

    fn keep_vec(&mut self, v: Vec<Event>) {
        debug_assert!(v.is_empty());
        if self.vecs.len() < 4 {
            self.vecs.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_events_come_back_with_their_capacity() {
        let mut s = Spares::default();
        let pool = s.pool();
        let mut e = s.event(1, b"1.0");
        e.push_message(1300, &[b'x'; 3000]);
        let cap = e.capacity();
        let mut batch = s.batch(8);
        batch.push(e);
        pool.give_back(batch);
        let again = s.event(2, b"2.0");
        assert_eq!(again.serial, 2);
        assert_eq!(again.timestamp(), b"2.0");
        assert_eq!(again.message_count(), 0);
        assert!(again.capacity() >= cap, "the buffer kept its size");
        // The emptied vector is the next batch.
        assert!(s.batch(8).capacity() >= 1);
    }

    #[test]
    fn a_huge_event_is_freed_not_kept() {
        let mut s = Spares::default();
        let pool = s.pool();
        let mut e = s.event(1, b"1.0");
        e.push_message(1300, &vec![b'x'; MAX_KEPT_BYTES + 1]);
        pool.give_back(vec![e]);
        assert!(s.event(2, b"2.0").capacity() < MAX_KEPT_BYTES);
    }
}
