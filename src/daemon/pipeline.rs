//! The running pipeline as the daemon holds it: the engine's threads ([`Live`]), the audit
//! session, the rules in the kernel, the writer and the output sets it can reach without the
//! writer, the kernel's status poller and the metrics reporter; the keepalive, supervision,
//! and the bounded shutdown. It must never wait past `shutdown_timeout` + [`STUCK_GRACE`] +
//! [`SHUTDOWN_MARGIN`] at shutdown, under any output policy.

use std::time::{Duration, Instant};

use pauditd_engine::live::Live;
use pauditd_engine::netlink::AuditStatus;
use pauditd_engine::rules::KernelRules;
use pauditd_engine::session::{self, AuditSession, StatusPoller};
use pauditd_sinks::fanout::OutputsHandle;
use pauditd_sinks::metrics::Reporter;
use pauditd_sinks::output::Deadline;
use pauditd_sinks::writer::{Finished, Writer, STUCK_GRACE};

use super::{ACK_TIMEOUT, KEEPALIVE, SHUTDOWN_MARGIN};
use crate::metrics::{self, Sample};

pub(super) struct Pipeline {
    pub live: Live,
    /// Unicast only: we hold the audit pid.
    pub session: Option<AuditSession>,
    pub kernel_rules: KernelRules,
    pub writer: Writer,
    pub outputs: Outputs,
    pub poller: StatusPoller,
    pub reporter: Reporter,
}

/// The output sets the daemon can reach without the writer: the running one and those a
/// reload retired (still delivering what they hold).
pub(super) struct Outputs {
    pub current: OutputsHandle,
    /// With when each stops mattering (its retirement is over by then).
    pub retired: Vec<(Instant, OutputsHandle)>,
}

impl Pipeline {
    /// Why the pipeline can no longer be trusted to drain the socket, if it cannot.
    pub fn failure(&self, stall_limit: Option<Duration>) -> Option<String> {
        if let Some(t) = self.live.failed_thread() {
            return Some(format!("the engine's {t} thread stopped"));
        }
        let stalled = self.live.stalled_for();
        if stall_limit.is_some_and(|l| stalled >= l) {
            return Some(format!(
                "the reassembler has not moved for {} s (the socket is not drained)",
                stalled.as_secs()
            ));
        }
        self.writer.failure()
    }

    /// Every KEEPALIVE: re-assert the audit pid (as pauditd) and look at the kernel's
    /// counters.
    pub fn keepalive(&mut self) -> Option<AuditStatus> {
        let (live, poller) = (&self.live, &mut self.poller);
        let session = self.session.as_ref();
        if let Some(s) = session {
            s.keepalive(live, ACK_TIMEOUT);
        }
        match poller.poll(session.is_some()) {
            Ok(r) => {
                if let Some(pid) = r.foreign_pid {
                    log::error!(
                        "the audit pid is held by pid {pid} ({}), not by us: events go there (seen {} time(s))",
                        session::comm_of(pid).unwrap_or_else(|| "gone".into()),
                        poller.pid_stolen
                    );
                }
                if r.lost_delta > 0 {
                    log::warn!(
                        "the kernel lost {} audit record(s) in the last {}s (lost={} backlog={}/{}): raise socket_buffer.receive or the backlog limit (-b)",
                        r.lost_delta,
                        KEEPALIVE.as_secs(),
                        r.status.lost,
                        r.status.backlog,
                        r.status.backlog_limit
                    );
                }
                let rs = live.receiver_stats();
                log::debug!(
                    "kernel backlog={}/{} lost={}; received={} enobufs={} ring_full_waits={}",
                    r.status.backlog,
                    r.status.backlog_limit,
                    r.status.lost,
                    rs.received,
                    rs.enobufs,
                    rs.ring_full_waits
                );
                Some(r.status)
            }
            Err(e) => {
                log::error!("AUDIT_GET failed: {e}");
                None
            }
        }
    }

    /// SIGTERM (or a failure): rules out, pid released, then every output gets its deadline
    /// (`timeout` from now) before the engine drains, so nothing waits past it: the whole of
    /// this ends within `timeout` + [`STUCK_GRACE`] + [`SHUTDOWN_MARGIN`] under every policy.
    pub fn shutdown(self, timeout: Duration) {
        let Pipeline {
            live,
            session,
            mut kernel_rules,
            writer,
            outputs,
            poller,
            mut reporter,
        } = self;
        if let Some(session) = session {
            // Rules with no daemon make the kernel log to the console and, once its backlog
            // is full, slow audited processes down: leave the kernel as we found it (pauditd
            // flushes at start too, so the rules were ours). Then the pid goes back.
            match kernel_rules.remove_all() {
                Ok(n) => log::info!("deleted our {n} audit rule(s)"),
                Err(e) => log::error!("could not delete the audit rules: {e}"),
            }
            session.end(&poller);
        }
        let deadline = Instant::now() + timeout;
        // Before the engine is joined: a `block` output the writer waits on gives up by then.
        for h in outputs
            .retired
            .iter()
            .map(|(_, h)| h)
            .chain([&outputs.current])
        {
            h.set_deadline(Deadline::At(deadline));
        }
        writer.stop(deadline);
        let bound = deadline + STUCK_GRACE + SHUTDOWN_MARGIN;
        let (stats, recv, finished) = live.shutdown_by(bound);
        if !finished {
            log::error!(
                "the engine did not finish draining by the shutdown bound ({timeout:?} + {:?}); exiting without it",
                STUCK_GRACE + SHUTDOWN_MARGIN
            );
        }
        let Finished {
            sinks,
            not_handed,
            encode_failed,
        } = writer.finish_by(bound);
        if encode_failed > 0 {
            log::error!("{encode_failed} event(s) lost: encoding their batch panicked");
        }
        log::info!(
            "exit: netlink received={} enobufs={} truncated={} ring_full_waits={}; {}",
            recv.received,
            recv.enobufs,
            recv.truncated,
            recv.ring_full_waits,
            stats.summary()
        );
        for (name, a, instances) in metrics::accounting_by_output(&sinks) {
            log::info!("exit: {}", metrics::accounting_line(name, &a, instances));
            if a.in_flight != 0 {
                log::error!(
                    "exit: output {name}: {} event(s) unaccounted (received != written + lost + skipped + spooled)",
                    a.in_flight
                );
            }
            if a.spooled > 0 {
                log::info!(
                    "exit: output {name}: {} event(s) wait in the spool for the next start",
                    a.spooled
                );
            }
        }
        let (c, g) = metrics::names(&Sample {
            engine: stats,
            receiver: Some(recv),
            sinks: &sinks,
            kernel: poller.status().ok(),
            pid_stolen: poller.pid_stolen,
            rules_drift: kernel_rules.drifts,
            encode_failed,
            not_handed,
        });
        reporter.report(&c, &g);
        reporter.timings(&metrics::timings(&sinks));
    }
}
