//! `format: ecs`: one Elastic Common Schema document per event, as auditbeat's auditd
//! module writes it, so an Elastic user can point an output at an ingest endpoint.
//!
//! Owns the document: `@timestamp`, `event.{kind,module,category,type,action,outcome}`,
//! `user.*` (ids, names, `effective`/`target`/`changes`), `group.*`, `related.user`,
//! `process.*` (with `args`, `parent.pid`), `file.*`, `source`/`destination`,
//! `network.direction`, `tags`, `host.name` (from a record's `node=`), and `auditd.*`
//! (`message_type`, `sequence`, `result`, `session`, `summary`, `data`, `paths`). The
//! meaning comes from [`coalesce`] (go-libaudit's rules and table); names from the event's
//! uid map and the group resolver handed in. Strings are escaped as Go's encoder does (as
//! auditbeat's are). It must never change the pauditd or enriched formats.

pub mod auparse;
pub mod coalesce;
pub mod normalize;

use std::borrow::Cow;
use std::cell::RefCell;

use bumpalo::collections::Vec as BVec;
use bumpalo::Bump;

use pauditd_engine::Event;

use crate::pauditd_json::write_str;
use auparse::Text;
use coalesce::{Coalesced, Entity, Names};

/// The ECS version the documents follow (auditbeat 8's).
pub const ECS_VERSION: &str = "8.0.0";

/// A JSON value built for one document (only `ecs` needs a tree: auditbeat's document is
/// assembled by puts and deletes at dotted paths). Keys and strings borrow from the
/// coalesced event wherever they can.
#[derive(Debug)]
enum J<'a> {
    Str(Cow<'a, [u8]>),
    Num(i64),
    Arr(BVec<'a, J<'a>>),
    Obj(BVec<'a, (Cow<'a, [u8]>, J<'a>)>),
}

impl<'a> J<'a> {
    /// An empty object in `b`, the document's arena: a document is dozens of small objects,
    /// allocated by bumping a pointer and freed all at once when the next event resets it.
    fn obj(b: &'a Bump) -> J<'a> {
        J::Obj(BVec::with_capacity_in(8, b))
    }

    fn arr(b: &'a Bump, items: impl Iterator<Item = J<'a>>) -> J<'a> {
        J::Arr(BVec::from_iter_in(items, b))
    }

    fn s(v: &'a [u8]) -> J<'a> {
        J::Str(Cow::Borrowed(v))
    }

    /// An object of data-named string fields.
    fn map(b: &'a Bump, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> J<'a> {
        J::Obj(BVec::from_iter_in(
            pairs.map(|(k, v)| (Cow::Borrowed(k), J::s(v))),
            b,
        ))
    }

    fn child(&mut self, key: &'a [u8]) -> &mut J<'a> {
        let J::Obj(fields) = self else {
            unreachable!("children are only asked of objects")
        };
        let b = fields.bump();
        let i = match fields.iter().position(|(k, _)| k.as_ref() == key) {
            Some(i) => i,
            None => {
                fields.push((Cow::Borrowed(key), J::obj(b)));
                fields.len() - 1
            }
        };
        if !matches!(fields[i].1, J::Obj(_)) {
            fields[i].1 = J::obj(b);
        }
        &mut fields[i].1
    }

    /// Set `path` (dot-separated), creating objects on the way.
    fn put(&mut self, path: &'a str, v: J<'a>) {
        if !matches!(self, J::Obj(_)) {
            return;
        }
        match path.bytes().position(|b| b == b'.') {
            Some(dot) => self.child(&path.as_bytes()[..dot]).put(&path[dot + 1..], v),
            None => {
                let J::Obj(fields) = self else { return };
                match fields
                    .iter_mut()
                    .find(|(k, _)| k.as_ref() == path.as_bytes())
                {
                    Some(slot) => slot.1 = v,
                    None => fields.push((Cow::Borrowed(path.as_bytes()), v)),
                }
            }
        }
    }

    fn get(&self, path: &str) -> Option<&J<'a>> {
        let J::Obj(fields) = self else { return None };
        let (head, rest) = match path.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (path, None),
        };
        let v = &fields
            .iter()
            .find(|(k, _)| k.as_ref() == head.as_bytes())?
            .1;
        match rest {
            None => Some(v),
            Some(r) => v.get(r),
        }
    }

    fn get_str(&self, path: &str) -> Option<&[u8]> {
        match self.get(path)? {
            J::Str(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    fn delete(&mut self, path: &str) {
        let J::Obj(fields) = self else { return };
        match path.split_once('.') {
            None => fields.retain(|(k, _)| k.as_ref() != path.as_bytes()),
            Some((h, r)) => {
                if let Some((_, v)) = fields.iter_mut().find(|(k, _)| k.as_ref() == h.as_bytes()) {
                    v.delete(r);
                }
            }
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            J::Str(s) => write_str(out, s),
            J::Num(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
            J::Arr(a) => {
                out.push(b'[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write(out);
                }
                out.push(b']');
            }
            J::Obj(fields) => {
                out.push(b'{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, k);
                    out.push(b':');
                    v.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// Names from the event itself: its uid map (pauditd's, resolved when the event was
/// assembled), the names of ids given only as `id=` (user-management records), and its gid
/// names, when groups were resolved.
struct EventNames<'e>(&'e Event);

impl<'e> Names<'e> for EventNames<'e> {
    fn user(&self, uid: &[u8]) -> Option<&'e [u8]> {
        self.0.user_name(uid)
    }

    fn group(&self, gid: &[u8]) -> Option<&'e [u8]> {
        self.0.group_name(gid)
    }
}

/// Append one event as an ECS JSON line.
pub fn encode_event(e: &Event, out: &mut Vec<u8>) {
    thread_local! {
        /// The document's arena, reset for every event (its memory is kept).
        static ARENA: RefCell<Bump> = RefCell::new(Bump::new());
    }
    let table = normalize::Table::builtin();
    ARENA.with(|arena| {
        let mut arena = arena.borrow_mut();
        arena.reset();
        let b: &Bump = &arena;
        match coalesce::coalesce(e.messages(), table) {
            Ok(mut c) => {
                coalesce::resolve(&mut c, &EventNames(e));
                document(b, e, &c).write(out);
            }
            Err(why) => error_document(b, e, why).write(out),
        }
    });
    out.push(b'\n');
}

/// `@timestamp` as libbeat writes it: RFC 3339, UTC, exactly three digits of milliseconds.
fn timestamp(e: &Event, doc: &mut J<'_>) {
    let Some(t) = crate::enriched::rfc3339(e.timestamp()) else {
        return;
    };
    let t = t.strip_suffix('Z').unwrap_or(&t);
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(3).collect();
    doc.put(
        "@timestamp",
        J::Str(Cow::Owned(format!("{secs}.{frac}Z").into_bytes())),
    );
}

/// What auditbeat writes for records aucoalesce cannot make an event of: the error and
/// the records as they came.
fn error_document<'a>(b: &'a Bump, e: &'a Event, why: &str) -> J<'a> {
    let mut doc = J::obj(b);
    timestamp(e, &mut doc);
    doc.put("event.kind", J::s(b"event"));
    doc.put("event.module", J::s(b"auditd"));
    let original: Vec<J<'_>> = e
        .messages()
        .map(|(t, d)| {
            let mut line = b"type=".to_vec();
            line.extend_from_slice(coalesce::type_name(t).as_bytes());
            line.extend_from_slice(b" msg=audit(");
            line.extend_from_slice(e.timestamp());
            line.push(b':');
            line.extend_from_slice(itoa::Buffer::new().format(e.serial).as_bytes());
            line.extend_from_slice(b"): ");
            line.extend_from_slice(d);
            J::Str(Cow::Owned(line))
        })
        .collect();
    doc.put("event.original", J::arr(b, original.into_iter()));
    doc.put("error.message", J::Str(Cow::Owned(why.as_bytes().to_vec())));
    // libbeat's `mb.Event.BeatEvent` adds it to every document, errors included.
    doc.put("service.type", J::s(b"auditd"));
    doc.put("ecs.version", J::s(ECS_VERSION.as_bytes()));
    doc
}

fn opt<'a>(doc: &mut J<'a>, path: &'static str, v: &'a Option<impl AsRef<[u8]>>) {
    if let Some(v) = v {
        if !v.as_ref().is_empty() {
            doc.put(path, J::s(v.as_ref()));
        }
    }
}

fn number(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// auditbeat's `buildMetricbeatEvent`, field for field.
fn document<'a>(b: &'a Bump, e: &'a Event, c: &'a Coalesced<'_>) -> J<'a> {
    let mut doc = J::obj(b);
    timestamp(e, &mut doc);
    doc.put("event.kind", J::s(b"event"));
    doc.put("event.module", J::s(b"auditd"));
    if c.ecs_category.is_empty() {
        doc.put("event.category", J::s(c.category.as_bytes()));
    } else {
        let cats = c.ecs_category.iter().map(|s| J::s(s.as_bytes()));
        doc.put("event.category", J::arr(b, cats));
    }
    if !c.ecs_type.is_empty() {
        let types = c.ecs_type.iter().map(|s| J::s(s.as_bytes()));
        doc.put("event.type", J::arr(b, types));
    }
    doc.put("event.action", J::s(c.action.as_bytes()));
    let outcome: &[u8] = match c.ecs_outcome {
        Some(o) => o.as_bytes(),
        None if c.result.as_ref() == b"fail" => b"failure",
        None => &c.result,
    };
    doc.put("event.outcome", J::s(outcome));

    user(b, &mut doc, c);
    process(b, &mut doc, c);
    if let Some(f) = &c.file {
        doc.put("file", J::obj(b));
        opt(&mut doc, "file.path", &f.path);
        opt(&mut doc, "file.device", &f.device);
        opt(&mut doc, "file.inode", &f.inode);
        opt(&mut doc, "file.mode", &f.mode);
        opt(&mut doc, "file.uid", &f.uid);
        opt(&mut doc, "file.gid", &f.gid);
        opt(&mut doc, "file.owner", &f.owner);
        opt(&mut doc, "file.group", &f.group);
        if !f.selinux.is_empty() {
            let m = f.selinux.iter().map(|(k, v)| (k.as_slice(), v.as_ref()));
            doc.put("file.selinux", J::map(b, m));
        }
    }
    for (key, addr) in [("source", &c.source), ("destination", &c.dest)] {
        let Some(a) = addr else { continue };
        let mut o = J::obj(b);
        opt(&mut o, "ip", &a.ip);
        opt(&mut o, "port", &a.port);
        opt(&mut o, "path", &a.path);
        doc.put(key, o);
    }
    if let Some(d) = c.direction {
        doc.put("network.direction", J::s(d.as_bytes()));
    }
    if !c.tags.is_empty() {
        doc.put("tags", J::arr(b, c.tags.iter().map(|t| J::s(t))));
    }
    if let Some(node) = e.messages().find_map(|(_, d)| {
        d.strip_prefix(b"node=")
            .map(|r| r.split(|b| *b == b' ').next().unwrap_or(r))
    }) {
        doc.put("host.name", J::s(node));
    }

    let mut a = J::obj(b);
    let mut msg_type = coalesce::type_name(c.rtype).into_owned().into_bytes();
    msg_type.make_ascii_lowercase();
    a.put("message_type", J::Str(Cow::Owned(msg_type)));
    a.put("sequence", J::Num(e.serial));
    a.put("result", J::s(&c.result));
    let mut data = BVec::with_capacity_in(c.data.len() + 1, b);
    let mut socket = BVec::new_in(b);
    for (k, v) in c.data.iter() {
        match k.strip_prefix(b"socket_") {
            Some(rest) => socket.push((Cow::Borrowed(rest), J::s(v))),
            None => data.push((Cow::Borrowed(k), J::s(v))),
        }
    }
    if !socket.is_empty() {
        data.push((Cow::Borrowed(&b"socket"[..]), J::Obj(socket)));
    }
    a.put("data", J::Obj(data));
    match &c.session {
        Some(s) if s.as_ref() == b"unset" => {}
        Some(s) => a.put("session", J::s(s)),
        None => a.put("session", J::s(b"")),
    }
    opt(&mut a, "summary.actor.primary", &c.actor_primary);
    opt(&mut a, "summary.actor.secondary", &c.actor_secondary);
    opt(&mut a, "summary.object.primary", &c.object_primary);
    opt(&mut a, "summary.object.secondary", &c.object_secondary);
    if !c.object_type.is_empty() {
        a.put("summary.object.type", J::s(c.object_type.as_bytes()));
    }
    opt(&mut a, "summary.how", &c.how);
    if !c.paths.is_empty() {
        let paths = c.paths.iter().map(|p| J::map(b, p.iter()));
        a.put("paths", J::arr(b, paths));
    }
    doc.put("auditd", a);
    enrichment(&mut doc, e);
    // libbeat's `mb.Event.BeatEvent`: the module's name, on every document.
    doc.put("service.type", J::s(b"auditd"));
    doc.put("ecs.version", J::s(ECS_VERSION.as_bytes()));
    doc
}

/// What pauditd adds beyond auditbeat, when `enrichment` is on: the parent process from the
/// process table (`process.parent.{pid,name,executable}`, and the exec event's sequence as
/// `auditd.parent.exec_sequence`), the container (`container.id`, `container.runtime`),
/// the pod (`kubernetes.pod.uid`, `kubernetes.pod.qos_class`) and the systemd unit
/// (`systemd.unit`); what only a cgroup a user could have named claims goes under
/// `auditd.untrusted.*` instead.
fn enrichment<'a>(doc: &mut J<'a>, e: &'a Event) {
    if let Some(p) = e.parent() {
        // The process table knows the parent of the SYSCALL record's process: the same pid
        // as `process.parent.pid` (from `ppid`) unless the event has none.
        doc.put("process.parent.pid", J::Num(i64::from(p.pid)));
        if let Some(c) = &p.comm {
            doc.put("process.parent.name", J::s(c.as_bytes()));
        }
        if let Some(x) = &p.exe {
            doc.put("process.parent.executable", J::s(x.as_bytes()));
        }
        if let Some(seq) = p.exec_event {
            doc.put("auditd.parent.exec_sequence", J::Num(seq));
        }
    }
    if let Some(a) = e.attribution() {
        if let Some(id) = &a.container_id {
            doc.put("container.id", J::s(id.as_bytes()));
        }
        if let Some(r) = a.runtime {
            doc.put("container.runtime", J::s(r.as_bytes()));
        }
        if let Some(p) = &a.pod_uid {
            doc.put("kubernetes.pod.uid", J::s(p.as_bytes()));
        }
        if let Some(q) = a.qos {
            doc.put("kubernetes.pod.qos_class", J::s(q.as_bytes()));
        }
        if let Some(u) = &a.unit {
            doc.put("systemd.unit", J::s(u.as_bytes()));
        }
        if let Some(u) = &a.untrusted {
            if let Some(id) = &u.container_id {
                doc.put("auditd.untrusted.container.id", J::s(id.as_bytes()));
            }
            if let Some(r) = u.runtime {
                doc.put("auditd.untrusted.container.runtime", J::s(r.as_bytes()));
            }
            if let Some(unit) = &u.unit {
                doc.put("auditd.untrusted.systemd.unit", J::s(unit.as_bytes()));
            }
        }
    }
}

/// auditbeat's `user.*` key for an id field (`euid` -> `effective.id`).
fn id_path(k: &[u8], name: bool) -> Option<&'static str> {
    Some(match (k, name) {
        (b"uid", false) => "id",
        (b"uid", true) => "name",
        (b"gid", false) => "group.id",
        (b"gid", true) => "group.name",
        (b"euid", false) => "effective.id",
        (b"euid", true) => "effective.name",
        (b"egid", false) => "effective.group.id",
        (b"egid", true) => "effective.group.name",
        (b"suid", false) => "saved.id",
        (b"suid", true) => "saved.name",
        (b"sgid", false) => "saved.group.id",
        (b"sgid", true) => "saved.group.name",
        (b"fsuid", false) => "filesystem.id",
        (b"fsuid", true) => "filesystem.name",
        (b"fsgid", false) => "filesystem.group.id",
        (b"fsgid", true) => "filesystem.group.name",
        (b"auid", false) => "audit.id",
        (b"auid", true) => "audit.name",
        _ => return None,
    })
}

fn user<'a>(b: &'a Bump, doc: &mut J<'a>, c: &'a Coalesced<'_>) {
    let mut user = J::obj(b);
    for (k, v) in c.user_ids.iter() {
        if v == b"unset" {
            continue;
        }
        match id_path(k, false) {
            Some(p) => user.put(p, J::s(v)),
            // Other id fields go under `user.<field>.id` (auditbeat's default case).
            None => user.child(k).put("id", J::s(v)),
        }
    }
    // auditbeat adds the labels while it walks the ids it writes (none when all are unset).
    if c.user_ids.iter().any(|(_, v)| v != b"unset") && !c.user_selinux.is_empty() {
        user.put("selinux", J::map(b, c.user_selinux.iter()));
    }
    for (k, n) in &c.user_names {
        match id_path(k, true) {
            Some(p) => user.put(p, J::s(n)),
            None => user.child(k).put("name", J::s(n)),
        }
    }
    doc.put("user", user);
    let mut related: Vec<&[u8]> = Vec::new();
    let entities: [(&'static str, &'static str, &Entity<'_>, bool); 5] = [
        ("user.id", "user.name", &c.ecs_user, true),
        (
            "user.effective.id",
            "user.effective.name",
            &c.ecs_user_effective,
            true,
        ),
        (
            "user.target.id",
            "user.target.name",
            &c.ecs_user_target,
            true,
        ),
        (
            "user.changes.id",
            "user.changes.name",
            &c.ecs_user_changes,
            true,
        ),
        ("group.id", "group.name", &c.ecs_group, false),
    ];
    for (id, name, ent, users) in entities {
        if !ent.is_set() {
            continue;
        }
        match ent.id.as_deref().filter(|i| *i != b"unset") {
            Some(i) => doc.put(id, J::s(i)),
            None => doc.delete(id),
        }
        match ent.name.as_deref() {
            Some(n) => {
                doc.put(name, J::s(n));
                if users && !related.contains(&n) {
                    related.push(n);
                }
            }
            None => doc.delete(name),
        }
    }
    if !related.is_empty() {
        doc.put("related.user", J::arr(b, related.into_iter().map(J::s)));
    }
    // user.effective is left out when it is the user itself.
    for (u, eff) in [
        ("user.id", "user.effective.id"),
        ("user.name", "user.effective.name"),
    ] {
        if let Some(v) = doc.get_str(u) {
            if doc.get_str(eff) == Some(v) {
                doc.delete("user.effective");
                break;
            }
        }
    }
}

fn process<'a>(b: &'a Bump, doc: &mut J<'a>, c: &'a Coalesced<'_>) {
    let p = &c.process;
    let empty = |v: &Option<Text<'_>>| v.as_ref().is_none_or(|v| v.is_empty());
    if empty(&p.pid)
        && empty(&p.ppid)
        && empty(&p.title)
        && empty(&p.name)
        && empty(&p.exe)
        && empty(&p.cwd)
        && p.args.is_empty()
    {
        return;
    }
    let mut o = J::obj(b);
    if let Some(pid) = p.pid.as_deref().and_then(number) {
        o.put("pid", J::Num(pid));
    }
    if let Some(ppid) = p.ppid.as_deref().and_then(number) {
        o.put("parent.pid", J::Num(ppid));
    }
    opt(&mut o, "title", &p.title);
    opt(&mut o, "name", &p.name);
    opt(&mut o, "executable", &p.exe);
    opt(&mut o, "working_directory", &p.cwd);
    if !p.args.is_empty() {
        o.put("args", J::arr(b, p.args.iter().map(|a| J::s(a))));
    }
    doc.put("process", o);
}

#[cfg(test)]
mod tests;
