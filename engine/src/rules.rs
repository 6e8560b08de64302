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
use rustc_hash::{FxHashMap, FxHashSet};
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
    /// Lines left out because `-c`/`-i` was in force before them, as `auditctl -R` skips
    /// them (`origin: text: why`): they do not parse here (an unknown user, field or
    /// option), repeat a rule, or delete one that is not there.
    pub skipped: Vec<String>,
}

/// The filter lists, in the order the kernel lists them.
const LISTS: usize = 8;

/// What one parsed line does to the simulated lists.
enum Op {
    Add { rule: RuleData, prepend: bool },
    Delete(RuleData),
    Control(Control),
}

/// One filter list while the lines are simulated: `-A` rules pushed to `front` (listed in
/// reverse), `-a` rules to `back`; a deleted rule leaves a hole; `at` finds a rule's slot.
/// Every operation is O(1) (expected), so a plan is linear in the number of lines.
#[derive(Default)]
struct SimList<'a> {
    front: Vec<Option<usize>>,
    back: Vec<Option<usize>>,
    at: FxHashMap<&'a RuleData, (bool, usize)>,
}

impl<'a> SimList<'a> {
    fn find(&self, rule: &RuleData) -> Option<usize> {
        let &(front, slot) = self.at.get(rule)?;
        if front {
            self.front[slot]
        } else {
            self.back[slot]
        }
    }

    fn push(&mut self, rule: &'a RuleData, line: usize, prepend: bool) {
        let side = if prepend {
            &mut self.front
        } else {
            &mut self.back
        };
        side.push(Some(line));
        self.at.insert(rule, (prepend, side.len() - 1));
    }

    fn remove(&mut self, rule: &RuleData) -> bool {
        let Some((front, slot)) = self.at.remove(rule) else {
            return false;
        };
        if front {
            self.front[slot] = None;
        } else {
            self.back[slot] = None;
        }
        true
    }

    fn lines(&self) -> impl Iterator<Item = usize> + '_ {
        self.front.iter().rev().chain(&self.back).flatten().copied()
    }
}

/// Simulate the lines in order (as `auditctl -R` applies them) into the list the kernel must
/// end with. Every invalid line is reported at once; after `-c`/`-i` a line auditctl would
/// skip is left out and listed in [`Plan::skipped`] instead. Linear in the number of lines.
pub fn plan(sources: &[RuleSource]) -> Result<Plan, RuleError> {
    if sources.is_empty() {
        return Err(RuleError::Empty);
    }
    let mut plan = Plan::default();
    let mut errors = Vec::new();
    // First every line parsed (so the simulation can index rules by reference), with
    // whether -c/-i was in force for it.
    let mut tolerant = false;
    let mut ops: Vec<(usize, bool, Op)> = Vec::with_capacity(sources.len());
    for (n, src) in sources.iter().enumerate() {
        match auditrule::parse_line(&src.args()) {
            Ok(Some(RuleLine::Add(data))) => {
                let prepend = data.flags & auditrule::FILTER_PREPEND != 0;
                let rule = data.as_listed();
                ops.push((n, tolerant, Op::Add { rule, prepend }));
            }
            Ok(Some(RuleLine::Delete(rule))) => ops.push((n, tolerant, Op::Delete(rule))),
            Ok(Some(RuleLine::Control(c))) => {
                if c == Control::ContinueOnError {
                    tolerant = true;
                }
                ops.push((n, tolerant, Op::Control(c)));
            }
            Ok(None) => {}
            Err(e) if tolerant => plan
                .skipped
                .push(format!("{}: {}: {e}", src.origin, src.text)),
            Err(e) => errors.push(format!("{}: {}: {e}", src.origin, src.text)),
        }
    }
    let mut lists: Vec<SimList> = (0..LISTS).map(|_| SimList::default()).collect();
    for (i, (n, tolerant, op)) in ops.iter().enumerate() {
        let src = &sources[*n];
        let mut refuse = |why: String| {
            let line = format!("{}: {}: {why}", src.origin, src.text);
            if *tolerant {
                plan.skipped.push(line);
            } else {
                errors.push(line);
            }
        };
        match op {
            Op::Control(Control::DeleteAll) => {
                lists.iter_mut().for_each(|l| *l = SimList::default())
            }
            Op::Control(Control::ContinueOnError) => {}
            Op::Control(Control::LoginuidImmutable) => {
                plan.loginuid_immutable = Some(src.origin.clone())
            }
            Op::Control(Control::Status { mask, value }) => {
                if *mask == auditrule::STATUS_ENABLED {
                    plan.enable = Some((src.origin.clone(), *value));
                } else {
                    plan.status.push((src.origin.clone(), *mask, *value));
                }
            }
            Op::Add { rule, prepend } => {
                let list = &mut lists[(rule.flags as usize) % LISTS];
                if let Some(same) = list.find(rule) {
                    refuse(format!(
                        "the same rule as {} (the kernel refuses a duplicate: EEXIST)",
                        sources[ops[same].0].origin
                    ));
                    continue;
                }
                list.push(rule, i, *prepend);
            }
            Op::Delete(rule) => {
                if !lists[(rule.flags as usize) % LISTS].remove(rule) {
                    refuse("no such rule to delete (ENOENT)".into());
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(RuleError::Invalid(errors));
    }
    plan.rules = lists
        .iter()
        .flat_map(SimList::lines)
        .map(|i| {
            let (n, tolerant, op) = &ops[i];
            let Op::Add { rule, .. } = op else {
                unreachable!("only added rules are listed")
            };
            Planned {
                origin: sources[*n].origin.clone(),
                text: sources[*n].text.clone(),
                rule: rule.clone(),
                tolerant: *tolerant,
            }
        })
        .collect();
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
/// rule's new form is in force before its old one goes. Linear (hash lookups).
pub fn plan_changes(kernel: &[RuleData], desired: &[RuleData]) -> Changes {
    let mut c = Changes::default();
    let mut deletions = Vec::new();
    let mut k_lists: Vec<Vec<&RuleData>> = vec![Vec::new(); LISTS];
    for r in kernel {
        k_lists[(r.flags % 8) as usize].push(r);
    }
    let mut d_lists: Vec<Vec<usize>> = vec![Vec::new(); LISTS];
    for (i, r) in desired.iter().enumerate() {
        d_lists[(r.flags % 8) as usize].push(i);
    }
    for (k, d) in k_lists.iter().zip(&d_lists) {
        let wanted: FxHashSet<&RuleData> = d.iter().map(|&i| &desired[i]).collect();
        // Rules in both, in the kernel's order, and where each is in that order.
        let kept: Vec<&RuleData> = k.iter().copied().filter(|r| wanted.contains(r)).collect();
        let mut kept_at: FxHashMap<&RuleData, usize> = FxHashMap::default();
        for (p, r) in kept.iter().enumerate() {
            kept_at.entry(*r).or_insert(p);
        }
        let is_kept = |i: usize| kept_at.contains_key(&desired[i]);
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
            match kept_at.get(&desired[d[at]]) {
                Some(&p) if p >= from => {
                    untouched[p] = true;
                    from = p + 1;
                    at += 1;
                }
                _ => break,
            }
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
        deletions.extend(
            k.iter()
                .filter(|r| !wanted.contains(*r))
                .map(|r| (*r).clone()),
        );
    }
    c.removed = deletions.len();
    c.steps
        .extend(deletions.into_iter().map(|r| Step::Delete(Box::new(r))));
    c
}

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
            .map(auditrule::render)
            .collect(),
        extra: kernel
            .iter()
            .filter(|r| !in_ours.contains(r))
            .map(auditrule::render)
            .collect(),
    })
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
/// failure with the line's origin and auditctl's message; after a `-i` or `-c` line a line
/// that fails is logged and skipped instead (each line is its own auditctl run, so auditctl
/// cannot carry the option from one line to the next: we do). Returns how many ran, and the
/// skipped lines (`origin: text: auditctl's message`).
fn auditctl_load(
    auditctl: &Path,
    sources: &[RuleSource],
) -> Result<(usize, Vec<String>), RuleError> {
    if sources.is_empty() {
        return Err(RuleError::Empty);
    }
    run(auditctl, &["-D"])?.map_err(RuleError::Flush)?;
    log::info!("Flushed existing audit rules");
    let (mut added, mut skipped, mut tolerant) = (0, Vec::new(), false);
    for src in sources {
        let args = src.args();
        if matches!(args.as_slice(), ["-i"] | ["-c"]) {
            tolerant = true;
        }
        match run(auditctl, &args)? {
            Ok(()) => {
                log::info!("Added audit {}", src.origin);
                added += 1;
            }
            Err(message) if tolerant => {
                let why = format!("{}: {}: {message}", src.origin, src.text);
                log::warn!("{why}; skipped (-c/-i)");
                skipped.push(why);
            }
            Err(message) => {
                return Err(RuleError::Rule {
                    origin: src.origin.clone(),
                    message,
                })
            }
        }
    }
    Ok((added, skipped))
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
    /// Lines left out after `-c`/`-i` (they do not parse here, or the kernel refused
    /// them): `origin: text: reason`.
    pub skipped: Vec<String>,
    pub unchanged: bool,
    /// The kernel's rules are locked (`-e 2`): nothing was applied.
    pub locked: bool,
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
            if let Err(e) = self.set_status(origin, auditrule::STATUS_ENABLED, *value) {
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
        assert_eq!(auditctl_load(&exe, &rules).unwrap(), (2, Vec::new()));
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

    /// With the auditctl loader each line is its own auditctl run, so -i/-c is carried by
    /// us: after it a line auditctl refuses is skipped and listed; before it, fatal.
    #[test]
    fn through_auditctl_a_failing_line_after_i_is_skipped_and_before_it_fatal() {
        let dir = std::env::temp_dir().join(format!("pauditd-rules-i-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("auditctl");
        // A stand-in auditctl that refuses any line naming `bad`, as auditctl would.
        std::fs::write(
            &exe,
            "#!/bin/sh\nfor a in \"$@\"; do case $a in *bad*) echo \"Unknown user: $a\" >&2; exit 1;; esac; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (added, skipped) = auditctl_load(
            &exe,
            &src(&[
                "-i",
                "-a always,exit -F uid=bad",
                "-a always,exit -S execve",
            ]),
        )
        .unwrap();
        assert_eq!(added, 2);
        assert_eq!(
            skipped,
            vec!["rule #2: -a always,exit -F uid=bad: Unknown user: uid=bad"]
        );
        let e = auditctl_load(
            &exe,
            &src(&[
                "-a always,exit -F uid=bad",
                "-i",
                "-a always,exit -S execve",
            ]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to add rule #1: Unknown user: uid=bad"
        );
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
        assert_eq!(p.skipped.len(), 2, "{:?}", p.skipped);
    }

    /// auditctl's -i and -c: from that line on, a line auditctl would refuse (one that does
    /// not parse, a duplicate, a deletion of nothing) is skipped and listed, not fatal; lines
    /// before it stay fatal. The lines are the shapes public rule sets carry.
    #[test]
    fn after_i_or_c_a_line_auditctl_would_skip_is_skipped_and_listed() {
        for opt in ["-i", "-c"] {
            let p = plan(&src(&[
                "-D",
                "-b 8192",
                opt,
                "-a always,exit -F arch=b64 -S adjtimex -F auid=-1 -F uid=no-such-user-pauditd -k time",
                "-a always,exit -F path=/usr/bin/setfiles -F perm=x -F auid>=500 -k -F T1078",
                "-a always,exit -F arch=b64 -S connect -F dir=+ -F obj=/opt/x -F key=net",
                "-e 7",
                "-a always,exit -F arch=b64 -S execve -k kept",
            ]))
            .unwrap();
            let texts: Vec<&str> = p.rules.iter().map(|r| r.text.as_str()).collect();
            assert_eq!(texts, vec!["-a always,exit -F arch=b64 -S execve -k kept"]);
            assert_eq!(p.status.len(), 1, "-b is kept");
            assert_eq!(p.enable, None, "the bad -e is skipped");
            let origins: Vec<&str> = p
                .skipped
                .iter()
                .map(|s| s.split(':').next().unwrap())
                .collect();
            assert_eq!(origins, vec!["rule #4", "rule #5", "rule #6", "rule #7"]);
            assert!(p.skipped[0].ends_with(
                "-F uid: \"no-such-user-pauditd\" is not a number, `unset` or a known name"
            ));
            assert!(
                p.skipped[2].ends_with("-F \"obj\": unknown field"),
                "{}",
                p.skipped[2]
            );
        }
        // Before -i a bad line is fatal (auditctl -R stops there too), after it not.
        let e = plan(&src(&[
            "-a always,exit -F obj=/x -S execve",
            "-i",
            "-a always,exit -F obj=/y -S execve",
        ]))
        .unwrap_err();
        let RuleError::Invalid(lines) = e else {
            panic!("{e}")
        };
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("rule #1: "), "{lines:?}");
    }

    /// A tiny deterministic generator for the equivalence tests.
    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// The plan (hash-indexed, linear) against the obvious quadratic simulation, over
    /// thousands of random lines of -a, -A, -d, -W, -w, -D on several lists.
    #[test]
    fn the_linear_plan_is_the_straightforward_simulation() {
        let mut g = Lcg(7);
        for round in 0..20 {
            let mut lines = vec!["-c".to_string()];
            for _ in 0..400 {
                let n = g.below(40);
                let line = match g.below(20) {
                    0 => "-D".to_string(),
                    1..=7 => format!("-a always,exit -F arch=b64 -S execve -F uid={n}"),
                    8..=10 => format!("-A always,exit -F arch=b64 -S execve -F uid={n}"),
                    11..=13 => format!("-d always,exit -F arch=b64 -S execve -F uid={n}"),
                    14 => format!("-a never,exclude -F msgtype={}", 1300 + n),
                    15 => format!("-A never,exclude -F msgtype={}", 1300 + n),
                    16 => format!("-w /pauditd-test/{n} -p wa"),
                    17 => format!("-W /pauditd-test/{n} -p wa"),
                    _ => format!("-a always,user -F uid={n}"),
                };
                lines.push(line);
            }
            let s = src(&lines.iter().map(String::as_str).collect::<Vec<_>>());
            let p = plan(&s).unwrap();
            // The reference: one Vec per list, linear searches.
            let mut lists: Vec<Vec<(usize, RuleData)>> = vec![Vec::new(); LISTS];
            let mut skipped = 0;
            for (n, src) in s.iter().enumerate() {
                match auditrule::parse_line(&src.args()).unwrap().unwrap() {
                    RuleLine::Control(Control::DeleteAll) => lists.iter_mut().for_each(Vec::clear),
                    RuleLine::Control(_) => {}
                    RuleLine::Add(d) => {
                        let r = d.as_listed();
                        let l = &mut lists[(r.flags % 8) as usize];
                        if l.iter().any(|x| x.1 == r) {
                            skipped += 1;
                        } else if d.flags & auditrule::FILTER_PREPEND != 0 {
                            l.insert(0, (n, r));
                        } else {
                            l.push((n, r));
                        }
                    }
                    RuleLine::Delete(r) => {
                        let l = &mut lists[(r.flags % 8) as usize];
                        match l.iter().position(|x| x.1 == r) {
                            Some(i) => {
                                l.remove(i);
                            }
                            None => skipped += 1,
                        }
                    }
                }
            }
            let want: Vec<String> = lists
                .into_iter()
                .flatten()
                .map(|(n, _)| s[n].origin.clone())
                .collect();
            let got: Vec<String> = p.rules.iter().map(|r| r.origin.clone()).collect();
            assert_eq!(got, want, "round {round}");
            assert_eq!(p.skipped.len(), skipped, "round {round}");
        }
    }

    /// The linear diff gives steps that turn any kernel list into any desired one, touching
    /// no rule both keep unless its order needs it.
    #[test]
    fn the_linear_diff_reaches_the_desired_list_from_random_ones() {
        let mut g = Lcg(11);
        let pool: Vec<RuleData> = (0..30)
            .map(|n| {
                if n % 5 == 0 {
                    rule(&format!("-a never,exclude -F msgtype={}", 1300 + n))
                } else {
                    rule(&format!("-a always,exit -F arch=b64 -S execve -F uid={n}"))
                }
            })
            .collect();
        let pick = |g: &mut Lcg| -> Vec<RuleData> {
            let mut v: Vec<RuleData> = Vec::new();
            for _ in 0..g.below(25) {
                let r = &pool[g.below(pool.len() as u64) as usize];
                if !v.contains(r) {
                    v.push(r.clone());
                }
            }
            // The kernel's listing order: by list.
            v.sort_by_key(|r| r.flags % 8);
            v
        };
        for _ in 0..500 {
            let (kernel, desired) = (pick(&mut g), pick(&mut g));
            let c = plan_changes(&kernel, &desired);
            assert_eq!(run_steps(&kernel, &desired, &c.steps), desired);
            let deleted_kept = c
                .steps
                .iter()
                .filter(|s| matches!(s, Step::Delete(r) if desired.contains(&**r)))
                .count();
            assert_eq!(deleted_kept, c.readded);
        }
    }

    /// The decision a locked kernel (`enabled 2`) leads to, from the status alone: nothing
    /// applied, no setting sent; otherwise everything the plan asks.
    #[test]
    fn a_locked_kernel_gets_no_changes_and_an_unlocked_one_everything() {
        let p = plan(&src(&[
            "-b 8192",
            "-a always,exit -F arch=b64 -S execve",
            "--loginuid-immutable",
            "-e 2",
        ]))
        .unwrap();
        let status = |enabled| AuditStatus {
            enabled,
            ..AuditStatus::default()
        };
        assert_eq!(
            decide(&status(2), &p),
            Decision {
                locked: true,
                settings: false,
                rules: false,
                enable: None,
                loginuid_immutable: false
            }
        );
        for enabled in [0, 1] {
            assert_eq!(
                decide(&status(enabled), &p),
                Decision {
                    locked: false,
                    settings: true,
                    rules: true,
                    enable: Some(2),
                    loginuid_immutable: true
                }
            );
        }
    }

    #[test]
    fn drift_names_what_is_missing_and_what_is_unexpected() {
        let (a, b, c) = (
            rule("-a always,exit -F arch=b64 -S execve -k a"),
            rule("-a always,exit -F arch=b64 -S getppid -k b"),
            rule("-w /etc/passwd -p wa -k c"),
        );
        assert_eq!(
            drift(&[a.clone(), b.clone()], &[a.clone(), b.clone()]),
            None
        );
        let d = drift(&[a.clone(), b.clone()], &[a.clone(), c.clone()]).unwrap();
        assert_eq!(
            d.missing,
            vec!["-a always,exit -F arch=b64 -S getppid -F key=b"]
        );
        assert_eq!(d.extra, vec!["-w /etc/passwd -p wa -k c"]);
        assert_eq!(
            d.to_string(),
            "1 rule(s) missing, 1 unexpected; missing: -a always,exit -F arch=b64 -S getppid -F key=b; unexpected: -w /etc/passwd -p wa -k c"
        );
        // The same rules in another order: a difference with nothing missing.
        let d = drift(&[a.clone(), b.clone()], &[b, a]).unwrap();
        assert!(d.missing.is_empty() && d.extra.is_empty());
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
