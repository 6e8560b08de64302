//! What a set of rule lines asks of the kernel, and how to get there from what it holds:
//! [`plan`] simulates the lines as `auditctl -R` applies them (`-D`, `-a`, `-A`, `-W`, `-c`),
//! [`plan_changes`] finds the steps from the kernel's list to the plan's without a flush.
//! Pure and linear in the number of lines: it must never talk to the kernel, run a program or
//! read a file.

use super::language::{self, Control, RuleData, RuleLine};
use super::{RuleError, RuleSource};
use rustc_hash::{FxHashMap, FxHashSet};

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
pub(super) const LISTS: usize = 8;

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
        match language::parse_line(&src.args()) {
            Ok(Some(RuleLine::Add(data))) => {
                let prepend = data.flags & language::FILTER_PREPEND != 0;
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
                if *mask == language::STATUS_ENABLED {
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
