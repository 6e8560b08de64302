//! Arbitrary bytes as the records of one event, through the enriched encoder: it must never
//! panic, always write exactly one line of valid JSON, and every string it decodes must
//! come back through `decode::unescape` as bytes (checked on `comm`, an untrusted field).
#![no_main]
use libfuzzer_sys::fuzz_target;
use pauditd_engine::Event;

fuzz_target!(|data: &[u8]| {
    let mut e = Event::new(1, b"1700000000.000");
    // Records separated by 0x00, each with a type from its first two bytes.
    for chunk in data.split(|&b| b == 0) {
        let (rtype, body) = match chunk {
            [a, b, rest @ ..] => (1300 + (u16::from(*a) << 8 | u16::from(*b)) % 100, rest),
            _ => (1300, chunk),
        };
        e.push_message(rtype, body);
    }
    e.finish();
    let mut out = Vec::new();
    pauditd_sinks::enriched::encode_event(&e, &mut out);
    assert_eq!(out.last(), Some(&b'\n'));
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
    assert_eq!(v["version"], pauditd_sinks::enriched::VERSION);
});
