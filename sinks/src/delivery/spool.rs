//! The durable spool of one output: encoded batches on disk, delivered in order later.
//!
//! Owns a private directory: segment files (`<first id>.seg`, each a run of records with
//! consecutive ids), a `ledger` naming the last record delivered, and a `lock` file held with
//! an exclusive `flock` for as long as the spool is open (a second instance, in this process
//! or another, is refused with the holder's pid named). A record is a 24-byte header (magic,
//! payload length, event count, CRC-32 of id and payload, id) and the payload: JSON lines
//! exactly as the output would send them.
//!
//! Its contract, the invariants recovery relies on:
//! - **Ids only grow.** Every batch the output takes gets the next id, whether it goes to
//!   disk or stays in memory ([`SpoolWriter::assign_id`]); a segment holds consecutive ids, so
//!   segments sorted by first id are records sorted by id. Nothing is ever written below the
//!   ledger: batches an output still held in memory at shutdown keep their own (higher) ids
//!   ([`SpoolReader::write_held`]).
//! - **The ledger moves after the data.** A record is visible to the reader only once it is
//!   written (and, with `fsync`, flushed); the ledger names a record only after the output
//!   delivered it; a segment is deleted only after the ledger passed its last record. So a
//!   crash at any point leaves every undelivered record on disk: delivery is at-least-once.
//! - **Recovery never discards what it can read.** A bad record is skipped by searching for
//!   the next valid header (a forged header cannot hide inside a payload: payloads are JSON,
//!   which never holds the zero bytes every header has), counted in bytes and, when its header
//!   was intact, in events; a header never makes it allocate past [`RECORD_LIMIT`]; a segment
//!   with nothing readable is renamed `*.corrupt` (kept, not deleted); a ledger that names a
//!   record past everything on disk is ignored (all is sent again) and said so.
//! - **No link is followed.** Every file is opened relative to the directory's descriptor with
//!   `O_NOFOLLOW` (and created with `O_EXCL`), ownership is changed on open descriptors only,
//!   a directory that is a symbolic link is refused, as is one anyone but its owner can write.
//!   Because everything is relative to the descriptor opened at start, the spool keeps
//!   working after the daemon drops to `privileges.user` whatever the parents' modes.
//!
//! One thread writes ([`SpoolWriter`]: appends, the output's buffer thread) and one reads
//! ([`SpoolReader`]: delivery, acknowledgements), sharing only a small index under a lock that
//! is never held across I/O. It must never reorder, never grow past `max_bytes`, and never
//! delete a record the ledger has not passed.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::Batch;

const MAGIC: u32 = 0x3250_5350; // "PSP2" little-endian
/// The previous format's records ("PSP1"): converted at open.
const V1_MAGIC: u32 = 0x3150_5350;
const HEADER: u64 = 24;
/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 8 << 20;
/// A batch is cut into records of at most this many payload bytes (whole lines).
const RECORD_SPLIT: usize = 4 << 20;
/// No record is larger (one event is at most 16 MiB, ~6x that once escaped as JSON): a header
/// claiming more is corrupt, and never drives an allocation.
pub const RECORD_LIMIT: u64 = 128 << 20;
const LEDGER: &str = "ledger";
const LEDGER_TMP: &str = "ledger.tmp";
const LOCK: &str = "lock";

/// Spool directories opened once (as root, before the privilege drop) and opened again from
/// that descriptor by every later open of the same spool in this process (a reload), so a
/// spool works after the drop whatever its parents' modes. The daemon owns one and hands it
/// to every [`SpoolConfig`]; a default one is private to its config.
#[derive(Debug, Clone, Default)]
pub struct SpoolDirs(Arc<Mutex<std::collections::HashMap<PathBuf, Arc<OwnedFd>>>>);

/// The same registry (not equal contents).
impl PartialEq for SpoolDirs {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SpoolDirs {}

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Bytes on disk (headers included) past which appends are refused.
    pub max_bytes: u64,
    /// `fdatasync` every append and ledger move, and `fsync` the directory after every
    /// create, rename and delete (survives power loss, costs disk flushes per batch); without
    /// it a `kill -9` loses nothing written, a power cut may.
    pub fsync: bool,
    /// `(uid, gid)` the daemon will run as after dropping privileges: the directory and its
    /// files are given to it (on open descriptors), and it is accepted as the owner.
    pub owner: Option<(u32, u32)>,
    /// Every batch goes through the spool before delivery (not only on overflow or outage).
    pub write_ahead: bool,
    /// Where directories opened earlier in this process are kept.
    pub dirs: SpoolDirs,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {dir}: {what}: {error}")]
    Io {
        dir: String,
        what: &'static str,
        error: io::Error,
    },
    #[error("spool {dir}: {reason}")]
    Unsafe { dir: String, reason: String },
    #[error("spool {dir}: full ({bytes} of {max} bytes)")]
    Full { dir: String, bytes: u64, max: u64 },
    /// Another open spool holds the directory's lock (`ours`: in this very process, e.g. an
    /// output being retired by a reload: wait for it).
    #[error("spool {dir}: in use by {holder}")]
    Busy {
        dir: String,
        holder: String,
        ours: bool,
    },
}

/// What opening found in a spool left by an earlier run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Undelivered events found (to be delivered first).
    pub events: u64,
    pub records: u64,
    /// Bytes that could not be read (torn tails, corrupt records), skipped.
    pub corrupt_bytes: u64,
    /// Corrupt records whose header was intact: their events are known lost.
    pub corrupt_events: u64,
    /// Regions skipped (each a corrupt record or a torn tail).
    pub corrupt_regions: u64,
    /// The ledger named a record past everything on disk: ignored, all sent again.
    pub ledger_ignored: bool,
    /// Entries named like segments that were not regular files (ignored, logged).
    pub stray_entries: u64,
}

/// One record read back: its payload as a batch and its id (for [`SpoolReader::ack`]).
#[derive(Debug)]
pub struct Spooled {
    pub batch: Batch,
    pub id: u64,
    /// Where it ends in its segment (the reader's next offset once it is acknowledged).
    seg: u64,
    end: u64,
}

/// The spool directory, opened once: every file operation is relative to it.
#[derive(Debug)]
struct Dir {
    path: PathBuf,
    fd: OwnedFd,
    owner: Option<(u32, u32)>,
    fsync: bool,
}

fn cstr(name: &str) -> CString {
    CString::new(name).expect("spool file names have no NUL")
}

fn last_os_error<T>(rc: libc::c_int, ok: T) -> io::Result<T> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ok)
    }
}

impl Dir {
    fn display(&self) -> String {
        self.path.display().to_string()
    }

    fn err(&self, what: &'static str) -> impl FnOnce(io::Error) -> SpoolError + '_ {
        move |error| SpoolError::Io {
            dir: self.display(),
            what,
            error,
        }
    }

    /// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, 0600)`, given to the owner when it
    /// was created here.
    fn open(&self, name: &str, flags: libc::c_int) -> io::Result<File> {
        let c = cstr(name);
        // SAFETY: a valid descriptor and a NUL-terminated name; the result is checked.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let f = unsafe { File::from_raw_fd(fd) };
        if flags & libc::O_CREAT != 0 {
            self.own(&f)?;
        }
        Ok(f)
    }

    /// A new file (never an existing one, never through a link).
    fn create(&self, name: &str) -> io::Result<File> {
        let f = self.open(name, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR)?;
        self.sync()?;
        Ok(f)
    }

    fn own(&self, f: &File) -> io::Result<()> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        if f.metadata()?.uid() == uid {
            return Ok(());
        }
        std::os::unix::fs::fchown(f, Some(uid), Some(gid))
    }

    fn unlink(&self, name: &str) -> io::Result<()> {
        let c = cstr(name);
        // SAFETY: a valid descriptor and a NUL-terminated name.
        let rc = unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) };
        last_os_error(rc, ())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (a, b) = (cstr(from), cstr(to));
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid descriptors and NUL-terminated names.
        let rc = unsafe { libc::renameat(fd, a.as_ptr(), fd, b.as_ptr()) };
        last_os_error(rc, ())
    }

    /// With `fsync`: make creates, renames and deletes in the directory durable.
    fn sync(&self) -> io::Result<()> {
        fail::fail_point!("spool-dir-sync", |_| Err(io::Error::other(
            "failpoint spool-dir-sync"
        )));
        if !self.fsync {
            return Ok(());
        }
        // SAFETY: a valid descriptor.
        let rc = unsafe { libc::fsync(self.fd.as_raw_fd()) };
        last_os_error(rc, ())
    }
}

fn seg_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// One segment as the index knows it.
#[derive(Debug, Clone)]
struct Segment {
    /// Its first record's id (its name).
    first: u64,
    /// Its last record's id (`first - 1` while empty).
    last: u64,
    /// Bytes of whole records the reader may read.
    bytes: u64,
    /// Events in records after the ledger.
    events: u64,
    /// No more appends: it may be deleted once the ledger passes `last`.
    sealed: bool,
}

/// What the writer and the reader share; held only for bookkeeping, never across I/O.
#[derive(Debug)]
struct Index {
    /// By first id (= by record id).
    segments: VecDeque<Segment>,
    /// The ledger: every record with an id up to this was delivered.
    acked: u64,
    /// Undelivered events on disk, and bytes of every segment (what counts against max).
    events: u64,
    bytes: u64,
}

#[derive(Debug)]
struct Shared {
    dir: Dir,
    max_bytes: u64,
    index: Mutex<Index>,
    /// The `flock`ed lock file: the spool is ours while it is open.
    _lock: File,
}

impl Shared {
    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Segments the ledger passed that no one appends to any more: removed from the index
    /// (the caller deletes the files, after the ledger is written).
    fn take_deletable(ix: &mut Index) -> Vec<Segment> {
        let acked = ix.acked;
        let mut gone = Vec::new();
        ix.segments.retain(|s| {
            let done = s.sealed && s.last <= acked;
            if done {
                gone.push(s.clone());
            }
            !done
        });
        for s in &gone {
            ix.bytes -= s.bytes;
        }
        gone
    }

    fn delete(&self, gone: &[Segment]) -> Result<(), SpoolError> {
        if gone.is_empty() {
            return Ok(());
        }
        fail::fail_point!("spool-delete", |_| Err(SpoolError::Io {
            dir: self.dir.display(),
            what: "delete delivered segment",
            error: io::Error::other("failpoint spool-delete"),
        }));
        for s in gone {
            match self.dir.unlink(&seg_name(s.first)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(self.dir.err("delete delivered segment")(e))
                }
                _ => {}
            }
        }
        self.dir.sync().map_err(self.dir.err("sync directory"))
    }
}

/// The whole spool, for one thread (tests, recovery checks); [`Spool::split`] gives the
/// writer and the reader halves an output's two threads use.
#[derive(Debug)]
pub struct Spool {
    pub writer: SpoolWriter,
    pub reader: SpoolReader,
}

/// The appending half: the only one that writes segments.
#[derive(Debug)]
pub struct SpoolWriter {
    shared: Arc<Shared>,
    /// The segment being appended to (its first id), if any.
    tail: Option<(File, u64)>,
    /// The id the next batch gets.
    next_id: u64,
}

/// The delivering half: reads records in order, moves the ledger.
#[derive(Debug)]
pub struct SpoolReader {
    shared: Arc<Shared>,
    fsync: bool,
    /// The segment being read: its first id, the open file, the next offset.
    cur: Option<(u64, File, u64)>,
    /// Events found unreadable while reading (taken by the output, counted lost).
    corrupt_events: u64,
    pub corrupt_bytes: u64,
}

/// Refuse a directory anyone but its owner can write, or whose parents let others swap it.
fn check_private(dir: &Path, meta: &fs::Metadata, owner: Option<u32>) -> Result<(), SpoolError> {
    let unsafe_ = |reason: String| SpoolError::Unsafe {
        dir: dir.display().to_string(),
        reason,
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && Some(meta.uid()) != owner {
        return Err(unsafe_(format!(
            "owned by uid {}, not by us (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_(format!(
            "writable by others (mode {:o}); it must be private (0700)",
            meta.mode() & 0o7777
        )));
    }
    let mut p = dir.parent();
    while let Some(parent) = p.filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(m) = fs::metadata(parent) {
            if m.mode() & 0o002 != 0 && m.mode() & 0o1000 == 0 {
                return Err(unsafe_(format!(
                    "parent {} is writable by anyone without the sticky bit",
                    parent.display()
                )));
            }
        }
        p = parent.parent();
    }
    Ok(())
}

fn open_dir(cfg: &SpoolConfig) -> Result<Dir, SpoolError> {
    let path = cfg.dir.clone();
    let known = cfg
        .dirs
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&path)
        .cloned();
    if let Some(fd) = known {
        // Opened (and checked) at an earlier start in this process: the same directory,
        // whatever happened to the path or its parents' modes since.
        let fd = fd.try_clone().map_err(|error| SpoolError::Io {
            dir: path.display().to_string(),
            what: "open directory",
            error,
        })?;
        return Ok(Dir {
            path,
            fd,
            owner: cfg.owner,
            fsync: cfg.fsync,
        });
    }
    let err = |what: &'static str| {
        let d = path.display().to_string();
        move |error| SpoolError::Io {
            dir: d,
            what,
            error,
        }
    };
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(SpoolError::Unsafe {
                dir: path.display().to_string(),
                reason: "is a symbolic link; give the real directory".into(),
            })
        }
        Ok(m) if !m.is_dir() => {
            return Err(SpoolError::Unsafe {
                dir: path.display().to_string(),
                reason: "is not a directory".into(),
            })
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(err("create directory"))?;
            }
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(err("create directory")(e))
                }
                _ => {}
            }
        }
        Err(e) => return Err(err("stat")(e)),
    }
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| err("open directory")(io::Error::other(e)))?;
    // SAFETY: a NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(err("open directory")(io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let as_file = File::from(fd.try_clone().map_err(err("open directory"))?);
    if let Some((uid, gid)) = cfg.owner {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::fchown(&as_file, Some(uid), Some(gid)).map_err(err("chown"))?;
        }
    }
    let meta = as_file.metadata().map_err(err("stat"))?;
    check_private(&path, &meta, cfg.owner.map(|o| o.0))?;
    let kept = Arc::new(fd.try_clone().map_err(err("open directory"))?);
    cfg.dirs
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.clone(), kept);
    Ok(Dir {
        path,
        fd,
        owner: cfg.owner,
        fsync: cfg.fsync,
    })
}

/// Take the directory's lock, or say who holds it.
fn lock(dir: &Dir) -> Result<File, SpoolError> {
    let mut f = dir
        .open(LOCK, libc::O_CREAT | libc::O_RDWR)
        .map_err(dir.err("open lock file"))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(dir.err("lock")(e));
        }
        let mut held = String::new();
        let _ = io::Read::read_to_string(&mut f, &mut held);
        let pid: Option<u32> = held.trim().parse().ok();
        let ours = pid == Some(std::process::id());
        return Err(SpoolError::Busy {
            dir: dir.display(),
            holder: match pid {
                Some(p) if ours => format!("another output of this process (pid {p})"),
                Some(p) => format!("pid {p}"),
                None => "another process".into(),
            },
            ours,
        });
    }
    f.set_len(0).map_err(dir.err("write lock file"))?;
    f.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)
        .map_err(dir.err("write lock file"))?;
    Ok(f)
}

fn read_ledger(dir: &Dir) -> Option<u64> {
    let f = dir.open(LEDGER, libc::O_RDONLY).ok()?;
    let mut buf = [0u8; 32];
    let n = f.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

fn header(payload: &[u8], events: u32, id: u64) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8..12].copy_from_slice(&events.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&id.to_le_bytes());
    crc.update(payload);
    h[12..16].copy_from_slice(&crc.finalize().to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    h
}

/// A header's fields: (magic, payload length, events, crc, id).
fn parse_header(h: &[u8]) -> (u32, u64, u32, u32, u64) {
    let w = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let id = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    (w(0), u64::from(w(4)), w(8), w(12), id)
}

fn count_lines(b: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', b).count()
}

/// What reading one record at an offset found.
enum Read {
    /// A whole valid record: id, events, payload.
    Record(u64, u32, Vec<u8>),
    /// Bad; `Some(events)` when the header was intact (only the payload is damaged).
    Bad(Option<u32>),
    /// Not enough bytes for a header.
    End,
}

fn read_record(f: &File, off: u64, len: u64) -> io::Result<Read> {
    if off + HEADER > len {
        return Ok(Read::End);
    }
    let mut h = [0u8; HEADER as usize];
    f.read_exact_at(&mut h, off)?;
    let (magic, plen, events, crc, id) = parse_header(&h);
    // The length is checked against the record limit and the file before any allocation.
    if magic != MAGIC || plen > RECORD_LIMIT || off + HEADER + plen > len {
        return Ok(Read::Bad(None));
    }
    let mut payload = vec![0u8; plen as usize];
    f.read_exact_at(&mut payload, off + HEADER)?;
    let mut c = crc32fast::Hasher::new();
    c.update(&id.to_le_bytes());
    c.update(&payload);
    if c.finalize() != crc || count_lines(&payload) != events as usize {
        let plausible = u64::from(events) <= plen;
        return Ok(Read::Bad(plausible.then_some(events)));
    }
    Ok(Read::Record(id, events, payload))
}

/// The next offset after `from` where a header's magic starts (or `len`).
fn resync(f: &File, from: u64, len: u64) -> io::Result<u64> {
    let magic = MAGIC.to_le_bytes();
    let mut off = from;
    let mut buf = vec![0u8; 1 << 16];
    while off < len {
        let n = ((len - off) as usize).min(buf.len());
        f.read_exact_at(&mut buf[..n], off)?;
        if let Some(i) = memchr::memmem::find(&buf[..n], &magic) {
            return Ok(off + i as u64);
        }
        if off + n as u64 >= len {
            break;
        }
        // Overlap by three bytes: a magic may straddle two reads.
        off += (n as u64).saturating_sub(3).max(1);
    }
    Ok(len)
}

/// A segment's valid records (offset, id, events), in order, and what was unreadable.
struct Scan {
    records: Vec<(u64, u64, u32)>,
    corrupt_bytes: u64,
    corrupt_events: u64,
    corrupt_regions: u64,
}

fn scan(f: &File) -> io::Result<Scan> {
    let len = f.metadata()?.len();
    let mut s = Scan {
        records: Vec::new(),
        corrupt_bytes: 0,
        corrupt_events: 0,
        corrupt_regions: 0,
    };
    let mut off = 0;
    let mut prev_id = 0;
    loop {
        match read_record(f, off, len)? {
            Read::End => break,
            Read::Record(id, events, payload) if id > prev_id => {
                s.records.push((off, id, events));
                prev_id = id;
                off += HEADER + payload.len() as u64;
                continue;
            }
            Read::Record(..) | Read::Bad(None) => {}
            Read::Bad(Some(events)) => s.corrupt_events += u64::from(events),
        }
        let next = resync(f, off + 1, len)?;
        s.corrupt_bytes += next - off;
        s.corrupt_regions += 1;
        off = next;
    }
    if off < len {
        // A torn tail shorter than a header.
        s.corrupt_bytes += len - off;
        s.corrupt_regions += 1;
    }
    Ok(s)
}

impl Spool {
    /// Open (creating, 0700) the spool in `cfg.dir`, take its lock and recover what an
    /// earlier run left.
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, Recovered), SpoolError> {
        let dir = open_dir(&cfg)?;
        let lock_file = lock(&dir)?;
        let mut rec = Recovered::default();
        let ledger = read_ledger(&dir).unwrap_or(0);

        let mut found: Vec<(u64, String)> = Vec::new();
        // Listed through the descriptor (its /proc magic link), not the path: after the
        // privilege drop the parents may not be traversable, and the path may have changed.
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", dir.fd.as_raw_fd()));
        for e in fs::read_dir(&by_fd).map_err(dir.err("list"))? {
            let e = e.map_err(dir.err("list"))?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(id) = name
                .strip_suffix(".seg")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            // The entry's own type (never through a link): a directory or a link named like a
            // segment is someone else's doing, left alone and reported.
            if !e.file_type().map_err(dir.err("list"))?.is_file() {
                log::error!(
                    "spool {}: {name} is not a regular file; ignored",
                    dir.display()
                );
                rec.stray_entries += 1;
                continue;
            }
            found.push((id, name.to_string()));
        }
        found.sort_unstable();

        let mut scanned = Vec::new();
        let mut max_id = 0;
        let mut v1 = Vec::new();
        for (first, name) in found {
            let f = match dir.open(&name, libc::O_RDONLY) {
                Ok(f) => f,
                Err(e) => {
                    log::error!("spool {}: {name}: {e}; ignored", dir.display());
                    rec.stray_entries += 1;
                    continue;
                }
            };
            let mut magic = [0u8; 4];
            if f.read_exact_at(&mut magic, 0).is_ok() && u32::from_le_bytes(magic) == V1_MAGIC {
                v1.push((first, name, f));
                continue;
            }
            let len = f.metadata().map_err(dir.err("stat segment"))?.len();
            let s = scan(&f).map_err(dir.err("read segment"))?;
            if s.corrupt_regions > 0 {
                log::error!(
                    "spool {}: {name}: {} byte(s) in {} region(s) could not be read and were skipped ({} event(s) known lost); {} record(s) recovered",
                    dir.display(),
                    s.corrupt_bytes,
                    s.corrupt_regions,
                    s.corrupt_events,
                    s.records.len()
                );
            }
            rec.corrupt_bytes += s.corrupt_bytes;
            rec.corrupt_events += s.corrupt_events;
            rec.corrupt_regions += s.corrupt_regions;
            if s.records.is_empty() {
                if len > 0 {
                    // Nothing readable: kept for inspection under another name.
                    let _ = dir.rename(&name, &format!("{name}.corrupt"));
                } else {
                    let _ = dir.unlink(&name);
                }
                continue;
            }
            max_id = max_id.max(s.records.last().expect("not empty").1);
            scanned.push((first, len, s));
        }
        let mut acked = ledger;
        if !scanned.is_empty() && ledger > max_id {
            log::error!(
                "spool {}: the ledger names record {ledger}, past the last record on disk ({max_id}); ignoring it: every record is sent again",
                dir.display()
            );
            rec.ledger_ignored = true;
            acked = 0;
        }
        let mut index = Index {
            segments: VecDeque::new(),
            acked,
            events: 0,
            bytes: 0,
        };
        for (first, len, s) in scanned {
            let live: Vec<_> = s.records.iter().filter(|r| r.1 > acked).collect();
            let last = s.records.last().expect("not empty").1;
            if live.is_empty() {
                // Delivered before the crash; only its deletion was lost.
                let _ = dir.unlink(&seg_name(first));
                continue;
            }
            let events: u64 = live.iter().map(|r| u64::from(r.2)).sum();
            rec.events += events;
            rec.records += live.len() as u64;
            index.events += events;
            index.bytes += len;
            index.segments.push_back(Segment {
                first,
                last,
                bytes: len,
                events,
                sealed: true,
            });
        }
        dir.sync().map_err(dir.err("sync directory"))?;
        let next_id = acked.max(max_id) + 1;
        let fsync = dir.fsync;
        let shared = Arc::new(Shared {
            dir,
            max_bytes: cfg.max_bytes,
            index: Mutex::new(index),
            _lock: lock_file,
        });
        let mut spool = Spool {
            writer: SpoolWriter {
                shared: shared.clone(),
                tail: None,
                next_id,
            },
            reader: SpoolReader {
                shared,
                fsync,
                cur: None,
                corrupt_events: 0,
                corrupt_bytes: 0,
            },
        };
        if !v1.is_empty() {
            spool.import_v1(v1, &mut rec)?;
        }
        Ok((spool, rec))
    }

    /// Segments of the previous format (`PSP1`, a `cursor` file naming the first undelivered
    /// record) are read, their undelivered records appended in order as records of this
    /// format, and only then removed: an upgrade loses nothing that was spooled. A failure
    /// leaves them in place (imported again at the next start: duplicates, not losses).
    fn import_v1(
        &mut self,
        mut v1: Vec<(u64, String, File)>,
        rec: &mut Recovered,
    ) -> Result<(), SpoolError> {
        v1.sort_by_key(|v| v.0);
        let shared = self.writer.shared.clone();
        let dir = &shared.dir;
        let cursor = dir.open("cursor", libc::O_RDONLY).ok().and_then(|f| {
            let mut buf = [0u8; 64];
            let n = f.read_at(&mut buf, 0).ok()?;
            let text = std::str::from_utf8(&buf[..n]).ok()?.to_string();
            let mut it = text.split_whitespace();
            Some((
                it.next()?.parse::<u64>().ok()?,
                it.next()?.parse::<u64>().ok()?,
            ))
        });
        for (id, name, f) in &v1 {
            let from = match cursor {
                Some((cid, _)) if *id < cid => continue, // delivered
                Some((cid, off)) if *id == cid => off,
                _ => 0,
            };
            let len = f.metadata().map_err(dir.err("stat segment"))?.len();
            let mut off = from;
            while off + 16 <= len {
                let mut h = [0u8; 16];
                f.read_exact_at(&mut h, off)
                    .map_err(dir.err("read segment"))?;
                let w = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
                let (magic, plen, events, crc) = (w(0), u64::from(w(4)), w(8), w(12));
                if magic != V1_MAGIC || plen > RECORD_LIMIT || off + 16 + plen > len {
                    break;
                }
                let mut payload = vec![0u8; plen as usize];
                f.read_exact_at(&mut payload, off + 16)
                    .map_err(dir.err("read segment"))?;
                if crc32fast::hash(&payload) != crc || count_lines(&payload) != events as usize {
                    break;
                }
                self.writer.append_record(&payload, events)?;
                rec.events += u64::from(events);
                rec.records += 1;
                off += 16 + plen;
            }
            if off < len {
                log::error!(
                    "spool {}: {name} (previous format): {} byte(s) after offset {off} unreadable",
                    dir.display(),
                    len - off
                );
                rec.corrupt_bytes += len - off;
                rec.corrupt_regions += 1;
            }
        }
        self.writer.seal();
        for (_, name, _) in &v1 {
            let _ = dir.unlink(name);
        }
        let _ = dir.unlink("cursor");
        dir.sync().map_err(dir.err("sync directory"))?;
        log::info!(
            "spool {}: {} segment(s) of the previous format converted",
            dir.display(),
            v1.len()
        );
        Ok(())
    }

    pub fn split(self) -> (SpoolWriter, SpoolReader) {
        (self.writer, self.reader)
    }

    pub fn dir(&self) -> &Path {
        &self.writer.shared.dir.path
    }

    pub fn events(&self) -> u64 {
        self.writer.events()
    }

    pub fn bytes(&self) -> u64 {
        self.writer.bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.events() == 0
    }

    pub fn append(&mut self, batch: &Batch, from: usize) -> Result<(), SpoolError> {
        self.writer.append(batch, from)
    }

    pub fn peek(&mut self) -> Result<Option<Spooled>, SpoolError> {
        self.reader.peek()
    }

    pub fn ack(&mut self, rec: &Spooled) -> Result<(), SpoolError> {
        self.reader.ack(rec)
    }
}

impl SpoolWriter {
    pub fn events(&self) -> u64 {
        self.shared.index().events
    }

    pub fn bytes(&self) -> u64 {
        self.shared.index().bytes
    }

    /// Every record written was delivered (new batches may bypass the disk).
    pub fn is_drained(&self) -> bool {
        let ix = self.shared.index();
        ix.segments.iter().all(|s| s.last <= ix.acked)
    }

    /// An id for a batch that goes to the output in memory, not to disk: ids stay unique
    /// and growing, and the next append starts a new segment (segments hold consecutive ids).
    pub fn assign_id(&mut self) -> u64 {
        self.seal();
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Close the segment being appended to; deleted at once if every record was delivered.
    fn seal(&mut self) {
        let Some((_, first)) = self.tail.take() else {
            return;
        };
        let gone = {
            let mut ix = self.shared.index();
            if let Some(s) = ix.segments.iter_mut().find(|s| s.first == first) {
                s.sealed = true;
            }
            Shared::take_deletable(&mut ix)
        };
        if let Err(e) = self.shared.delete(&gone) {
            log::error!("{e}");
        }
    }

    /// Append lines `from..` of `batch` (as one record, or several past [`RECORD_SPLIT`]).
    pub fn append(&mut self, batch: &Batch, from: usize) -> Result<(), SpoolError> {
        let mut i = from;
        while i < batch.len() {
            // Whole lines up to the split size (at least one).
            let start = batch.line_range(i).start;
            let mut j = i + 1;
            while j < batch.len() && batch.line_range(j).end - start <= RECORD_SPLIT {
                j += 1;
            }
            let payload = &batch.bytes()[start..batch.line_range(j - 1).end];
            self.append_record(payload, (j - i) as u32)?;
            i = j;
        }
        Ok(())
    }

    fn append_record(&mut self, payload: &[u8], events: u32) -> Result<(), SpoolError> {
        let size = HEADER + payload.len() as u64;
        let shared = self.shared.clone();
        let dir = &shared.dir;
        {
            let ix = self.shared.index();
            if ix.bytes + size > self.shared.max_bytes {
                return Err(SpoolError::Full {
                    dir: dir.display(),
                    bytes: ix.bytes,
                    max: self.shared.max_bytes,
                });
            }
        }
        let tail_bytes = self.tail.as_ref().and_then(|(_, first)| {
            let ix = self.shared.index();
            ix.segments
                .iter()
                .find(|s| s.first == *first)
                .map(|s| s.bytes)
        });
        if tail_bytes.is_some_and(|b| b + size > SEGMENT_BYTES) {
            self.seal();
        }
        let id = self.next_id;
        if self.tail.is_none() {
            let f = dir.create(&seg_name(id)).map_err(|e| {
                // The name is taken (by a planted file or link): the next try uses the next id.
                self.next_id += 1;
                dir.err("create segment")(e)
            })?;
            self.tail = Some((f, id));
            self.shared.index().segments.push_back(Segment {
                first: id,
                last: id - 1,
                bytes: 0,
                events: 0,
                sealed: false,
            });
        }
        let (f, first) = self.tail.as_mut().expect("opened above");
        let first = *first;
        let at = {
            let ix = self.shared.index();
            ix.segments
                .iter()
                .find(|s| s.first == first)
                .map_or(0, |s| s.bytes)
        };
        let h = header(payload, events, id);
        let written = (|| {
            fail::fail_point!("spool-append-torn", |_| {
                // A crash in the middle of the write: half the record reached the file.
                let _ = f.write_all_at(&h[..HEADER as usize / 2], at);
                Err(io::Error::other("failpoint spool-append-torn"))
            });
            let mut rec = Vec::with_capacity(HEADER as usize + payload.len());
            rec.extend_from_slice(&h);
            rec.extend_from_slice(payload);
            // One write: a crash leaves a whole record or a torn tail recovery skips.
            f.write_all_at(&rec, at)?;
            if dir.fsync {
                f.sync_data()?;
            }
            fail::fail_point!("spool-append-written", |_| Err(io::Error::other(
                "failpoint spool-append-written"
            )));
            Ok(())
        })();
        if let Err(e) = written {
            // Cut whatever part reached the file so the segment stays whole, and start a new
            // segment next time (the id is not reused: ids only grow).
            let _ = f.set_len(at);
            self.next_id += 1;
            self.seal();
            return Err(dir.err("append")(e));
        }
        self.next_id += 1;
        // Published only now: the reader never sees a record before it is written.
        let mut ix = self.shared.index();
        if let Some(s) = ix.segments.iter_mut().find(|s| s.first == first) {
            s.last = id;
            s.bytes += size;
            s.events += u64::from(events);
        }
        ix.bytes += size;
        ix.events += u64::from(events);
        Ok(())
    }
}

impl SpoolReader {
    pub fn events(&self) -> u64 {
        self.shared.index().events
    }

    pub fn bytes(&self) -> u64 {
        self.shared.index().bytes
    }

    /// Events found unreadable since the last call (to be counted lost).
    pub fn take_corrupt_events(&mut self) -> u64 {
        std::mem::take(&mut self.corrupt_events)
    }

    /// The oldest undelivered record, without consuming it.
    pub fn peek(&mut self) -> Result<Option<Spooled>, SpoolError> {
        loop {
            let (first, bytes, last, acked) = {
                let ix = self.shared.index();
                let acked = ix.acked;
                match ix.segments.iter().find(|s| s.last > acked) {
                    Some(s) => (s.first, s.bytes, s.last, acked),
                    None => return Ok(None),
                }
            };
            let dir = &self.shared.dir;
            if self.cur.as_ref().is_none_or(|c| c.0 != first) {
                let f = dir
                    .open(&seg_name(first), libc::O_RDONLY)
                    .map_err(dir.err("open segment"))?;
                self.cur = Some((first, f, 0));
            }
            let (_, f, off) = self.cur.as_mut().expect("opened above");
            while *off < bytes {
                match read_record(f, *off, bytes).map_err(dir.err("read segment"))? {
                    Read::Record(id, events, payload) => {
                        let end = *off + HEADER + payload.len() as u64;
                        if id <= acked {
                            *off = end;
                            continue;
                        }
                        let mut batch = Batch::default();
                        for line in payload.split_inclusive(|&b| b == b'\n') {
                            batch.push_line(line);
                        }
                        debug_assert_eq!(batch.len(), events as usize, "checked by the crc");
                        // The offset moves on at ack; a second peek returns the same record.
                        return Ok(Some(Spooled {
                            batch,
                            id,
                            seg: first,
                            end,
                        }));
                    }
                    Read::End => break,
                    Read::Bad(events) => {
                        // Changed since it was written (a disk error, someone else's hand):
                        // skipped, counted, the rest of the segment still read.
                        let next = resync(f, *off + 1, bytes).map_err(dir.err("read segment"))?;
                        log::error!(
                            "spool {}: {}: {} unreadable byte(s) at offset {} skipped",
                            dir.display(),
                            seg_name(first),
                            next - *off,
                            *off
                        );
                        self.corrupt_bytes += next - *off;
                        self.corrupt_events += u64::from(events.unwrap_or(0));
                        *off = next;
                    }
                }
            }
            // Nothing more readable in this segment: what it still counted is lost.
            let gone = {
                let mut ix = self.shared.index();
                let mut lost = 0;
                if let Some(s) = ix.segments.iter_mut().find(|s| s.first == first) {
                    if s.bytes > bytes {
                        continue; // the writer appended meanwhile: read on
                    }
                    lost = s.events;
                    s.events = 0;
                }
                ix.events -= lost;
                self.corrupt_events += lost;
                ix.acked = ix.acked.max(last);
                Shared::take_deletable(&mut ix)
            };
            self.cur = None;
            self.save_ledger(last)?;
            self.shared.delete(&gone)?;
        }
    }

    /// The record from [`peek`](Self::peek) was delivered (or given up): move past it.
    pub fn ack(&mut self, rec: &Spooled) -> Result<(), SpoolError> {
        let n = rec.batch.len() as u64;
        let gone = {
            let mut ix = self.shared.index();
            if rec.id <= ix.acked {
                return Ok(());
            }
            ix.acked = rec.id;
            if let Some(s) = ix
                .segments
                .iter_mut()
                .find(|s| s.first <= rec.id && rec.id <= s.last)
            {
                s.events = s.events.saturating_sub(n);
            }
            ix.events = ix.events.saturating_sub(n);
            Shared::take_deletable(&mut ix)
        };
        if let Some((seg, _, off)) = self.cur.as_mut() {
            if *seg == rec.seg {
                *off = (*off).max(rec.end);
            }
        }
        fail::fail_point!("spool-ack-before-ledger", |_| Err(SpoolError::Io {
            dir: self.shared.dir.display(),
            what: "write ledger",
            error: io::Error::other("failpoint spool-ack-before-ledger"),
        }));
        self.save_ledger(rec.id)?;
        self.shared.delete(&gone)
    }

    fn save_ledger(&self, acked: u64) -> Result<(), SpoolError> {
        let dir = &self.shared.dir;
        let err = dir.err("write ledger");
        let res = (|| {
            let _ = dir.unlink(LEDGER_TMP);
            let mut f = dir.create(LEDGER_TMP)?;
            writeln!(f, "{acked}")?;
            if self.fsync {
                f.sync_data()?;
            }
            fail::fail_point!("spool-ledger-rename", |_| Err(io::Error::other(
                "failpoint spool-ledger-rename"
            )));
            dir.rename(LEDGER_TMP, LEDGER)?;
            dir.sync()
        })();
        res.map_err(err)
    }

    /// At shutdown: batches the output still held in memory (each with the id it was given,
    /// all above the ledger and below every record on disk after them) go to disk, so the
    /// next start delivers them first.
    pub fn write_held(&mut self, held: &[(u64, &Batch)]) -> Result<u64, SpoolError> {
        let dir = &self.shared.dir;
        let acked = self.shared.index().acked;
        let held: Vec<_> = held
            .iter()
            .filter(|(id, b)| *id > acked && !b.is_empty())
            .collect();
        let Some(&&(first, _)) = held.first() else {
            return Ok(0);
        };
        let mut f = dir
            .create(&seg_name(first))
            .map_err(dir.err("create segment"))?;
        let mut bytes = 0u64;
        let mut events = 0u64;
        let mut last = first;
        for &&(id, b) in &held {
            let h = header(b.bytes(), b.len() as u32, id);
            let res = f.write_all(&h).and_then(|_| f.write_all(b.bytes()));
            if let Err(e) = res {
                let _ = f.set_len(bytes);
                return Err(dir.err("append")(e));
            }
            bytes += HEADER + b.bytes().len() as u64;
            events += b.len() as u64;
            last = id;
        }
        if self.fsync {
            f.sync_data().map_err(dir.err("append"))?;
        }
        let mut ix = self.shared.index();
        let at = ix
            .segments
            .iter()
            .position(|s| s.first > first)
            .unwrap_or(ix.segments.len());
        ix.segments.insert(
            at,
            Segment {
                first,
                last,
                bytes,
                events,
                sealed: true,
            },
        );
        ix.bytes += bytes;
        ix.events += events;
        Ok(events)
    }
}

#[cfg(test)]
mod tests;
