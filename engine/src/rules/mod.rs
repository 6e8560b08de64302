//! The kernel's audit rules as the daemon owns them: read, planned, applied, watched.
//!
//! Owns the rule lines (the YAML `rules:` list, then `rules_files` in sorted order, as
//! augenrules concatenates `rules.d`; a file another user could rewrite is refused, as
//! `auditctl -R` refuses it: [`unsafe_rules_file`]), their plan (the rule list the kernel must end up with,
//! simulated line by line as `auditctl -R` would apply it: `-D`, `-a`, `-A`, `-W`, `-c`),
//! and the two ways to get there: natively ([`plan_changes`]: add what is new, delete what
//! went, never flush, so an unchanged rule is never out of force) or through `auditctl`
//! (pauditd's way: flush, then one run per line, never through a shell). [`KernelRules`]
//! remembers what it put in force, so a failed change puts the previous set back and a
//! listing that differs is drift; [`DriftGuard`] says when to compare (every interval, and at
//! once after a rule-change record) and puts the rules back or only reports, as configured.
//! Time is an input (`now`), so its tests never sleep. It must never load rules on its own
//! initiative beyond that: start, reload and shutdown are the daemon's calls.
//!
//! One module each: the auditctl language itself, one line to `struct audit_rule_data` and
//! back ([`language`]: parse, encode, render); where the lines come from (`source`); the
//! plan (`plan`, pure); applying it to the kernel (`kernel`, natively over netlink, or through
//! `auditctl`); the drift guard (`drift`). Only `kernel` talks to the kernel and only
//! `auditctl` runs a program (`tests/layering.rs` checks which engine modules each uses).

mod auditctl;
mod drift;
mod kernel;
pub mod language;
mod plan;
mod source;
#[cfg(test)]
mod tests;

pub use auditctl::find_auditctl;
pub use drift::{drift, Drift, DriftGuard, DriftPolicy};
pub use kernel::{decide, Applied, Decision, KernelRules, RuleLoader};
pub use plan::{plan, plan_changes, Changes, Plan, Planned, Step};
pub use source::{sources, unsafe_rules_file, RuleSource};

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("cannot run {path}: {error} (is the auditd package installed?)")]
    Spawn { path: String, error: std::io::Error },
    #[error("Failed to flush existing audit rules: {0}")]
    Flush(String),
    #[error("failed to add {origin}: {message}")]
    Rule { origin: String, message: String },
    #[error("No audit rules found")]
    Empty,
    #[error("rules_files {pattern:?}: {message}")]
    File { pattern: String, message: String },
    #[error("refusing rules file(s) another user could rewrite (as auditctl -R does): {}", .0.join("; "))]
    Unsafe(Vec<String>),
    #[error("{} rule line(s) are invalid: {}", .0.len(), .0.join("; "))]
    Invalid(Vec<String>),
    #[error("cannot list the kernel's audit rules: {0}")]
    List(std::io::Error),
}
