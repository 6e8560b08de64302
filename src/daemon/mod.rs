//! The live daemon's lifecycle: start-up order, signals, keepalive, shutdown.
//!
//! Owns process concerns only (what happens on SIGTERM, SIGHUP, SIGUSR1, every 5 s); the
//! threads, protocol and rules live in the engine, outputs and the hand-over to them in the
//! sinks (`pauditd_sinks::writer::Writer`). Start-up order: outputs first (a bad output fails
//! before the kernel is touched), then become the audit daemon, then load rules (so their
//! CONFIG_CHANGE records reach us). Shutdown: delete the rules we loaded, release the audit
//! pid (and restore `enabled` if we changed it), drain, complete and write every event already
//! received, then exit 0. It must never parse records, encode events or decide an output's
//! policy.
//!
//! [`Daemon`] is the main loop's state: [`Daemon::start`], [`Daemon::tick`] (timers),
//! [`Daemon::signal`], [`Daemon::shutdown`]; [`run`] drives it. One module each: the running
//! pipeline and its shutdown (`pipeline`), the per-second report and supervision (`report`),
//! SIGHUP (`reload`), the rules as the daemon asks for them (`rules`).

mod pipeline;
mod reload;
mod report;
mod rules;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pauditd_config::{Config, NetlinkMode};
use pauditd_engine::live::{IoUringMode, Live, LiveConfig};
use pauditd_engine::netlink::{AuditSocket, AuditStatus, Mode};
use pauditd_engine::privileges;
use pauditd_engine::rules::{DriftGuard, KernelRules, RuleLoader};
use pauditd_engine::session::{self, AuditSession, StatusPoller};
use pauditd_sinks::fanout::Fanout;
use pauditd_sinks::metrics::Reporter;
use pauditd_sinks::prometheus::PrometheusExporter;
use pauditd_sinks::writer::{CloseBudget, Writer};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

use crate::notify::Notifier;
use crate::status::StatusServer;
use crate::wiring;
use pipeline::{Outputs, Pipeline};

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

/// Start the daemon, run its main loop until SIGTERM/SIGINT or a failure, shut it down.
pub fn run(config_path: &Path, cfg: Config) -> Result<ExitCode> {
    let mut daemon = Daemon::start(config_path, cfg)?;
    let failure = loop {
        if let Some(why) = daemon.tick() {
            break Some(why);
        }
        match daemon
            .signals
            .recv_timeout(daemon.next_wake().saturating_duration_since(Instant::now()))
        {
            Ok(sig) => {
                if daemon.signal(sig) {
                    break None;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break None,
        }
    };
    daemon.shutdown(failure)
}

/// The running daemon: the pipeline, and the main loop's own state (timers, signals, the
/// service manager, the status socket, the config in force).
pub struct Daemon {
    config_path: PathBuf,
    /// The config in force (the sections a reload applied are new, the rest as at start).
    running: Config,
    role: wiring::Role,
    unicast: bool,
    pipeline: Pipeline,
    prometheus: Option<PrometheusExporter>,
    status_server: Option<StatusServer>,
    started_at: Instant,
    signals: mpsc::Receiver<i32>,
    signals_handle: signal_hook::iterator::Handle,
    notifier: Notifier,
    next_watchdog: Option<Instant>,
    /// With a `block` output a stalled pipeline is what the operator chose, not a fault.
    stall_limit: Option<Duration>,
    drift_guard: Option<DriftGuard>,
    next_tick: Instant,
    next_metrics: Instant,
    next_stats_log: Instant,
    kernel_status: Option<AuditStatus>,
}

impl Daemon {
    /// Everything up to "ready": outputs and the writer, the engine's threads, the status
    /// socket and signal handlers, then (unicast) the audit pid and the rules, then the
    /// privilege drop. A failure after the engine started shuts down what started.
    pub fn start(config_path: &Path, cfg: Config) -> Result<Daemon> {
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
        let reporter = Reporter::new(
            cfg.metrics.enabled,
            &cfg.metrics.address,
            &pauditd_sinks::short_hostname(),
            cfg.metrics.sample_rate,
        )?;

        let prometheus = start_prometheus(&cfg)?;
        let poller = StatusPoller::new()
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
        let mut kernel_rules = KernelRules::new(if cfg.rule_policy.native {
            RuleLoader::Native
        } else {
            RuleLoader::Auditctl(pauditd_engine::rules::find_auditctl())
        })
        .context("cannot open an audit netlink socket for rules")?;

        let socket = open_socket(&cfg, mode)?;

        let outputs = Outputs {
            current: fanout.handle(),
            retired: Vec::new(),
        };
        let (writer, emit) = Writer::start(
            fanout,
            WRITER_QUEUE,
            CloseBudget {
                timeout: cfg.shutdown_timeout,
            },
        )
        .context("starting the writer thread")?;
        let live = Live::start(socket, live_config(&cfg, mode), processor, move |events| {
            emit.emit(events)
        })
        .context("starting the engine threads")?;

        // Bound before the privilege drop: the socket's directory is root's.
        let started_at = Instant::now();
        let status_server = start_status_server(&cfg);

        // Before the privilege drop, so this thread too ends up with no capabilities; signals
        // that arrive during start-up wait in the channel.
        let (sig_rx, signals_handle) = install_signals()?;

        // From here on, every way out goes through `Pipeline::shutdown`; the session's guard
        // releases the pid even on a path that does not.
        let mut session: Option<AuditSession> = None;
        let started = (|| -> Result<()> {
            if unicast {
                session = Some(AuditSession::claim(&live, &initial, ACK_TIMEOUT)?);
                log::info!("pauditd (pid {ours}) is the audit daemon");
                let applied = kernel_rules.apply(rules::rule_sources(&cfg)?)?;
                rules::log_applied(&applied);
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
        let pipeline = Pipeline {
            live,
            session,
            kernel_rules,
            writer,
            outputs,
            poller,
            reporter,
        };
        if let Err(e) = started {
            pipeline.shutdown(cfg.shutdown_timeout);
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
        let next_watchdog = notifier.watchdog.map(|_| Instant::now());
        let mut daemon = Daemon {
            config_path: config_path.to_path_buf(),
            stall_limit: (!blocks(&cfg)).then_some(STALL_LIMIT),
            drift_guard: rules::drift_guard_of(&cfg, unicast),
            running: cfg,
            role,
            unicast,
            pipeline,
            prometheus,
            status_server,
            started_at,
            signals: sig_rx,
            signals_handle,
            notifier,
            next_watchdog,
            next_tick: Instant::now() + KEEPALIVE,
            next_metrics: Instant::now() + METRICS_EVERY,
            next_stats_log: Instant::now() + STATS_LOG_EVERY,
            kernel_status: None,
        };
        daemon.kernel_status = daemon.pipeline.poller.status().ok();
        Ok(daemon)
    }

    /// When the next timer is due.
    pub fn next_wake(&self) -> Instant {
        self.next_tick
            .min(self.next_metrics)
            .min(self.next_watchdog.unwrap_or(self.next_metrics))
    }

    /// The timers that are due: keepalive (every [`KEEPALIVE`]), the report and supervision
    /// (every [`METRICS_EVERY`]), the watchdog. `Some(why)` when the pipeline can no longer be
    /// trusted to drain the socket: the caller shuts down.
    pub fn tick(&mut self) -> Option<String> {
        if Instant::now() >= self.next_tick {
            self.next_tick = Instant::now() + KEEPALIVE;
            self.kernel_status = self.pipeline.keepalive().or(self.kernel_status);
        }
        if Instant::now() >= self.next_metrics {
            self.next_metrics = Instant::now() + METRICS_EVERY;
            if let Some(why) = self.report() {
                return Some(why);
            }
        }
        if let (Some(at), Some(every)) = (self.next_watchdog, self.notifier.watchdog) {
            if Instant::now() >= at {
                // Fed only while the pipeline drains: a stuck one gets restarted by systemd.
                // A reassembler that has not turned for as long as systemd's own limit
                // (`WatchdogSec`, twice this interval) is stuck too, if stalls count at all.
                let limit = self.stall_limit.map(|l| l.min(every * 2));
                if self.pipeline.failure(limit).is_none() {
                    self.notifier.watchdog();
                }
                self.next_watchdog = Some(Instant::now() + every);
            }
        }
        None
    }

    /// Act on a signal; true when it asks the daemon to stop (SIGTERM, SIGINT).
    pub fn signal(&mut self, sig: i32) -> bool {
        match sig {
            SIGTERM | SIGINT => {
                log::info!("Shutting down: draining events already received");
                return true;
            }
            SIGHUP => {
                self.notifier.reloading();
                reload::reload(
                    &self.config_path,
                    &mut self.pipeline,
                    self.unicast,
                    &mut self.running,
                    self.role,
                );
                self.drift_guard = rules::drift_guard_of(&self.running, self.unicast);
                // An output that now blocks (or no longer does) changes what a stall means.
                self.stall_limit = (!blocks(&self.running)).then_some(STALL_LIMIT);
                self.notifier.ready("reloaded");
            }
            SIGUSR1 => {
                // Never waits: the writer applies it before its next batch.
                log::info!("SIGUSR1: outputs reopen before their next batch");
                self.pipeline.writer.reopen();
            }
            _ => {}
        }
        false
    }

    /// Stop everything (see [`Pipeline::shutdown`]); the exit code, or the failure that
    /// stopped the daemon as an error.
    pub fn shutdown(self, failure: Option<String>) -> Result<ExitCode> {
        self.signals_handle.close();
        let mut notifier = self.notifier;
        notifier.stopping();
        if let Some(why) = &failure {
            log::error!(
                "{why}: releasing the audit pid and exiting (the service manager restarts us)"
            );
        }
        self.pipeline.shutdown(self.running.shutdown_timeout);
        match failure {
            Some(why) => bail!("{why}"),
            None => Ok(ExitCode::SUCCESS),
        }
    }
}

/// Whether an enabled output waits when full (`overflow: block`).
fn blocks(cfg: &Config) -> bool {
    cfg.output
        .enabled()
        .any(|(_, d)| d.overflow == pauditd_config::Overflow::Block)
}

/// The Prometheus scrape server, if configured (said loudly when others can reach it).
fn start_prometheus(cfg: &Config) -> Result<Option<PrometheusExporter>> {
    Ok(match &cfg.metrics.prometheus {
        Some(addr) => {
            let p = PrometheusExporter::start(addr)?;
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
    })
}

/// The audit socket events arrive on, with the receive buffer asked for (or as it is).
fn open_socket(cfg: &Config, mode: Mode) -> Result<AuditSocket> {
    let socket = AuditSocket::open(mode).context("cannot open the audit netlink socket")?;
    if let Some(bytes) = cfg.receive_buffer {
        match socket.set_receive_buffer(bytes) {
            Ok(eff) => log::info!("Socket receive buffer size: {eff} (asked {bytes})"),
            Err(e) => log::error!("Failed to set receive buffer size to {bytes}: {e}"),
        }
    } else if let Ok(eff) = socket.receive_buffer() {
        log::info!("Socket receive buffer size: {eff}");
    }
    Ok(socket)
}

/// How the engine's threads run: the receiver's core (the last one unless configured; a
/// negative core: not pinned), the ring, the batch, the latency budget, io_uring.
fn live_config(cfg: &Config, mode: Mode) -> LiveConfig {
    let receiver_core = match cfg.engine.receiver_core {
        Some(c) if c < 0 => None,
        Some(c) => Some(c as usize),
        None => core_affinity::get_core_ids().and_then(|ids| ids.last().map(|c| c.id)),
    };
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
    }
}

/// The status socket `pauditd status` asks, if configured; one that cannot be bound is
/// logged, not fatal.
fn start_status_server(cfg: &Config) -> Option<StatusServer> {
    if cfg.status_socket.is_empty() {
        None
    } else {
        match StatusServer::start(Path::new(&cfg.status_socket)) {
            Ok(s) => Some(s),
            Err(e) => {
                log::error!("status socket: {e:#}; `pauditd status` will not answer");
                None
            }
        }
    }
}

/// SIGTERM, SIGINT, SIGHUP and SIGUSR1 into a channel the main loop reads.
fn install_signals() -> Result<(mpsc::Receiver<i32>, signal_hook::iterator::Handle)> {
    let (sig_tx, sig_rx) = mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
        .context("installing signal handlers")?;
    let signals_handle = signals.handle();
    std::thread::spawn(move || {
        for s in signals.forever() {
            if sig_tx.send(s).is_err() {
                break;
            }
        }
    });
    Ok((sig_rx, signals_handle))
}
