//! End-to-end tests against the real kernel: the built daemon becomes the audit daemon, loads
//! rules with auditctl, and we run commands and read the events it writes.
//!
//! They need root and auditctl. Outside CI they skip (saying so) when either is missing; with
//! `CI=true` a missing prerequisite fails. Only one process can be the audit daemon, so the
//! tests take a lock and run one at a time; a guard deletes rules, restores `enabled` and
//! checks the audit pid is released, also when a test fails.

mod auditctl_parity;
mod delivery;
mod enrichment;
mod events;
mod hardening;
mod harness;
mod kafka;
mod metrics;
mod operations;
mod outages;
mod privileges;
mod reload;
mod rules;

#[path = "../../sinks/tests/support/httpd.rs"]
mod httpd;
#[path = "../../sinks/tests/support/kafka.rs"]
mod kafka_broker;
