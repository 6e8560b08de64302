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
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossbeam_channel::SendTimeoutError;
use pauditd_config::{Config, NetlinkMode};
use pauditd_engine::live::{IoUringMode, Live, LiveConfig, StatusPoller};
use pauditd_engine::netlink::{AuditSocket, AuditStatus, Mode};
use pauditd_engine::session::{self, AuditSession};
use pauditd_engine::{privileges, rules};
use pauditd_sinks::fanout::{Fanout, OutputsHandle, SinkStats};
use pauditd_sinks::metrics::Reporter;
use pauditd_sinks::output::Deadline;
use pauditd_sinks::writer::{self, CloseBudget, Control, ControlSender, WriterReport, STUCK_GRACE};
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
/// What shutdown may take beyond `shutdown_timeout`: an output stuck in one write gets
/// [`STUCK_GRACE`] more, then the engine and the writer get this much to finish (else we
/// exit without them, saying so). Rule deletion and the pid release come before the clock.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(1);

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
    // Lives as long as the daemon: every output set (start, each reload) shares it.
    let spool_dirs: &'static pauditd_sinks::spool::SpoolDirs = Box::leak(Box::default());
    let role = wiring::Role::Daemon {
        spool_owner: drop_to.map(|id| (id.uid, id.gid)),
        spool_dirs,
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
            if p.address.ip().is_loopback() {
                log::info!("Prometheus metrics at http://{}/metrics", p.address);
            } else {
                log::warn!(
                    "Prometheus metrics at http://{}/metrics, reachable from other hosts (metrics.prometheus.allow_remote)",
                    p.address
                );
            }
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
    // Data and control apart: a signal never waits behind a full data queue.
    let (tx, ctl, inbox) = writer::channels(WRITER_QUEUE);
    let report = Arc::new(Mutex::new(WriterReport::default()));
    let mut outputs = Outputs {
        current: fanout.handle(),
        retired: Vec::new(),
    };
    let writer = writer::spawn(
        fanout,
        inbox,
        report.clone(),
        CloseBudget {
            timeout: cfg.shutdown_timeout,
        },
    )
    .context("starting the writer thread")?;
    let emit_tx = tx;
    // Events the engine completed after the writer had gone (it died): counted, never silent;
    // supervision stops the daemon right after.
    let orphaned = Arc::new(AtomicU64::new(0));
    let orphaned_in = orphaned.clone();
    // Set at shutdown: past it the engine stops waiting for the writer (milliseconds since
    // `epoch`; 0: not set).
    let epoch = Instant::now();
    let give_up = Arc::new(AtomicU64::new(0));
    let give_up_in = give_up.clone();
    let live = Live::start(
        socket,
        LiveConfig {
            mode,
            receiver_core,
            ring_bytes: cfg.engine.ring_size as usize,
            batch: EVENTS_PER_BATCH,
            max_delay: cfg.engine.max_delay,
            io_uring: match cfg.engine.io_uring {
                pauditd_config::IoUring::Auto => IoUringMode::Auto,
                pauditd_config::IoUring::On => IoUringMode::On,
                pauditd_config::IoUring::Off => IoUringMode::Off,
            },
        },
        processor,
        move |events| {
            // Waits when the writer is behind (it only is when an output's policy is
            // `block`); gives up only once the writer is gone or shutdown's bound passed.
            let n = events.len() as u64;
            let mut msg = (events, Instant::now());
            let why = loop {
                match emit_tx.send_timeout(msg, Duration::from_millis(100)) {
                    Ok(()) => return,
                    Err(SendTimeoutError::Disconnected(_)) if give_up_in.load(Relaxed) != 0 => {
                        break "the writer stopped at the shutdown deadline";
                    }
                    Err(SendTimeoutError::Disconnected(_)) => {
                        break "the writer thread is gone";
                    }
                    Err(SendTimeoutError::Timeout(m)) => {
                        let at = give_up_in.load(Relaxed);
                        if at != 0 && epoch.elapsed() >= Duration::from_millis(at) {
                            break "the writer did not take them by the shutdown bound";
                        }
                        msg = m;
                    }
                }
            };
            if orphaned_in.fetch_add(n, Relaxed) == 0 {
                log::error!("{why}: completed events are counted lost");
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
            if let Some(server) = &status_server {
                server.allow_removal_by(id.uid, id.gid);
            }
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
    let ending = Ending {
        ctl: ctl.clone(),
        give_up: give_up.clone(),
        epoch,
        orphaned: orphaned.clone(),
        report: report.clone(),
    };
    if let Err(e) = started {
        shutdown(
            live,
            session,
            &mut kernel_rules,
            ending,
            &outputs,
            cfg.shutdown_timeout,
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
            let (sinks, latency, encode_failed) = {
                let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                (
                    r.sinks.clone(),
                    std::mem::take(&mut r.latency),
                    r.encode_failures.events(),
                )
            };
            let outputs = metrics::accounting_by_output(&sinks);
            let engine = live.stats();
            let rule_changes = engine.rule_changes;
            if Instant::now() >= next_stats_log {
                next_stats_log = Instant::now() + STATS_LOG_EVERY;
                log::info!("stats: {}", engine.summary());
                for (name, a, n) in metrics::accounting_by_output(&sinks) {
                    log::info!("stats: {}", metrics::accounting_line(name, &a, n));
                }
            }
            if let Some(server) = &status_server {
                server.publish(&snapshot(
                    started_at,
                    &engine,
                    &live.receiver_stats(),
                    &sinks,
                    &outputs,
                    kernel_status.as_ref(),
                    &kernel_rules,
                ));
            }
            let sample = Sample {
                engine,
                receiver: Some(live.receiver_stats()),
                sinks: &sinks,
                kernel: kernel_status,
                pid_stolen: poller.pid_stolen,
                rules_drift: kernel_rules.drifts,
                encode_failed,
                not_handed: orphaned.load(Relaxed),
            };
            let (c, g) = metrics::names(&sample);
            reporter.report(&c, &g);
            let mut t = metrics::timings(&sinks);
            t.extend(latency.into_iter().map(|d| ("latency", d)));
            if let Some(p) = &prometheus {
                p.publish(metrics::families(&sample));
                metrics::observe(&p.metrics, &t);
            }
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
                // A reassembler that has not turned for as long as systemd's own limit
                // (`WatchdogSec`, twice this interval) is stuck too, if stalls count at all.
                let limit = stall_limit.map(|l| l.min(every * 2));
                if supervise(&live, &writer, &report, &orphaned, limit).is_none() {
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
                    &ctl,
                    &mut outputs,
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
                // Never waits: the writer applies it before its next batch.
                log::info!("SIGUSR1: outputs reopen before their next batch");
                let _ = ctl.send(Control::Reopen);
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
        ending,
        &outputs,
        running.shutdown_timeout,
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

/// The output sets the daemon can reach without the writer: the running one and those a
/// reload retired (still delivering what they hold).
struct Outputs {
    current: OutputsHandle,
    /// With when each stops mattering (its retirement is over by then).
    retired: Vec<(Instant, OutputsHandle)>,
}

/// What shutdown needs from the start-up.
struct Ending {
    ctl: ControlSender,
    /// The engine's bound on waiting for the writer (see `emit`).
    give_up: Arc<AtomicU64>,
    epoch: Instant,
    orphaned: Arc<AtomicU64>,
    report: Arc<Mutex<WriterReport>>,
}

/// SIGHUP: re-read the config; apply rules, filters and outputs. A bad config is logged and
/// the running one kept. Events in flight are untouched: new filters apply to events that
/// complete from now on; outputs are rebuilt only when their settings changed: the new set
/// is started here first (an output never fails to start because its destination is down),
/// and only once it runs does the writer switch to it, between two batches, and retire the old
/// one (a spooled output hands its spool to its successor). A new set that cannot start
/// leaves the old one running: never an empty set. Never waits for the writer.
#[allow(clippy::too_many_arguments)]
fn reload(
    path: &Path,
    live: &Live,
    ctl: &ControlSender,
    outputs: &mut Outputs,
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
        let mut kept_outputs = false;
        if cfg.output == running.output && cfg.shutdown_timeout == running.shutdown_timeout {
            log::info!("outputs unchanged; kept running");
        } else {
            match wiring::outputs(&cfg, role) {
                Ok(new) => {
                    let new = Fanout::new(new);
                    let handle = new.handle();
                    if ctl.send(Control::Replace(new)) {
                        let old = std::mem::replace(&mut outputs.current, handle);
                        // The writer may be waiting in a `block` output's offer: the old set's
                        // deadline reaches it without the writer, so the switch happens by
                        // then at the latest.
                        let by = Instant::now() + running.shutdown_timeout;
                        old.release_blocking(Deadline::At(by));
                        let now = Instant::now();
                        outputs.retired.retain(|(until, _)| *until > now);
                        // The writer may reach the switch only at `by`, and then gives the
                        // old set up to the new `shutdown_timeout`.
                        let over = by + cfg.shutdown_timeout + STUCK_GRACE + SHUTDOWN_MARGIN;
                        outputs.retired.push((over, old));
                        log::info!("outputs rebuilt: {}", cfg.output.enabled_names().join(", "));
                    }
                }
                Err(e) => {
                    kept_outputs = true;
                    log::error!(
                        "RELOAD: THE NEW OUTPUTS CANNOT START ({e:#}); the running outputs ({}) are kept and receive every event; fix the `output` section and reload again",
                        running.output.enabled_names().join(", ")
                    );
                }
            }
        }
        // What is now in force: the applied sections are new, the rest as at start.
        let (output, shutdown_timeout) = if kept_outputs {
            (running.output.clone(), running.shutdown_timeout)
        } else {
            (cfg.output, cfg.shutdown_timeout)
        };
        *running = Config {
            output,
            shutdown_timeout,
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

/// SIGTERM (or a failure): rules out, pid released, then every output gets its deadline
/// (`timeout` from now) before the engine drains, so nothing waits past it: the whole of
/// this ends within `timeout` + [`STUCK_GRACE`] + [`SHUTDOWN_MARGIN`] under every policy.
#[allow(clippy::too_many_arguments)]
fn shutdown(
    live: Live,
    session: Option<AuditSession>,
    loader: &mut rules::KernelRules,
    ending: Ending,
    outputs: &Outputs,
    timeout: Duration,
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
    let _ = ending.ctl.send(Control::Stop(deadline));
    let bound = deadline + STUCK_GRACE + SHUTDOWN_MARGIN;
    ending.give_up.store(
        (deadline + STUCK_GRACE)
            .saturating_duration_since(ending.epoch)
            .as_millis()
            .max(1) as u64,
        Relaxed,
    );
    let (stats, recv, finished) = live.shutdown_by(bound);
    if !finished {
        log::error!(
            "the engine did not finish draining by the shutdown bound ({timeout:?} + {:?}); exiting without it",
            STUCK_GRACE + SHUTDOWN_MARGIN
        );
    }
    while !writer.is_finished() && Instant::now() < bound {
        std::thread::sleep(Duration::from_millis(10));
    }
    let orphaned = ending.orphaned.load(Relaxed);
    if orphaned > 0 {
        log::error!("{orphaned} completed event(s) never reached the writer: counted lost");
    }
    let sinks = if writer.is_finished() {
        writer.join().unwrap_or_else(|_| {
            log::error!("the writer thread panicked");
            ending
                .report
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sinks
                .clone()
        })
    } else {
        log::error!("the writer did not finish by the shutdown bound; exiting without it");
        ending
            .report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sinks
            .clone()
    };
    let encode_failed = ending
        .report
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .encode_failures
        .events();
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
        rules_drift: loader.drifts,
        encode_failed,
        not_handed: orphaned,
    });
    reporter.report(&c, &g);
    reporter.timings(&metrics::timings(&sinks));
}
