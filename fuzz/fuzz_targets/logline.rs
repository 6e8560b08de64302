//! Arbitrary bytes as an auditd log (lines split on '\n'): the log-line and header parsers
//! and the replay path must never panic and must account for every line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pauditd_engine::{header, logline};
use pauditd_fuzz::{check, live_processor};

fuzz_target!(|data: &[u8]| {
    let mut p = live_processor();
    let mut events = Vec::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if let Ok(logline::LogLine::Record(r)) = logline::parse(line) {
            let _ = header::parse(r.payload);
        }
        let _ = header::parse(line);
        if !line.is_empty() {
            p.push_log_line(line, i as u64, &mut events);
        }
    }
    p.finish(&mut events);
    check(&p, &events);
});
