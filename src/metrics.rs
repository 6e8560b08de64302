//! Which counters are exported to statsd, under which names (DESIGN §3.4 plus ours).
//!
//! Owns the name mapping only; the counters live in the engine and sinks, the transport in
//! `pauditd_sinks::metrics`.

use pauditd_engine::live::ReceiverStats;
use pauditd_engine::netlink::AuditStatus;
use pauditd_engine::{DropReason, Stats};
use std::sync::atomic::Ordering::Relaxed;

use pauditd_sinks::fanout::SinkStats;
use pauditd_sinks::output::LossReason;

/// Everything we know at one moment.
#[derive(Default)]
pub struct Sample<'a> {
    pub engine: Stats,
    pub receiver: Option<ReceiverStats>,
    pub sinks: &'a [SinkStats],
    pub kernel: Option<AuditStatus>,
    pub pid_stolen: u64,
    /// Differences the drift guard found between the kernel's rules and ours.
    pub rules_drift: u64,
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
        ("rules.drift".into(), s.rules_drift),
        ("enrichment.container_misses".into(), e.container_misses),
        ("enrichment.lineage_misses".into(), e.lineage_misses),
        ("enrichment.pid_reused".into(), e.pid_reused),
        ("enrichment.untrusted".into(), e.untrusted_attributions),
    ];
    for r in DropReason::ALL {
        c.push((format!("records.dropped.{}", r.name()), e.dropped(r)));
    }
    for (name, n) in &e.event_filter_hits {
        c.push((format!("filters.{name}.matched"), *n));
    }
    if let Some(r) = s.receiver {
        c.push(("receiver.ring_full_waits".into(), r.ring_full_waits));
        c.push(("receiver.truncated".into(), r.truncated));
        c.push(("receiver.errors".into(), r.recv_errors));
    }
    // One output may appear several times after SIGHUP replaced outputs: add them up.
    let mut per: Values = Vec::new();
    let mut add = |name: String, v: u64| match per.iter_mut().find(|(k, _)| *k == name) {
        Some(t) => t.1 += v,
        None => per.push((name, v)),
    };
    let mut live: Values = Vec::new();
    for st in s.sinks {
        let n = st.name;
        let k = &st.counters;
        let a = st.accounting();
        add(format!("output.{n}.received"), k.received.load(Relaxed));
        add(format!("output.{n}.written"), a.delivered);
        add(format!("output.{n}.lost"), a.lost);
        for r in LossReason::ALL {
            add(format!("output.{n}.lost.{}", r.name()), k.lost(r));
        }
        add(format!("output.{n}.spooled"), k.spooled.load(Relaxed));
        add(format!("output.{n}.unspooled"), k.unspooled.load(Relaxed));
        add(format!("output.{n}.recovered"), k.recovered.load(Relaxed));
        add(
            format!("output.{n}.spool_corrupt_bytes"),
            k.spool_corrupt_bytes.load(Relaxed),
        );
        add(
            format!("output.{n}.breaker_opened"),
            k.breaker_opened.load(Relaxed),
        );
        if n == "http" {
            // pauditd's names for the HTTP writer's queue: offered and not delivered.
            add(
                "http_writer.total_messages".into(),
                k.received.load(Relaxed),
            );
            add("http_writer.dropped_messages".into(), a.lost);
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
    c.extend(per);
    c.extend(live);
    let mut g = Vec::new();
    // Gauges are current values: after SIGHUP only the newest instance of an output counts.
    let mut seen: Vec<&str> = Vec::new();
    for st in s.sinks.iter().rev() {
        if seen.contains(&st.name) {
            continue;
        }
        seen.push(st.name);
        let (n, k) = (st.name, &st.counters);
        g.push((format!("output.{n}.queue"), k.queued_batches.load(Relaxed)));
        // Derived, not kept: what was received and is neither delivered, lost nor spooled.
        g.push((
            format!("output.{n}.in_flight"),
            st.accounting().in_flight.max(0) as u64,
        ));
        g.push((
            format!("output.{n}.spool_events"),
            k.spool_events.load(Relaxed),
        ));
        g.push((
            format!("output.{n}.spool_bytes"),
            k.spool_bytes.load(Relaxed),
        ));
        if let Some(l) = &st.live {
            l.gauges(&mut g);
        }
    }
    if let Some(k) = s.kernel {
        g.push(("kernel.lost".into(), u64::from(k.lost)));
        g.push(("kernel.backlog".into(), u64::from(k.backlog)));
        g.push(("kernel.backlog_limit".into(), u64::from(k.backlog_limit)));
        g.push((
            "kernel.backlog_wait_time_actual".into(),
            u64::from(k.backlog_wait_time_actual),
        ));
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
