//! Resolution of uids to user names for the events' `uid_map`.
//!
//! Owns the lookup (the system passwd database through `getpwuid_r`, as pauditd's cgo build
//! does, or a passwd-format file for offline replay and tests) and its cache, and the one NSS
//! loop (`nss_get`, ERANGE retried) that [`crate::privileges`]' lookups by name share. The
//! cache is what keeps lookups off the hot path: with `parser.enable_uid_caching` off it lives
//! for one batch (pauditd looks up every time; a batch is the smallest unit we re-check at),
//! with it on it lives until `parser.password_file_path` changes (checked at most once a
//! second, where pauditd stats the file on every lookup). It must never be a global: callers own one.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustc_hash::FxHashMap;

use crate::header::go_atoi_checked;

/// The name pauditd prints for a uid with no passwd entry.
pub const UNKNOWN_USER: &[u8] = b"UNKNOWN_USER";

/// Maps the text of a uid (`"0"`, `"4294967295"`) to a user name (and, when asked to, the
/// text of a gid to a group name).
pub trait UserResolver {
    fn resolve(&mut self, uid: &[u8]) -> Arc<[u8]>;
    /// Called by the driver before each batch of records, so caches can expire.
    fn begin_batch(&mut self, _now: Instant) {}
    /// Whether gids are to be resolved too (only the enriched and ecs formats print group
    /// names; pauditd's format has none, so by default nothing is looked up).
    fn resolves_groups(&self) -> bool {
        false
    }
    /// The group name of a gid, if it has one.
    fn resolve_group(&mut self, _gid: &[u8]) -> Option<Arc<[u8]>> {
        None
    }
    /// Start or stop resolving gids (a reload changed which formats are written); a
    /// resolver that cannot resolve groups ignores it.
    fn set_resolves_groups(&mut self, _on: bool) {}
}

/// Where group names come from.
#[derive(Debug, Clone)]
pub enum GroupSource {
    /// The system database (NSS) via `getgrgid_r`.
    System,
    /// A group-format file read once (`name:x:gid:members`), for replay.
    GroupFile(FxHashMap<u32, Arc<[u8]>>),
}

impl GroupSource {
    /// Load a group-format file; the first entry for a gid wins, as in `getgrgid`.
    pub fn group_file(path: &Path) -> std::io::Result<Self> {
        // The same layout as passwd's first three fields.
        match UserSource::passwd_file(path)? {
            UserSource::PasswdFile(map) => Ok(GroupSource::GroupFile(map)),
            UserSource::System => unreachable!("passwd_file returns a file map"),
        }
    }

    fn lookup(&self, gid: u32) -> Option<Arc<[u8]>> {
        match self {
            GroupSource::System => system_group_lookup(gid),
            GroupSource::GroupFile(map) => map.get(&gid).cloned(),
        }
    }
}

/// Where names come from.
#[derive(Debug, Clone)]
pub enum UserSource {
    /// The system database (NSS) via `getpwuid_r`.
    System,
    /// A passwd-format file read once (e.g. the source host's `/etc/passwd` when replaying
    /// its logs elsewhere).
    PasswdFile(FxHashMap<u32, Arc<[u8]>>),
}

impl UserSource {
    /// Load a passwd-format file; the first entry for a uid wins, as in `getpwuid`.
    pub fn passwd_file(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read(path)?;
        let mut map = FxHashMap::default();
        for line in text.split(|&b| b == b'\n') {
            let mut fields = line.split(|&b| b == b':');
            let (Some(name), _, Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            if let Some(uid) = std::str::from_utf8(uid)
                .ok()
                .and_then(|u| u.parse::<u32>().ok())
            {
                map.entry(uid).or_insert_with(|| Arc::from(name));
            }
        }
        Ok(UserSource::PasswdFile(map))
    }

    fn lookup(&self, uid: u32) -> Option<Arc<[u8]>> {
        match self {
            UserSource::System => system_lookup(uid),
            UserSource::PasswdFile(map) => map.get(&uid).cloned(),
        }
    }
}

/// How long cached names may be used.
#[derive(Debug, Clone)]
pub enum CachePolicy {
    /// pauditd's default (no caching): names are looked up afresh, but a name is reused for
    /// at most this long (checked at batch boundaries). Live, a batch can be a few records, and
    /// an NSS lookup per batch (open and parse /etc/passwd) was the reassembler's top cost.
    Fresh(Duration),
    /// `parser.enable_uid_caching`: keep names until this file's mtime changes.
    UntilModified(PathBuf),
}

/// The resolver pauditd's parser uses, with a cache in front of the source.
pub struct UserDb {
    source: UserSource,
    policy: CachePolicy,
    cache: FxHashMap<Box<[u8]>, Arc<[u8]>>,
    /// Group names, when gids are resolved; flushed with the user names.
    groups: Option<GroupSource>,
    group_cache: FxHashMap<Box<[u8]>, Option<Arc<[u8]>>>,
    /// When the group names were last flushed: the passwd file's mtime says nothing about
    /// /etc/group, so with `UntilModified` they are also kept at most `GROUP_MAX_AGE`.
    groups_flushed: Option<Instant>,
    unknown: Arc<[u8]>,
    /// The watched file's mtime when the cache was last (re)started.
    seen_mtime: Option<SystemTime>,
    last_check: Option<Instant>,
}

/// How long group names are kept when user names are cached until passwd changes.
const GROUP_MAX_AGE: Duration = Duration::from_secs(60);

/// How often the passwd file's mtime is checked when caching is on.
const MTIME_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl UserDb {
    pub fn new(source: UserSource, policy: CachePolicy) -> Self {
        let seen_mtime = match &policy {
            CachePolicy::UntilModified(p) => mtime(p),
            CachePolicy::Fresh(_) => None,
        };
        UserDb {
            source,
            policy,
            cache: FxHashMap::default(),
            groups: None,
            group_cache: FxHashMap::default(),
            groups_flushed: None,
            unknown: Arc::from(UNKNOWN_USER),
            seen_mtime,
            last_check: None,
        }
    }
}

impl UserDb {
    /// Resolve gids to group names too, from `source`.
    pub fn with_groups(mut self, source: GroupSource) -> Self {
        self.groups = Some(source);
        self
    }

    fn flush(&mut self) {
        self.cache.clear();
        self.group_cache.clear();
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl UserResolver for UserDb {
    fn resolve(&mut self, uid: &[u8]) -> Arc<[u8]> {
        if let Some(name) = self.cache.get(uid) {
            return name.clone();
        }
        // Go's cgo lookup: Atoi, then the value is cast to a C uid_t (so "-1" is 4294967295).
        let name = go_atoi_checked(uid)
            .and_then(|n| self.source.lookup(n as u32))
            .unwrap_or_else(|| self.unknown.clone());
        self.cache.insert(uid.into(), name.clone());
        name
    }

    fn resolves_groups(&self) -> bool {
        self.groups.is_some()
    }

    fn set_resolves_groups(&mut self, on: bool) {
        match (on, self.groups.is_some()) {
            // Started at reload: from the system (a group file is replay's).
            (true, false) => self.groups = Some(GroupSource::System),
            (false, true) => {
                self.groups = None;
                self.group_cache.clear();
            }
            _ => {}
        }
    }

    fn resolve_group(&mut self, gid: &[u8]) -> Option<Arc<[u8]>> {
        let source = self.groups.as_ref()?;
        if let Some(name) = self.group_cache.get(gid) {
            return name.clone();
        }
        let name = go_atoi_checked(gid).and_then(|n| source.lookup(n as u32));
        self.group_cache.insert(gid.into(), name.clone());
        name
    }

    fn begin_batch(&mut self, now: Instant) {
        match &self.policy {
            CachePolicy::Fresh(max_age) => match self.last_check {
                Some(t) if now.saturating_duration_since(t) < *max_age => {}
                _ => {
                    self.last_check = Some(now);
                    self.flush();
                }
            },
            CachePolicy::UntilModified(path) => {
                if self
                    .groups_flushed
                    .is_none_or(|t| now.saturating_duration_since(t) >= GROUP_MAX_AGE)
                {
                    self.groups_flushed = Some(now);
                    self.group_cache.clear();
                }
                if self
                    .last_check
                    .is_some_and(|t| now.duration_since(t) < MTIME_CHECK_INTERVAL)
                {
                    return;
                }
                self.last_check = Some(now);
                let m = mtime(path);
                if m != self.seen_mtime {
                    log::info!("{} changed: user name cache flushed", path.display());
                    self.seen_mtime = m;
                    self.flush();
                }
            }
        }
    }
}

/// NSS's `get*_r` convention, the one loop every lookup in the system databases goes through
/// (these uid and gid maps, and [`crate::privileges`]' lookups by name): `call` runs the
/// lookup with `buf` as its scratch space and returns the return code and, when an entry was
/// found, what the caller needs of it, copied out of `buf` before it returns. The buffer
/// grows while the answer is ERANGE, up to 1 MiB; any other non-zero code is "not found".
pub(crate) fn nss_get<T>(mut call: impl FnMut(&mut [u8]) -> (i32, Option<T>)) -> Option<T> {
    let mut buf = vec![0u8; 1024];
    loop {
        let (rc, found) = call(&mut buf);
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return if rc == 0 { found } else { None };
    }
}

/// [`nss_get`] for the uid and gid maps: `call` returns the return code and the entry's name
/// (null when not found), a pointer into `buf`.
fn nss_name(mut call: impl FnMut(&mut [u8]) -> (i32, *const libc::c_char)) -> Option<Arc<[u8]>> {
    nss_get(|buf| {
        let (rc, name) = call(buf);
        // SAFETY: a non-null `name` points into `buf` (what the call filled), which is alive
        // and unchanged until this copy is made.
        let name = (!name.is_null()).then(|| Arc::from(unsafe { CStr::from_ptr(name) }.to_bytes()));
        (rc, name)
    })
}

fn system_lookup(uid: u32) -> Option<Arc<[u8]>> {
    nss_name(|buf| {
        // SAFETY: `pwd` is plain old data that getpwuid_r fills; `buf` outlives the call and
        // its length is passed; `pwd.pw_name` is read only when `result` says it was filled.
        unsafe {
            let mut pwd: libc::passwd = std::mem::zeroed();
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            let rc = libc::getpwuid_r(
                uid as libc::uid_t,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            let name = if result.is_null() {
                std::ptr::null()
            } else {
                pwd.pw_name.cast_const()
            };
            (rc, name)
        }
    })
}

fn system_group_lookup(gid: u32) -> Option<Arc<[u8]>> {
    nss_name(|buf| {
        // SAFETY: as in `system_lookup`, with getgrgid_r and `libc::group`.
        unsafe {
            let mut grp: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrgid_r(
                gid as libc::gid_t,
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            );
            let name = if result.is_null() {
                std::ptr::null()
            } else {
                grp.gr_name.cast_const()
            };
            (rc, name)
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A resolver with two users, for unit tests of the code that uses names.
    #[derive(Default)]
    pub struct FixedUsers;
    impl UserResolver for FixedUsers {
        fn resolve(&mut self, uid: &[u8]) -> Arc<[u8]> {
            Arc::from(match uid {
                b"0" => &b"root"[..],
                b"1000" => b"alice",
                _ => UNKNOWN_USER,
            })
        }
    }

    #[test]
    fn groups_resolve_only_when_asked() {
        let policy = CachePolicy::Fresh(Duration::from_secs(1));
        let mut db = UserDb::new(UserSource::System, policy.clone());
        assert!(!db.resolves_groups());
        assert_eq!(db.resolve_group(b"0"), None);
        let mut db =
            UserDb::new(UserSource::System, policy.clone()).with_groups(GroupSource::System);
        assert!(db.resolves_groups());
        assert_eq!(db.resolve_group(b"0").as_deref(), Some(&b"root"[..]));
        assert_eq!(db.resolve_group(b"4294967295"), None);
        let dir = std::env::temp_dir().join(format!("pauditd-groups-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("group");
        std::fs::write(&path, "root:x:0:\nwheel:x:10:alice,bob\nwheel2:x:10:\n").unwrap();
        let src = GroupSource::group_file(&path).unwrap();
        let mut db = UserDb::new(UserSource::System, policy).with_groups(src);
        assert_eq!(db.resolve_group(b"10").as_deref(), Some(&b"wheel"[..]));
        assert_eq!(db.resolve_group(b"11"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn system_database_knows_root() {
        let mut db = UserDb::new(
            UserSource::System,
            CachePolicy::Fresh(Duration::from_secs(1)),
        );
        assert_eq!(&*db.resolve(b"0"), b"root");
        assert_eq!(&*db.resolve(b"4294967295"), UNKNOWN_USER);
        assert_eq!(&*db.resolve(b"abc"), UNKNOWN_USER);
        assert_eq!(&*db.resolve(b""), UNKNOWN_USER);
        // Go's Atoi accepts a sign; the value is then cast to a C uid_t.
        assert_eq!(&*db.resolve(b"+0"), b"root");
    }

    #[test]
    fn passwd_file_source_and_cache_invalidation() {
        let dir = std::env::temp_dir().join(format!("pauditd-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("passwd");
        std::fs::write(
            &path,
            "root:x:0:0::/root:/bin/sh\nbob:x:1001:1001::/:/bin/sh\n",
        )
        .unwrap();
        let src = UserSource::passwd_file(&path).unwrap();
        let mut db = UserDb::new(src, CachePolicy::UntilModified(path.clone()));
        let t0 = Instant::now();
        db.begin_batch(t0);
        assert_eq!(&*db.resolve(b"1001"), b"bob");
        assert_eq!(&*db.resolve(b"1002"), UNKNOWN_USER);
        assert_eq!(db.cache.len(), 2);
        // Touch the file with a clearly different mtime: the next check flushes the cache.
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(10))
            .unwrap();
        db.begin_batch(t0 + Duration::from_millis(10));
        assert_eq!(db.cache.len(), 2, "checked at most once a second");
        db.begin_batch(t0 + Duration::from_secs(2));
        assert_eq!(db.cache.len(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fresh_policy_forgets_after_max_age() {
        let mut db = UserDb::new(
            UserSource::System,
            CachePolicy::Fresh(Duration::from_secs(1)),
        );
        let t0 = Instant::now();
        db.begin_batch(t0);
        db.resolve(b"0");
        assert_eq!(db.cache.len(), 1);
        db.begin_batch(t0 + Duration::from_millis(999));
        assert_eq!(db.cache.len(), 1, "still fresh");
        db.begin_batch(t0 + Duration::from_secs(1));
        assert_eq!(db.cache.len(), 0);
    }

    /// The one NSS loop: the buffer grows (x4 from 1 KiB) while the call answers ERANGE, and
    /// what the call found once it fits is returned.
    #[test]
    fn nss_get_grows_the_buffer_while_the_answer_is_erange() {
        let mut sizes = Vec::new();
        let got = nss_get(|buf| {
            sizes.push(buf.len());
            if buf.len() < 20_000 {
                (libc::ERANGE, None)
            } else {
                (0, Some(buf.len()))
            }
        });
        assert_eq!(sizes, [1024, 4096, 16384, 65536]);
        assert_eq!(got, Some(65536));
    }

    /// ERANGE past 1 MiB, any other error, and "not found" (0 and nothing) give nothing.
    #[test]
    fn nss_get_gives_up_at_1_mib_and_on_errors() {
        let mut calls = 0;
        let got: Option<()> = nss_get(|_| {
            calls += 1;
            (libc::ERANGE, None)
        });
        assert_eq!((got, calls), (None, 6), "1, 4, 16, 64, 256 KiB, 1 MiB");
        assert_eq!(nss_get(|_| (libc::EIO, Some(1))), None);
        assert_eq!(nss_get::<u32>(|_| (0, None)), None);
    }

    #[test]
    fn the_system_database_names_root() {
        assert_eq!(system_lookup(0).as_deref(), Some(&b"root"[..]));
        assert_eq!(system_group_lookup(0).as_deref(), Some(&b"root"[..]));
    }
}
