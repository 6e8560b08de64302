//! Encoded events for the sink tests: a batch of numbered events and the way back.

#![allow(dead_code)]

use pauditd_engine::Event;
use pauditd_sinks::Batch;

/// Events with serials `first..first + n`, one SYSCALL record each.
pub fn batch(first: i64, n: i64) -> Batch {
    let mut b = Batch::default();
    for s in first..first + n {
        let mut e = Event::new(s, b"1700000000.5");
        e.push_message(1300, b"syscall=39 key=\"load\"");
        b.push_event(&e);
    }
    b
}

/// The `sequence` of one encoded event.
pub fn sequence_of(body: &[u8]) -> i64 {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["sequence"].as_i64().unwrap()
}
