//! The JSON type of every field of the enriched format: one type per field, whatever its
//! value (search engines map a field's type from the first value they see).
//!
//! Owns the field table. Its source is audit-userspace's own (`auparse/typetab.h`, with the
//! per-record corrections of `auparse_interp_adjust_type` in `auparse/interpret.c`, commit
//! ea8550209d556fdf44a2c13d4b54a9803dd07442), not laurel's list:
//! - numbers: the fields auparse reads as decimal (`strtoul(val, NULL, 10)`): its `UID`,
//!   `GID`, `SYSCALL`, `EXIT`, `SESSION`, `SIGNAL`, `CAPABILITY`, `LIST`, `PERM`, `PROMISC`,
//!   `ICMPTYPE`, `PROTOCOL`, `NFPROTO`, `FANOTIFY`, `TRUST`, `ERRNO` types, and the fields it
//!   leaves unclassified that the kernel writes with `%d`/`%u` (`pid`, `items`, `inode`, ...);
//! - escaped text (hex-decoded when written as bare hex): its `ESCAPED`, `ESCAPED_FILE`,
//!   `ESCAPED_KEY`, `TTY_DATA` and `PROCTITLE` types;
//! - everything else, known or not, is a string as written (hex numbers such as `arch`,
//!   `per`, `a0`, `cap_*`, modes, `res`, labels, and every field this table does not name).
//!
//! `id` is a user id (a group id in ADD_GROUP, DEL_GROUP and GRP_MGMT), never hex. It must
//! never look at a value to decide a type: only the record type and the field name.

use std::sync::LazyLock;

use pauditd_engine::types;

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

/// A field's kind, and what it names when it is an id.
pub type Entry = (Kind, Option<Id>);

const INT: Entry = (Kind::Int, None);
const UID: Entry = (Kind::Int, Some(Id::User));
const GID: Entry = (Kind::Int, Some(Id::Group));
const ESC: Entry = (Kind::Escaped, None);

/// The table, written once: [`TABLE`] lists it (for the JSON Schema and the lookup of short
/// names) and `named` matches on it (the names longer than eight bytes). A name listed twice
/// does not compile (an unreachable pattern).
macro_rules! field_table {
    ($($name:literal => $entry:expr;)*) => {
        /// Every field the table names, with its entry.
        pub const TABLE: &[(&[u8], Entry)] = &[$(($name, $entry)),*];

        fn named(key: &[u8]) -> Option<Entry> {
            #[deny(unreachable_patterns)]
            match key {
                $($name => Some($entry),)*
                _ => None,
            }
        }
    };
}

field_table! {
    // audit-userspace's `UID` fields (typetab.h), and ours with the same meaning.
    b"auid" => UID;
    b"uid" => UID;
    b"euid" => UID;
    b"suid" => UID;
    b"fsuid" => UID;
    b"ouid" => UID;
    b"oauid" => UID;
    b"old-auid" => UID;
    b"iuid" => UID;
    b"id" => UID;
    b"inode_uid" => UID;
    b"sauid" => UID;
    b"obj_uid" => UID;
    // Not in typetab.h; user ids in the kernel's and shadow-utils' records.
    b"loginuid" => UID;
    b"old-uid" => UID;
    b"new-uid" => UID;
    // audit-userspace's `GID` fields, and ours with the same meaning.
    b"obj_gid" => GID;
    b"gid" => GID;
    b"egid" => GID;
    b"sgid" => GID;
    b"fsgid" => GID;
    b"ogid" => GID;
    b"igid" => GID;
    b"inode_gid" => GID;
    b"new_gid" => GID;
    b"old-gid" => GID;
    b"new-gid" => GID;
    // typetab.h's other decimal types: SYSCALL, EXIT, SESSION, SIGNAL, CAPABILITY, LIST,
    // PERM, PROMISC, ICMPTYPE, PROTOCOL, NFPROTO, FANOTIFY, TRUST, ERRNO.
    b"syscall" => INT;
    b"uring_op" => INT;
    b"exit" => INT;
    b"ses" => INT;
    b"sig" => INT;
    b"sigev_signo" => INT;
    b"capability" => INT;
    b"list" => INT;
    b"perm" => INT;
    b"perm_mask" => INT;
    b"prom" => INT;
    b"old_prom" => INT;
    b"icmptype" => INT;
    b"proto" => INT;
    b"family" => INT;
    b"resp" => INT;
    b"subj_trust" => INT;
    b"obj_trust" => INT;
    b"errno" => INT;
    // Fields auparse leaves unclassified that the kernel (or auditd) always writes in
    // decimal.
    b"pid" => INT;
    b"ppid" => INT;
    b"opid" => INT;
    b"oses" => INT;
    b"old-ses" => INT;
    b"items" => INT;
    b"item" => INT;
    b"inode" => INT;
    b"ino" => INT;
    b"argc" => INT;
    b"lport" => INT;
    b"rport" => INT;
    b"fport" => INT;
    b"sport" => INT;
    b"dport" => INT;
    b"old" => INT;
    b"new" => INT;
    b"audit_enabled" => INT;
    b"audit_failure" => INT;
    b"audit_pid" => INT;
    b"audit_backlog_limit" => INT;
    b"audit_backlog_wait_time" => INT;
    b"audit_rate_limit" => INT;
    b"enforcing" => INT;
    b"old_enforcing" => INT;
    b"prog-id" => INT;
    b"sec" => INT;
    b"nsec" => INT;
    b"major" => INT;
    b"minor" => INT;
    b"entries" => INT;
    b"cap_frootid" => INT;
    b"cap_fe" => INT;
    b"fe" => INT;
    b"peer_pid" => INT;
    b"spid" => INT;
    b"tpid" => INT;
    b"permissive" => INT;
    b"nargs" => INT;
    b"fd" => INT;
    b"fd0" => INT;
    b"fd1" => INT;
    b"src_prefixlen" => INT;
    b"dst_prefixlen" => INT;
    b"ksize" => INT;
    // typetab.h's ESCAPED, ESCAPED_FILE, ESCAPED_KEY, TTY_DATA and PROCTITLE fields (the
    // AppArmor ones included: auditd is built with them on the distributions that use it).
    b"path" => ESC;
    b"comm" => ESC;
    b"exe" => ESC;
    b"file" => ESC;
    b"name" => ESC;
    b"watch" => ESC;
    b"cwd" => ESC;
    b"cmd" => ESC;
    b"acct" => ESC;
    b"dir" => ESC;
    b"key" => ESC;
    b"vm" => ESC;
    b"old-chardev" => ESC;
    b"new-chardev" => ESC;
    b"old-disk" => ESC;
    b"new-disk" => ESC;
    b"old-fs" => ESC;
    b"new-fs" => ESC;
    b"old-net" => ESC;
    b"new-net" => ESC;
    b"device" => ESC;
    b"cgroup" => ESC;
    b"apparmor" => ESC;
    b"operation" => ESC;
    b"denied_mask" => ESC;
    b"info" => ESC;
    b"profile" => ESC;
    b"requested_mask" => ESC;
    b"old-rng" => ESC;
    b"new-rng" => ESC;
    b"ocomm" => ESC;
    b"grp" => ESC;
    b"new_group" => ESC;
    b"invalid_context" => ESC;
    b"sw" => ESC;
    b"root_dir" => ESC;
    b"data" => ESC;
    b"proctitle" => ESC;
}

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
    TABLE
        .iter()
        .filter(|(_, e)| e.0 == Kind::Int)
        .map(|(k, _)| *k)
}

/// A name of at most eight bytes as one integer (little-endian, zero-padded).
fn pack(k: &[u8]) -> u64 {
    // Byte by byte in registers: a copy into a stack buffer costs a call to memcpy and a
    // stalled load, measured as a third of the lookup.
    k.iter()
        .take(8)
        .enumerate()
        .fold(0, |v, (i, &b)| v | u64::from(b) << (8 * i))
}

/// Slots of the short-name table (a power of two, well above the table's size).
const SLOTS: usize = 512;

fn slot(packed: u64) -> usize {
    (packed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS.trailing_zeros())) as usize
}

/// The table's names of at most eight bytes (most fields: `uid`, `pid`, `syscall`...) in an
/// open-addressed table of their packed value and length: a field is found with one
/// multiplication and, nearly always, one probe.
static SHORT: LazyLock<Vec<(u64, u8, Entry)>> = LazyLock::new(|| {
    let mut slots = vec![(0u64, 0u8, (Kind::Text, None)); SLOTS];
    for &(k, e) in TABLE.iter().filter(|(k, _)| !k.is_empty() && k.len() <= 8) {
        let p = pack(k);
        let mut i = slot(p);
        while slots[i].1 != 0 {
            i = (i + 1) & (SLOTS - 1);
        }
        slots[i] = (p, k.len() as u8, e);
    }
    slots
});

fn find(key: &[u8]) -> Option<Entry> {
    if key.len() > 8 {
        return named(key);
    }
    if key.is_empty() {
        return None;
    }
    let slots = &*SHORT;
    let p = pack(key);
    let mut i = slot(p);
    loop {
        let (sp, len, e) = slots[i];
        if len == 0 {
            return None;
        }
        // The length tells `uid` from `uid\0` (the same packed value).
        if sp == p && usize::from(len) == key.len() {
            return Some(e);
        }
        i = (i + 1) & (SLOTS - 1);
    }
}

/// `a0`, `a1`, ... (EXECVE's arguments: escaped; SYSCALL's: hex numbers, strings).
fn is_arg(k: &[u8]) -> bool {
    k.len() > 1 && k[0] == b'a' && k[1..].iter().all(u8::is_ascii_digit)
}

/// Field `key` of a record of type `rtype` (a field of a user-space record's `msg='...'` is
/// looked up with that record's type): its JSON type, and what it names if it is an id.
pub fn lookup(rtype: u16, key: &[u8]) -> Entry {
    // auparse_interp_adjust_type's corrections first: the AVC's `saddr` is an address as
    // text, its `family` a name ("inet6"), its `key` the key's serial in decimal (strings);
    // USER_TTY's `msg` is the typed text, escaped; `id` names a group in group records.
    match (rtype, key) {
        (types::AVC | types::USER_TTY, _) => {
            if let Some((_, _, k)) = EXCEPTIONS.iter().find(|(t, f, _)| *t == rtype && *f == key) {
                return (*k, None);
            }
        }
        (_, b"id") if types::id_is_gid(rtype) => return GID,
        (types::EXECVE, _) if is_arg(key) => return ESC,
        (types::EXECVE, _) if key.ends_with(b"_len") && is_arg(&key[..key.len() - 4]) => {
            return INT
        }
        _ => {}
    }
    find(key).unwrap_or((Kind::Text, None))
}

/// The JSON type of field `key` in a record of type `rtype`.
pub fn kind(rtype: u16, key: &[u8]) -> Kind {
    lookup(rtype, key).0
}

/// What an id field names, if `key` is one (in a record of type `rtype`).
pub fn id_kind(rtype: u16, key: &[u8]) -> Option<Id> {
    lookup(rtype, key).1
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
    fn every_listed_field_is_found_with_its_entry() {
        for (k, e) in TABLE {
            assert_eq!(lookup(1999, k), *e, "{}", String::from_utf8_lossy(k));
        }
        assert!(TABLE.len() > 100);
        // A NUL can pad a short name in its packed form, never in the table.
        assert_eq!(lookup(1999, b"uid\0"), (Kind::Text, None));
        assert_eq!(lookup(1999, b""), (Kind::Text, None));
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
