//! auditctl's rule language, parsed into the kernel's `struct audit_rule_data`.
//!
//! Owns the grammar of one rule (`-a list,action`/`-A`, `-S`, `-F field op value`, `-k`,
//! `-w path -p perms -k key`) and its binary encoding, so rules can reach the kernel over
//! netlink (`AUDIT_ADD_RULE`) without the `auditctl` binary, and back into the text
//! `auditctl -l` prints ([`render`]). Syscall names are resolved for the rule's architecture
//! (`-F arch=b64|b32|aarch64|...`, this host's when absent, as auditctl does); `-C` compares
//! two ids. A line of a rules file ([`parse_line`]) may also be a control option (`-D`,
//! `-b`, `-e`, `-W`, ...). What is not supported is a clear error naming the argument, never
//! a silent difference. It must never talk to the kernel: loading is the caller's.
//!
//! The encoding and the rendering are checked against the kernel's own listing of the same
//! rules loaded by auditctl, and against `auditctl -l` (`tests/kernel/`).

use crate::arch::{self, Arch};
use crate::syscall_table;

pub const AUDIT_ADD_RULE: u16 = 1011;
pub const AUDIT_DEL_RULE: u16 = 1012;
pub const AUDIT_LIST_RULES: u16 = 1013;

const MAX_FIELDS: usize = 64;
const BITMASK_SIZE: usize = 64;
/// `-A`: insert at the front of the list (the kernel does not store it).
pub const FILTER_PREPEND: u32 = 0x10;
const FILTER_TASK: u32 = 1;
const FILTER_USER: u32 = 0;
const FILTER_EXCLUDE: u32 = 5;
const FILTER_FS: u32 = 6;
const FILTER_URING: u32 = 7;

/// Every syscall, as the kernel stores it: the top 16 bits of the mask are syscall *class*
/// flags the kernel expands and clears, so its listing of "all" ends in `0x0000ffff`.
const ALL_SYSCALLS: [u32; BITMASK_SIZE] = {
    let mut m = [u32::MAX; BITMASK_SIZE];
    m[BITMASK_SIZE - 1] = 0xffff;
    m
};

/// The operators auditctl knows, longest first so `!=` is not read as `=`.
const OPERATORS: [(&str, u32); 8] = [
    ("!=", 0x3000_0000),
    (">=", 0x6000_0000),
    ("<=", 0x5000_0000),
    ("&=", 0x4800_0000),
    ("=", 0x4000_0000),
    (">", 0x2000_0000),
    ("<", 0x1000_0000),
    ("&", 0x0800_0000),
];
const EQUAL: u32 = 0x4000_0000;

/// How a field's value is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Number,
    Uid,
    Gid,
    Arch,
    Exit,
    Success,
    MsgType,
    Perm,
    FileType,
    /// A filesystem type name (its magic number), for the `filesystem` list.
    FsType,
    /// Carried in the rule's string buffer (value = its length).
    Text,
}

/// auditctl's field names.
const FIELDS: &[(&str, u32, Kind)] = &[
    ("pid", 0, Kind::Number),
    ("uid", 1, Kind::Uid),
    ("euid", 2, Kind::Uid),
    ("suid", 3, Kind::Uid),
    ("fsuid", 4, Kind::Uid),
    ("gid", 5, Kind::Gid),
    ("egid", 6, Kind::Gid),
    ("sgid", 7, Kind::Gid),
    ("fsgid", 8, Kind::Gid),
    ("auid", 9, Kind::Uid),
    ("loginuid", 9, Kind::Uid),
    ("pers", 10, Kind::Number),
    ("arch", 11, Kind::Arch),
    ("msgtype", 12, Kind::MsgType),
    ("subj_user", 13, Kind::Text),
    ("subj_role", 14, Kind::Text),
    ("subj_type", 15, Kind::Text),
    ("subj_sen", 16, Kind::Text),
    ("subj_clr", 17, Kind::Text),
    ("ppid", 18, Kind::Number),
    ("obj_user", 19, Kind::Text),
    ("obj_role", 20, Kind::Text),
    ("obj_type", 21, Kind::Text),
    ("obj_lev_low", 22, Kind::Text),
    ("obj_lev_high", 23, Kind::Text),
    ("sessionid", 25, Kind::Number),
    ("fstype", 26, Kind::FsType),
    ("devmajor", 100, Kind::Number),
    ("devminor", 101, Kind::Number),
    ("inode", 102, Kind::Number),
    ("exit", 103, Kind::Exit),
    ("success", 104, Kind::Success),
    ("path", 105, Kind::Text),
    ("perm", 106, Kind::Perm),
    ("dir", 107, Kind::Text),
    ("filetype", 108, Kind::FileType),
    ("obj_uid", 109, Kind::Uid),
    ("obj_gid", 110, Kind::Gid),
    ("exe", 112, Kind::Text),
    ("saddr_fam", 113, Kind::Number),
    ("a0", 200, Kind::Number),
    ("a1", 201, Kind::Number),
    ("a2", 202, Kind::Number),
    ("a3", 203, Kind::Number),
    ("key", 210, Kind::Text),
];
const FIELD_ARCH: u32 = 11;
const FIELD_KEY: u32 = 210;
const FIELD_WATCH: u32 = 105;
const FIELD_DIR: u32 = 107;
const FIELD_PERM: u32 = 106;
const FIELD_COMPARE: u32 = 111;
const FIELD_MSGTYPE: u32 = 12;
const FIELD_INODE: u32 = 102;
const FIELD_EXIT: u32 = 103;
const FIELD_FSTYPE: u32 = 26;

/// The id pairs `-C` compares (`AUDIT_COMPARE_*`), either order. `obj_uid`/`obj_gid` are the
/// file's owner.
const COMPARISONS: [(&str, &str, u32); 25] = [
    ("uid", "obj_uid", 1),
    ("gid", "obj_gid", 2),
    ("euid", "obj_uid", 3),
    ("egid", "obj_gid", 4),
    ("auid", "obj_uid", 5),
    ("suid", "obj_uid", 6),
    ("sgid", "obj_gid", 7),
    ("fsuid", "obj_uid", 8),
    ("fsgid", "obj_gid", 9),
    ("uid", "auid", 10),
    ("uid", "euid", 11),
    ("uid", "fsuid", 12),
    ("uid", "suid", 13),
    ("auid", "fsuid", 14),
    ("auid", "suid", 15),
    ("auid", "euid", 16),
    ("euid", "suid", 17),
    ("euid", "fsuid", 18),
    ("suid", "fsuid", 19),
    ("gid", "egid", 20),
    ("gid", "fsgid", 21),
    ("gid", "sgid", 22),
    ("egid", "fsgid", 23),
    ("egid", "sgid", 24),
    ("sgid", "fsgid", 25),
];

/// `-C a=b` / `-C a!=b`: the kernel's comparison code and operator.
fn comparison(c: &str) -> Result<(u32, u32), RuleError> {
    let (a, b, op) = if let Some((a, b)) = c.split_once("!=") {
        (a, b, 0x3000_0000)
    } else if let Some((a, b)) = c.split_once('=') {
        (a, b, EQUAL)
    } else {
        return Err(RuleError::NoOperator(c.into()));
    };
    // auditctl's other spelling of the login uid.
    let norm = |f: &str| if f == "loginuid" { "auid" } else { f }.to_string();
    let (a, b) = (norm(a), norm(b));
    COMPARISONS
        .iter()
        .find(|(x, y, _)| (*x == a && *y == b) || (*x == b && *y == a))
        .map(|&(_, _, code)| (code, op))
        .ok_or_else(|| RuleError::BadValue {
            field: "-C".into(),
            value: c.into(),
            what: "a comparison of two ids the kernel can compare (uid!=euid, auid=obj_uid, ...) with = or !=",
        })
}

/// Why a rule cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("{0}: not an option auditctl rules take")]
    UnknownOption(String),
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("-a/-A {0:?}: expected list,action (lists: exit, user, exclude, task, filesystem, io_uring; actions: always, never)")]
    BadListAction(String),
    #[error("-S {0:?}: no such syscall on {1}")]
    UnknownSyscall(String, &'static str),
    #[error("-F {0:?}: unknown field")]
    UnknownField(String),
    #[error("-F {0:?}: no operator (= != < > <= >= & &=)")]
    NoOperator(String),
    #[error("-F {field}: {value:?} is not {what}")]
    BadValue {
        field: String,
        value: String,
        what: &'static str,
    },
    #[error("{0}: not supported by the native loader yet")]
    Unsupported(String),
    #[error("more than {MAX_FIELDS} fields")]
    TooManyFields,
    #[error("a rule needs -a/-A or -w")]
    NoList,
    #[error("-F arch must be before -S (syscall names are read for it)")]
    ArchAfterSyscall,
}

/// One rule as the kernel stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleData {
    /// The filter list (`AUDIT_FILTER_*`), with `AUDIT_FILTER_PREPEND` for `-A`.
    pub flags: u32,
    /// `AUDIT_NEVER` (0) or `AUDIT_ALWAYS` (2).
    pub action: u32,
    pub mask: [u32; BITMASK_SIZE],
    /// `(field, operator, value)` in the order given.
    pub fields: Vec<(u32, u32, u32)>,
    /// String values back to back, in field order.
    pub buf: Vec<u8>,
}

impl RuleData {
    /// `struct audit_rule_data` in native byte order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 4 * (BITMASK_SIZE + 3 * MAX_FIELDS) + self.buf.len());
        let mut put = |v: u32| out.extend_from_slice(&v.to_ne_bytes());
        put(self.flags);
        put(self.action);
        put(self.fields.len() as u32);
        for m in self.mask {
            put(m);
        }
        for i in 0..MAX_FIELDS {
            put(self.fields.get(i).map_or(0, |f| f.0));
        }
        for i in 0..MAX_FIELDS {
            put(self.fields.get(i).map_or(0, |f| f.2));
        }
        for i in 0..MAX_FIELDS {
            put(self.fields.get(i).map_or(0, |f| f.1));
        }
        put(self.buf.len() as u32);
        out.extend_from_slice(&self.buf);
        out
    }

    /// The rule as the kernel lists it back (the prepend flag only steers insertion).
    pub fn as_listed(&self) -> RuleData {
        RuleData {
            flags: self.flags & !FILTER_PREPEND,
            ..self.clone()
        }
    }

    /// Parse the kernel's listing of one rule (`AUDIT_LIST_RULES` payload).
    pub fn from_bytes(b: &[u8]) -> Option<RuleData> {
        let word = |i: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(
                b.get(i * 4..i * 4 + 4)?.try_into().ok()?,
            ))
        };
        let count = word(2)? as usize;
        if count > MAX_FIELDS {
            return None;
        }
        let mut mask = [0u32; BITMASK_SIZE];
        for (i, m) in mask.iter_mut().enumerate() {
            *m = word(3 + i)?;
        }
        let base = 3 + BITMASK_SIZE;
        let fields = (0..count)
            .map(|i| {
                Some((
                    word(base + i)?,
                    word(base + 2 * MAX_FIELDS + i)?,
                    word(base + MAX_FIELDS + i)?,
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        let buflen = word(base + 3 * MAX_FIELDS)? as usize;
        let start = (base + 3 * MAX_FIELDS + 1) * 4;
        Some(RuleData {
            flags: word(0)?,
            action: word(1)?,
            mask,
            fields,
            buf: b.get(start..start + buflen)?.to_vec(),
        })
    }
}

fn list_of(name: &str) -> Option<u32> {
    Some(match name {
        "user" => 0,
        "task" => 1,
        "exit" => 4,
        "exclude" => 5,
        "filesystem" => 6,
        "io_uring" => 7,
        _ => return None,
    })
}

fn action_of(name: &str) -> Option<u32> {
    Some(match name {
        "never" => 0,
        "always" => 2,
        _ => return None,
    })
}

fn lookup<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| table[i].1)
}

/// A number as auditctl reads it (`strtol` base 0: decimal, `0x` hex, leading-0 octal),
/// negative values as their two's complement.
fn number(s: &str) -> Option<u32> {
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

fn id_by_name(name: &str, group: bool) -> Option<u32> {
    if group {
        crate::privileges::lookup_group(name)
    } else {
        crate::privileges::lookup_user(name).map(|(uid, _)| uid)
    }
}

fn value_of(field: &str, kind: Kind, v: &str) -> Result<u32, RuleError> {
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

fn push(rule: &mut RuleData, field: u32, op: u32, value: u32) -> Result<(), RuleError> {
    if rule.fields.len() >= MAX_FIELDS {
        return Err(RuleError::TooManyFields);
    }
    rule.fields.push((field, op, value));
    Ok(())
}

fn push_text(rule: &mut RuleData, field: u32, op: u32, text: &str) -> Result<(), RuleError> {
    push(rule, field, op, text.len() as u32)?;
    rule.buf.extend_from_slice(text.as_bytes());
    Ok(())
}

fn push_field(
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

/// The symbol of an operator code.
fn operator_symbol(op: u32) -> &'static str {
    OPERATORS
        .iter()
        .find(|(_, code)| *code == op)
        .map_or("?", |(sym, _)| sym)
}

fn field_name(field: u32) -> Option<&'static str> {
    FIELDS.iter().find(|f| f.1 == field).map(|f| f.0)
}

/// Fields whose value is a string in the rule's buffer (value = its length).
fn is_text(field: u32) -> bool {
    ((13..=23).contains(&field) && field != 18) || matches!(field, 105 | 107 | 112 | 210)
}

fn list_name(list: u32) -> String {
    match list {
        0 => "user".into(),
        1 => "task".into(),
        4 => "exit".into(),
        5 => "exclude".into(),
        6 => "filesystem".into(),
        7 => "io_uring".into(),
        n => n.to_string(),
    }
}

/// auditctl's test for a watch: only path/dir, perm and key fields, a perm, every syscall.
fn is_watch(r: &RuleData) -> bool {
    let list = r.flags & 0x7;
    let perm = r.fields.iter().any(|f| f.0 == FIELD_PERM);
    let only = r
        .fields
        .iter()
        .all(|f| matches!(f.0, FIELD_PERM | FIELD_KEY | FIELD_DIR | FIELD_WATCH));
    let all = matches!(list, FILTER_USER | FILTER_TASK | FILTER_EXCLUDE | FILTER_FS)
        || r.mask[..BITMASK_SIZE - 1].iter().all(|&m| m == u32::MAX);
    perm && only && all
}

fn perm_letters(v: u32) -> String {
    [(4, 'r'), (2, 'w'), (1, 'x'), (8, 'a')]
        .iter()
        .filter(|(bit, _)| v & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// One rule in the words `auditctl -l` prints for it (auditctl 3, without `-i`), so a
/// listing of our own and auditctl's can be compared line for line.
pub fn render(r: &RuleData) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let list = r.flags & 0x7;
    let watch = is_watch(r);
    let mut arch = Some(Arch::host());
    if !watch {
        let action = match r.action {
            0 => "never".to_string(),
            1 => "possible".to_string(),
            2 => "always".to_string(),
            n => n.to_string(),
        };
        let _ = write!(out, "-a {action},{}", list_name(list));
        for &(field, op, value) in r.fields.iter().filter(|f| f.0 == FIELD_ARCH) {
            arch = Arch::from_audit_arch(value);
            let sym = operator_symbol(op);
            // auditctl's b64/b32 for this host's two ABIs; another machine's by name, so
            // the line reads back as the same rule here.
            match arch {
                Some(a) if a == Arch::host() => {
                    let _ = write!(out, " -F arch{sym}b64");
                }
                Some(a) if Some(a) == Arch::host_compat() => {
                    let _ = write!(out, " -F arch{sym}b32");
                }
                Some(a) => {
                    let _ = write!(out, " -F arch{sym}{}", a.name());
                }
                None => {
                    let _ = write!(out, " -F arch{sym}0x{value:X}");
                }
            }
            let _ = field;
        }
        render_syscalls(&mut out, r, list, arch);
    }
    let text = String::from_utf8_lossy(&r.buf);
    let mut offset = 0usize;
    for &(field, op, value) in &r.fields {
        let sym = operator_symbol(op);
        if field == FIELD_COMPARE {
            if let Some((a, b, _)) = COMPARISONS.iter().find(|c| c.2 == value) {
                let _ = write!(out, " -C {a}{sym}{b}");
            }
            continue;
        }
        let Some(name) = field_name(field) else {
            let _ = write!(out, " f{field}{sym}{}", value as i32);
            continue;
        };
        if is_text(field) {
            let end = (offset + value as usize).min(text.len());
            let s = text.get(offset..end).unwrap_or("");
            offset = end;
            match field {
                FIELD_WATCH | FIELD_DIR if watch => {
                    let _ = write!(out, "-w {s}");
                }
                FIELD_WATCH => {
                    let _ = write!(out, " -F path{sym}{s}");
                }
                FIELD_KEY => {
                    for k in s.split('\u{1}').filter(|k| !k.is_empty()) {
                        if watch {
                            let _ = write!(out, " -k {k}");
                        } else {
                            let _ = write!(out, " -F key={k}");
                        }
                    }
                }
                _ => {
                    let _ = write!(out, " -F {name}{sym}{s}");
                }
            }
            continue;
        }
        match field {
            FIELD_ARCH => {}
            FIELD_MSGTYPE => match u16::try_from(value).ok().and_then(crate::types::name_of) {
                Some(t) => {
                    let _ = write!(out, " -F {name}{sym}{t}");
                }
                None => {
                    let _ = write!(out, " -F {name}{sym}{}", value as i32);
                }
            },
            FIELD_PERM if watch => {
                let _ = write!(out, " -p {}", perm_letters(value));
            }
            FIELD_PERM => {
                let _ = write!(out, " -F perm={}", perm_letters(value));
            }
            FIELD_INODE => {
                let _ = write!(out, " -F {name}{sym}{value}");
            }
            200..=203 => {
                let _ = write!(out, " -F {name}{sym}0x{value:X}");
            }
            FIELD_EXIT => {
                let v = value as i32;
                let errno = syscall_table::ERRNO
                    .iter()
                    .find(|e| e.1 == v.unsigned_abs() as i32)
                    .map(|e| e.0);
                match errno {
                    Some(e) if v < 0 => {
                        let _ = write!(out, " -F {name}{sym}-{e}");
                    }
                    _ => {
                        let _ = write!(out, " -F {name}{sym}{v}");
                    }
                }
            }
            FIELD_FSTYPE => match value {
                0x7472_6163 => {
                    let _ = write!(out, " -F {name}{sym}tracefs");
                }
                0x6462_6720 => {
                    let _ = write!(out, " -F {name}{sym}debugfs");
                }
                v => {
                    let _ = write!(out, " -F {name}{sym}{}", v as i32);
                }
            },
            _ => {
                let _ = write!(out, " -F {name}{sym}{}", value as i32);
            }
        }
    }
    out
}

/// auditctl's `-S` part: `all`, or each syscall by name for the rule's arch (a number where
/// it has none), nothing on the lists that take no syscalls.
fn render_syscalls(out: &mut String, r: &RuleData, list: u32, arch: Option<Arch>) {
    if matches!(list, FILTER_USER | FILTER_TASK | FILTER_EXCLUDE | FILTER_FS) {
        return;
    }
    let io_uring = list == FILTER_URING;
    // auditctl's own bound for "all" on the io_uring list (IORING_OP_LAST words).
    let words = if io_uring { 37 } else { BITMASK_SIZE - 1 };
    if r.mask[..words].iter().all(|&m| m == u32::MAX) {
        out.push_str(" -S all");
        return;
    }
    let mut first = true;
    for nr in 0..(BITMASK_SIZE * 32) as u32 {
        if r.mask[nr as usize / 32] & (1 << (nr % 32)) == 0 {
            continue;
        }
        out.push_str(if first { " -S " } else { "," });
        first = false;
        let name = if io_uring {
            arch::uring_op_name(nr)
        } else {
            arch.and_then(|a| a.syscall_name(nr))
        };
        match name {
            Some(n) => out.push_str(n),
            None => out.push_str(&nr.to_string()),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> RuleData {
        parse(&s.split_whitespace().collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn syscalls_fields_and_keys_encode_as_the_kernel_stores_them() {
        let r = rule("-a always,exit -F arch=b64 -S execve,getppid -F auid>=1000 -F auid!=unset -k exec -k two");
        assert_eq!((r.flags, r.action), (4, 2));
        assert_eq!(r.mask[59 / 32], 1 << (59 % 32));
        assert_eq!(r.mask[110 / 32], 1 << (110 % 32));
        assert_eq!(
            r.fields,
            vec![
                (11, 0x4000_0000, Arch::X86_64.audit_arch()),
                (9, 0x6000_0000, 1000),
                (9, 0x3000_0000, u32::MAX),
                (210, 0x4000_0000, 8),
            ]
        );
        assert_eq!(r.buf, b"exec\x01two");
        let b = r.to_bytes();
        assert_eq!(b.len(), 4 * (3 + 64 + 3 * 64 + 1) + 8);
        assert_eq!(RuleData::from_bytes(&b).unwrap(), r);
    }

    #[test]
    fn b32_names_resolve_in_the_i386_table_and_errnos_by_name() {
        let r = rule("-a exit,always -F arch=b32 -S execve -F exit=-EACCES");
        assert_eq!(r.mask[0], 1 << 11);
        assert_eq!(r.fields[1], (103, 0x4000_0000, (-13i32) as u32));
    }

    #[test]
    fn p_on_an_a_rule_is_its_perm_field_where_it_stands() {
        // As auditctl: `-p` after a field of an -a rule adds (or updates) `perm`.
        let r = rule("-a always,exit -F arch=b64 -F path=/usr/bin/x -p wa -F key=k");
        assert_eq!(r.fields[2], (106, 0x4000_0000, 2 | 8));
        assert_eq!(
            render(&r),
            "-a always,exit -F arch=b64 -S all -F path=/usr/bin/x -F perm=wa -F key=k"
        );
        let r = rule("-a always,exit -F path=/usr/bin/x -F perm=r -p x");
        assert_eq!(r.fields[1], (106, 0x4000_0000, 1));
        assert!(parse(&["-p", "wa", "-w", "/etc/passwd"]).is_err());
        assert!(parse(&["-a", "always,exit", "-p", "wa"]).is_err());
    }

    #[test]
    fn comparisons_in_either_order() {
        let r = rule("-a always,exit -F arch=b64 -S execve -C uid!=euid -C obj_uid=auid");
        assert_eq!(r.fields[1], (111, 0x3000_0000, 11));
        assert_eq!(r.fields[2], (111, 0x4000_0000, 5));
    }

    #[test]
    fn watches_become_exit_rules_with_path_and_perm() {
        let r = rule("-w /etc/passwd -p wa -k identity");
        assert_eq!((r.flags, r.action), (4, 2));
        assert_eq!(r.fields[0], (105, 0x4000_0000, 11));
        assert_eq!(r.fields[1], (106, 0x4000_0000, 2 | 8));
        assert_eq!(r.buf, b"/etc/passwdidentity");
        let d = rule("-w /etc/ -p rwxa");
        assert_eq!(d.fields[0].0, 107, "a directory is a dir field");
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let e = |s: &str| parse(&s.split_whitespace().collect::<Vec<_>>()).unwrap_err();
        assert_eq!(
            e("-a always,exit -S no_such_call"),
            RuleError::UnknownSyscall("no_such_call".into(), "x86_64")
        );
        assert!(matches!(
            e("-a sometimes,exit"),
            RuleError::BadListAction(_)
        ));
        assert_eq!(
            e("-a always,exit -F bogus=1"),
            RuleError::UnknownField("bogus".into())
        );
        assert!(matches!(
            e("-a always,exit -F success=maybe"),
            RuleError::BadValue { .. }
        ));
        assert!(matches!(
            e("-a always,exit -C uid<euid"),
            RuleError::NoOperator(_)
        ));
        assert!(matches!(
            e("-a always,exit -C pid=ppid"),
            RuleError::BadValue { .. }
        ));
        assert_eq!(e("-S execve"), RuleError::NoList);
        assert_eq!(
            e("-a always,exit -S execve -F arch=b64"),
            RuleError::ArchAfterSyscall
        );
    }

    #[test]
    fn rendering_reads_back_as_auditctl_lists_it() {
        // Each: (what we parse, what `auditctl -l` prints for it, checked on auditctl 3.0.9).
        let cases = [
            (
                "-a exit,always -F arch=b64 -S open,openat -F auid>=1000 -F auid!=unset -F exit=-EACCES -k k1 -k k2",
                "-a always,exit -F arch=b64 -S open,openat -F auid>=1000 -F auid!=-1 -F exit=-EACCES -F key=k1 -F key=k2",
            ),
            ("-w /etc/passwd -p wa -k pw", "-w /etc/passwd -p wa -k pw"),
            (
                "-a always,exit -F arch=b32 -S 5 -C uid!=euid -F filetype=dir -F a1&=3",
                "-a always,exit -F arch=b32 -S open -C uid!=euid -F filetype=16384 -F a1&=0x3",
            ),
            (
                "-a exit,always -F arch=b64 -S execve -F path=/bin/ls -F perm=x",
                "-a always,exit -F arch=b64 -S execve -F path=/bin/ls -F perm=x",
            ),
            ("-a never,exclude -F msgtype=SYSCALL", "-a never,exclude -F msgtype=SYSCALL"),
            ("-a always,filesystem -F fstype=tracefs", "-a always,filesystem -F fstype=tracefs"),
            (
                "-a always,exit -F arch=b64 -S all -F pid=5 -F sessionid=4294967295",
                "-a always,exit -F arch=b64 -S all -F pid=5 -F sessionid=-1",
            ),
            ("-a always,user -F uid=0", "-a always,user -F uid=0"),
            ("-a always,exit -F arch=x86_64 -S 1000", "-a always,exit -F arch=b64 -S 1000"),
            ("-a task,never", "-a never,task"),
        ];
        for (input, listed) in cases {
            let r = rule(input);
            assert_eq!(render(&r), listed, "{input}");
            // The rendering parses back to the same rule.
            let again = rule(&render(&r).replace("-F arch=b32 -S open ", "-F arch=b32 -S 5 "));
            assert_eq!(again.as_listed(), r.as_listed(), "{input}");
        }
    }

    #[test]
    fn rules_for_other_architectures_name_their_own_syscalls() {
        let r = rule("-a always,exit -F arch=aarch64 -S openat,execve");
        assert_eq!(r.fields[0].2, 0xc000_00b7);
        assert_eq!(r.mask[56 / 32] & (1 << (56 % 32)), 1 << (56 % 32));
        assert_eq!(
            render(&r),
            "-a always,exit -F arch=aarch64 -S openat,execve"
        );
        let e = parse(&["-a", "always,exit", "-F", "arch=aarch64", "-S", "open"]).unwrap_err();
        assert_eq!(e, RuleError::UnknownSyscall("open".into(), "aarch64"));
        assert_eq!(e.to_string(), "-S \"open\": no such syscall on aarch64");
        let u = rule("-a always,io_uring -S openat,connect");
        assert_eq!(u.flags, 7);
        assert_eq!(render(&u), "-a always,io_uring -S connect,openat");
    }

    #[test]
    fn rules_file_lines_are_rules_deletions_or_controls() {
        let l = |s: &str| parse_line(&s.split_whitespace().collect::<Vec<_>>());
        assert_eq!(l(""), Ok(None));
        assert_eq!(l("# -D"), Ok(None));
        assert_eq!(l("-D"), Ok(Some(RuleLine::Control(Control::DeleteAll))));
        assert_eq!(
            l("-e 2"),
            Ok(Some(RuleLine::Control(Control::Status {
                mask: STATUS_ENABLED,
                value: 2
            })))
        );
        assert!(l("-e 3").is_err());
        assert!(l("-b lots").is_err());
        assert_eq!(
            l("--backlog_wait_time 60000"),
            Ok(Some(RuleLine::Control(Control::Status {
                mask: STATUS_BACKLOG_WAIT_TIME,
                value: 60000
            })))
        );
        assert_eq!(
            l("--loginuid-immutable"),
            Ok(Some(RuleLine::Control(Control::LoginuidImmutable)))
        );
        assert_eq!(
            l("-c"),
            Ok(Some(RuleLine::Control(Control::ContinueOnError)))
        );
        assert_eq!(
            l("-W /etc/passwd -p wa -k pw"),
            Ok(Some(RuleLine::Delete(rule("-w /etc/passwd -p wa -k pw"))))
        );
        assert_eq!(
            l("-d exit,always -F arch=b64 -S execve"),
            Ok(Some(RuleLine::Delete(rule(
                "-a exit,always -F arch=b64 -S execve"
            ))))
        );
        assert!(matches!(
            l("-a always,exit -S execve"),
            Ok(Some(RuleLine::Add(_)))
        ));
    }
}
