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
//!
//! One module each: the kernel's struct (`encoding`), the names and numbers (`tables`), text
//! to rule (`parse`), rule to text (`render`).

mod encoding;
mod parse;
mod render;
mod tables;
#[cfg(test)]
mod tests;

pub use encoding::RuleData;
pub use parse::{
    parse, parse_line, Control, RuleLine, STATUS_BACKLOG_LIMIT, STATUS_BACKLOG_WAIT_TIME,
    STATUS_ENABLED, STATUS_FAILURE, STATUS_RATE_LIMIT,
};
pub use render::render;

pub(super) const MAX_FIELDS: usize = 64;
pub(super) const BITMASK_SIZE: usize = 64;
/// `-A`: insert at the front of the list (the kernel does not store it).
pub const FILTER_PREPEND: u32 = 0x10;
pub(super) const FILTER_TASK: u32 = 1;
pub(super) const FILTER_USER: u32 = 0;
pub(super) const FILTER_EXCLUDE: u32 = 5;
pub(super) const FILTER_FS: u32 = 6;
pub(super) const FILTER_URING: u32 = 7;

/// Every syscall, as the kernel stores it: the top 16 bits of the mask are syscall *class*
/// flags the kernel expands and clears, so its listing of "all" ends in `0x0000ffff`.
pub(super) const ALL_SYSCALLS: [u32; BITMASK_SIZE] = {
    let mut m = [u32::MAX; BITMASK_SIZE];
    m[BITMASK_SIZE - 1] = 0xffff;
    m
};

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
