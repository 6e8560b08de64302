//! Arbitrary bytes as a sequence of netlink datagrams (split on a 0xff 0xfe marker): the
//! datagram splitter and the record path must never panic and must account for everything.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pauditd_engine::netlink;
use pauditd_engine::DropReason;
use pauditd_fuzz::{check, live_processor};

fuzz_target!(|data: &[u8]| {
    let mut p = live_processor();
    let mut events = Vec::new();
    let mut now = 0u64;
    for dgram in data.split(|&b| b == 0xfe) {
        now += 7;
        for m in netlink::split(dgram) {
            match m {
                Ok(m) if netlink::is_record(m.rtype) => {
                    p.push_netlink(m.rtype, m.payload, now, &mut events)
                }
                Ok(m) => {
                    let _ = netlink::ack_errno(m.payload);
                    let _ = netlink::AuditStatus::from_bytes(m.payload);
                }
                Err(netlink::Truncated) => p.reject(DropReason::Truncated, dgram),
            }
        }
        p.expire(now, &mut events);
    }
    p.finish(&mut events);
    check(&p, &events);
});
