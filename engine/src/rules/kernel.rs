//! The daemon's rules in the kernel ([`KernelRules`]): apply a plan over our own netlink
//! socket (add what is new, delete what went, never flush, so an unchanged rule is never out
//! of force) or through `auditctl`, remember what was put in force, put the previous set back
//! when a change fails, list and compare for the drift guard, remove them at exit. It must
//! never decide on its own when to apply: start, reload, drift and shutdown are the daemon's
//! calls; what a locked kernel (`-e 2`) allows is [`decide`]'s, pure.

use super::auditctl::{auditctl_load, run};
use super::language::{self, RuleData};
use super::{drift, plan, plan_changes, Drift, Plan, RuleError, RuleSource, Step};
use crate::netlink::{AuditSocket, AuditStatus, Mode, AUDIT_ADD_RULE, AUDIT_DEL_RULE};
use rustc_hash::FxHashSet;
use std::path::PathBuf;
use std::time::Duration;

/// The kernel's answer to a rule, in words.
fn explain(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EEXIST) => "the kernel already has this rule (duplicate)".into(),
        Some(libc::EINVAL) => {
            "the kernel refused it (EINVAL: a field or syscall it does not know for this arch)"
                .into()
        }
        Some(libc::ENOENT) => "a path it names (exe=, dir=) does not exist (ENOENT)".into(),
        Some(libc::EPERM) => {
            "not permitted (EPERM): the rules are locked (`-e 2` was set) or CAP_AUDIT_CONTROL is missing".into()
        }
        _ => e.to_string(),
    }
}

const ACK: Duration = Duration::from_secs(3);

/// How rules reach the kernel (`rules_loader`).
pub enum RuleLoader {
    /// Our own encoding over netlink ([`super::language`]).
    Native,
    /// One `auditctl` run per line (pauditd's way; needs the auditd package).
    Auditctl(PathBuf),
}

/// What [`KernelRules::apply`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Rules the kernel holds now.
    pub in_force: usize,
    pub added: usize,
    pub removed: usize,
    pub readded: usize,
    /// Lines left out after `-c`/`-i` (they do not parse here, or the kernel refused
    /// them): `origin: text: reason`.
    pub skipped: Vec<String>,
    pub unchanged: bool,
    /// The kernel's rules are locked (`-e 2`): nothing was applied.
    pub locked: bool,
}

/// What the daemon may do with the kernel's rules, decided from the kernel's status (read
/// at start and at each reload) and the plan. Pure, so the locked case is tested without
/// locking the machine (`-e 2` lasts until reboot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `enabled 2`: the kernel refuses every rule and setting change until reboot. Nothing
    /// is applied, nothing deleted at exit; the kernel's list is compared with the config's.
    pub locked: bool,
    /// Send the settings (`-b`, `-f`, `-r`, `--backlog_wait_time`).
    pub settings: bool,
    /// Change the rule list to the plan's.
    pub rules: bool,
    /// The `-e` value to set after the rules.
    pub enable: Option<u32>,
    /// Set `--loginuid-immutable`.
    pub loginuid_immutable: bool,
}

/// See [`Decision`].
pub fn decide(status: &AuditStatus, plan: &Plan) -> Decision {
    if status.enabled == 2 {
        return Decision {
            locked: true,
            settings: false,
            rules: false,
            enable: None,
            loginuid_immutable: false,
        };
    }
    Decision {
        locked: false,
        settings: true,
        rules: true,
        enable: plan.enable.as_ref().map(|(_, v)| *v),
        loginuid_immutable: plan.loginuid_immutable.is_some(),
    }
}

/// Deletions from this many on run with RCU grace periods expedited (see [`Expedited`]).
const EXPEDITE_FROM: usize = 8;

/// While alive, `/sys/kernel/rcu_expedited` is 1 (it was 0 and goes back to 0 on drop).
/// The kernel waits one RCU grace period (`synchronize_rcu`, ~15 ms) in every
/// `AUDIT_DEL_RULE`, under the audit control lock: 2,000 deletions took 27 s (as long for
/// `auditctl -D`). Expedited, a grace period takes microseconds: 0.2 s for 2,000.
struct Expedited<'a>(&'a std::fs::File);

impl Drop for Expedited<'_> {
    fn drop(&mut self) {
        use std::os::unix::fs::FileExt;
        if let Err(e) = self.0.write_at(b"0", 0) {
            log::error!("could not set /sys/kernel/rcu_expedited back to 0: {e}");
        }
    }
}

/// The daemon's rules in the kernel: what it put in force, and the socket to check.
pub struct KernelRules {
    loader: RuleLoader,
    /// Our own socket, so the kernel's answers come back here and not through the receiver.
    socket: AuditSocket,
    /// The lines in force, and the kernel's listing right after they were applied: the
    /// reference for drift and for a rollback.
    sources: Vec<RuleSource>,
    in_force: Vec<RuleData>,
    /// Differences the drift guard found (`rules.drift`), and when the last was.
    pub drifts: u64,
    pub last_drift: Option<std::time::SystemTime>,
    /// Set when the kernel's rules were found locked (`-e 2`): how they differ from the
    /// config's (`None`: they are the same).
    locked: Option<Option<Drift>>,
    /// `/sys/kernel/rcu_expedited`, opened at start (as root) for bulk deletions.
    rcu_expedited: Option<std::fs::File>,
}

impl KernelRules {
    pub fn new(loader: RuleLoader) -> std::io::Result<KernelRules> {
        Ok(KernelRules {
            loader,
            socket: AuditSocket::open(Mode::Unicast)?,
            sources: Vec::new(),
            in_force: Vec::new(),
            drifts: 0,
            last_drift: None,
            locked: None,
            rcu_expedited: std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/sys/kernel/rcu_expedited")
                .ok(),
        })
    }

    /// The kernel's rules now, as it lists them.
    pub fn list(&self) -> Result<Vec<RuleData>, RuleError> {
        let raw = self.socket.list_rules(ACK).map_err(RuleError::List)?;
        Ok(raw.iter().filter_map(|b| RuleData::from_bytes(b)).collect())
    }

    pub fn in_force(&self) -> usize {
        self.in_force.len()
    }

    /// `Some` when the kernel's rules were locked (`-e 2`) at the last apply: how they differ
    /// from the config's (`None` inside: not at all).
    pub fn locked(&self) -> Option<&Option<Drift>> {
        self.locked.as_ref()
    }

    /// The kernel's status, as the rules see it. `PAUDITD_TEST_ASSUME_LOCKED=1` makes it say
    /// `enabled 2`: the kernel tests of the locked path cannot lock the machine (that lasts
    /// until reboot).
    fn kernel_status(&self) -> Result<AuditStatus, RuleError> {
        let mut st = self.socket.get_status(ACK).map_err(RuleError::List)?;
        if std::env::var_os("PAUDITD_TEST_ASSUME_LOCKED").is_some_and(|v| v == "1") {
            st.enabled = 2;
        }
        Ok(st)
    }

    /// Expedite RCU grace periods while `deletions` rules are deleted, when that is many
    /// and the knob can be turned (see [`Expedited`]).
    fn expedite(&self, deletions: usize) -> Option<Expedited<'_>> {
        use std::os::unix::fs::FileExt;
        if deletions < EXPEDITE_FROM {
            return None;
        }
        let f = self.rcu_expedited.as_ref()?;
        let mut b = [0u8; 8];
        let n = f.read_at(&mut b, 0).ok()?;
        if b[..n].trim_ascii() != b"0" {
            return None;
        }
        f.write_at(b"1", 0).ok()?;
        Some(Expedited(f))
    }

    /// Make the kernel hold what `sources` ask for. Natively: only the difference is
    /// changed; through auditctl: flush and load (skipped when the lines are unchanged). On
    /// failure the previous rules are put back and the error says whether that worked. On a
    /// locked kernel (`-e 2`) nothing is changed: its rules are compared with the config's.
    pub fn apply(&mut self, sources: Vec<RuleSource>) -> Result<Applied, RuleError> {
        // auditctl judges its own lines (ours may not parse what it takes): its plan serves
        // only the comparison on a locked kernel.
        let plan = match (&self.loader, plan(&sources)) {
            (RuleLoader::Native, p) => Some(p?),
            (RuleLoader::Auditctl(_), p) => p.ok(),
        };
        let status = self.kernel_status()?;
        let decision = decide(&status, plan.as_ref().unwrap_or(&Plan::default()));
        if decision.locked {
            return self.adopt_locked(sources, plan.as_ref());
        }
        self.locked = None;
        let applied = match &self.loader {
            RuleLoader::Native => {
                let plan = plan.ok_or(RuleError::Empty)?;
                self.apply_native(&plan, &decision)?
            }
            RuleLoader::Auditctl(path) => {
                if sources == self.sources && !self.sources.is_empty() {
                    Applied {
                        unchanged: true,
                        ..Applied::default()
                    }
                } else {
                    match auditctl_load(path, &sources) {
                        Ok((_, skipped)) => Applied {
                            skipped,
                            ..Applied::default()
                        },
                        Err(e) if self.sources.is_empty() => return Err(e),
                        Err(e) => {
                            return match auditctl_load(path, &self.sources) {
                                Ok(_) => Err(rolled_back(e, "the previous rules were restored")),
                                Err(e2) => Err(rolled_back(e, &format!("restoring the previous rules failed too ({e2}): the kernel holds part of a rule set, check `auditctl -l`"))),
                            };
                        }
                    }
                }
            }
        };
        self.in_force = self.list()?;
        self.sources = sources;
        Ok(Applied {
            in_force: self.in_force.len(),
            ..applied
        })
    }

    /// The kernel's rules are locked: take them as they are, say so, and report how they
    /// differ from the config's.
    fn adopt_locked(
        &mut self,
        sources: Vec<RuleSource>,
        plan: Option<&Plan>,
    ) -> Result<Applied, RuleError> {
        let kernel = self.list()?;
        let Some(plan) = plan else {
            log::warn!(
                "the kernel's audit rules are locked (enabled 2, set by `-e 2`, until reboot): none applied, none deleted at exit; {} rule(s) in force as the kernel has them (not compared: the rules do not parse natively)",
                kernel.len()
            );
            self.locked = Some(None);
            self.in_force = kernel;
            self.sources = sources;
            return Ok(Applied {
                in_force: self.in_force.len(),
                unchanged: true,
                locked: true,
                ..Applied::default()
            });
        };
        let desired: Vec<RuleData> = plan.rules.iter().map(|p| p.rule.clone()).collect();
        let diff = drift(&desired, &kernel);
        log::warn!(
            "the kernel's audit rules are locked (enabled 2, set by `-e 2`, until reboot): none applied, none deleted at exit; {} rule(s) in force as the kernel has them",
            kernel.len()
        );
        match &diff {
            Some(d) => {
                log::warn!("the kernel's locked audit rules differ from the config: {d}");
                self.drifts += 1;
                self.last_drift = Some(std::time::SystemTime::now());
            }
            None => log::info!("the kernel's locked audit rules are exactly the config's"),
        }
        self.locked = Some(diff);
        self.in_force = kernel;
        self.sources = sources;
        Ok(Applied {
            in_force: self.in_force.len(),
            unchanged: true,
            skipped: plan.skipped.clone(),
            locked: true,
            ..Applied::default()
        })
    }

    fn apply_native(&mut self, plan: &Plan, decision: &Decision) -> Result<Applied, RuleError> {
        for s in &plan.skipped {
            log::warn!("{s}; skipped (-c/-i)");
        }
        if decision.settings {
            for (origin, mask, value) in &plan.status {
                self.set_status(origin, *mask, *value)?;
            }
        }
        let before = self.list()?;
        let desired: Vec<RuleData> = plan.rules.iter().map(|p| p.rule.clone()).collect();
        let changes = plan_changes(&before, &desired);
        let mut applied = Applied {
            added: changes.added,
            removed: changes.removed,
            readded: changes.readded,
            unchanged: changes.steps.is_empty(),
            skipped: plan.skipped.clone(),
            ..Applied::default()
        };
        let deletions = changes
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Delete(_)))
            .count();
        let fast = self.expedite(deletions);
        for step in &changes.steps {
            let Err((index, e)) = self.step(step, &desired) else {
                continue;
            };
            let p = index.map(|i| &plan.rules[i]);
            if let Some(p) = p.filter(|p| p.tolerant) {
                let why = format!("{}: {}: {}", p.origin, p.text, explain(&e));
                log::warn!("{why}; skipped (-c/-i)");
                applied.skipped.push(why);
                applied.added -= 1;
                continue;
            }
            let err = match p {
                Some(p) => RuleError::Rule {
                    origin: p.origin.clone(),
                    message: format!("{}: {}", p.text, explain(&e)),
                },
                None => RuleError::Rule {
                    origin: "a rule change".into(),
                    message: format!("deleting a rule: {}", explain(&e)),
                },
            };
            return Err(self.roll_back(err, &before));
        }
        drop(fast);
        if let Some((origin, value)) = plan.enable.as_ref().filter(|_| decision.enable.is_some()) {
            if let Err(e) = self.set_status(origin, language::STATUS_ENABLED, *value) {
                return Err(self.roll_back(e, &before));
            }
        }
        if let Some(origin) = plan
            .loginuid_immutable
            .as_ref()
            .filter(|_| decision.loginuid_immutable)
        {
            // AUDIT_FEATURE_LOGINUID_IMMUTABLE is feature 1.
            if let Err(e) = self.socket.set_feature_locked(1 << 1, ACK) {
                let e = RuleError::Rule {
                    origin: origin.clone(),
                    message: format!("--loginuid-immutable: {}", explain(&e)),
                };
                return Err(self.roll_back(e, &before));
            }
        }
        Ok(applied)
    }

    /// One step; on failure the index of the rule it was adding.
    fn step(
        &self,
        step: &Step,
        desired: &[RuleData],
    ) -> Result<(), (Option<usize>, std::io::Error)> {
        match step {
            Step::Add { index, prepend } => {
                let mut r = desired[*index].clone();
                if *prepend {
                    r.flags |= language::FILTER_PREPEND;
                }
                self.socket
                    .change_rule(AUDIT_ADD_RULE, &r.to_bytes(), ACK)
                    .map_err(|e| (Some(*index), e))
            }
            Step::Delete(r) => self
                .socket
                .change_rule(AUDIT_DEL_RULE, &r.to_bytes(), ACK)
                .map_err(|e| (None, e)),
        }
    }

    /// Make the kernel's list `target` (from what it holds now), step by step.
    fn converge(&self, target: &[RuleData], origin: &str) -> Result<(), RuleError> {
        let now = self.list()?;
        let changes = plan_changes(&now, target);
        let deletions = changes
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Delete(_)))
            .count();
        let _fast = self.expedite(deletions);
        for step in &changes.steps {
            self.step(step, target).map_err(|(_, e)| RuleError::Rule {
                origin: origin.into(),
                message: explain(&e),
            })?;
        }
        Ok(())
    }

    /// Put `previous` back after a failed change; the error says whether it worked.
    fn roll_back(&self, err: RuleError, previous: &[RuleData]) -> RuleError {
        match self.converge(previous, "the previous rules") {
            Ok(()) => rolled_back(err, "the previous rules were restored"),
            Err(e2) => rolled_back(
                err,
                &format!("restoring the previous rules failed too ({e2}): the kernel holds part of a rule set, check `auditctl -l`"),
            ),
        }
    }

    fn set_status(&self, origin: &str, mask: u32, value: u32) -> Result<(), RuleError> {
        let mut st = AuditStatus {
            mask,
            ..Default::default()
        };
        match mask {
            language::STATUS_ENABLED => st.enabled = value,
            language::STATUS_FAILURE => st.failure = value,
            language::STATUS_RATE_LIMIT => st.rate_limit = value,
            language::STATUS_BACKLOG_LIMIT => st.backlog_limit = value,
            _ => st.backlog_wait_time = value,
        }
        let fail = |e: std::io::Error| RuleError::Rule {
            origin: origin.to_string(),
            message: explain(&e),
        };
        let seq = self.socket.set_status(st).map_err(fail)?;
        self.socket.wait_ack(seq, ACK).map_err(fail)
    }

    /// Compare the kernel's rules with what we put in force.
    pub fn check(&self) -> Result<Option<Drift>, RuleError> {
        Ok(drift(&self.in_force, &self.list()?))
    }

    /// Put our rules back as they were applied (after drift). Nothing on a locked kernel.
    pub fn restore(&mut self) -> Result<(), RuleError> {
        if self.locked.is_some() {
            return Ok(());
        }
        match &self.loader {
            RuleLoader::Native => self.converge(&self.in_force, "the rules in force")?,
            RuleLoader::Auditctl(path) => {
                auditctl_load(path, &self.sources)?;
            }
        }
        self.in_force = self.list()?;
        Ok(())
    }

    /// Delete the rules we put in force (at shutdown: auditing with no daemon only costs the
    /// host); rules another process added since are left. Natively: one listing, then the
    /// deletions packed many to a netlink message, with RCU grace periods expedited (see
    /// [`Expedited`]). Nothing on a locked kernel. Returns how many went.
    pub fn remove_all(&mut self) -> Result<usize, RuleError> {
        if self.locked.is_some() {
            log::info!("the kernel's audit rules are locked (`-e 2`): left as they are");
            return Ok(0);
        }
        let removed = match &self.loader {
            RuleLoader::Auditctl(path) => {
                let _fast = self.expedite(self.in_force.len());
                run(path, &["-D"])?.map_err(RuleError::Flush)?;
                self.in_force.len()
            }
            RuleLoader::Native => {
                let ours: FxHashSet<&RuleData> = self.in_force.iter().collect();
                let gone: Vec<Vec<u8>> = self
                    .list()?
                    .iter()
                    .filter(|r| ours.contains(r))
                    .map(RuleData::to_bytes)
                    .collect();
                let _fast = self.expedite(gone.len());
                let answers = self
                    .socket
                    .change_rules(AUDIT_DEL_RULE, &gone, ACK)
                    .map_err(|e| RuleError::Flush(explain(&e)))?;
                for a in answers {
                    match a {
                        // Gone already (another process deleted it meanwhile).
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                        Err(e) => return Err(RuleError::Flush(explain(&e))),
                        Ok(()) => {}
                    }
                }
                gone.len()
            }
        };
        self.in_force.clear();
        self.sources.clear();
        Ok(removed)
    }
}

fn rolled_back(err: RuleError, what: &str) -> RuleError {
    match err {
        RuleError::Rule { origin, message } => RuleError::Rule {
            origin,
            message: format!("{message}; {what}"),
        },
        other => RuleError::Rule {
            origin: "the rules".into(),
            message: format!("{other}; {what}"),
        },
    }
}
