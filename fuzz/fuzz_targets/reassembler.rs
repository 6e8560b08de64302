//! The reassembler fed arbitrary sequences of well-formed and broken records, interleaved
//! serials, clock steps and expiries: no panic, exact accounting, valid JSON for every event,
//! and nothing left open after `finish`.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pauditd_fuzz::{check, live_processor};

#[derive(Arbitrary, Debug)]
enum Op {
    /// A record of type 1300 + `kind` (1320 is EOE) for one of a few serials.
    Record {
        kind: u8,
        serial: u8,
        ms: u16,
        body: Vec<u8>,
    },
    /// A record whose payload is raw bytes (broken headers and all).
    Raw {
        rtype: u16,
        payload: Vec<u8>,
    },
    /// Time passes.
    Tick(u16),
    Expire,
}

fuzz_target!(|ops: Vec<Op>| {
    let mut p = live_processor();
    let mut events = Vec::new();
    let mut now = 0u64;
    let mut payload = Vec::new();
    for op in ops {
        match op {
            Op::Record {
                kind,
                serial,
                ms,
                body,
            } => {
                payload.clear();
                payload.extend_from_slice(
                    format!(
                        "audit(1700000000.{:03}:{}): ",
                        ms % 1000,
                        1000 + serial as u32 % 8
                    )
                    .as_bytes(),
                );
                payload.extend_from_slice(&body);
                p.push_netlink(1300 + (kind % 40) as u16, &payload, now, &mut events);
            }
            Op::Raw { rtype, payload } => p.push_netlink(rtype, &payload, now, &mut events),
            Op::Tick(ms) => now += ms as u64,
            Op::Expire => p.expire(now, &mut events),
        }
    }
    p.finish(&mut events);
    assert_eq!(p.open_events(), 0, "finish leaves nothing open");
    check(&p, &events);
});
