//! The names auditctl's language uses and the kernel's numbers for them: filter lists,
//! actions, operators, fields (with how each value is written), `-C` comparisons. Tables and
//! lookups only: it must never hold parsing or rendering logic beyond a name-number lookup.

use super::RuleError;

/// The operators auditctl knows, longest first so `!=` is not read as `=`.
pub(super) const OPERATORS: [(&str, u32); 8] = [
    ("!=", 0x3000_0000),
    (">=", 0x6000_0000),
    ("<=", 0x5000_0000),
    ("&=", 0x4800_0000),
    ("=", 0x4000_0000),
    (">", 0x2000_0000),
    ("<", 0x1000_0000),
    ("&", 0x0800_0000),
];
pub(super) const EQUAL: u32 = 0x4000_0000;

/// How a field's value is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
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
pub(super) const FIELDS: &[(&str, u32, Kind)] = &[
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
pub(super) const FIELD_ARCH: u32 = 11;
pub(super) const FIELD_KEY: u32 = 210;
pub(super) const FIELD_WATCH: u32 = 105;
pub(super) const FIELD_DIR: u32 = 107;
pub(super) const FIELD_PERM: u32 = 106;
pub(super) const FIELD_COMPARE: u32 = 111;
pub(super) const FIELD_MSGTYPE: u32 = 12;
pub(super) const FIELD_INODE: u32 = 102;
pub(super) const FIELD_EXIT: u32 = 103;
pub(super) const FIELD_FSTYPE: u32 = 26;

/// The id pairs `-C` compares (`AUDIT_COMPARE_*`), either order. `obj_uid`/`obj_gid` are the
/// file's owner.
pub(super) const COMPARISONS: [(&str, &str, u32); 25] = [
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
pub(super) fn comparison(c: &str) -> Result<(u32, u32), RuleError> {
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

pub(super) fn list_of(name: &str) -> Option<u32> {
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

pub(super) fn action_of(name: &str) -> Option<u32> {
    Some(match name {
        "never" => 0,
        "always" => 2,
        _ => return None,
    })
}

pub(super) fn lookup<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| table[i].1)
}

/// The symbol of an operator code.
pub(super) fn operator_symbol(op: u32) -> &'static str {
    OPERATORS
        .iter()
        .find(|(_, code)| *code == op)
        .map_or("?", |(sym, _)| sym)
}

pub(super) fn field_name(field: u32) -> Option<&'static str> {
    FIELDS.iter().find(|f| f.1 == field).map(|f| f.0)
}

/// Fields whose value is a string in the rule's buffer (value = its length).
pub(super) fn is_text(field: u32) -> bool {
    ((13..=23).contains(&field) && field != 18) || matches!(field, 105 | 107 | 112 | 210)
}
