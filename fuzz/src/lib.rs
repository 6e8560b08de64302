//! Shared checks for the fuzz targets: a processor set up as the daemon's, and the invariants
//! every input must keep (accounting adds up, every event encodes to JSON that parses).
//! It must never hide a failure: a broken invariant panics, which is what the fuzzer reports.

use std::sync::Arc;

use pauditd_engine::reassemble::Completion;
use pauditd_engine::{
    Event, FilterSet, Processor, ProcessorConfig, ReassemblerConfig, TrackerConfig, UserResolver,
};

/// Names for uid 0 and 1000, `UNKNOWN_USER` otherwise (no NSS in a fuzz loop).
pub struct Users;
impl UserResolver for Users {
    fn resolve(&mut self, uid: &[u8]) -> Arc<[u8]> {
        Arc::from(match uid {
            b"0" => &b"root"[..],
            b"1000" => b"alice",
            _ => b"UNKNOWN_USER",
        })
    }
}

/// A processor as the live daemon builds one (millisecond deadlines, tracking on), with a
/// small event size limit so the limit is reached.
pub fn live_processor() -> Processor<Users> {
    Processor::new(
        ProcessorConfig {
            reassembler: ReassemblerConfig {
                min_type: 1300,
                max_type: 1399,
                completion: Completion {
                    after: 2000,
                    restart_on_record: false,
                    apart_by_time_and_origin: false,
                },
                max_event_bytes: 64 << 10,
                max_open_events: 64,
                max_open_bytes: 1 << 20,
            },
            tracking: Some(TrackerConfig {
                max_out_of_order: 500,
                log_out_of_order: false,
                gap_log: pauditd_engine::tracking::GapLog::EachGap,
            }),
            containers: false,
            lineage: false,
        },
        FilterSet::new(&[]).expect("no filters"),
        Users,
    )
}

/// Every record is accounted for exactly once, every completed event is kept or filtered,
/// and every event serializes to one line of valid JSON.
pub fn check(p: &Processor<Users>, events: &[Event]) {
    let s = p.stats();
    assert_eq!(
        s.records,
        s.records_grouped + s.records_eoe + s.dropped_total(),
        "record accounting: {s:?}"
    );
    assert_eq!(
        s.events_by_eoe + s.events_by_timeout,
        s.events_emitted + s.events_filtered,
        "event accounting: {s:?}"
    );
    assert_eq!(
        s.events_emitted as usize,
        events.len(),
        "emitted vs handed out"
    );
    let mut out = Vec::new();
    for e in events {
        out.clear();
        pauditd_sinks::pauditd_json::encode_event(e, &mut out);
        assert_eq!(out.last(), Some(&b'\n'), "one line per event");
        assert!(
            !out[..out.len() - 1].contains(&b'\n'),
            "no raw newline inside"
        );
        if let Err(err) = serde_json::from_slice::<serde_json::Value>(&out) {
            panic!("invalid JSON ({err}): {}", String::from_utf8_lossy(&out));
        }
    }
}
