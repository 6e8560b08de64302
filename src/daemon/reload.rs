//! SIGHUP: re-read the config and apply what a reload can apply (rules, filters, outputs),
//! saying which changed sections wait for a restart. It must never leave the daemon with no
//! outputs, never wait for the writer, and never apply anything of a config that does not
//! load and validate.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use pauditd_config::Config;
use pauditd_sinks::fanout::Fanout;
use pauditd_sinks::output::Deadline;
use pauditd_sinks::writer::STUCK_GRACE;

use super::pipeline::Pipeline;
use super::{rules, SHUTDOWN_MARGIN};
use crate::wiring;

/// SIGHUP: re-read the config; apply rules, filters and outputs. A bad config is logged and
/// the running one kept. Events in flight are untouched: new filters apply to events that
/// complete from now on; outputs are rebuilt only when their settings changed: the new set
/// is started here first (an output never fails to start because its destination is down),
/// and only once it runs does the writer switch to it, between two batches, and retire the old
/// one (a spooled output hands its spool to its successor). A new set that cannot start
/// leaves the old one running: never an empty set. Never waits for the writer.
pub(super) fn reload(
    path: &Path,
    pipeline: &mut Pipeline,
    unicast: bool,
    running: &mut Config,
    role: wiring::Role,
) {
    let Pipeline {
        live,
        writer,
        outputs,
        kernel_rules: loader,
        ..
    } = pipeline;
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
            let applied = loader.apply(rules::rule_sources(&cfg)?)?;
            rules::log_applied(&applied);
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
                    if writer.replace(new) {
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
