//! Drift: how the kernel's rules differ from ours ([`drift`], [`Drift`]), and the guard that
//! says when to compare (every interval, and at once after a rule-change record) and whether
//! to put our rules back or only report ([`DriftGuard`]). Time is an input (`now`), so its
//! tests never sleep. It must never change the kernel's rules except through
//! [`KernelRules::restore`], and only under [`DriftPolicy::Reapply`].

use super::language::{self, RuleData};
use super::KernelRules;
use rustc_hash::FxHashSet;
use std::time::Duration;

/// How `kernel` differs from `ours` (as `auditctl -l` prints the rules), or `None` when it
/// holds exactly them in the same order. Linear.
pub fn drift(ours: &[RuleData], kernel: &[RuleData]) -> Option<Drift> {
    if ours == kernel {
        return None;
    }
    let in_kernel: FxHashSet<&RuleData> = kernel.iter().collect();
    let in_ours: FxHashSet<&RuleData> = ours.iter().collect();
    Some(Drift {
        missing: ours
            .iter()
            .filter(|r| !in_kernel.contains(r))
            .map(language::render)
            .collect(),
        extra: kernel
            .iter()
            .filter(|r| !in_ours.contains(r))
            .map(language::render)
            .collect(),
    })
}

/// How the kernel's rules differ from what we put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// Ours, no longer in the kernel (as `auditctl -l` prints them).
    pub missing: Vec<String>,
    /// In the kernel, not ours.
    pub extra: Vec<String>,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rule(s) missing, {} unexpected",
            self.missing.len(),
            self.extra.len()
        )?;
        for r in &self.missing {
            write!(f, "; missing: {r}")?;
        }
        for r in &self.extra {
            write!(f, "; unexpected: {r}")?;
        }
        Ok(())
    }
}

/// What the drift guard does on a difference (`rules_drift`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftPolicy {
    /// Log it, count it, put our rules back.
    Reapply,
    /// Log it and count it.
    Log,
}

/// When to compare the kernel's rules with ours, and what came of it.
#[derive(Debug)]
pub struct DriftGuard {
    pub policy: DriftPolicy,
    pub interval: Duration,
    next: std::time::Instant,
    /// The rule-change record count at the last check.
    seen_changes: u64,
}

impl DriftGuard {
    pub fn new(policy: DriftPolicy, interval: Duration, now: std::time::Instant) -> DriftGuard {
        DriftGuard {
            policy,
            interval,
            next: now + interval,
            seen_changes: 0,
        }
    }

    /// Whether to check now: the interval has passed, or rule-change records (`CONFIG_CHANGE`
    /// add/remove, counted by the engine) arrived since the last check.
    pub fn due(&self, now: std::time::Instant, rule_changes: u64) -> bool {
        now >= self.next || rule_changes != self.seen_changes
    }

    pub fn next_deadline(&self) -> std::time::Instant {
        self.next
    }

    /// Compare, log and count a difference, and put our rules back if the policy says so.
    pub fn check(
        &mut self,
        rules: &mut KernelRules,
        now: std::time::Instant,
        rule_changes: u64,
    ) -> Option<Drift> {
        self.next = now + self.interval;
        self.seen_changes = rule_changes;
        let drift = match rules.check() {
            Ok(d) => d?,
            Err(e) => {
                log::error!("rules drift check: {e}");
                return None;
            }
        };
        rules.drifts += 1;
        rules.last_drift = Some(std::time::SystemTime::now());
        match self.policy {
            DriftPolicy::Log => {
                log::warn!("the kernel's audit rules differ from ours: {drift} (rules_drift: log)")
            }
            DriftPolicy::Reapply => match rules.restore() {
                Ok(()) => log::warn!(
                    "the kernel's audit rules differ from ours: {drift}; our {} rule(s) re-applied",
                    rules.in_force()
                ),
                Err(e) => log::error!(
                    "the kernel's audit rules differ from ours: {drift}; re-applying failed: {e}"
                ),
            },
        }
        Some(drift)
    }
}
