//! The live daemon's lifecycle: start-up order, signals, keepalive, shutdown.
//!
//! Owns process concerns only (what happens on SIGTERM, SIGHUP, SIGUSR1, every 5 s); the
//! threads, protocol and rules live in the engine, outputs in the sinks. Start-up order:
//! outputs first (a bad output fails before the kernel is touched), then become the audit
//! daemon, then load rules (so their CONFIG_CHANGE records reach us). Shutdown: delete the
//! rules we loaded, release the audit pid (and restore `enabled` if we changed it), drain,
//! complete and write every event already received, then exit 0.

use std::path::Path;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pauditd_config::{Config, NetlinkMode};
use pauditd_engine::live::{IoUringMode, Live, LiveConfig, StatusPoller};
use pauditd_engine::netlink::{AuditSocket, AuditStatus, Mode};
use pauditd_engine::session::{self, AuditSession};
use pauditd_engine::{privileges, rules};
use pauditd_sinks::fanout::{Fanout, SinkStats};
use pauditd_sinks::metrics::Reporter;
use pauditd_sinks::writer::{self, CloseBudget, WriterMsg, WriterReport};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::metrics::{self, Sample};
use crate::notify::Notifier;
use crate::wiring;

/// The reassembler not turning its loop for this long means the pipeline is stuck: the
/// watchdog stops being fed (systemd restarts us) and supervision gives up.
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// pauditd re-sends AUDIT_SET (and we poll AUDIT_GET) this often.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// The counters and per-output accounting are logged this often.
const STATS_LOG_EVERY: Duration = Duration::from_secs(60);
/// Counters go to statsd this often.
const METRICS_EVERY: Duration = Duration::from_secs(1);
/// Batches of events queued for the writer before the reassembler waits.
const WRITER_QUEUE: usize = 64;
const EVENTS_PER_BATCH: usize = 256;
const ACK_TIMEOUT: Duration = Duration::from_secs(3);

pub fn run(config_path: &Path, cfg: Config) -> Result<ExitCode> {
    let mode = match cfg.netlink_mode {
        NetlinkMode::Unicast => Mode::Unicast,
        NetlinkMode::Multicast => Mode::Multicast,
    };
    let unicast = mode == Mode::Unicast;
    // Resolved before anything changes, so an unknown user fails start-up cleanly.
    let drop_to = match &cfg.privileges.user {
        Some(user) => Some(privileges::resolve(user, cfg.privileges.group.as_deref())?),
        None => None,
    };
    let role = wiring::Role::Daemon {
        spool_owner: drop_to.map(|id| (id.uid, id.gid)),
    };
    let names = wiring::Names {
        groups: wiring::wants_groups(&cfg),
        ..Default::default()
    };
    let mut processor = wiring::processor(&cfg, wiring::Clock::Millis, names)?;
    // Written events go back to the reassembler for reuse (no allocation per event).
    let fanout = Fanout::new(wiring::outputs(&cfg, role)?)
        .with_event_pool(Some(processor.event_pool()))
        .with_encoders(cfg.engine.encode_workers.unwrap_or(0) as usize)
        .context("starting the encoder threads")?;
    let mut reporter = Reporter::new(
        cfg.metrics.enabled,
        &cfg.metrics.address,
        &pauditd_sinks::short_hostname(),
        cfg.metrics.sample_rate,
    )?;

    let prometheus = match &cfg.metrics.prometheus {
        Some(addr) => {
            let p = pauditd_sinks::prometheus::PrometheusExporter::start(addr)?;
            log::info!("Prometheus metrics at http://{}/metrics", p.address);
            Some(p)
        }
        None => None,
    };
    let mut poller = StatusPoller::new()
        .context("cannot open an audit netlink socket (needs root / CAP_AUDIT_CONTROL)")?;
    let initial = poller
        .status()
        .context("cannot read the kernel's audit status (AUDIT_GET)")?;
    let ours = std::process::id();
    if unicast {
        // Before anything changes: a clear refusal naming the other daemon.
        session::check_free(&initial)?;
        // A locked kernel (`-e 2`) is no reason to refuse: the rules then say so, apply
        // nothing and report how the kernel's differ from ours (rules::decide).
    }
    let mut kernel_rules = rules::KernelRules::new(if cfg.rule_policy.native {
        rules::RuleLoader::Native
    } else {
        rules::RuleLoader::Auditctl(rules::find_auditctl())
    })
    .context("cannot open an audit netlink socket for rules")?;

    let socket = AuditSocket::open(mode).context("cannot open the audit netlink socket")?;
    if let Some(bytes) = cfg.receive_buffer {
        match socket.set_receive_buffer(bytes) {
            Ok(eff) => log::info!("Socket receive buffer size: {eff} (asked {bytes})"),
            Err(e) => log::error!("Failed to set receive buffer size to {bytes}: {e}"),
        }
    } else if let Ok(eff) = socket.receive_buffer() {
        log::info!("Socket receive buffer size: {eff}");
    }

    let receiver_core = match cfg.engine.receiver_core {
        Some(c) if c < 0 => None,
        Some(c) => Some(c as usize),
        None => core_affinity::get_core_ids().and_then(|ids| ids.last().map(|c| c.id)),
    };
    let (tx, rx) = mpsc::sync_channel::<WriterMsg>(WRITER_QUEUE);
    let report = Arc::new(Mutex::new(WriterReport::default()));
    let writer = writer::spawn(
        fanout,
        rx,
        report.clone(),
        CloseBudget {
            timeout: cfg.shutdown_timeout,
        },
    )
    .context("starting the writer thread")?;
    let emit_tx = tx.clone();
    // Events the engine completed after the writer had gone (it died): counted, never silent;
    // supervision stops the daemon right after.
    let orphaned = Arc::new(AtomicU64::new(0));
    let orphaned_in = orphaned.clone();
    let live = Live::start(
        socket,
        LiveConfig {
            mode,
            receiver_core,
            ring_bytes: cfg.engine.ring_size as usize,
            batch: EVENTS_PER_BATCH,
            io_uring: match cfg.engine.io_uring {
                pauditd_config::IoUring::Auto => IoUringMode::Auto,
                pauditd_config::IoUring::On => IoUringMode::On,
                pauditd_config::IoUring::Off => IoUringMode::Off,
            },
        },
        processor,
        move |events| {
            // Waits when the writer is behind (it only is when an output's policy is
            // `block`); fails only once the writer is gone.
            let n = events.len() as u64;
            if emit_tx
                .send(WriterMsg::Events(events, Instant::now()))
                .is_err()
                && orphaned_in.fetch_add(n, Relaxed) == 0
            {
                log::error!("the writer thread is gone: completed events are counted lost");
            }
        },
    )
    .context("starting the engine threads")?;

    // Bound before the privilege drop: the socket's directory is root's.
    let started_at = Instant::now();
    let status_server = if cfg.status_socket.is_empty() {
        None
    } else {
        match crate::status::StatusServer::start(Path::new(&cfg.status_socket)) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("status socket: {e:#}; `pauditd status` will not answer");
                None
            }
        }
    };

    // Before the privilege drop, so this thread too ends up with no capabilities; signals
    // that arrive during start-up wait in the channel.
    let (sig_tx, sig_rx) = mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
        .context("installing signal handlers")?;
    let sig_handle = signals.handle();
    std::thread::spawn(move || {
        for s in signals.forever() {
            if sig_tx.send(s).is_err() {
                break;
            }
        }
    });

    // From here on, every way out goes through `shutdown`; the session's guard releases the
    // pid even on a path that does not.
    let mut session: Option<AuditSession> = None;
    let started = (|| -> Result<()> {
        if unicast {
            session = Some(AuditSession::claim(&live, &initial, ACK_TIMEOUT)?);
            log::info!("pauditd (pid {ours}) is the audit daemon");
            let applied = kernel_rules.apply(rule_sources(&cfg)?)?;
            log_applied(&applied);
        } else {
            log::info!(
                "Reading the audit log multicast group beside audit pid {}",
                initial.pid
            );
        }
        if let Some(id) = drop_to {
            // Sockets, rules and outputs are set up: from here on only this thread's
            // netlink requests and auditctl need a capability (see engine::privileges).
            privileges::drop_to(id, &[privileges::CAP_AUDIT_CONTROL])?;
            log::info!(
                "Running as {} (uid {}, gid {}) with CAP_AUDIT_CONTROL only",
                privileges::user_name(id.uid),
                id.uid,
                id.gid
            );
        }
        Ok(())
    })();
    if let Err(e) = started {
        shutdown(
            live,
            session,
            &mut kernel_rules,
            tx,
            writer,
            &poller,
            &mut reporter,
        );
        return Err(e);
    }
    log::info!(
        "Started processing events in the range [{}, {}]",
        cfg.events_min,
        cfg.events_max
    );
    // Ready: we hold the audit pid, the rules are loaded and the outputs are open.
    let mut notifier = Notifier::from_env();
    notifier.ready(&format!(
        "audit daemon (pid {ours}); outputs: {}",
        cfg.output.enabled_names().join(", ")
    ));
    let mut next_watchdog = notifier.watchdog.map(|_| Instant::now());

    // With a `block` output a stalled pipeline is what the operator chose, not a fault.
    let mut stall_limit = (!blocks(&cfg)).then_some(STALL_LIMIT);

    let mut running = cfg.clone();
    let mut drift_guard = drift_guard_of(&cfg, unicast);
    let mut failure: Option<String> = None;
    let mut next_tick = Instant::now() + KEEPALIVE;
    let mut next_metrics = Instant::now() + METRICS_EVERY;
    let mut next_stats_log = Instant::now() + STATS_LOG_EVERY;
    let mut kernel_status = poller.status().ok();
    loop {
        if Instant::now() >= next_metrics {
            next_metrics = Instant::now() + METRICS_EVERY;
            let (sinks, latency) = {
                let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                (r.sinks.clone(), std::mem::take(&mut r.latency))
            };
            let engine = live.stats();
            let rule_changes = engine.rule_changes;
            if Instant::now() >= next_stats_log {
                next_stats_log = Instant::now() + STATS_LOG_EVERY;
                log::info!("stats: {}", engine.summary());
                for s in &sinks {
                    log::info!("output {}: {}", s.name, s.accounting());
                }
            }
            if let Some(server) = &status_server {
                server.publish(&snapshot(
                    started_at,
                    &engine,
                    &live.receiver_stats(),
                    &sinks,
                    kernel_status.as_ref(),
                    &kernel_rules,
                ));
            }
            let (c, g) = metrics::names(&Sample {
                engine,
                receiver: Some(live.receiver_stats()),
                sinks: &sinks,
                kernel: kernel_status,
                pid_stolen: poller.pid_stolen,
                rules_drift: kernel_rules.drifts,
            });
            reporter.report(&c, &g);
            if let Some(p) = &prometheus {
                p.publish(&c, &g);
            }
            let mut t = metrics::timings(&sinks);
            t.extend(latency.into_iter().map(|d| ("latency", d)));
            reporter.timings(&t);
            // Supervision: a pipeline that can no longer drain the socket must not stay the
            // audit daemon (the kernel would hold audited processes behind it).
            failure = supervise(&live, &writer, &report, &orphaned, stall_limit);
            if failure.is_some() {
                break;
            }
            if let Some(guard) = &mut drift_guard {
                if guard.due(Instant::now(), rule_changes) {
                    guard.check(&mut kernel_rules, Instant::now(), rule_changes);
                }
            }
        }
        if let (Some(at), Some(every)) = (next_watchdog, notifier.watchdog) {
            if Instant::now() >= at {
                // Fed only while the pipeline drains: a stuck one gets restarted by systemd.
                if supervise(&live, &writer, &report, &orphaned, stall_limit).is_none() {
                    notifier.watchdog();
                }
                next_watchdog = Some(Instant::now() + every);
            }
        }
        let wake = next_tick
            .min(next_metrics)
            .min(next_watchdog.unwrap_or(next_metrics));
        match sig_rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(SIGTERM) | Ok(SIGINT) => {
                log::info!("Shutting down: draining events already received");
                break;
            }
            Ok(SIGHUP) => {
                notifier.reloading();
                reload(
                    config_path,
                    &live,
                    &tx,
                    unicast,
                    &mut running,
                    role,
                    &mut kernel_rules,
                );
                drift_guard = drift_guard_of(&running, unicast);
                // An output that now blocks (or no longer does) changes what a stall means.
                stall_limit = (!blocks(&running)).then_some(STALL_LIMIT);
                notifier.ready("reloaded");
            }
            Ok(SIGUSR1) => {
                let _ = tx.send(WriterMsg::Reopen);
            }
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) if Instant::now() >= next_tick => {
                next_tick = Instant::now() + KEEPALIVE;
                kernel_status = tick(&live, session.as_ref(), &mut poller).or(kernel_status);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    sig_handle.close();
    notifier.stopping();
    if let Some(why) = &failure {
        log::error!("{why}: releasing the audit pid and exiting (the service manager restarts us)");
    }
    shutdown(
        live,
        session,
        &mut kernel_rules,
        tx,
        writer,
        &poller,
        &mut reporter,
    );
    match failure {
        Some(why) => bail!("{why}"),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The rule lines of a config: `rules:`, then `rules_files`, then our own exclusion.
fn rule_sources(cfg: &Config) -> Result<Vec<rules::RuleSource>> {
    let mut sources = rules::sources(&cfg.rules, &cfg.rule_policy.files)?;
    if cfg.rule_policy.exclude_self {
        // Last, as -A: first in the exit list whatever the lines before it add.
        sources.push(rules::RuleSource {
            origin: "rules_exclude_self".into(),
            text: format!("-A exit,never -F pid={}", std::process::id()),
        });
    }
    Ok(sources)
}

fn log_applied(a: &rules::Applied) {
    if a.locked {
        log::warn!(
            "audit rules locked: {} in force as the kernel has them, none applied",
            a.in_force
        );
    } else if a.unchanged {
        log::info!("audit rules unchanged ({} in force)", a.in_force);
    } else {
        log::info!(
            "audit rules in force: {} ({} added, {} removed{})",
            a.in_force,
            a.added,
            a.removed,
            if a.readded > 0 {
                format!(
                    ", {} unchanged re-added to keep their order (briefly out of force)",
                    a.readded
                )
            } else {
                String::new()
            }
        );
    }
    if !a.skipped.is_empty() {
        log::warn!(
            "{} rule line(s) skipped after -c/-i, as auditctl -R would (each logged above)",
            a.skipped.len()
        );
    }
}

/// The drift guard a config asks for (none when we do not own the rules).
fn drift_guard_of(cfg: &Config, unicast: bool) -> Option<rules::DriftGuard> {
    let policy = match cfg.rule_policy.drift {
        _ if !unicast => return None,
        pauditd_config::RulesDrift::Off => return None,
        pauditd_config::RulesDrift::Log => rules::DriftPolicy::Log,
        pauditd_config::RulesDrift::Reapply => rules::DriftPolicy::Reapply,
    };
    Some(rules::DriftGuard::new(
        policy,
        cfg.rule_policy.check_interval,
        Instant::now(),
    ))
}

/// What `pauditd status` prints (see `status::render`).
fn snapshot(
    started: Instant,
    e: &pauditd_engine::Stats,
    r: &pauditd_engine::live::ReceiverStats,
    sinks: &[SinkStats],
    kernel: Option<&AuditStatus>,
    rules: &rules::KernelRules,
) -> serde_json::Value {
    use serde_json::json;
    let dropped: serde_json::Map<String, serde_json::Value> = pauditd_engine::DropReason::ALL
        .iter()
        .map(|d| (d.name().to_string(), json!(e.dropped(*d))))
        .collect();
    // The newest instance of each output (SIGHUP may have replaced some).
    let mut outputs = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for s in sinks.iter().rev() {
        if seen.contains(&s.name) {
            continue;
        }
        seen.push(s.name);
        let a = s.accounting();
        outputs.push(json!({
            "name": s.name,
            "overflow": s.overflow.name(),
            "received": a.received,
            "delivered": a.delivered,
            "lost": a.lost,
            "skipped": a.skipped,
            "spooled": a.spooled,
            "in_flight": a.in_flight,
        }));
    }
    outputs.reverse();
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

/// Whether an enabled output waits when full (`overflow: block`).
fn blocks(cfg: &Config) -> bool {
    cfg.output
        .enabled()
        .any(|(_, d)| d.overflow == pauditd_config::Overflow::Block)
}

/// Why the pipeline can no longer be trusted to drain the socket, if it cannot.
fn supervise(
    live: &Live,
    writer: &std::thread::JoinHandle<Vec<SinkStats>>,
    report: &Mutex<WriterReport>,
    orphaned: &AtomicU64,
    stall_limit: Option<Duration>,
) -> Option<String> {
    if let Some(t) = live.failed_thread() {
        return Some(format!("the engine's {t} thread stopped"));
    }
    let stalled = live.stalled_for();
    if stall_limit.is_some_and(|l| stalled >= l) {
        return Some(format!(
            "the reassembler has not moved for {} s (the socket is not drained)",
            stalled.as_secs()
        ));
    }
    if writer.is_finished() || orphaned.load(Relaxed) > 0 {
        return Some("the writer thread stopped".into());
    }
    let r = report.lock().unwrap_or_else(|e| e.into_inner());
    r.dead_output
        .map(|name| format!("the {name} output's thread stopped"))
}

/// Every KEEPALIVE: re-assert the audit pid (as pauditd) and look at the kernel's counters.
fn tick(
    live: &Live,
    session: Option<&AuditSession>,
    poller: &mut StatusPoller,
) -> Option<AuditStatus> {
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

/// SIGHUP: re-read the config; apply rules, filters and outputs. A bad config is logged and
/// the running one kept. Events in flight are untouched: new filters apply to events that
/// complete from now on; outputs are rebuilt only when their settings changed, between two
/// batches (a spooled output hands its spool to its successor).
fn reload(
    path: &Path,
    live: &Live,
    tx: &SyncSender<WriterMsg>,
    unicast: bool,
    running: &mut Config,
    role: wiring::Role,
    loader: &mut rules::KernelRules,
) {
    log::info!("SIGHUP: reloading {}", path.display());
    let applied = (|| -> Result<()> {
        let cfg = Config::load(path)?;
        for w in &cfg.warnings {
            log::warn!("{}: {w}", path.display());
        }
        let filters = wiring::filters(&cfg)?;
        if unicast {
            let errs = cfg.daemon_errors();
            if let Some(e) = errs.first() {
                bail!("{e}");
            }
            // Natively only the difference changes (no window without rules); through
            // auditctl, a flush and reload only when the lines changed. A failure puts the
            // previous rules back, and the error says whether that worked.
            let applied = loader.apply(rule_sources(&cfg)?)?;
            log_applied(&applied);
        }
        // What a reload does not apply: said, not silently ignored.
        for (section, changed) in [
            ("metrics", cfg.metrics != running.metrics),
            ("engine", cfg.engine != running.engine),
            ("netlink", cfg.netlink_mode != running.netlink_mode),
            ("privileges", cfg.privileges != running.privileges),
            (
                "rules_loader",
                cfg.rule_policy.native != running.rule_policy.native,
            ),
            ("log", cfg.log_flags != running.log_flags),
            ("status", cfg.status_socket != running.status_socket),
            (
                "events",
                cfg.events_min != running.events_min
                    || cfg.events_max != running.events_max
                    || cfg.event_timeout != running.event_timeout,
            ),
            (
                "message_tracking",
                cfg.message_tracking != running.message_tracking,
            ),
            ("parser", cfg.parser != running.parser),
            (
                "socket_buffer",
                cfg.receive_buffer != running.receive_buffer,
            ),
        ] {
            if changed {
                log::warn!("SIGHUP: `{section}` changed; it takes effect at the next restart");
            }
        }
        live.set_filters(filters);
        // Group names are looked up only while an output writes enriched or ecs.
        live.set_group_names(wiring::wants_groups(&cfg));
        if cfg.output == running.output && cfg.shutdown_timeout == running.shutdown_timeout {
            log::info!("outputs unchanged; kept running");
        } else {
            let (new, old) = (cfg.clone(), running.clone());
            let _ = tx.send(WriterMsg::Replace {
                new: Box::new(move || wiring::outputs(&new, role).map_err(|e| format!("{e:#}"))),
                fallback: Box::new(move || {
                    wiring::outputs(&old, role).map_err(|e| format!("{e:#}"))
                }),
            });
        }
        // What is now in force: the applied sections are new, the rest as at start.
        *running = Config {
            output: cfg.output,
            shutdown_timeout: cfg.shutdown_timeout,
            rules: cfg.rules,
            filters: cfg.filters,
            rule_policy: pauditd_config::RulePolicy {
                native: running.rule_policy.native,
                ..cfg.rule_policy
            },
            ..running.clone()
        };
        Ok(())
    })();
    match applied {
        Ok(()) => log::info!("reloaded {}", path.display()),
        Err(e) => {
            log::error!("reload failed, keeping the running rules, filters and outputs: {e:#}")
        }
    }
}

fn shutdown(
    live: Live,
    session: Option<AuditSession>,
    loader: &mut rules::KernelRules,
    tx: SyncSender<WriterMsg>,
    writer: std::thread::JoinHandle<Vec<SinkStats>>,
    poller: &StatusPoller,
    reporter: &mut Reporter,
) {
    if let Some(session) = session {
        // Rules with no daemon make the kernel log to the console and, once its backlog is
        // full, slow audited processes down: leave the kernel as we found it (pauditd flushes
        // at start too, so the rules were ours). Then the pid goes back.
        match loader.remove_all() {
            Ok(n) => log::info!("deleted our {n} audit rule(s)"),
            Err(e) => log::error!("could not delete the audit rules: {e}"),
        }
        session.end(poller);
    }
    let (stats, recv) = live.shutdown();
    drop(tx);
    let sinks = writer.join().unwrap_or_default();
    log::info!(
        "exit: netlink received={} enobufs={} truncated={} ring_full_waits={}; {}",
        recv.received,
        recv.enobufs,
        recv.truncated,
        recv.ring_full_waits,
        stats.summary()
    );
    for s in &sinks {
        let a = s.accounting();
        log::info!("output {}: {a}", s.name);
        if a.in_flight != 0 {
            log::error!(
                "output {}: {} event(s) unaccounted at exit (received != written + lost + skipped + spooled)",
                s.name,
                a.in_flight
            );
        }
        if a.spooled > 0 {
            log::info!(
                "output {}: {} event(s) wait in the spool for the next start",
                s.name,
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
        rules_drift: loader.drifts,
    });
    reporter.report(&c, &g);
    reporter.timings(&metrics::timings(&sinks));
}
