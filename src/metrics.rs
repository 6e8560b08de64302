//! Which counters are exported to statsd, under which names (DESIGN §3.4 plus ours).
//!
//! Owns the name mapping only; the counters live in the engine and sinks, the transport in
//! `pauditd_sinks::metrics`.

use pauditd_engine::live::ReceiverStats;
use pauditd_engine::netlink::AuditStatus;
use pauditd_engine::{DropReason, Stats};
use pauditd_sinks::fanout::SinkStats;

/// Everything we know at one moment.
#[derive(Default)]
pub struct Sample<'a> {
    pub engine: Stats,
    pub receiver: Option<ReceiverStats>,
    pub sinks: &'a [SinkStats],
    pub kernel: Option<AuditStatus>,
    pub pid_stolen: u64,
}

/// `(metric name, value)` pairs.
pub type Values = Vec<(String, u64)>;

/// `(counters, gauges)`: counters are cumulative (the reporter sends deltas).
pub fn names(s: &Sample<'_>) -> (Values, Values) {
    let e = &s.engine;
    let mut c: Values = vec![
        // pauditd's names.
        (
            "messages.total".into(),
            s.receiver.map_or(e.records, |r| r.received),
        ),
        ("messages.filtered".into(), e.events_filtered),
        (
            "messages.netlink_dropped".into(),
            s.receiver.map_or(0, |r| r.enobufs),
        ),
        // Ours.
        ("events.emitted".into(), e.events_emitted),
        ("events.completed_by_eoe".into(), e.events_by_eoe),
        ("events.completed_by_timeout".into(), e.events_by_timeout),
        ("records.grouped".into(), e.records_grouped),
        ("sequence.missed".into(), e.seq_missed),
        ("sequence.late".into(), e.seq_late),
        ("kernel.audit_pid_taken".into(), s.pid_stolen),
    ];
    for r in DropReason::ALL {
        c.push((format!("records.dropped.{}", r.name()), e.dropped(r)));
    }
    if let Some(r) = s.receiver {
        c.push(("receiver.ring_full_waits".into(), r.ring_full_waits));
        c.push(("receiver.truncated".into(), r.truncated));
        c.push(("receiver.errors".into(), r.recv_errors));
    }
    // One sink may appear several times after SIGHUP replaced outputs: add them up.
    let mut per_sink: Vec<(&str, u64, u64)> = Vec::new();
    let mut live: Values = Vec::new();
    for st in s.sinks {
        let lost = st.lost_total();
        match per_sink.iter_mut().find(|(n, _, _)| *n == st.name) {
            Some(t) => {
                t.1 += st.written;
                t.2 += lost;
            }
            None => per_sink.push((st.name, st.written, lost)),
        }
        if let Some(l) = &st.live {
            let mut v = Vec::new();
            l.counters(&mut v);
            for (name, n) in v {
                match live.iter_mut().find(|(k, _)| *k == name) {
                    Some(t) => t.1 += n,
                    None => live.push((name, n)),
                }
            }
        }
    }
    for (name, written, lost) in per_sink {
        c.push((format!("output.{name}.written"), written));
        c.push((format!("output.{name}.lost"), lost));
    }
    c.extend(live);
    let mut g = Vec::new();
    // Gauges are current values: after SIGHUP only the newest instance of a sink counts.
    let mut seen: Vec<&str> = Vec::new();
    for st in s.sinks.iter().rev() {
        if let (Some(l), false) = (&st.live, seen.contains(&st.name)) {
            l.gauges(&mut g);
        }
        seen.push(st.name);
    }
    if let Some(k) = s.kernel {
        g.push(("kernel.lost".into(), u64::from(k.lost)));
        g.push(("kernel.backlog".into(), u64::from(k.backlog)));
        g.push(("kernel.backlog_limit".into(), u64::from(k.backlog_limit)));
    }
    (c, g)
}

/// Timing samples since the last call from the sinks that keep them (HTTP request latency).
pub fn timings(sinks: &[SinkStats]) -> Vec<(&'static str, std::time::Duration)> {
    let mut t = Vec::new();
    for st in sinks {
        if let Some(l) = &st.live {
            l.take_timings(&mut t);
        }
    }
    t
}
