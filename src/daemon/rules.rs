//! The rules as the daemon asks for them: the lines of a config (plus our own exclusion),
//! the drift guard a config asks for, and how an apply is logged. It must never talk to the
//! kernel itself: `KernelRules` does.

use std::time::Instant;

use anyhow::Result;
use pauditd_config::Config;
use pauditd_engine::rules;

/// The rule lines of a config: `rules:`, then `rules_files`, then our own exclusion.
pub(super) fn rule_sources(cfg: &Config) -> Result<Vec<rules::RuleSource>> {
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

pub(super) fn log_applied(a: &rules::Applied) {
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
pub(super) fn drift_guard_of(cfg: &Config, unicast: bool) -> Option<rules::DriftGuard> {
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
