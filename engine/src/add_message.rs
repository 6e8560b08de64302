//! A record joins its event: pauditd's `AddMessage` (the event's syscall, rule key and uid
//! map come from here; `enriched` is a format in `sinks`, `enrichment` the lineage and
//! container section of the config).
//!
//! Owns extracting the syscall number, the rule key and every `uid=` value from a record's
//! data, with pauditd's exact (and sometimes surprising) scanning rules, because they decide
//! what is printed. It must never reorder or alter message data, and it resolves user names
//! only through the resolver it is handed.

use std::sync::LazyLock;

use memchr::{memchr, memmem};

use crate::event::Event;
use crate::types;
use crate::users::UserResolver;

/// pauditd caps a rule key that ends the record at this many bytes.
const MAX_RULE_KEY_LENGTH: usize = 128;
/// A syscall number or uid that ends the record can be at most this long (a 16-bit number).
const MAX_TRAILING_NUMBER_LENGTH: usize = 5;
/// Distinct uids mapped per event at most: each costs a user lookup, and a hostile record
/// can hold a million distinct `uid=` values. Real events hold a handful.
pub const MAX_UIDS_PER_EVENT: usize = 4096;
/// Distinct gids looked up per event at most (real events hold a handful).
pub const MAX_GIDS_PER_EVENT: usize = 64;
/// pam_tty_audit records carry no rule key; pauditd gives them this one.
const TTY_RULE_KEY: &[u8] = b"tty";

/// Add a record to `event` and enrich the event from it.
pub fn add_record(event: &mut Event, rtype: u16, data: &[u8], users: &mut dyn UserResolver) {
    let i = event.push_message(rtype, data);
    match rtype {
        types::EXECVE | types::CWD | types::SOCKADDR => {}
        types::SYSCALL => {
            let range = event.message_range(i);
            if let Some(r) = find_field(data, &SYSCALL_FIELD, MAX_TRAILING_NUMBER_LENGTH) {
                event.set_syscall(range.start + r.start..range.start + r.end);
            } else {
                event.set_syscall(0..0);
            }
            rule_key(data, event.rule_key_mut());
            map_uids(event, i, users);
            map_gids(event, i, users);
        }
        types::TTY => {
            event.set_rule_key(TTY_RULE_KEY);
            map_uids(event, i, users);
            map_gids(event, i, users);
        }
        _ => {
            map_uids(event, i, users);
            map_gids(event, i, users);
        }
    }
}

/// Name every `gid=` value in message `i` (`egid=`, `ogid=`...), when the resolver resolves
/// groups (only the enriched and ecs formats print them). A value ends at a space or the end
/// of the data; gids without a group name are left out.
fn map_gids(event: &mut Event, i: usize, users: &mut dyn UserResolver) {
    if !users.resolves_groups() {
        return;
    }
    // The kernel's own hot records never hold an `id=` field.
    if !matches!(
        event.message(i).0,
        types::SYSCALL | types::PATH | types::PROCTITLE
    ) {
        map_ids(event, i, users);
    }
    let base = event.message_range(i).start;
    let mut pos = 0;
    let mut seen = 0;
    while let Some(f) = GID_FIELD.find(&event.message(i).1[pos..]) {
        let start = pos + f + 4;
        let rest = &event.message(i).1[start..];
        let len = memchr(b' ', rest).unwrap_or(rest.len());
        let gid = &rest[..len];
        if !gid.is_empty() && event.group_name(gid).is_none() {
            seen += 1;
            if seen > MAX_GIDS_PER_EVENT {
                return;
            }
            if let Some(name) = users.resolve_group(gid) {
                event.insert_gid(base + start..base + start + len, name);
            }
        }
        pos = start + len;
    }
}

/// Name every `id=` value in message `i` (the id of user-management records such as
/// ADD_USER, USER_CHAUTHTOK or ADD_GROUP, usually inside `msg='...'`), as a user and as a
/// group: auditbeat looks the value up as a user for the actor and the target user and as a
/// group for the group entity, and the enriched format picks by record type. Only when the
/// resolver resolves groups (the enriched and ecs formats); the names stay out of pauditd's
/// `uid_map`. At most [`MAX_GIDS_PER_EVENT`] values per record are looked up.
fn map_ids(event: &mut Event, i: usize, users: &mut dyn UserResolver) {
    let base = event.message_range(i).start;
    let mut pos = 0;
    let mut seen = 0;
    while let Some(f) = ID_FIELD.find(&event.message(i).1[pos..]) {
        let at = pos + f;
        let start = at + 3;
        let data = event.message(i).1;
        let len = data[start..]
            .iter()
            .position(|&b| b == b' ' || b == b'\'')
            .unwrap_or(data.len() - start);
        pos = start + len;
        // The key must be `id` itself (not `uid`, `pid`, `ses_id`...).
        let key_starts = at == 0 || matches!(data[at - 1], b' ' | b'\'');
        let id = &data[start..start + len];
        if !key_starts || id.is_empty() || !id.iter().all(u8::is_ascii_digit) {
            continue;
        }
        seen += 1;
        if seen > MAX_GIDS_PER_EVENT {
            return;
        }
        let range = base + start..base + start + len;
        if !event.has_id_user(id) && !event.has_uid(id) {
            let name = users.resolve(id);
            event.insert_id_user(range.clone(), name);
        }
        let id = &event.message(i).1[start..start + len];
        if event.group_name(id).is_none() {
            if let Some(name) = users.resolve_group(id) {
                event.insert_gid(range, name);
            }
        }
    }
}

// Built once: building a searcher costs more than searching one record.
static ID_FIELD: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"id="));
static SYSCALL_FIELD: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"syscall="));
static KEY_FIELD: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"key="));
static GID_FIELD: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"gid="));
static UID_FIELD: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"uid="));

/// The value of the first `name` occurrence (`name` includes the `=`), up to the next space;
/// a value that runs to the end of the data counts only if it is at most `max_trailing` long.
/// Returns its range within `data` (`None` is pauditd's empty string).
fn find_field(
    data: &[u8],
    name: &memmem::Finder<'static>,
    max_trailing: usize,
) -> Option<std::ops::Range<usize>> {
    let start = name.find(data)? + name.needle().len();
    match memchr(b' ', &data[start..]) {
        Some(len) => Some(start..start + len),
        None if data.len() - start <= max_trailing => Some(start..data.len()),
        None => None,
    }
}

/// pauditd's rule key: the `key=` value with every `"` removed, or, when the raw value is
/// valid hex (the kernel's encoding of several keys joined by 0x01), its decoded bytes.
/// Written into `key` (the event's own buffer, reused: no allocation).
fn rule_key(data: &[u8], key: &mut Vec<u8>) {
    key.clear();
    let raw = match find_field(data, &KEY_FIELD, MAX_RULE_KEY_LENGTH) {
        Some(r) => &data[r],
        None => return,
    };
    if !crate::decode::hex_into(raw, key) {
        key.clear();
        key.extend(raw.iter().copied().filter(|&b| b != b'"'));
    }
}

/// Map every `uid=` value in message `i` (so `auid=`, `euid=`, `ouid=`... too) to a user
/// name, with pauditd's scan: a value ends at the next space; one that runs to the end of the
/// data is taken only if at most 5 bytes long, and otherwise ends the scan.
fn map_uids(event: &mut Event, i: usize, users: &mut dyn UserResolver) {
    let base = event.message_range(i).start;
    let len = event.message_range(i).len();
    let finder = &*UID_FIELD;
    let mut pos = 0;
    loop {
        let (data_start, found) = {
            let data = &event.message(i).1[pos..];
            match finder.find(data) {
                Some(f) => (pos + f + 4, true),
                None => (0, false),
            }
        };
        if !found {
            return;
        }
        let rest = &event.message(i).1[data_start..];
        let value_len = match memchr(b' ', rest) {
            Some(l) => l,
            None if rest.len() <= MAX_TRAILING_NUMBER_LENGTH => rest.len(),
            None => return,
        };
        let range = base + data_start..base + data_start + value_len;
        let uid = &event.message(i).1[data_start..data_start + value_len];
        if !event.has_uid(uid) {
            if event.uid_count() >= MAX_UIDS_PER_EVENT {
                event.mark_uids_truncated();
                return;
            }
            let name = users.resolve(uid);
            event.insert_uid(range, name);
        }
        pos = data_start + value_len + 1;
        if pos >= len {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::tests::FixedUsers;

    fn event_of(records: &[(u16, &[u8])]) -> Event {
        let mut users = FixedUsers;
        let mut e = Event::new(1, b"1.0");
        for (t, d) in records {
            add_record(&mut e, *t, d, &mut users);
        }
        e
    }

    fn uid_keys(e: &Event) -> Vec<String> {
        e.uid_map()
            .into_iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                )
            })
            .collect()
    }

    #[test]
    fn syscall_record_sets_key_syscall_and_uids() {
        let e = event_of(&[(
            1300,
            b"arch=c000003e syscall=59 auid=1000 uid=0 gid=0 euid=0 comm=\"x\" key=\"e2e\"",
        )]);
        assert_eq!(e.syscall(), b"59");
        assert_eq!(e.rule_key(), b"e2e");
        assert_eq!(uid_keys(&e), vec!["0=root", "1000=alice"]);
    }

    #[test]
    fn null_key_stays_and_hex_key_decodes() {
        assert_eq!(
            event_of(&[(1300, b"syscall=1 key=(null)")]).rule_key(),
            b"(null)"
        );
        // "a" 0x01 "b": two keys as the kernel hex-encodes them.
        assert_eq!(
            event_of(&[(1300, b"syscall=1 key=610162")]).rule_key(),
            b"a\x01b"
        );
        assert_eq!(event_of(&[(1300, b"syscall=1")]).rule_key(), b"");
        // Quoted keys are not hex even when the inside is.
        assert_eq!(
            event_of(&[(1300, b"syscall=1 key=\"ab\"")]).rule_key(),
            b"ab"
        );
    }

    #[test]
    fn overlong_trailing_key_is_empty_as_in_pauditd() {
        let mut d = b"syscall=1 key=\"".to_vec();
        d.extend(std::iter::repeat_n(b'k', 130));
        d.push(b'"');
        assert_eq!(event_of(&[(1300, &d)]).rule_key(), b"");
    }

    #[test]
    fn tty_sets_tty_key() {
        let e = event_of(&[(1300, b"syscall=0 key=\"x\""), (1319, b"uid=0 data=6C730D")]);
        assert_eq!(e.rule_key(), b"tty");
        assert_eq!(uid_keys(&e), vec!["0=root"]);
    }

    #[test]
    fn execve_cwd_sockaddr_are_not_scanned() {
        let e = event_of(&[
            (1309, b"a0=\"uid=5\""),
            (1307, b"cwd=\"uid=5\""),
            (1306, b"saddr=uid=5 "),
        ]);
        assert!(e.uid_map().is_empty());
        let e = event_of(&[(1302, b"item=0 ouid=1000 ogid=0")]);
        assert_eq!(uid_keys(&e), vec!["1000=alice"]);
    }

    /// Users as `FixedUsers`, and groups 0 (root) and 10 (wheel).
    struct WithGroups;
    impl UserResolver for WithGroups {
        fn resolve(&mut self, uid: &[u8]) -> std::sync::Arc<[u8]> {
            FixedUsers.resolve(uid)
        }
        fn resolves_groups(&self) -> bool {
            true
        }
        fn resolve_group(&mut self, gid: &[u8]) -> Option<std::sync::Arc<[u8]>> {
            match gid {
                b"0" => Some(std::sync::Arc::from(&b"root"[..])),
                b"10" => Some(std::sync::Arc::from(&b"wheel"[..])),
                _ => None,
            }
        }
    }

    #[test]
    fn gids_are_named_only_when_the_resolver_resolves_groups() {
        let rec: &[u8] = b"syscall=1 uid=0 gid=10 egid=0 sgid=0 fsgid=77 key=x";
        let e = event_of(&[(1300, rec)]);
        assert_eq!(e.gid_count(), 0);
        let mut e = Event::new(1, b"1.0");
        add_record(&mut e, 1300, rec, &mut WithGroups);
        add_record(&mut e, 1302, b"item=0 ouid=0 ogid=10", &mut WithGroups);
        assert_eq!(e.group_name(b"10"), Some(&b"wheel"[..]));
        assert_eq!(e.group_name(b"0"), Some(&b"root"[..]));
        assert_eq!(e.group_name(b"77"), None);
        assert_eq!(e.gid_count(), 2, "distinct named gids, each once");
    }

    #[test]
    fn id_values_are_named_apart_from_the_uid_map_only_when_groups_are_resolved() {
        let rec: &[u8] = b"pid=1 uid=0 auid=1000 ses=1 msg='op=adding user id=10 exe=\"/usr/sbin/useradd\" pid=7 res=success'";
        let e = event_of(&[(1114, rec)]);
        assert_eq!(e.user_name(b"10"), None, "pauditd's format looks up no ids");
        let mut e = Event::new(1, b"1.0");
        add_record(&mut e, 1114, rec, &mut WithGroups);
        e.finish();
        // FixedUsers names 0 root, 1000 alice, others UNKNOWN_USER; WithGroups 10 wheel.
        assert_eq!(
            uid_keys(&e),
            vec!["0=root", "1000=alice"],
            "uid_map unchanged"
        );
        assert_eq!(e.user_name(b"10"), None, "no such user");
        assert_eq!(e.group_name(b"10"), Some(&b"wheel"[..]));
        assert_eq!(e.user_name(b"1000"), Some(&b"alice"[..]));
        let mut e = Event::new(1, b"1.0");
        add_record(
            &mut e,
            1114,
            b"msg='op=x id=1000 ses_id=0 xid=10'",
            &mut WithGroups,
        );
        assert_eq!(e.user_name(b"1000"), Some(&b"alice"[..]));
        assert_eq!(e.group_name(b"10"), None, "xid= is not id=");
        assert!(e.uid_map().is_empty());
    }

    /// Every gid has a name here: only the per-event bound limits the lookups.
    struct AllGroups(usize);
    impl UserResolver for AllGroups {
        fn resolve(&mut self, uid: &[u8]) -> std::sync::Arc<[u8]> {
            FixedUsers.resolve(uid)
        }
        fn resolves_groups(&self) -> bool {
            true
        }
        fn resolve_group(&mut self, _gid: &[u8]) -> Option<std::sync::Arc<[u8]>> {
            self.0 += 1;
            Some(std::sync::Arc::from(&b"g"[..]))
        }
    }

    #[test]
    fn gid_lookups_per_event_are_bounded() {
        let mut d = b"syscall=1".to_vec();
        for g in 0..500 {
            d.extend_from_slice(format!(" gid={g} egid={g}").as_bytes());
        }
        let mut users = AllGroups(0);
        let mut e = Event::new(1, b"1.0");
        add_record(&mut e, 1300, &d, &mut users);
        assert_eq!(e.gid_count(), MAX_GIDS_PER_EVENT);
        assert_eq!(
            users.0, MAX_GIDS_PER_EVENT,
            "one lookup per distinct gid, bounded"
        );
    }

    #[test]
    fn trailing_long_uid_stops_scan_like_pauditd() {
        // A uid running to the end of the data is only taken when at most 5 bytes long.
        let e = event_of(&[(1300, b"syscall=1 auid=4294967295")]);
        assert!(e.uid_map().is_empty());
        let e = event_of(&[(1300, b"syscall=1 uid=1000")]);
        assert_eq!(uid_keys(&e), vec!["1000=alice"]);
        let e = event_of(&[(1300, b"syscall=1 auid=4294967295 uid=0")]);
        assert_eq!(uid_keys(&e), vec!["0=root", "4294967295=UNKNOWN_USER"]);
    }

    #[test]
    fn many_distinct_uids_are_linear_and_bounded() {
        // 50,000 distinct uids in one record: linear with the set, and only the first
        // MAX_UIDS_PER_EVENT are mapped (each one is a user lookup).
        let mut d = b"syscall=1".to_vec();
        for u in 0..50_000 {
            d.extend_from_slice(format!(" uid={u}").as_bytes());
        }
        d.extend_from_slice(b" key=x");
        let e = event_of(&[(1300, &d)]);
        assert_eq!(e.uid_count(), MAX_UIDS_PER_EVENT);
        assert!(e.uids_truncated());
        // Repeats stay one entry past the point where the set takes over.
        let mut d = b"syscall=1".to_vec();
        for u in 0..100 {
            d.extend_from_slice(format!(" uid={} auid={}", u % 40, u % 40).as_bytes());
        }
        d.extend_from_slice(b" key=x");
        let e = event_of(&[(1300, &d)]);
        assert_eq!(e.uid_count(), 40);
        assert!(!e.uids_truncated());
    }
}
