//! Every second: the counters to statsd and Prometheus, the snapshot `pauditd status` prints,
//! the stats line every minute, supervision, and the drift guard when due. It must never
//! block the main loop on a destination (the reporters swap or send without waiting), and
//! never change the pipeline beyond what the drift guard's policy says.

use std::time::Instant;

use pauditd_engine::netlink::AuditStatus;
use pauditd_engine::rules;
use pauditd_sinks::fanout::OutputStats;

use super::{Daemon, STATS_LOG_EVERY};
use crate::metrics::{self, Sample};

impl Daemon {
    /// Report, publish, supervise; then the drift guard if due. `Some(why)` when supervision
    /// found the pipeline can no longer drain the socket.
    pub(super) fn report(&mut self) -> Option<String> {
        let (sinks, latency, encode_failed) = {
            let mut r = self.pipeline.writer.report();
            (
                r.sinks.clone(),
                std::mem::take(&mut r.latency),
                r.encode_failures.events(),
            )
        };
        let outputs = metrics::accounting_by_output(&sinks);
        let live = &self.pipeline.live;
        let engine = live.stats();
        let rule_changes = engine.rule_changes;
        if Instant::now() >= self.next_stats_log {
            self.next_stats_log = Instant::now() + STATS_LOG_EVERY;
            log::info!("stats: {}", engine.summary());
            for (name, a, n) in metrics::accounting_by_output(&sinks) {
                log::info!("stats: {}", metrics::accounting_line(name, &a, n));
            }
        }
        if let Some(server) = &self.status_server {
            server.publish(&snapshot(
                self.started_at,
                &engine,
                &live.receiver_stats(),
                &sinks,
                &outputs,
                self.kernel_status.as_ref(),
                &self.pipeline.kernel_rules,
            ));
        }
        let sample = Sample {
            engine,
            receiver: Some(live.receiver_stats()),
            sinks: &sinks,
            kernel: self.kernel_status,
            pid_stolen: self.pipeline.poller.pid_stolen,
            rules_drift: self.pipeline.kernel_rules.drifts,
            encode_failed,
            not_handed: self.pipeline.writer.not_handed(),
        };
        let (c, g) = metrics::names(&sample);
        self.pipeline.reporter.report(&c, &g);
        let mut t = metrics::timings(&sinks);
        t.extend(latency.into_iter().map(|d| ("latency", d)));
        if let Some(p) = &self.prometheus {
            p.publish(metrics::families(&sample));
            metrics::observe(&p.metrics, &t);
        }
        self.pipeline.reporter.timings(&t);
        // Supervision: a pipeline that can no longer drain the socket must not stay the
        // audit daemon (the kernel would hold audited processes behind it).
        let failure = self.pipeline.failure(self.stall_limit);
        if failure.is_some() {
            return failure;
        }
        if let Some(guard) = &mut self.drift_guard {
            if guard.due(Instant::now(), rule_changes) {
                guard.check(
                    &mut self.pipeline.kernel_rules,
                    Instant::now(),
                    rule_changes,
                );
            }
        }
        None
    }
}

/// What `pauditd status` prints (see `status::render`).
fn snapshot(
    started: Instant,
    e: &pauditd_engine::Stats,
    r: &pauditd_engine::receiver::ReceiverStats,
    sinks: &[OutputStats],
    accounting: &[(&'static str, pauditd_sinks::output::Accounting, usize)],
    kernel: Option<&AuditStatus>,
    rules: &rules::KernelRules,
) -> serde_json::Value {
    use serde_json::json;
    let dropped: serde_json::Map<String, serde_json::Value> = pauditd_engine::DropReason::ALL
        .iter()
        .map(|d| (d.name().to_string(), json!(e.dropped(*d))))
        .collect();
    // Each output's figures summed over the instances SIGHUP replaced (they do not restart
    // at a reload), its policy from the newest instance.
    let mut outputs = Vec::new();
    for (name, a, _) in accounting {
        let overflow = sinks
            .iter()
            .rev()
            .find(|s| s.name == *name)
            .map_or("?", |s| s.overflow.name());
        outputs.push(json!({
            "name": name,
            "overflow": overflow,
            "received": a.received,
            "delivered": a.delivered,
            "lost": a.lost,
            "skipped": a.skipped,
            "spooled": a.spooled,
            "in_flight": a.in_flight,
        }));
    }
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_s": started.elapsed().as_secs(),
        "kernel": kernel.map(|k| json!({
            "pid": k.pid,
            "enabled": k.enabled,
            "lost": k.lost,
            "backlog": k.backlog,
            "backlog_limit": k.backlog_limit,
            "backlog_wait_time_actual": k.backlog_wait_time_actual,
        })),
        "receiver": {
            "path": if r.io_uring { "io_uring" } else { "recv" },
            "received": r.received,
            "enobufs": r.enobufs,
            "truncated": r.truncated,
        },
        "rules": rules.in_force(),
        // Locked (`-e 2`): how the kernel's rules differ from the config's.
        "rules_locked": rules.locked().map(|d| json!({
            "missing": d.as_ref().map_or(0, |d| d.missing.len()),
            "unexpected": d.as_ref().map_or(0, |d| d.extra.len()),
        })),
        "rules_drift": {
            "count": rules.drifts,
            "last_s_ago": rules.last_drift.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs()),
        },
        "events": {
            "records": e.records,
            "emitted": e.events_emitted,
            "filtered": e.events_filtered,
            "dropped_total": e.dropped_total(),
            "dropped": dropped,
            "evicted": e.events_evicted,
            "seq_missed": e.seq_missed,
        },
        "outputs": outputs,
    })
}
