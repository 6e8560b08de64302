//! One event's records coalesced as go-libaudit's `aucoalesce` does: the primary record,
//! the actor, action, object and how (its normalizations), the user ids, process, file,
//! addresses, paths, and the remaining data.
//!
//! Owns the meaning auditbeat gives an event; the document written from it is the parent
//! module's. It follows aucoalesce step for step (including its quirks, listed in the
//! README) so that an `ecs` event agrees with auditbeat's on the same records, with one bound
//! auditbeat lacks: `process.args` is cut at [`ARGS_LIMIT`] bytes, with a warning. It must
//! never look anything up itself: names come from the resolver it is handed.

use std::borrow::Cow;

use pauditd_engine::types;

use super::auparse::{self, Kv, Message, Text, EOE, EXECVE, PATH, SOCKADDR, SYSCALL};
use super::normalize::{From, Normalization, Table, To};

/// ECS user or group: an id or a name (or `unset`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Entity<'a> {
    pub id: Option<Text<'a>>,
    pub name: Option<Text<'a>>,
}

impl<'a> Entity<'a> {
    fn set(&mut self, v: Option<Text<'a>>) {
        *self = Entity::default();
        let v = v.unwrap_or_default();
        if matches!(v.as_ref(), b"" | b"unset" | b"4294967295" | b"-1") {
            self.id = Some(Cow::Borrowed(b"unset"));
        } else if v.iter().all(u8::is_ascii_digit) {
            self.id = Some(v);
        } else {
            self.name = Some(v);
        }
    }

    pub fn is_set(&self) -> bool {
        self.id.is_some() || self.name.is_some()
    }
}

#[derive(Debug, Default)]
pub struct Process<'a> {
    pub pid: Option<Text<'a>>,
    pub ppid: Option<Text<'a>>,
    pub title: Option<Text<'a>>,
    pub name: Option<Text<'a>>,
    pub exe: Option<Text<'a>>,
    pub cwd: Option<Text<'a>>,
    pub args: Vec<Text<'a>>,
}

#[derive(Debug, Default)]
pub struct File<'a> {
    pub path: Option<Text<'a>>,
    pub device: Option<Text<'a>>,
    pub inode: Option<Text<'a>>,
    pub mode: Option<String>,
    pub uid: Option<Text<'a>>,
    pub gid: Option<Text<'a>>,
    pub owner: Option<Text<'a>>,
    pub group: Option<Text<'a>>,
    pub selinux: Vec<(Vec<u8>, Text<'a>)>,
}

#[derive(Debug, Default)]
pub struct Address<'a> {
    pub ip: Option<Text<'a>>,
    pub port: Option<Text<'a>>,
    pub path: Option<Text<'a>>,
}

/// The coalesced event (aucoalesce's `Event`).
#[derive(Debug, Default)]
pub struct Coalesced<'a> {
    pub category: &'static str,
    pub rtype: u16,
    pub result: Text<'a>,
    pub session: Option<Text<'a>>,
    pub tags: Vec<Text<'a>>,
    pub actor_primary: Option<Text<'a>>,
    pub actor_secondary: Option<Text<'a>>,
    pub action: &'static str,
    pub object_type: &'static str,
    pub object_primary: Option<Text<'a>>,
    pub object_secondary: Option<Text<'a>>,
    pub how: Option<Text<'a>>,
    pub user_ids: Kv<'a>,
    pub user_names: Vec<(Text<'a>, Text<'a>)>,
    pub user_selinux: Kv<'a>,
    pub process: Process<'a>,
    pub file: Option<File<'a>>,
    pub source: Option<Address<'a>>,
    pub dest: Option<Address<'a>>,
    pub direction: Option<&'static str>,
    pub data: Kv<'a>,
    pub paths: Vec<Kv<'a>>,
    pub ecs_kind: &'static str,
    pub ecs_category: Vec<&'static str>,
    pub ecs_type: Vec<&'static str>,
    pub ecs_outcome: Option<&'static str>,
    pub ecs_user: Entity<'a>,
    pub ecs_user_effective: Entity<'a>,
    pub ecs_user_target: Entity<'a>,
    pub ecs_user_changes: Entity<'a>,
    pub ecs_group: Entity<'a>,
    pub warnings: Vec<String>,
}

/// Names for ids, as far as they are known (`None`: unknown), borrowed from where they are
/// kept (the event's uid and gid maps).
pub trait Names<'a> {
    fn user(&self, uid: &[u8]) -> Option<&'a [u8]>;
    fn group(&self, gid: &[u8]) -> Option<&'a [u8]>;
}

/// Coalesce an event's records; `Err` when aucoalesce makes no event of them (a compound
/// event without SYSCALL).
pub fn coalesce<'a>(
    records: impl Iterator<Item = (u16, &'a [u8])>,
    table: &'static Table,
) -> Result<Coalesced<'a>, &'static str> {
    let mut msgs: Vec<Message<'a>> = records.map(|(t, d)| auparse::parse(t, d)).collect();
    if msgs.last().is_some_and(|m| m.rtype == EOE) {
        msgs.pop();
    }
    let mut ev = match msgs.len() {
        0 => return Err("messages is empty"),
        1 => {
            let m = msgs.pop().expect("one message");
            new_event(m, None)
        }
        _ => compound(msgs)?,
    };
    normalize(&mut ev, table);
    add_process(&mut ev);
    Ok(ev)
}

fn compound(msgs: Vec<Message<'_>>) -> Result<Coalesced<'_>, &'static str> {
    let syscall_at = msgs
        .iter()
        .position(|m| m.rtype == SYSCALL)
        .ok_or("missing syscall message in compound event")?;
    let special_type = (msgs[0].rtype != SYSCALL).then_some(msgs[0].rtype);
    let mut msgs = msgs;
    // The SYSCALL record's data makes the event; it is read once more below, as aucoalesce
    // reads it again in its loop (only `items` is then dropped).
    let syscall = std::mem::replace(
        &mut msgs[syscall_at],
        Message {
            rtype: SYSCALL,
            data: Ok(Kv::default()),
            tags: Vec::new(),
        },
    );
    let mut ev = new_event(syscall, special_type);
    for m in msgs {
        match m.rtype {
            SYSCALL => {
                ev.data.remove(b"items");
            }
            PATH => match m.data {
                Ok(d) => ev.paths.push(d),
                Err(e) => ev
                    .warnings
                    .push(format!("failed to parse PATH message: {e}")),
            },
            SOCKADDR => add_sockaddr(&mut ev, m),
            EXECVE => add_execve(&mut ev, m),
            _ => match m.data {
                Ok(d) => {
                    for (k, v) in d.into_pairs() {
                        if ev.data.contains(&k) {
                            ev.warnings.push(format!(
                                "duplicate key ({}) from {} message",
                                String::from_utf8_lossy(&k),
                                type_name(m.rtype)
                            ));
                            continue;
                        }
                        ev.data.set(k, v);
                    }
                }
                Err(e) => ev.warnings.push(format!("failed to parse message: {e}")),
            },
        }
    }
    Ok(ev)
}

/// go-libaudit's name of a record type (`UNKNOWN[n]` when it has none).
pub fn type_name(t: u16) -> Cow<'static, str> {
    match types::name_of(t) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(format!("UNKNOWN[{t}]")),
    }
}

fn new_event(msg: Message<'_>, special: Option<u16>) -> Coalesced<'_> {
    let rtype = special.unwrap_or(msg.rtype);
    let mut ev = Coalesced {
        category: event_category(rtype),
        rtype,
        result: Cow::Borrowed(b"unknown"),
        ..Default::default()
    };
    let mut data = match msg.data {
        Ok(d) => d,
        Err(e) => {
            ev.warnings.push(e);
            return ev;
        }
    };
    // The event's data takes the primary record's fields and, in a compound event, the
    // other records' too: room for them at once.
    ev.data = Kv::with_capacity(data.len() + 16);
    ev.user_ids = Kv::with_capacity(12);
    if let Some(r) = data.remove(b"result") {
        ev.result = r;
    }
    ev.session = data.remove(b"ses");
    ev.actor_primary = data.get_text(b"auid");
    ev.actor_secondary = data.get_text(b"uid");
    ev.tags = msg.tags;
    for (k, v) in data.into_pairs() {
        if k.ends_with(b"uid") || k.ends_with(b"gid") {
            ev.user_ids.set(k, v);
        } else if let Some(rest) = k.strip_prefix(b"subj_") {
            let rest = match k {
                Cow::Borrowed(k) => Cow::Borrowed(&k[5..]),
                Cow::Owned(_) => Cow::Owned(rest.to_vec()),
            };
            ev.user_selinux.set(rest, v);
        } else {
            ev.data.set(k, v);
        }
    }
    ev
}

fn add_sockaddr<'a>(ev: &mut Coalesced<'a>, m: Message<'a>) {
    let d = match m.data {
        Ok(d) => d,
        Err(e) => {
            ev.warnings
                .push(format!("failed to parse SOCKADDR message: {e}"));
            return;
        }
    };
    let Some(syscall) = ev.data.get(b"syscall").map(<[u8]>::to_vec) else {
        ev.warnings
            .push("failed to add SOCKADDR data because syscall is unknown".into());
        return;
    };
    let address = || {
        let a = Address {
            ip: d.get_text(b"addr"),
            port: d.get_text(b"port"),
            path: d.get_text(b"path"),
        };
        let non_empty = |v: &Option<Text<'_>>| v.as_ref().is_some_and(|v| !v.is_empty());
        (non_empty(&a.ip) || non_empty(&a.port) || non_empty(&a.path)).then_some(a)
    };
    match syscall.as_slice() {
        b"recvfrom" | b"recvmsg" | b"accept" | b"accept4" => {
            if let Some(a) = address() {
                ev.source = Some(a);
            }
            ev.direction = Some("ingress");
        }
        b"connect" | b"sendto" | b"sendmsg" => {
            if let Some(a) = address() {
                ev.dest = Some(a);
            }
            ev.direction = Some("egress");
        }
        _ => {}
    }
    for (k, v) in d.into_pairs() {
        let mut key = b"socket_".to_vec();
        key.extend_from_slice(&k);
        ev.data.set(Cow::Owned(key), v);
    }
}

/// `process.args` kept per event, in bytes (the enriched format's `ARGV_LIMIT`).
pub const ARGS_LIMIT: usize = crate::enriched::ARGV_LIMIT;

fn add_execve<'a>(ev: &mut Coalesced<'a>, m: Message<'a>) {
    let mut d = match m.data {
        Ok(d) => d,
        Err(e) => {
            ev.warnings
                .push(format!("failed to parse EXECVE message: {e}"));
            return;
        }
    };
    let Some(argc) = d.remove(b"argc") else {
        ev.warnings
            .push("argc key not found in EXECVE message".into());
        return;
    };
    let count: Option<u32> = std::str::from_utf8(&argc).ok().and_then(|s| s.parse().ok());
    ev.data.set(Cow::Borrowed(b"argc"), argc);
    let Some(count) = count else {
        ev.warnings.push("failed to convert argc to number".into());
        return;
    };
    let mut args = Vec::with_capacity(count.min(4096) as usize);
    // Bounded by argc, by the arguments the records carried (a missing one ends the list, as
    // auditbeat does) and by ARGS_LIMIT bytes (each argument counting 3 more, as the
    // enriched format counts them): past it the list is cut and a warning says so.
    let mut bytes = 0usize;
    for i in 0..count {
        let key = format!("a{i}");
        match d.remove(key.as_bytes()) {
            Some(a) => {
                bytes += a.len() + pauditd_engine::decode::ARG_COST;
                if bytes > ARGS_LIMIT {
                    ev.warnings.push(format!(
                        "process.args cut at {i} of {count} arguments ({ARGS_LIMIT} bytes)"
                    ));
                    break;
                }
                args.push(a)
            }
            None => {
                ev.warnings.push(format!("failed to find arg {key}"));
                return;
            }
        }
    }
    ev.process.args = args;
}

fn add_process(ev: &mut Coalesced<'_>) {
    ev.process.pid = ev.data.remove(b"pid");
    ev.process.ppid = ev.data.remove(b"ppid");
    ev.process.title = ev.data.remove(b"proctitle");
    ev.process.name = ev.data.remove(b"comm");
    ev.process.exe = ev.data.remove(b"exe");
    ev.process.cwd = ev.data.remove(b"cwd");
}

/// A field of the data, or else of the user ids (aucoalesce's `getValue`).
fn value<'a>(ev: &Coalesced<'a>, k: &str) -> Option<Text<'a>> {
    ev.data
        .get_text(k.as_bytes())
        .or_else(|| ev.user_ids.get_text(k.as_bytes()))
}

fn first_value<'a>(ev: &Coalesced<'a>, keys: &[String]) -> Option<Text<'a>> {
    keys.iter().find_map(|k| value(ev, k))
}

fn normalize(ev: &mut Coalesced<'_>, table: &'static Table) {
    how_defaults(ev);
    let syscall_norm = ev.data.get(b"syscall").and_then(|s| table.syscall(s));
    let norm: Option<&'static Normalization> = if ev.rtype == SYSCALL {
        syscall_norm
    } else {
        let name = type_name(ev.rtype);
        let data = &ev.data;
        table.record_type(&name, |f| data.contains(f.as_bytes()))
    };
    let Some(norm) = norm else {
        ev.warnings.push("no normalization found for event".into());
        return;
    };
    ev.ecs_kind = norm.kind.as_str();
    ev.ecs_category = norm.category.iter().map(String::as_str).collect();
    ev.ecs_type = norm.typ.iter().map(String::as_str).collect();
    if let Some(sn) = syscall_norm.filter(|sn| !Table::same(sn, norm)) {
        ev.ecs_category
            .extend(sn.category.iter().map(String::as_str));
        ev.ecs_type.extend(sn.typ.iter().map(String::as_str));
        if ev.result.as_ref() == b"fail" {
            ev.ecs_outcome = Some("failure");
        }
    }
    ev.action = norm.action.as_str();
    ev.object_type = norm.object_what.as_str();
    match norm.object_what.as_str() {
        "file" | "filesystem" if !ev.paths.is_empty() => {
            if let Err(e) = set_file_object(ev, norm.object_path_index) {
                ev.warnings.push(format!("failed to set file object: {e}"));
            }
        }
        "socket" => {
            ev.object_primary = ev
                .data
                .get_text(b"socket_addr")
                .or_else(|| ev.data.get_text(b"socket_path"));
            if let Some(p) = ev.data.get_text(b"socket_port") {
                ev.object_secondary = Some(p);
            }
        }
        _ => {}
    }
    if let Some(v) = pick(ev, &norm.subject_primary, "subject primary") {
        ev.actor_primary = Some(v);
    }
    if let Some(v) = pick(ev, &norm.subject_secondary, "subject secondary") {
        ev.actor_secondary = Some(v);
    }
    if let Some(v) = pick(ev, &norm.object_primary, "object primary") {
        ev.object_primary = Some(v);
    }
    if let Some(v) = pick(ev, &norm.object_secondary, "object secondary") {
        ev.object_secondary = Some(v);
    }
    if let Some(v) = pick(ev, &norm.how, "how") {
        ev.how = Some(v);
    }
    if ev.source.is_none() && !norm.source_ip.is_empty() {
        match norm
            .source_ip
            .iter()
            .find_map(|k| ev.data.remove(k.as_bytes()))
        {
            Some(ip) => {
                ev.source = Some(Address {
                    ip: Some(ip),
                    ..Default::default()
                });
                ev.direction = Some("ingress");
            }
            None => ev.warnings.push(format!(
                "failed to set source IP using keys={:?} because they were not found",
                norm.source_ip
            )),
        }
    }
    for (from, to) in &norm.mappings {
        let v: Option<Text<'_>> = match from {
            From::SubjectPrimary => ev.actor_primary.clone(),
            From::SubjectSecondary => ev.actor_secondary.clone(),
            From::ObjectPrimary => ev.object_primary.clone(),
            From::ObjectSecondary => ev.object_secondary.clone(),
            From::Data(k) => ev.data.get_text(k.as_bytes()),
            From::Uid(k) => ev.user_ids.get_text(k.as_bytes()),
        };
        match to {
            To::User => ev.ecs_user.set(v),
            To::UserEffective => ev.ecs_user_effective.set(v),
            To::UserTarget => ev.ecs_user_target.set(v),
            To::UserChanges => ev.ecs_user_changes.set(v),
            To::Group => ev.ecs_group.set(v),
        }
    }
}

/// The first of `keys` present; a warning when none is (and there were keys to try).
fn pick<'a>(ev: &mut Coalesced<'a>, keys: &[String], what: &str) -> Option<Text<'a>> {
    if keys.is_empty() {
        return None;
    }
    let v = first_value(ev, keys);
    if v.is_none() {
        ev.warnings.push(format!(
            "failed to set {what} using keys={keys:?} because they were not found"
        ));
    }
    v
}

fn how_defaults(ev: &mut Coalesced<'_>) {
    let Some(exe) = ev
        .data
        .get_text(b"exe")
        .or_else(|| ev.data.get_text(b"comm"))
    else {
        return;
    };
    let interpreted = [
        &b"/usr/bin/python"[..],
        b"/usr/bin/sh",
        b"/usr/bin/bash",
        b"/usr/bin/perl",
    ]
    .iter()
    .any(|p| exe.starts_with(p));
    let how = match ev.data.get_text(b"comm") {
        Some(comm) if interpreted => comm,
        _ => exe,
    };
    ev.how = Some(how);
}

fn set_file_object(ev: &mut Coalesced<'_>, hint: usize) -> Result<(), String> {
    let from = if ev.paths.len() > hint { hint } else { 0 };
    let at = ev.paths[from..]
        .iter()
        .position(|p| !matches!(p.get(b"nametype"), Some(b"PARENT" | b"UNKNOWN")))
        .map_or(from, |i| from + i);
    let path = &ev.paths[at];
    let mut file = File::default();
    if let Some(name) = path.get_text(b"name") {
        file.path = Some(name.clone());
        ev.object_primary = Some(name);
    }
    let path = &ev.paths[at];
    file.inode = path.get_text(b"inode");
    file.device = path.get_text(b"rdev");
    let mut result = Ok(());
    if let Some(mode) = path.get(b"mode") {
        match std::str::from_utf8(mode)
            .ok()
            .and_then(|m| u64::from_str_radix(m, 8).ok())
        {
            Some(m) => {
                file.mode = Some(format!("{:04o}", m & 0o7777));
                // aucoalesce tests Go's FileMode type bits against a Unix mode, whose type
                // bits lie elsewhere: every mode reads as a regular file. Kept for agreement.
                ev.object_type = "file";
            }
            None => result = Err("failed to parse file mode".to_string()),
        }
    }
    if result.is_ok() {
        file.uid = path.get_text(b"ouid");
        file.gid = path.get_text(b"ogid");
        for (k, _) in path.iter() {
            if let Some(rest) = k.strip_prefix(b"obj_") {
                file.selinux
                    .push((rest.to_vec(), path.get_text(k).unwrap_or_default()));
            }
        }
    }
    ev.file = Some(file);
    result
}

/// Names for the ids (auditbeat's `resolve_ids`, on by default): actor, user ids, file owner
/// and group, and the ECS entities that hold an id.
pub fn resolve<'a>(ev: &mut Coalesced<'a>, names: &dyn Names<'a>) {
    for actor in [&mut ev.actor_primary, &mut ev.actor_secondary] {
        if let Some(n) = actor.as_deref().and_then(|a| names.user(a)) {
            *actor = Some(Cow::Borrowed(n));
        }
    }
    for (k, id) in ev.user_ids.iter_text() {
        let n = if k.ends_with(b"uid") {
            names.user(&id)
        } else {
            names.group(&id)
        };
        if let Some(n) = n {
            ev.user_names.push((k, Cow::Borrowed(n)));
        }
    }
    if let Some(f) = &mut ev.file {
        f.owner = f
            .uid
            .as_deref()
            .and_then(|u| names.user(u))
            .map(Cow::Borrowed);
        f.group = f
            .gid
            .as_deref()
            .and_then(|g| names.group(g))
            .map(Cow::Borrowed);
    }
    for e in [
        &mut ev.ecs_user,
        &mut ev.ecs_user_effective,
        &mut ev.ecs_user_target,
        &mut ev.ecs_user_changes,
    ] {
        if let (Some(id), None) = (&e.id, &e.name) {
            e.name = names.user(id).map(Cow::Borrowed);
        }
    }
    if let (Some(id), None) = (&ev.ecs_group.id, &ev.ecs_group.name) {
        ev.ecs_group.name = names.group(id).map(Cow::Borrowed);
    }
}

/// aucoalesce's event categories (ported there from audit-userspace's normalize.c).
pub fn event_category(t: u16) -> &'static str {
    match t {
        1100..=1106 | 1108..=1110 | 1112..=1113 | 1126 => "user-login",
        1114..=1117 | 1132..=1133 | 1135..=1136 => "user-account",
        2000 | 1127..=1131 => "system-services",
        1111 | 1305 | 1325 | 1328..=1329 => "configuration",
        1326 => "dac-decision",
        1119..=1121 | 1123 | 1125 => "user-space",
        1124 | 1319 => "TTY",
        1200..=1299 => "audit-daemon",
        1122 | 1107 | 1502..=1503 | 1506 | 1400..=1402 => "mac-decision",
        1800..=1899 | 2109 => "integrity",
        1700..=1799 | 2100..=2108 | 2110..=2199 => "anomaly",
        2200..=2299 => "anomaly-response",
        1403..=1499 | 1500..=1501 | 1504..=1505 | 2300..=2399 => "mac",
        1600..=1699 | 2400..=2499 => "crypto",
        2500..=2599 => "virt",
        1300..=1304 | 1306..=1315 | 1317..=1318 | 1321..=1324 => "audit-rule",
        _ => "unknown",
    }
}
