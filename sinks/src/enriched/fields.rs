//! The JSON type of every field of the enriched format: one type per field, whatever its
//! value (search engines map a field's type from the first value they see).
//!
//! Owns the field table. Its source is audit-userspace's own (`auparse/typetab.h`, with the
//! per-record corrections of `auparse_interp_adjust_type` in `auparse/interpret.c`, commit
//! ea8550209d556fdf44a2c13d4b54a9803dd07442), not laurel's list:
//! - numbers: the fields auparse reads as decimal (`strtoul(val, NULL, 10)`): its `UID`,
//!   `GID`, `SYSCALL`, `EXIT`, `SESSION`, `SIGNAL`, `CAPABILITY`, `LIST`, `PERM`, `PROMISC`,
//!   `ICMPTYPE`, `PROTOCOL`, `NFPROTO`, `FANOTIFY`, `TRUST`, `ERRNO` types, and the fields it
//!   leaves unclassified that the kernel writes with `%d`/`%u` (`pid`, `items`, `inode`, ...:
//!   [`DECIMAL`]);
//! - escaped text (hex-decoded when written as bare hex): its `ESCAPED`, `ESCAPED_FILE`,
//!   `ESCAPED_KEY`, `TTY_DATA` and `PROCTITLE` types;
//! - everything else, known or not, is a string as written (hex numbers such as `arch`,
//!   `per`, `a0`, `cap_*`, modes, `res`, labels, and every field this table does not name).
//!
//! `id` is a user id (a group id in ADD_GROUP, DEL_GROUP and GRP_MGMT), never hex. It must
//! never look at a value to decide a type: only the record type and the field name.

use std::sync::LazyLock;

use pauditd_engine::types;
use rustc_hash::FxHashMap;

/// A field's JSON type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A decimal integer: a JSON number (null when absent); a value that is not one goes to
    /// the record's `RAW` object and the field is null.
    Int,
    /// Text the kernel hex-encodes when it holds odd bytes: a string, decoded.
    Escaped,
    /// A string as written.
    Text,
}

/// What an id field names, for its translation (`auid` -> `AUID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    User,
    Group,
}

/// audit-userspace's `UID` fields (typetab.h), and ours with the same meaning.
pub const UIDS: &[&[u8]] = &[
    b"auid",
    b"uid",
    b"euid",
    b"suid",
    b"fsuid",
    b"ouid",
    b"oauid",
    b"old-auid",
    b"iuid",
    b"id",
    b"inode_uid",
    b"sauid",
    b"obj_uid",
    // Not in typetab.h; user ids in the kernel's and shadow-utils' records.
    b"loginuid",
    b"old-uid",
    b"new-uid",
];

/// audit-userspace's `GID` fields, and ours with the same meaning.
pub const GIDS: &[&[u8]] = &[
    b"obj_gid",
    b"gid",
    b"egid",
    b"sgid",
    b"fsgid",
    b"ogid",
    b"igid",
    b"inode_gid",
    b"new_gid",
    b"old-gid",
    b"new-gid",
];

/// typetab.h's other decimal types: SYSCALL, EXIT, SESSION, SIGNAL, CAPABILITY, LIST, PERM,
/// PROMISC, ICMPTYPE, PROTOCOL, NFPROTO, FANOTIFY, TRUST, ERRNO.
pub const AUPARSE_DECIMAL: &[&[u8]] = &[
    b"syscall",
    b"uring_op",
    b"exit",
    b"ses",
    b"sig",
    b"sigev_signo",
    b"capability",
    b"list",
    b"perm",
    b"perm_mask",
    b"prom",
    b"old_prom",
    b"icmptype",
    b"proto",
    b"family",
    b"resp",
    b"subj_trust",
    b"obj_trust",
    b"errno",
];

/// Fields auparse leaves unclassified that the kernel (or auditd) always writes in decimal.
pub const DECIMAL: &[&[u8]] = &[
    b"pid",
    b"ppid",
    b"opid",
    b"oses",
    b"old-ses",
    b"items",
    b"item",
    b"inode",
    b"ino",
    b"argc",
    b"lport",
    b"rport",
    b"fport",
    b"sport",
    b"dport",
    b"old",
    b"new",
    b"audit_enabled",
    b"audit_failure",
    b"audit_pid",
    b"audit_backlog_limit",
    b"audit_backlog_wait_time",
    b"audit_rate_limit",
    b"enforcing",
    b"old_enforcing",
    b"prog-id",
    b"sec",
    b"nsec",
    b"major",
    b"minor",
    b"entries",
    b"cap_frootid",
    b"cap_fe",
    b"fe",
    b"peer_pid",
    b"spid",
    b"tpid",
    b"permissive",
    b"nargs",
    b"fd",
    b"fd0",
    b"fd1",
    b"src_prefixlen",
    b"dst_prefixlen",
    b"ksize",
];

/// typetab.h's ESCAPED, ESCAPED_FILE, ESCAPED_KEY, TTY_DATA and PROCTITLE fields (the
/// AppArmor ones included: auditd is built with them on the distributions that use it).
pub const ESCAPED: &[&[u8]] = &[
    b"path",
    b"comm",
    b"exe",
    b"file",
    b"name",
    b"watch",
    b"cwd",
    b"cmd",
    b"acct",
    b"dir",
    b"key",
    b"vm",
    b"old-chardev",
    b"new-chardev",
    b"old-disk",
    b"new-disk",
    b"old-fs",
    b"new-fs",
    b"old-net",
    b"new-net",
    b"device",
    b"cgroup",
    b"apparmor",
    b"operation",
    b"denied_mask",
    b"info",
    b"profile",
    b"requested_mask",
    b"old-rng",
    b"new-rng",
    b"ocomm",
    b"grp",
    b"new_group",
    b"invalid_context",
    b"sw",
    b"root_dir",
    b"data",
    b"proctitle",
];

/// Fields whose type differs in one record type (`auparse_interp_adjust_type`): the record
/// type, the field, and its kind there.
pub const EXCEPTIONS: &[(u16, &[u8], Kind)] = &[
    (types::AVC, b"saddr", Kind::Text),
    (types::AVC, b"family", Kind::Text),
    (types::AVC, b"key", Kind::Text),
    (types::USER_TTY, b"msg", Kind::Escaped),
];

/// Every field written as a number (in any record type but the exceptions'), for the JSON
/// Schema.
pub fn int_fields() -> impl Iterator<Item = &'static [u8]> {
    UIDS.iter()
        .chain(GIDS)
        .chain(AUPARSE_DECIMAL)
        .chain(DECIMAL)
        .copied()
}

/// `a0`, `a1`, ... (EXECVE's arguments: escaped; SYSCALL's: hex numbers, strings).
fn is_arg(k: &[u8]) -> bool {
    k.len() > 1 && k[0] == b'a' && k[1..].iter().all(u8::is_ascii_digit)
}

/// A field's kind, and what it names when it is an id.
type Entry = (Kind, Option<Id>);

/// The table as one map (a field is looked up once per value written: one hash of a short
/// key, not a scan of the lists).
static TABLE: LazyLock<FxHashMap<&'static [u8], Entry>> = LazyLock::new(|| {
    let mut m = FxHashMap::default();
    for &k in ESCAPED {
        m.insert(k, (Kind::Escaped, None));
    }
    for &k in AUPARSE_DECIMAL.iter().chain(DECIMAL) {
        m.insert(k, (Kind::Int, None));
    }
    for &k in UIDS {
        m.insert(k, (Kind::Int, Some(Id::User)));
    }
    for &k in GIDS {
        m.insert(k, (Kind::Int, Some(Id::Group)));
    }
    m
});

/// What an id field names, if `key` is one (in a record of type `rtype`).
pub fn id_kind(rtype: u16, key: &[u8]) -> Option<Id> {
    if key == b"id" && types::id_is_gid(rtype) {
        return Some(Id::Group);
    }
    TABLE.get(key).and_then(|e| e.1)
}

/// The JSON type of field `key` in a record of type `rtype` (a field of a user-space
/// record's `msg='...'` is looked up with that record's type).
pub fn kind(rtype: u16, key: &[u8]) -> Kind {
    // auparse_interp_adjust_type's corrections first: the AVC's `saddr` is an address as
    // text, its `family` a name ("inet6"), its `key` the key's serial in decimal (strings);
    // USER_TTY's `msg` is the typed text, escaped.
    if let Some((_, _, k)) = EXCEPTIONS.iter().find(|(t, f, _)| *t == rtype && *f == key) {
        return *k;
    }
    if rtype == types::EXECVE && is_arg(key) {
        return Kind::Escaped;
    }
    if rtype == types::EXECVE && key.ends_with(b"_len") && is_arg(&key[..key.len() - 4]) {
        return Kind::Int;
    }
    TABLE.get(key).map_or(Kind::Text, |e| e.0)
}

/// A decimal integer as written (`-` allowed) that fits in 64 bits (signed; a uid of
/// 4294967295 fits), for a JSON number.
pub fn integer(b: &[u8]) -> Option<&[u8]> {
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    let ok = !digits.is_empty()
        && digits.len() <= 19
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0');
    ok.then_some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_comes_from_the_name_never_from_the_value() {
        // The defects: `id` hex-decoded, `arch=40000003` and `per=400000` numbers.
        assert_eq!(kind(1114, b"id"), Kind::Int);
        assert_eq!(id_kind(1114, b"id"), Some(Id::User));
        assert_eq!(id_kind(1116, b"id"), Some(Id::Group));
        assert_eq!(kind(types::SYSCALL, b"arch"), Kind::Text);
        assert_eq!(kind(types::SYSCALL, b"per"), Kind::Text);
        assert_eq!(kind(types::SYSCALL, b"a0"), Kind::Text);
        assert_eq!(kind(types::EXECVE, b"a0"), Kind::Escaped);
        assert_eq!(kind(types::EXECVE, b"a1_len"), Kind::Int);
        assert_eq!(kind(types::EXECVE, b"argc"), Kind::Int);
        assert_eq!(kind(types::PATH, b"mode"), Kind::Text);
        assert_eq!(kind(types::PATH, b"cap_fp"), Kind::Text);
        assert_eq!(kind(types::SYSCALL, b"comm"), Kind::Escaped);
        assert_eq!(kind(1999, b"n"), Kind::Text, "unknown fields are strings");
        assert_eq!(kind(1107, b"res"), Kind::Text, "res=1 and res=success");
        assert_eq!(kind(1325, b"family"), Kind::Int);
        assert_eq!(kind(types::AVC, b"family"), Kind::Text);
        assert_eq!(kind(types::AVC, b"key"), Kind::Text);
        assert_eq!(kind(types::SYSCALL, b"key"), Kind::Escaped);
        assert_eq!(kind(types::USER_TTY, b"msg"), Kind::Escaped);
    }

    #[test]
    fn no_field_is_in_two_lists() {
        let mut seen = std::collections::HashSet::new();
        for k in int_fields().chain(ESCAPED.iter().copied()) {
            assert!(seen.insert(k), "{} twice", String::from_utf8_lossy(k));
        }
    }

    #[test]
    fn integers_fit_in_64_bits() {
        assert_eq!(integer(b"4294967295"), Some(&b"4294967295"[..]));
        assert_eq!(integer(b"-111"), Some(&b"-111"[..]));
        assert_eq!(integer(b"007"), None);
        assert_eq!(integer(b"99999999999999999999"), None);
        assert_eq!(integer(b"vagrant"), None);
        assert_eq!(integer(b""), None);
    }
}
