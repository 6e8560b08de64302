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

use crate::auditrule::{self, Control, RuleData, RuleLine, AUDIT_ADD_RULE, AUDIT_DEL_RULE};
use crate::netlink::{AuditSocket, AuditStatus, Mode};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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

/// One line of rules and where it came from (`rule #3` of the YAML list, `path:line`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSource {
    pub origin: String,
    pub text: String,
}

impl RuleSource {
    fn args(&self) -> Vec<&str> {
        self.text.split_whitespace().collect()
    }
}

/// Why a rules file (already opened as `file`, so what is checked is what is read) could
/// be rewritten by someone other than root or the user running us, or `None`: a file that
/// is not regular, writable by its group or by others, or owned by another user; or one in
/// a directory (the one named, the one it resolves to, and each of their ancestors) that is
/// owned by another user, or writable by its group or by others without the sticky bit
/// (they could replace the file). auditctl -R refuses a rules file not owned by root or
/// writable by others; this is that, plus the directories.
pub fn unsafe_rules_file(path: &Path, file: &std::fs::File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Some(format!("{}: cannot stat it: {e}", path.display())),
    };
    let mode = meta.mode() & 0o7777;
    if !meta.is_file() {
        return Some(format!("{} is not a regular file", path.display()));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "{} is writable by {} (mode {mode:04o}); run `chmod go-w {}`",
            path.display(),
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            path.display()
        ));
    }
    if meta.uid() != 0 && meta.uid() != euid {
        return Some(format!(
            "{} is owned by uid {}, neither root nor the user running pauditd (uid {euid})",
            path.display(),
            meta.uid()
        ));
    }
    let named = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut dirs: Vec<PathBuf> = Vec::new();
    for start in [
        std::fs::canonicalize(named).ok(),
        std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf)),
    ]
    .into_iter()
    .flatten()
    {
        let mut d = Some(start.as_path());
        while let Some(dir) = d {
            if !dirs.iter().any(|x| x == dir) {
                dirs.push(dir.to_path_buf());
            }
            d = dir.parent();
        }
    }
    if dirs.is_empty() {
        return Some(format!("{}: cannot resolve its directory", path.display()));
    }
    for dir in &dirs {
        let Ok(d) = std::fs::metadata(dir) else {
            return Some(format!(
                "{}: cannot stat its directory {}",
                path.display(),
                dir.display()
            ));
        };
        let dmode = d.mode() & 0o7777;
        if dmode & 0o022 != 0 && dmode & 0o1000 == 0 {
            return Some(format!(
                "{} is in {}, which {} may write (mode {dmode:04o}, no sticky bit): they could replace it",
                path.display(),
                dir.display(),
                if dmode & 0o002 != 0 { "anyone" } else { "its group" }
            ));
        }
        if d.uid() != 0 && d.uid() != euid {
            return Some(format!(
                "{} is in {}, owned by uid {} (neither root nor uid {euid}): they could replace it",
                path.display(),
                dir.display(),
                d.uid()
            ));
        }
    }
    None
}

/// The rule lines of a config: `rules:` first (blank entries kept out but counted, so
/// `rule #N` is the N-th entry), then each of `files` (a path or a glob; a glob's matches in
/// sorted order), comments and blank lines skipped. Every file another user could rewrite
/// ([`unsafe_rules_file`]) is refused, all of them named in one error.
pub fn sources(rules: &[String], files: &[String]) -> Result<Vec<RuleSource>, RuleError> {
    let mut out: Vec<RuleSource> = rules
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.trim().is_empty())
        .map(|(i, r)| RuleSource {
            origin: format!("rule #{}", i + 1),
            text: r.trim().to_string(),
        })
        .collect();
    let mut refused = Vec::new();
    for pattern in files {
        let err = |message: String| RuleError::File {
            pattern: pattern.clone(),
            message,
        };
        let mut paths: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
            glob::glob(pattern)
                .map_err(|e| err(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?
        } else {
            vec![PathBuf::from(pattern)]
        };
        paths.sort();
        if paths.is_empty() {
            log::warn!("rules_files {pattern:?} matches no file");
        }
        for path in paths {
            let read_err = |e: std::io::Error| err(format!("cannot read {}: {e}", path.display()));
            let mut file = std::fs::File::open(&path).map_err(read_err)?;
            if let Some(why) = unsafe_rules_file(&path, &file) {
                refused.push(why);
                continue;
            }
            let mut text = String::new();
            std::io::Read::read_to_string(&mut file, &mut text).map_err(read_err)?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                out.push(RuleSource {
                    origin: format!("{}:{}", path.display(), n + 1),
                    text: line.to_string(),
                });
            }
        }
    }
    if !refused.is_empty() {
        return Err(RuleError::Unsafe(refused));
    }
    Ok(out)
}

/// A rule the kernel should hold, with the line that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub origin: String,
    pub text: String,
    /// As the kernel lists it.
    pub rule: RuleData,
    /// After `-c`/`-i`: a kernel refusal is reported and the rule left out.
    pub tolerant: bool,
}

/// What a set of rule lines asks of the kernel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The rule list, in the kernel's listing order (by filter list, then position).
    pub rules: Vec<Planned>,
    /// `-b`, `-f`, `-r`, `--backlog_wait_time`: `(origin, AUDIT_SET mask, value)`.
    pub status: Vec<(String, u32, u32)>,
    /// The last `-e`, applied after the rules (so `-e 2` locks the complete set).
    pub enable: Option<(String, u32)>,
    pub loginuid_immutable: Option<String>,
}

/// The filter lists, in the order the kernel lists them.
const LISTS: usize = 8;

/// Simulate the lines in order (as `auditctl -R` applies them) into the list the kernel must
/// end with. Every invalid line is reported at once.
pub fn plan(sources: &[RuleSource]) -> Result<Plan, RuleError> {
    if sources.is_empty() {
        return Err(RuleError::Empty);
    }
    let mut lists: Vec<Vec<Planned>> = vec![Vec::new(); LISTS];
    let mut plan = Plan::default();
    let mut errors = Vec::new();
    let mut tolerant = false;
    for src in sources {
        let line = match auditrule::parse_line(&src.args()) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(e) => {
                errors.push(format!("{}: {}: {e}", src.origin, src.text));
                continue;
            }
        };
        let mut refuse = |why: String| {
            if tolerant {
                log::warn!("{}: {}: {why}; skipped (-c/-i)", src.origin, src.text);
            } else {
                errors.push(format!("{}: {}: {why}", src.origin, src.text));
            }
        };
        match line {
            RuleLine::Control(Control::DeleteAll) => lists.iter_mut().for_each(Vec::clear),
            RuleLine::Control(Control::ContinueOnError) => tolerant = true,
            RuleLine::Control(Control::LoginuidImmutable) => {
                plan.loginuid_immutable = Some(src.origin.clone())
            }
            RuleLine::Control(Control::Status { mask, value }) => {
                if mask == auditrule::STATUS_ENABLED {
                    plan.enable = Some((src.origin.clone(), value));
                } else {
                    plan.status.push((src.origin.clone(), mask, value));
                }
            }
            RuleLine::Add(data) => {
                let rule = data.as_listed();
                let list = &mut lists[(rule.flags as usize) % LISTS];
                if let Some(same) = list.iter().find(|p| p.rule == rule) {
                    refuse(format!(
                        "the same rule as {} (the kernel refuses a duplicate: EEXIST)",
                        same.origin
                    ));
                    continue;
                }
                let p = Planned {
                    origin: src.origin.clone(),
                    text: src.text.clone(),
                    rule,
                    tolerant,
                };
                if data.flags & auditrule::FILTER_PREPEND != 0 {
                    list.insert(0, p);
                } else {
                    list.push(p);
                }
            }
            RuleLine::Delete(rule) => {
                let list = &mut lists[(rule.flags as usize) % LISTS];
                match list.iter().position(|p| p.rule == rule) {
                    Some(i) => {
                        list.remove(i);
                    }
                    None => refuse("no such rule to delete (ENOENT)".into()),
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(RuleError::Invalid(errors));
    }
    plan.rules = lists.into_iter().flatten().collect();
    Ok(plan)
}

/// One change to the kernel's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Add `desired[index]`, at the front of its list when `prepend`.
    Add {
        index: usize,
        prepend: bool,
    },
    Delete(Box<RuleData>),
}

/// How to turn the kernel's list into `desired` without a flush.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub steps: Vec<Step>,
    /// Unchanged rules deleted and added again because a new rule must sit before them (the
    /// kernel adds only at either end of a list): briefly out of force.
    pub readded: usize,
    pub added: usize,
    pub removed: usize,
}

/// The steps from the kernel's list to `desired` (both in listing order). Rules in both stay
/// untouched unless a new rule must go before them; new rules before every kept one are
/// prepended; the rest appended; rules only in the kernel are deleted last, so a changed
/// rule's new form is in force before its old one goes.
pub fn plan_changes(kernel: &[RuleData], desired: &[RuleData]) -> Changes {
    let mut c = Changes::default();
    let mut deletions = Vec::new();
    for list in 0..LISTS as u32 {
        let k: Vec<&RuleData> = kernel.iter().filter(|r| r.flags % 8 == list).collect();
        let d: Vec<usize> = (0..desired.len())
            .filter(|&i| desired[i].flags % 8 == list)
            .collect();
        let kept: Vec<&RuleData> = k
            .iter()
            .copied()
            .filter(|r| d.iter().any(|&i| desired[i] == **r))
            .collect();
        let is_kept = |i: usize| kept.iter().any(|r| **r == desired[i]);
        // New rules before the first kept one go to the front, last one first.
        let lead = d.iter().take_while(|&&i| !is_kept(i)).count();
        if lead < d.len() {
            for &i in d[..lead].iter().rev() {
                c.steps.push(Step::Add {
                    index: i,
                    prepend: true,
                });
                c.added += 1;
            }
        }
        // Then the longest run of kept rules that the kernel already holds in that order
        // stays untouched; kept rules it skips over must go and come back after it.
        let mut at = if lead < d.len() { lead } else { 0 };
        let mut untouched = vec![false; kept.len()];
        let mut from = 0;
        while at < d.len() {
            let Some(j) = kept[from..].iter().position(|r| **r == desired[d[at]]) else {
                break;
            };
            untouched[from + j] = true;
            from += j + 1;
            at += 1;
        }
        for (r, _) in kept.iter().zip(&untouched).filter(|(_, u)| !**u) {
            c.steps.push(Step::Delete(Box::new((*r).clone())));
            c.readded += 1;
        }
        for &i in &d[at..] {
            c.steps.push(Step::Add {
                index: i,
                prepend: false,
            });
            if !is_kept(i) {
                c.added += 1;
            }
        }
        for r in k.iter().filter(|r| !d.iter().any(|&i| desired[i] == ***r)) {
            deletions.push((*r).clone());
        }
    }
    c.removed = deletions.len();
    c.steps
        .extend(deletions.into_iter().map(|r| Step::Delete(Box::new(r))));
    c
}

/// Where auditctl is: on PATH, or in the sbin directories sudo's PATH may lack.
pub fn find_auditctl() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("auditctl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("auditctl"))
}

fn run(auditctl: &Path, args: &[&str]) -> Result<Result<(), String>, RuleError> {
    let out = Command::new(auditctl)
        .args(args)
        .output()
        .map_err(|error| RuleError::Spawn {
            path: auditctl.display().to_string(),
            error,
        })?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if msg.is_empty() {
        msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    if msg.is_empty() {
        msg = format!("auditctl exited with {}", out.status);
    }
    Ok(Err(msg.replace('\n', "; ")))
}

/// pauditd's way: flush, then each line through auditctl in turn, stopping at the first
/// failure with the line's origin and auditctl's message. Returns how many ran.
fn auditctl_load(auditctl: &Path, sources: &[RuleSource]) -> Result<usize, RuleError> {
    if sources.is_empty() {
        return Err(RuleError::Empty);
    }
    run(auditctl, &["-D"])?.map_err(RuleError::Flush)?;
    log::info!("Flushed existing audit rules");
    let mut added = 0;
    for src in sources {
        run(auditctl, &src.args())?.map_err(|message| RuleError::Rule {
            origin: src.origin.clone(),
            message,
        })?;
        log::info!("Added audit {}", src.origin);
        added += 1;
    }
    Ok(added)
}

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
    /// Our own encoding over netlink ([`crate::auditrule`]).
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
    /// Rules refused by the kernel after `-c`/`-i`: `origin: text: reason`.
    pub skipped: Vec<String>,
    pub unchanged: bool,
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

    /// Make the kernel hold what `sources` ask for. Natively: only the difference is
    /// changed; through auditctl: flush and load (skipped when the lines are unchanged). On
    /// failure the previous rules are put back and the error says whether that worked.
    pub fn apply(&mut self, sources: Vec<RuleSource>) -> Result<Applied, RuleError> {
        let applied = match &self.loader {
            RuleLoader::Native => self.apply_native(&sources)?,
            RuleLoader::Auditctl(path) => {
                if sources == self.sources && !self.sources.is_empty() {
                    Applied {
                        unchanged: true,
                        ..Applied::default()
                    }
                } else if let Err(e) = auditctl_load(path, &sources) {
                    if self.sources.is_empty() {
                        return Err(e);
                    }
                    return match auditctl_load(path, &self.sources) {
                        Ok(_) => Err(rolled_back(e, "the previous rules were restored")),
                        Err(e2) => Err(rolled_back(e, &format!("restoring the previous rules failed too ({e2}): the kernel holds part of a rule set, check `auditctl -l`"))),
                    };
                } else {
                    Applied::default()
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

    fn apply_native(&mut self, sources: &[RuleSource]) -> Result<Applied, RuleError> {
        let plan = plan(sources)?;
        for (origin, mask, value) in &plan.status {
            self.set_status(origin, *mask, *value)?;
        }
        let before = self.list()?;
        let desired: Vec<RuleData> = plan.rules.iter().map(|p| p.rule.clone()).collect();
        let changes = plan_changes(&before, &desired);
        let mut applied = Applied {
            added: changes.added,
            removed: changes.removed,
            readded: changes.readded,
            unchanged: changes.steps.is_empty(),
            ..Applied::default()
        };
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
        if let Some((origin, value)) = &plan.enable {
            self.set_status(origin, auditrule::STATUS_ENABLED, *value)?;
        }
        if let Some(origin) = &plan.loginuid_immutable {
            // AUDIT_FEATURE_LOGINUID_IMMUTABLE is feature 1.
            self.socket
                .set_feature_locked(1 << 1, ACK)
                .map_err(|e| RuleError::Rule {
                    origin: origin.clone(),
                    message: format!("--loginuid-immutable: {}", explain(&e)),
                })?;
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
                    r.flags |= auditrule::FILTER_PREPEND;
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

    /// Put `previous` back after a failed change; the error says whether it worked.
    fn roll_back(&self, err: RuleError, previous: &[RuleData]) -> RuleError {
        let result = self.list().and_then(|now| {
            let changes = plan_changes(&now, previous);
            for step in &changes.steps {
                self.step(step, previous)
                    .map_err(|(_, e)| RuleError::Rule {
                        origin: "the previous rules".into(),
                        message: explain(&e),
                    })?;
            }
            Ok(())
        });
        match result {
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
            auditrule::STATUS_ENABLED => st.enabled = value,
            auditrule::STATUS_FAILURE => st.failure = value,
            auditrule::STATUS_RATE_LIMIT => st.rate_limit = value,
            auditrule::STATUS_BACKLOG_LIMIT => st.backlog_limit = value,
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
        let now = self.list()?;
        if now == self.in_force {
            return Ok(None);
        }
        let missing = self
            .in_force
            .iter()
            .filter(|r| !now.contains(r))
            .map(auditrule::render)
            .collect();
        let extra = now
            .iter()
            .filter(|r| !self.in_force.contains(r))
            .map(auditrule::render)
            .collect();
        Ok(Some(Drift { missing, extra }))
    }

    /// Put our rules back as they were applied (after drift).
    pub fn restore(&mut self) -> Result<(), RuleError> {
        match &self.loader {
            RuleLoader::Native => {
                let now = self.list()?;
                let target = self.in_force.clone();
                for step in plan_changes(&now, &target).steps {
                    self.step(&step, &target)
                        .map_err(|(_, e)| RuleError::Rule {
                            origin: "the rules in force".into(),
                            message: explain(&e),
                        })?;
                }
            }
            RuleLoader::Auditctl(path) => {
                auditctl_load(path, &self.sources)?;
            }
        }
        self.in_force = self.list()?;
        Ok(())
    }

    /// Delete every rule (at shutdown: auditing with no daemon only costs the host).
    pub fn remove_all(&mut self) -> Result<(), RuleError> {
        match &self.loader {
            RuleLoader::Auditctl(path) => run(path, &["-D"])?.map_err(RuleError::Flush)?,
            RuleLoader::Native => {
                for rule in self.socket.list_rules(ACK).map_err(RuleError::List)? {
                    self.socket
                        .change_rule(AUDIT_DEL_RULE, &rule, ACK)
                        .map_err(|e| RuleError::Flush(explain(&e)))?;
                }
            }
        }
        self.in_force.clear();
        self.sources.clear();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in auditctl (a real executable) that records each invocation's argv, one
    /// argument per line, so we see exactly what reached it.
    fn recorder(dir: &Path) -> (PathBuf, PathBuf) {
        let log = dir.join("argv.log");
        let exe = dir.join("auditctl");
        std::fs::write(
            &exe,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> {}; done\necho -- >> {}\n",
                log.display(),
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        (exe, log)
    }

    fn src(lines: &[&str]) -> Vec<RuleSource> {
        sources(
            &lines.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &[],
        )
        .unwrap()
    }

    fn rule(s: &str) -> RuleData {
        auditrule::parse(&s.split_whitespace().collect::<Vec<_>>())
            .unwrap()
            .as_listed()
    }

    #[test]
    fn rules_reach_auditctl_as_argument_vectors_never_through_a_shell() {
        let dir = std::env::temp_dir().join(format!("pauditd-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (exe, log) = recorder(&dir);
        let pwned = dir.join("pwned");
        let rules = src(&[
            "-a exit,always  -S execve\t-k exec",
            &format!(
                "-w /etc/passwd;touch {} -k $(touch {})",
                pwned.display(),
                pwned.display()
            ),
        ]);
        assert_eq!(auditctl_load(&exe, &rules).unwrap(), 2);
        let argv = std::fs::read_to_string(&log).unwrap();
        let p = pwned.display();
        assert_eq!(
            argv,
            format!(
                "-D\n--\n-a\nexit,always\n-S\nexecve\n-k\nexec\n--\n-w\n/etc/passwd;touch\n{p}\n-k\n$(touch\n{p})\n--\n"
            )
        );
        assert!(!pwned.exists(), "a shell ran the rule");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rules_files_follow_the_yaml_list_in_sorted_order_with_their_line_numbers() {
        let dir = std::env::temp_dir().join(format!("pauditd-rulesd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("20-b.rules"),
            "# comment\n\n-a always,exit -S execve -k b\n",
        )
        .unwrap();
        std::fs::write(dir.join("10-a.rules"), "-D\n-b 8192\n").unwrap();
        std::fs::write(dir.join("ignored.txt"), "-a nonsense\n").unwrap();
        let s = sources(
            &["-a always,exit -S getppid".into(), " ".into()],
            &[format!("{}/*.rules", dir.display())],
        )
        .unwrap();
        let got: Vec<(String, &str)> = s
            .iter()
            .map(|s| (s.origin.clone(), s.text.as_str()))
            .collect();
        let d = dir.display();
        assert_eq!(
            got,
            vec![
                ("rule #1".to_string(), "-a always,exit -S getppid"),
                (format!("{d}/10-a.rules:1"), "-D"),
                (format!("{d}/10-a.rules:2"), "-b 8192"),
                (format!("{d}/20-b.rules:3"), "-a always,exit -S execve -k b"),
            ]
        );
        let missing = sources(&[], &[format!("{d}/none.rules")]).unwrap_err();
        assert!(missing.to_string().contains("none.rules"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What auditctl -R refuses, and the directories: each kind named with its reason, all
    /// of them in one error; a root file in a sticky world-writable directory is fine.
    #[test]
    fn rules_files_another_user_could_rewrite_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root to chown to another user");
            return;
        }
        let dir = std::env::temp_dir().join(format!("pauditd-rulesafe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ok = dir.join("ok");
        let open = dir.join("open");
        let sticky = dir.join("sticky");
        for d in [&ok, &open, &sticky] {
            std::fs::create_dir_all(d).unwrap();
        }
        let chmod = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        chmod(&dir, 0o755);
        chmod(&ok, 0o755);
        chmod(&open, 0o777);
        chmod(&sticky, 0o1777);
        for f in [
            ok.join("10-a.rules"),
            ok.join("20-w.rules"),
            ok.join("30-u.rules"),
            open.join("x.rules"),
            sticky.join("s.rules"),
        ] {
            std::fs::write(&f, "-a always,exit -S execve\n").unwrap();
            chmod(&f, 0o644);
        }
        chmod(&ok.join("20-w.rules"), 0o666);
        std::os::unix::fs::chown(ok.join("30-u.rules"), Some(65534), None).unwrap();
        let files = [
            format!("{}/*.rules", ok.display()),
            format!("{}/x.rules", open.display()),
            format!("{}/s.rules", sticky.display()),
        ];
        let e = sources(&[], &files).unwrap_err().to_string();
        for want in [
            "20-w.rules is writable by everyone (mode 0666)",
            "30-u.rules is owned by uid 65534",
            &format!(
                "x.rules is in {}, which anyone may write (mode 0777, no sticky bit)",
                open.display()
            ),
        ] {
            assert!(e.contains(want), "{want:?} not in {e}");
        }
        assert!(!e.contains("10-a.rules") && !e.contains("s.rules"), "{e}");
        // Group-writable and a symlink to a user's file are refused too.
        chmod(&ok.join("20-w.rules"), 0o664);
        std::fs::remove_file(ok.join("30-u.rules")).unwrap();
        let e = sources(&[], &files[..1]).unwrap_err().to_string();
        assert!(
            e.contains("20-w.rules is writable by its group (mode 0664)"),
            "{e}"
        );
        chmod(&ok.join("20-w.rules"), 0o644);
        let theirs = open.join("theirs.rules");
        std::fs::write(&theirs, "-e 0\n").unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
        std::os::unix::fs::symlink(&theirs, ok.join("40-link.rules")).unwrap();
        let e = sources(&[], &files[..1]).unwrap_err().to_string();
        assert!(e.contains("40-link.rules is owned by uid 65534"), "{e}");
        std::fs::remove_file(ok.join("40-link.rules")).unwrap();
        // What is left is safe: read.
        assert_eq!(sources(&[], &files[..1]).unwrap().len(), 2);
        assert_eq!(sources(&[], &files[2..]).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_plan_simulates_the_lines_as_auditctl_would_apply_them() {
        let p = plan(&src(&[
            "-a always,exit -F arch=b64 -S execve -k one",
            "-w /etc/passwd -p wa -k pw",
            "-D",
            "-b 8192",
            "-a always,exit -F arch=b64 -S execve -k two",
            "-a never,exclude -F msgtype=CWD",
            "-A never,exit -F pid=1",
            "-w /etc/shadow -p wa",
            "-W /etc/shadow -p wa",
            "-e 1",
        ]))
        .unwrap();
        let texts: Vec<&str> = p.rules.iter().map(|r| r.text.as_str()).collect();
        // The exit list in order (-A first), then the exclude list: the kernel's order.
        assert_eq!(
            texts,
            vec![
                "-A never,exit -F pid=1",
                "-a always,exit -F arch=b64 -S execve -k two",
                "-a never,exclude -F msgtype=CWD",
            ]
        );
        assert_eq!(
            p.status,
            vec![("rule #4".into(), auditrule::STATUS_BACKLOG_LIMIT, 8192)]
        );
        assert_eq!(p.enable, Some(("rule #10".into(), 1)));
    }

    #[test]
    fn every_invalid_line_is_reported_at_once_with_its_origin() {
        let e = plan(&src(&[
            "-a always,exit -S no_such_call",
            "-a always,exit -S execve -k dup",
            "-a always,exit -S execve -k dup",
            "-W /not/watched",
            "-a always,exit -F bogus=1",
        ]))
        .unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("4 rule line(s) are invalid"), "{text}");
        assert!(text.contains("rule #1: -a always,exit -S no_such_call: -S \"no_such_call\": no such syscall on x86_64") || cfg!(not(target_arch = "x86_64")), "{text}");
        assert!(text.contains("rule #3: -a always,exit -S execve -k dup: the same rule as rule #2 (the kernel refuses a duplicate: EEXIST)"), "{text}");
        assert!(
            text.contains("rule #4: -W /not/watched: no such rule to delete (ENOENT)"),
            "{text}"
        );
        assert!(
            text.contains("rule #5: -a always,exit -F bogus=1: -F \"bogus\": unknown field"),
            "{text}"
        );
        // After -c the same problems are skipped, not fatal.
        let p = plan(&src(&[
            "-c",
            "-a always,exit -S execve -k dup",
            "-a always,exit -S execve -k dup",
            "-W /not/watched",
        ]))
        .unwrap();
        assert_eq!(p.rules.len(), 1);
        assert!(p.rules[0].tolerant);
    }

    /// The kernel's behaviour for a list of steps: add at either end, delete by equality.
    fn run_steps(kernel: &[RuleData], desired: &[RuleData], steps: &[Step]) -> Vec<RuleData> {
        let mut k = kernel.to_vec();
        for s in steps {
            match s {
                Step::Add { index, prepend } => {
                    let r = desired[*index].clone();
                    assert!(!k.contains(&r), "duplicate add");
                    let list = r.flags % 8;
                    if *prepend {
                        let at = k
                            .iter()
                            .position(|x| x.flags % 8 == list)
                            .unwrap_or(k.len());
                        k.insert(at, r);
                    } else {
                        let at = k
                            .iter()
                            .rposition(|x| x.flags % 8 <= list)
                            .map_or(0, |i| i + 1);
                        k.insert(at, r);
                    }
                }
                Step::Delete(r) => {
                    let i = k
                        .iter()
                        .position(|x| x == &**r)
                        .expect("delete of a missing rule");
                    k.remove(i);
                }
            }
        }
        k
    }

    #[test]
    fn changes_touch_only_what_changed_and_keep_the_order() {
        let r: Vec<RuleData> = [
            "-a always,exit -S execve -k a",
            "-a always,exit -S getppid -k b",
            "-a always,exit -S openat -k c",
            "-a always,exit -S connect -k d",
            "-a never,exclude -F msgtype=CWD",
        ]
        .iter()
        .map(|s| rule(s))
        .collect();
        let (a, b, c, d, x) = (&r[0], &r[1], &r[2], &r[3], &r[4]);
        type Case<'a> = (Vec<&'a RuleData>, Vec<&'a RuleData>, usize, usize, usize);
        let cases: Vec<Case> = vec![
            // (kernel, desired, added, removed, readded)
            (vec![a, b], vec![a, b], 0, 0, 0),
            (vec![a, b], vec![a, b, c], 1, 0, 0),
            (vec![a, b], vec![c, a, b], 1, 0, 0),
            (vec![a, b, c], vec![a, c], 0, 1, 0),
            (vec![a, b, c], vec![a, d, c], 1, 1, 1),
            (vec![a, b], vec![b, a], 0, 0, 1),
            (vec![a, b, c], vec![b, c, a], 0, 0, 1),
            (vec![a, x], vec![d, a, x], 1, 0, 0),
            (vec![], vec![a, b, x], 3, 0, 0),
            (vec![a, b, x], vec![], 0, 3, 0),
            (vec![a, b, c, d], vec![d, c, b, a], 0, 0, 3),
        ];
        for (kernel, desired, added, removed, readded) in cases {
            let kernel: Vec<RuleData> = kernel.into_iter().cloned().collect();
            let desired: Vec<RuleData> = desired.into_iter().cloned().collect();
            let c = plan_changes(&kernel, &desired);
            assert_eq!(
                run_steps(&kernel, &desired, &c.steps),
                desired,
                "{kernel:?} -> {desired:?}"
            );
            assert_eq!(
                (c.added, c.removed, c.readded),
                (added, removed, readded),
                "{c:?}"
            );
            // An unchanged rule is deleted only when it is re-added for order.
            let deleted_kept = c
                .steps
                .iter()
                .filter(|s| matches!(s, Step::Delete(r) if desired.contains(&**r)))
                .count();
            assert_eq!(deleted_kept, readded);
        }
    }

    #[test]
    fn the_drift_guard_checks_on_its_interval_and_at_once_after_a_rule_change() {
        let t0 = std::time::Instant::now();
        let g = DriftGuard::new(DriftPolicy::Reapply, Duration::from_secs(60), t0);
        assert!(!g.due(t0, 0));
        assert!(!g.due(t0 + Duration::from_secs(59), 0));
        assert!(g.due(t0 + Duration::from_secs(60), 0));
        // A CONFIG_CHANGE add/remove record: at once.
        assert!(g.due(t0 + Duration::from_secs(1), 1));
        assert_eq!(g.next_deadline(), t0 + Duration::from_secs(60));
    }
}
