//! Which counters are exported to statsd and Prometheus, under which names (DESIGN §3.4 plus
//! ours).
//!
//! Owns the name mappings only; the counters live in the engine and sinks, the transports in
//! `pauditd_sinks::metrics` (statsd) and `pauditd_sinks::prometheus`.

use pauditd_engine::netlink::AuditStatus;
use pauditd_engine::receiver::ReceiverStats;
use pauditd_engine::{DropReason, Stats};
use std::sync::atomic::Ordering::Relaxed;

use pauditd_sinks::fanout::OutputStats;
use pauditd_sinks::output::LossReason;
use pauditd_sinks::prometheus::{Family, Kind};
use std::time::Duration;

/// Everything we know at one moment.
#[derive(Default)]
pub struct Sample<'a> {
    pub engine: Stats,
    pub receiver: Option<ReceiverStats>,
    pub sinks: &'a [OutputStats],
    pub kernel: Option<AuditStatus>,
    pub pid_stolen: u64,
    /// Differences the drift guard found between the kernel's rules and ours.
    pub rules_drift: u64,
    /// Events lost before any output: their batch's encoding panicked, or the engine
    /// completed them after the writer had gone (it died, or stopped at the shutdown
    /// deadline).
    pub encode_failed: u64,
    pub not_handed: u64,
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
        ("writer.lost.encode_failed".into(), s.encode_failed),
        ("writer.lost.not_handed".into(), s.not_handed),
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
pub fn timings(sinks: &[OutputStats]) -> Vec<(&'static str, std::time::Duration)> {
    let mut t = Vec::new();
    for st in sinks {
        if let Some(l) = &st.live {
            l.take_timings(&mut t);
        }
    }
    t
}

/// The Prometheus families (`pauditd_` is prefixed by the exporter, `_total` added to
/// counters): the same figures as [`names`], with reasons, outputs, codes and topics as
/// labels, cumulative figures as counters (the kernel's `lost` included) and base units in
/// the names. docs/metrics.md lists them.
pub fn families(s: &Sample<'_>) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    let e = &s.engine;
    let received = s.receiver.map_or(e.records, |r| r.received);
    let mut f = vec![
        Family::single(
            "netlink_messages_received",
            Counter,
            "Audit records received from the kernel (statsd messages.total)",
            received,
        ),
        Family::single(
            "netlink_enobufs",
            Counter,
            "Times the audit socket's receive buffer overflowed (ENOBUFS): congestion; the kernel re-queues, and counts real loss in pauditd_kernel_lost_total",
            s.receiver.map_or(0, |r| r.enobufs),
        ),
        Family::single(
            "events_emitted",
            Counter,
            "Events completed, past the filters and handed to the outputs",
            e.events_emitted,
        ),
        Family::single(
            "events_filtered",
            Counter,
            "Events dropped by the filters (statsd messages.filtered)",
            e.events_filtered,
        ),
        {
            let mut c = Family::new(
                "events_completed",
                Counter,
                "Events completed, by what completed them (the kernel's EOE record, or the timeout)",
            );
            c.add(vec![("by", "eoe".into())], e.events_by_eoe)
                .add(vec![("by", "timeout".into())], e.events_by_timeout);
            c
        },
        Family::single(
            "events_evicted",
            Counter,
            "Events completed early because the open events reached their bound",
            e.events_evicted,
        ),
        Family::single(
            "records_grouped",
            Counter,
            "Records added to an event",
            e.records_grouped,
        ),
        Family::single(
            "records_after_completion",
            Counter,
            "Records whose event had already completed without its EOE (split events: raise events.timeout)",
            e.records_after_completion,
        ),
        {
            let mut d = Family::new(
                "records_dropped",
                Counter,
                "Records not put in any event, by reason",
            );
            for r in DropReason::ALL {
                d.add(vec![("reason", r.name().into())], e.dropped(r));
            }
            d
        },
        Family::single(
            "uid_maps_truncated",
            Counter,
            "Events with more distinct uids than the per-event bound (the rest not mapped)",
            e.uid_maps_truncated,
        ),
        Family::single(
            "sequence_missed",
            Counter,
            "Serials the sequence tracker declared missed",
            e.seq_missed,
        ),
        Family::single(
            "sequence_late",
            Counter,
            "Serials that arrived after being declared missed",
            e.seq_late,
        ),
        Family::single(
            "kernel_audit_pid_taken",
            Counter,
            "Times another process took the kernel's audit pid from pauditd",
            s.pid_stolen,
        ),
        Family::single(
            "rules_drift",
            Counter,
            "Differences found between the kernel's audit rules and the configured ones",
            s.rules_drift,
        ),
        {
            let mut m = Family::new(
                "enrichment_misses",
                Counter,
                "Enrichment lookups whose process was already gone, by kind",
            );
            m.add(vec![("kind", "container".into())], e.container_misses)
                .add(vec![("kind", "lineage".into())], e.lineage_misses);
            m
        },
        {
            let mut m = Family::new(
                "filter_matches",
                Counter,
                "Events matched by each event_filters entry",
            );
            for (name, n) in &e.event_filter_hits {
                m.add(vec![("filter", name.clone())], *n);
            }
            m
        },
    ];
    if let Some(r) = s.receiver {
        f.push(Family::single(
            "receiver_ring_full_waits",
            Counter,
            "Times the receiver waited for room in the ring to the reassembler",
            r.ring_full_waits,
        ));
        f.push(Family::single(
            "receiver_truncated",
            Counter,
            "Netlink messages shorter than their header said",
            r.truncated,
        ));
        f.push(Family::single(
            "receiver_errors",
            Counter,
            "Errors receiving from the audit socket (other than ENOBUFS)",
            r.recv_errors,
        ));
    }
    f.extend(output_families(s.sinks));
    if let Some(k) = s.kernel {
        f.push(Family::single(
            "kernel_lost",
            Counter,
            "Records the kernel dropped (AUDIT_GET lost, since boot): the true loss figure",
            u64::from(k.lost),
        ));
        f.push(Family::single(
            "kernel_backlog",
            Gauge,
            "Records waiting in the kernel's audit backlog",
            u64::from(k.backlog),
        ));
        f.push(Family::single(
            "kernel_backlog_limit",
            Gauge,
            "The kernel's audit backlog limit",
            u64::from(k.backlog_limit),
        ));
        f.push(Family::single(
            "kernel_backlog_wait_time_actual",
            Counter,
            "Time audited processes waited for backlog room, in kernel jiffies (1/CONFIG_HZ s, the unit of backlog_wait_time; not converted: HZ is not exposed), as AUDIT_GET reports it (Linux >= 5.9)",
            u64::from(k.backlog_wait_time_actual),
        ));
        f.push(Family::single(
            "kernel_audit_enabled",
            Gauge,
            "The kernel's audit enabled flag (0 off, 1 on, 2 locked)",
            u64::from(k.enabled),
        ));
    }
    f
}

/// Per-output families, summed over the instances of one output across reloads (counters)
/// or taken from its newest instance (gauges).
fn output_families(sinks: &[OutputStats]) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    let out = |st: &OutputStats| vec![("output", st.name.to_string())];
    let mut received = Family::new(
        "output_events_received",
        Counter,
        "Events handed to an output (events recovered from its spool at start included)",
    );
    let mut delivered = Family::new(
        "output_events_delivered",
        Counter,
        "Events an output delivered to its destination",
    );
    let mut lost = Family::new(
        "output_events_lost",
        Counter,
        "Events an output lost, by reason",
    );
    let mut skipped = Family::new(
        "output_events_skipped",
        Counter,
        "Events an output deliberately did not send (a transformer skipped them)",
    );
    let mut spooled = Family::new(
        "output_events_spooled",
        Counter,
        "Events an output wrote to its disk spool",
    );
    let mut unspooled = Family::new(
        "output_events_unspooled",
        Counter,
        "Events an output delivered from its disk spool",
    );
    let mut recovered = Family::new(
        "output_events_recovered",
        Counter,
        "Undelivered events an output found in its spool at start",
    );
    let mut corrupt = Family::new(
        "output_spool_corrupt_bytes",
        Counter,
        "Bytes cut off corrupt spool tails",
    );
    let mut breaker = Family::new(
        "output_breaker_opened",
        Counter,
        "Times an output's circuit breaker opened",
    );
    let mut http = Family::new(
        "http_events",
        Counter,
        "Events in HTTP requests, by outcome (delivered 1xx-3xx, rejected 4xx, failed 5xx or no answer)",
    );
    let mut http_other: Vec<Family> = vec![
        Family::new(
            "http_request_errors",
            Counter,
            "HTTP requests that got no response",
        ),
        Family::new(
            "http_breaker_rejected",
            Counter,
            "HTTP attempts refused without contacting the service because the breaker was open",
        ),
        Family::new("http_retries", Counter, "HTTP attempts after the first"),
    ];
    let mut codes = Family::new("http_responses", Counter, "HTTP responses by status code");
    let mut kafka = Family::new(
        "kafka_messages",
        Counter,
        "Kafka messages by outcome (acknowledged by the broker, failed)",
    );
    let mut kafka_errors = Family::new(
        "kafka_errors",
        Counter,
        "Kafka client failures by the client's error name (reordered: failed after a later message was acknowledged)",
    );
    let mut kafka_queue_full = Family::new(
        "kafka_queue_full",
        Counter,
        "Times a send waited because the Kafka client's own queue was full",
    );
    let mut topics = Family::new(
        "notification_topic_events",
        Counter,
        "Events by notification-service topic (no-topic: none matched)",
    );
    for st in sinks {
        let (k, a) = (&st.counters, st.accounting());
        received.add(out(st), a.received);
        delivered.add(out(st), a.delivered);
        skipped.add(out(st), a.skipped);
        for r in LossReason::ALL {
            let mut l = out(st);
            l.push(("reason", r.name().into()));
            lost.add(l, k.lost(r));
        }
        spooled.add(out(st), k.spooled.load(Relaxed));
        unspooled.add(out(st), k.unspooled.load(Relaxed));
        recovered.add(out(st), k.recovered.load(Relaxed));
        corrupt.add(out(st), k.spool_corrupt_bytes.load(Relaxed));
        breaker.add(out(st), k.breaker_opened.load(Relaxed));
        if let Some(l) = &st.live {
            let mut v = Vec::new();
            l.counters(&mut v);
            for (name, n) in v {
                let with = |key: &'static str, val: &str| {
                    let mut l = out(st);
                    l.push((key, val.to_string()));
                    l
                };
                if let Some(o) = name.strip_prefix("http_writer.") {
                    match o {
                        "delivered" | "rejected" | "failed" | "skipped" => {
                            http.add(with("outcome", o), n);
                        }
                        "request_error.count" => {
                            http_other[0].add(out(st), n);
                        }
                        "breaker.rejected" => {
                            http_other[1].add(out(st), n);
                        }
                        "retries" => {
                            http_other[2].add(out(st), n);
                        }
                        _ => {}
                    }
                } else if let Some(o) = name.strip_prefix("kafka.") {
                    match o {
                        "acknowledged" | "failed" => {
                            kafka.add(with("outcome", o), n);
                        }
                        "queue_full" => {
                            kafka_queue_full.add(out(st), n);
                        }
                        _ => {
                            if let Some(e) = o.strip_prefix("error.") {
                                kafka_errors.add(with("error", e), n);
                            }
                        }
                    }
                } else if let Some(code) = name.strip_prefix("http_code.") {
                    codes.add(with("code", code), n);
                } else if let Some(t) = name.strip_prefix("notif-service-transformer.topic.") {
                    topics.add(with("topic", t), n);
                }
            }
        }
    }
    let mut queue = Family::new(
        "output_queue_batches",
        Gauge,
        "Batches waiting in an output's memory queue",
    );
    let mut in_flight = Family::new(
        "output_events_in_flight",
        Gauge,
        "Events an output received and has neither delivered, lost nor spooled yet",
    );
    let mut spool_events = Family::new(
        "output_spool_events",
        Gauge,
        "Events waiting in an output's disk spool",
    );
    let mut spool_bytes = Family::new(
        "output_spool_bytes",
        Gauge,
        "Size of an output's disk spool",
    );
    let mut http_queued = Family::new(
        "http_queued_requests",
        Gauge,
        "HTTP requests waiting for a worker",
    );
    let mut kafka_outstanding = Family::new(
        "kafka_outstanding_messages",
        Gauge,
        "Messages the Kafka client holds: queued or sent and not yet acknowledged",
    );
    let mut kafka_rtt = Family::new(
        "kafka_broker_rtt_microseconds",
        Gauge,
        "The highest of the Kafka brokers' average round-trip times in the client's last statistics (every 5 s)",
    );
    let mut seen: Vec<&str> = Vec::new();
    for st in sinks.iter().rev() {
        if seen.contains(&st.name) {
            continue;
        }
        seen.push(st.name);
        let k = &st.counters;
        queue.add(out(st), k.queued_batches.load(Relaxed));
        in_flight.add(out(st), st.accounting().in_flight.max(0) as u64);
        spool_events.add(out(st), k.spool_events.load(Relaxed));
        spool_bytes.add(out(st), k.spool_bytes.load(Relaxed));
        if let Some(l) = &st.live {
            let mut v = Vec::new();
            l.gauges(&mut v);
            for (name, n) in v {
                match name.as_str() {
                    "http_writer.queued" => {
                        http_queued.add(out(st), n);
                    }
                    "kafka.outstanding" => {
                        kafka_outstanding.add(out(st), n);
                    }
                    "kafka.rtt_avg_us" => {
                        kafka_rtt.add(out(st), n);
                    }
                    _ => {}
                }
            }
        }
    }
    let mut f = vec![
        received,
        delivered,
        lost,
        skipped,
        spooled,
        unspooled,
        recovered,
        corrupt,
        breaker,
        queue,
        in_flight,
        spool_events,
        spool_bytes,
    ];
    f.extend([http, codes, topics, http_queued]);
    f.extend([
        kafka,
        kafka_errors,
        kafka_queue_full,
        kafka_outstanding,
        kafka_rtt,
    ]);
    f.extend(http_other);
    f
}

/// Timing samples into the exporter's histograms.
pub fn observe(m: &pauditd_sinks::prometheus::Metrics, timings: &[(&'static str, Duration)]) {
    for (name, d) in timings {
        match *name {
            "http_writer.latency" => m.observe_delivery("http", *d),
            "latency" => m.observe_batch_write(*d),
            _ => {}
        }
    }
}

/// Each output's accounting once, summed over its instances (a SIGHUP that changed an output
/// replaces it; the old instance's figures still count): `(name, accounting, instances)`.
pub fn accounting_by_output(
    sinks: &[OutputStats],
) -> Vec<(&'static str, pauditd_sinks::output::Accounting, usize)> {
    let mut out: Vec<(&'static str, pauditd_sinks::output::Accounting, usize)> = Vec::new();
    for st in sinks {
        let a = st.accounting();
        match out.iter_mut().find(|(n, _, _)| *n == st.name) {
            Some((_, t, k)) => {
                t.received += a.received;
                t.delivered += a.delivered;
                t.lost += a.lost;
                t.skipped += a.skipped;
                t.spooled += a.spooled;
                t.in_flight += a.in_flight;
                *k += 1;
            }
            None => out.push((st.name, a, 1)),
        }
    }
    out
}

/// `output NAME: written=... (N instances)` for the exit lines.
pub fn accounting_line(
    name: &str,
    a: &pauditd_sinks::output::Accounting,
    instances: usize,
) -> String {
    if instances > 1 {
        format!("output {name}: {a} (summed over {instances} instances: SIGHUP replaced it)")
    } else {
        format!("output {name}: {a}")
    }
}
