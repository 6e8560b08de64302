//! auditctl's text to [`RuleData`]: one rule's arguments ([`parse`]) or one line of a rules
//! file, control options included ([`parse_line`]). Syscall names are resolved for the rule's
//! architecture, user and group names through the system's databases. Anything unsupported
//! is an error naming the argument: it must never silently encode something other than what
//! auditctl would, and never talk to the kernel.

use super::tables::*;
use super::*;
use crate::arch::{self, Arch};
use crate::syscall_table;

/// A number as auditctl reads it (`strtol` base 0: decimal, `0x` hex, leading-0 octal),
/// negative values as their two's complement.
pub(super) fn number(s: &str) -> Option<u32> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let v = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse::<i64>().ok()?
    };
    let v = if neg { -v } else { v };
    (i64::from(i32::MIN)..=i64::from(u32::MAX))
        .contains(&v)
        .then_some(v as u32)
}

pub(super) fn id_by_name(name: &str, group: bool) -> Option<u32> {
    if group {
        crate::privileges::lookup_group(name)
    } else {
        crate::privileges::lookup_user(name).map(|(uid, _)| uid)
    }
}

pub(super) fn value_of(field: &str, kind: Kind, v: &str) -> Result<u32, RuleError> {
    let bad = |what: &'static str| RuleError::BadValue {
        field: field.to_string(),
        value: v.to_string(),
        what,
    };
    match kind {
        Kind::Number => number(v).ok_or_else(|| bad("a number")),
        Kind::Uid | Kind::Gid => {
            if v == "unset" {
                return Ok(u32::MAX);
            }
            number(v)
                .or_else(|| id_by_name(v, kind == Kind::Gid))
                .ok_or_else(|| bad("a number, `unset` or a known name"))
        }
        Kind::Arch => Arch::by_name(v)
            .map(Arch::audit_arch)
            .or_else(|| number(v))
            .ok_or_else(|| bad("b64, b32, an architecture name or an AUDIT_ARCH_ number")),
        Kind::Exit => {
            if let Some(n) = number(v) {
                return Ok(n);
            }
            let (neg, name) = match v.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, v),
            };
            let e =
                lookup(syscall_table::ERRNO, name).ok_or_else(|| bad("a number or errno name"))?;
            Ok(if neg { (-e) as u32 } else { e as u32 })
        }
        // auditctl takes a number only ("-F value should be number for success").
        Kind::Success => number(v).ok_or_else(|| bad("a number (1: succeeded, 0: failed)")),
        Kind::MsgType => number(v)
            .or_else(|| crate::types::number_of(v.as_bytes()).map(u32::from))
            .ok_or_else(|| bad("a record type name or number")),
        Kind::Perm => {
            let mut p = 0;
            for c in v.chars() {
                p |= match c {
                    'r' => 4,
                    'w' => 2,
                    'x' => 1,
                    'a' => 8,
                    _ => return Err(bad("made of r, w, x, a")),
                };
            }
            Ok(p)
        }
        Kind::FileType => Ok(match v {
            "file" => 0o100000,
            "dir" => 0o040000,
            "socket" => 0o140000,
            "link" => 0o120000,
            "character" => 0o020000,
            "block" => 0o060000,
            "fifo" => 0o010000,
            // How `auditctl -l` lists it, so a listing reads back.
            _ => number(v).ok_or_else(|| {
                bad("file, dir, socket, link, character, block, fifo or a mode number")
            })?,
        }),
        Kind::FsType => Ok(match v {
            // The filesystem magic numbers auditctl knows (linux/magic.h).
            "debugfs" => 0x6462_6720,
            "tracefs" => 0x7472_6163,
            _ => number(v).ok_or_else(|| bad("debugfs, tracefs or a magic number"))?,
        }),
        Kind::Text => unreachable!("text values go to the buffer"),
    }
}

/// Parse one auditctl rule (its arguments, as split on whitespace) into the kernel's form.
pub fn parse(args: &[&str]) -> Result<RuleData, RuleError> {
    let mut rule = RuleData {
        flags: u32::MAX,
        action: 0,
        mask: [0; BITMASK_SIZE],
        fields: Vec::new(),
        buf: Vec::new(),
    };
    let mut syscalls: Vec<(&str, Option<Arch>)> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    let mut watch: Option<&str> = None;
    let mut perms: Option<&str> = None;
    let mut it = args.iter().copied();
    while let Some(opt) = it.next() {
        let mut val = |name: &'static str| it.next().ok_or(RuleError::MissingValue(name));
        match opt {
            "-a" | "-A" => {
                let v = val("-a")?;
                let (a, b) = v
                    .split_once(',')
                    .ok_or_else(|| RuleError::BadListAction(v.into()))?;
                let (list, action) = match (list_of(a), action_of(b)) {
                    (Some(l), Some(x)) => (l, x),
                    _ => match (list_of(b), action_of(a)) {
                        (Some(l), Some(x)) => (l, x),
                        _ => return Err(RuleError::BadListAction(v.into())),
                    },
                };
                rule.flags = list | if opt == "-A" { FILTER_PREPEND } else { 0 };
                rule.action = action;
            }
            // Names are read for the arch given so far (auditctl's rule: arch before -S).
            "-S" => {
                let arch = rule
                    .fields
                    .iter()
                    .rfind(|f| f.0 == FIELD_ARCH)
                    .map_or(Some(Arch::host()), |f| Arch::from_audit_arch(f.2));
                syscalls.extend(val("-S")?.split(',').map(|s| (s, arch)));
            }
            "-F" => {
                let f = val("-F")?;
                let (name, op, value) = OPERATORS
                    .iter()
                    .filter_map(|(o, code)| f.find(o).map(|i| (i, o, *code)))
                    .min_by_key(|(i, o, _)| (*i, std::cmp::Reverse(o.len())))
                    .map(|(i, o, code)| (&f[..i], code, &f[i + o.len()..]))
                    .ok_or_else(|| RuleError::NoOperator(f.into()))?;
                let &(_, field, kind) = FIELDS
                    .iter()
                    .find(|(n, _, _)| *n == name)
                    .ok_or_else(|| RuleError::UnknownField(name.into()))?;
                if field == FIELD_KEY {
                    keys.push(value);
                    continue;
                }
                if field == FIELD_ARCH && !syscalls.is_empty() {
                    return Err(RuleError::ArchAfterSyscall);
                }
                push_field(&mut rule, name, field, kind, op, value)?;
            }
            "-k" => keys.push(val("-k")?),
            "-w" => watch = Some(val("-w")?),
            "-p" => {
                let v = val("-p")?;
                if watch.is_some() {
                    perms = Some(v);
                } else if rule.flags == u32::MAX || rule.fields.is_empty() {
                    // auditctl: "permission option needs a watch given prior to it".
                    return Err(RuleError::BadValue {
                        field: "-p".into(),
                        value: v.into(),
                        what: "given after -w, or after a field of an -a rule",
                    });
                } else {
                    // On an -a rule, auditctl sets (or adds) its perm field right there.
                    let p = value_of("perm", Kind::Perm, v)?;
                    match rule.fields.iter_mut().find(|f| f.0 == FIELD_PERM) {
                        Some(f) => f.2 = p,
                        None => push(&mut rule, FIELD_PERM, EQUAL, p)?,
                    }
                }
            }
            "-C" => {
                let c = val("-C")?;
                let (code, op) = comparison(c)?;
                push(&mut rule, FIELD_COMPARE, op, code)?;
            }
            other => return Err(RuleError::UnknownOption(other.into())),
        }
    }
    if let Some(path) = watch {
        // auditctl's watch: an exit rule on the path (or the directory), with permissions.
        rule.flags = 4;
        rule.action = 2;
        let is_dir = std::path::Path::new(path).is_dir();
        let field = if is_dir { FIELD_DIR } else { FIELD_WATCH };
        // auditctl drops a trailing slash (`/etc/sudoers.d/` is watched as `/etc/sudoers.d`).
        let path = match path.trim_end_matches('/') {
            "" => "/",
            p => p,
        };
        push_text(&mut rule, field, EQUAL, path)?;
        let p = value_of("perm", Kind::Perm, perms.unwrap_or("rwxa"))?;
        push(&mut rule, FIELD_PERM, EQUAL, p)?;
        rule.mask = ALL_SYSCALLS;
    } else if rule.flags == u32::MAX {
        return Err(RuleError::NoList);
    }
    if !syscalls.is_empty() {
        let io_uring = rule.flags & !FILTER_PREPEND == FILTER_URING;
        for (s, arch) in syscalls {
            if s == "all" {
                rule.mask = ALL_SYSCALLS;
                continue;
            }
            let by_name = if io_uring {
                arch::uring_op_number(s)
            } else {
                arch.and_then(|a| a.syscall_number(s))
            };
            let nr = number(s)
                .or(by_name)
                .filter(|&n| (n as usize) < BITMASK_SIZE * 32)
                .ok_or_else(|| {
                    let on = match (io_uring, arch) {
                        (true, _) => "io_uring",
                        (false, Some(a)) => a.name(),
                        (false, None) => "this arch",
                    };
                    RuleError::UnknownSyscall(s.into(), on)
                })?;
            rule.mask[nr as usize / 32] |= 1 << (nr % 32);
        }
    } else if rule.flags & !FILTER_PREPEND != FILTER_TASK {
        // A rule without -S applies to every syscall: auditctl sets the whole mask (the
        // kernel ignores it where syscalls mean nothing), except on the task list.
        rule.mask = ALL_SYSCALLS;
    }
    if !keys.is_empty() {
        let joined = keys.join("\u{1}");
        push_text(&mut rule, FIELD_KEY, EQUAL, &joined)?;
    }
    Ok(rule)
}

pub(super) fn push(rule: &mut RuleData, field: u32, op: u32, value: u32) -> Result<(), RuleError> {
    if rule.fields.len() >= MAX_FIELDS {
        return Err(RuleError::TooManyFields);
    }
    rule.fields.push((field, op, value));
    Ok(())
}

pub(super) fn push_text(
    rule: &mut RuleData,
    field: u32,
    op: u32,
    text: &str,
) -> Result<(), RuleError> {
    push(rule, field, op, text.len() as u32)?;
    rule.buf.extend_from_slice(text.as_bytes());
    Ok(())
}

pub(super) fn push_field(
    rule: &mut RuleData,
    name: &str,
    field: u32,
    kind: Kind,
    op: u32,
    value: &str,
) -> Result<(), RuleError> {
    if kind == Kind::Text {
        return push_text(rule, field, op, value);
    }
    let v = value_of(name, kind, value)?;
    push(rule, field, op, v)
}

/// A control option of a rules file, as `auditctl -R` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// `-D`: delete every rule.
    DeleteAll,
    /// `-e`, `-f`, `-r`, `-b`, `--backlog_wait_time`: one field of `AUDIT_SET`
    /// (`mask` names it, as in `struct audit_status`).
    Status { mask: u32, value: u32 },
    /// `--loginuid-immutable`: locks loginuid until reboot (`AUDIT_SET_FEATURE`).
    LoginuidImmutable,
    /// `-c` / `-i`: go on past a rule that fails (it is reported).
    ContinueOnError,
}

/// One line of a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleLine {
    /// `-a`/`-A`/`-w`: add this rule.
    Add(RuleData),
    /// `-d`/`-W`: delete this rule.
    Delete(RuleData),
    Control(Control),
}

pub const STATUS_ENABLED: u32 = 1;
pub const STATUS_FAILURE: u32 = 2;
pub const STATUS_RATE_LIMIT: u32 = 8;
pub const STATUS_BACKLOG_LIMIT: u32 = 16;
pub const STATUS_BACKLOG_WAIT_TIME: u32 = 32;

/// Parse one line of a rules file (its arguments, split on whitespace): a rule, a deletion,
/// or a control option. An empty line or a comment is `None`.
pub fn parse_line(args: &[&str]) -> Result<Option<RuleLine>, RuleError> {
    let control = |c| Ok(Some(RuleLine::Control(c)));
    let status = |mask: u32, v: Option<&&str>, opt: &'static str| {
        let v = v.ok_or(RuleError::MissingValue(opt))?;
        let value = number(v).ok_or_else(|| RuleError::BadValue {
            field: opt.into(),
            value: v.to_string(),
            what: "a number",
        })?;
        if mask == STATUS_ENABLED && value > 2 {
            return Err(RuleError::BadValue {
                field: opt.into(),
                value: v.to_string(),
                what: "0, 1 or 2",
            });
        }
        if mask == STATUS_FAILURE && value > 2 {
            return Err(RuleError::BadValue {
                field: opt.into(),
                value: v.to_string(),
                what: "0 (silent), 1 (printk) or 2 (panic)",
            });
        }
        Ok(Some(RuleLine::Control(Control::Status { mask, value })))
    };
    match args {
        [] => Ok(None),
        [first, ..] if first.starts_with('#') => Ok(None),
        ["-D"] => control(Control::DeleteAll),
        ["-c"] | ["-i"] => control(Control::ContinueOnError),
        ["--loginuid-immutable"] => control(Control::LoginuidImmutable),
        ["-e", v @ ..] => status(STATUS_ENABLED, v.first(), "-e"),
        ["-f", v @ ..] => status(STATUS_FAILURE, v.first(), "-f"),
        ["-r", v @ ..] => status(STATUS_RATE_LIMIT, v.first(), "-r"),
        ["-b", v @ ..] => status(STATUS_BACKLOG_LIMIT, v.first(), "-b"),
        ["--backlog_wait_time", v @ ..] => {
            status(STATUS_BACKLOG_WAIT_TIME, v.first(), "--backlog_wait_time")
        }
        [opt, rest @ ..] if *opt == "-d" || *opt == "-W" => {
            // The same rule as its -a / -w form, to be deleted.
            let mut again: Vec<&str> = Vec::with_capacity(args.len());
            again.push(if *opt == "-d" { "-a" } else { "-w" });
            again.extend_from_slice(rest);
            parse(&again).map(|r| Some(RuleLine::Delete(r.as_listed())))
        }
        _ => parse(args).map(|r| Some(RuleLine::Add(r))),
    }
}
