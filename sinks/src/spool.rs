//! The durable spool of one output: encoded batches on disk, delivered in order later.
//!
//! Owns a private directory of append-only segment files (`<id>.seg`, ids ascending = oldest
//! first) and a `cursor` file naming the first record not yet delivered. A record is a 16-byte
//! header (magic, payload length, event count, CRC-32 of the payload) and the payload: JSON
//! lines exactly as the output would send them. Delivery is at-least-once: the cursor moves
//! only after the output confirmed a record, so after a crash at most the record being sent
//! is sent again. A torn or corrupt tail (a crash mid-append, a bad disk) is found when the
//! spool opens, truncated at the last good record, logged and counted, never a crash.
//! Spooled events are audit data: the directory is 0700 and the files 0600, and a directory
//! that anyone but its owner can write is refused.
//!
//! It must never reorder: records come back in the order they were written, except a batch
//! [`Spool::push_front`] puts back before all others (the output's own in-flight batches,
//! which are older than anything spooled). It must never grow past `max_bytes`.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Batch;

const MAGIC: u32 = 0x3150_5350; // "PSP1" little-endian
const HEADER: u64 = 16;
/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 8 << 20;
/// Ids start in the middle of the range so batches put back at the front get lower ids.
const FIRST_ID: u64 = 1 << 40;

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Bytes on disk (headers included) past which appends are refused.
    pub max_bytes: u64,
    /// `fdatasync` after every append and cursor move (survives power loss, costs a disk
    /// flush per batch); without it a `kill -9` loses nothing, a power cut may.
    pub fsync: bool,
    /// `(uid, gid)` the daemon will run as after dropping privileges: the directory and its
    /// files are given to it at open (as root), and it is accepted as the owner.
    pub owner: Option<(u32, u32)>,
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
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// Bytes of whole, valid records.
    bytes: u64,
    /// Offset of the first undelivered record.
    read: u64,
    /// Events in records at or after `read`.
    events: u64,
}

/// One record about to be written: its payload, event count and size on disk.
struct Record<'b> {
    payload: &'b [u8],
    events: u32,
    size: u64,
}

/// What opening found in a spool left by an earlier run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub events: u64,
    pub records: u64,
    /// Bytes cut off torn or corrupt tails.
    pub corrupt_bytes: u64,
}

/// One record read back: its payload as a batch, and where it ends (for [`Spool::ack`]).
#[derive(Debug)]
pub struct Spooled {
    pub batch: Batch,
    seg: u64,
    end: u64,
}

#[derive(Debug)]
pub struct Spool {
    cfg: SpoolConfig,
    /// Oldest first; the last one is appended to.
    segments: VecDeque<Segment>,
    tail: Option<File>,
    /// Bytes of every segment file (read or not): what counts against `max_bytes`.
    disk_bytes: u64,
    /// Undelivered events.
    events: u64,
    /// Bytes cut off corrupt tails since open (a counter).
    pub corrupt_bytes: u64,
}

fn io_err<'a>(dir: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |error| SpoolError::Io {
        dir: dir.display().to_string(),
        what,
        error,
    }
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Refuse a directory (or any parent) that another user could replace files in.
fn check_private(dir: &Path, owner: Option<u32>) -> Result<(), SpoolError> {
    let meta = fs::metadata(dir).map_err(io_err(dir, "stat"))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me && Some(meta.uid()) != owner {
        return Err(SpoolError::Unsafe {
            dir: dir.display().to_string(),
            reason: format!("owned by uid {}, not by us (uid {me})", meta.uid()),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(SpoolError::Unsafe {
            dir: dir.display().to_string(),
            reason: format!(
                "writable by others (mode {:o}); it must be private (0700)",
                meta.mode() & 0o7777
            ),
        });
    }
    // A parent that anyone may write (without the sticky bit) lets them swap the directory.
    let mut p = dir.parent();
    while let Some(parent) = p.filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(m) = fs::metadata(parent) {
            if m.mode() & 0o002 != 0 && m.mode() & 0o1000 == 0 {
                return Err(SpoolError::Unsafe {
                    dir: dir.display().to_string(),
                    reason: format!(
                        "parent {} is writable by anyone without the sticky bit",
                        parent.display()
                    ),
                });
            }
        }
        p = parent.parent();
    }
    Ok(())
}

/// Walk `file`'s records; returns (bytes of whole valid records, offsets and event counts).
fn scan(file: &mut File) -> io::Result<(u64, Vec<(u64, u32)>)> {
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let mut r = io::BufReader::with_capacity(1 << 16, file);
    let mut off = 0u64;
    let mut records = Vec::new();
    let mut payload = Vec::new();
    loop {
        if off + HEADER > len {
            break;
        }
        let mut h = [0u8; HEADER as usize];
        r.read_exact(&mut h)?;
        let (magic, plen, events, crc) = parse_header(&h);
        if magic != MAGIC || off + HEADER + u64::from(plen) > len {
            break;
        }
        payload.resize(plen as usize, 0);
        r.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc || count_lines(&payload) != events as usize {
            break;
        }
        records.push((off, events));
        off += HEADER + u64::from(plen);
    }
    Ok((off, records))
}

fn parse_header(h: &[u8; HEADER as usize]) -> (u32, u32, u32, u32) {
    let w = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    (w(0), w(4), w(8), w(12))
}

fn count_lines(b: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', b).count()
}

impl Spool {
    /// Open (creating, 0700) the spool in `cfg.dir` and recover what an earlier run left.
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, Recovered), SpoolError> {
        let dir = cfg.dir.clone();
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io_err(&dir, "create directory"))?;
        }
        if let Some((uid, gid)) = cfg.owner {
            // SAFETY: geteuid has no preconditions and cannot fail.
            if unsafe { libc::geteuid() } == 0 {
                give_to(&dir, uid, gid).map_err(io_err(&dir, "chown"))?;
            }
        }
        check_private(&dir, cfg.owner.map(|o| o.0))?;
        // A write probe: a read-only directory fails here, at start, not at the first spill.
        let probe = dir.join(".probe");
        File::create(&probe).map_err(io_err(&dir, "write"))?;
        let _ = fs::remove_file(&probe);

        let mut ids: Vec<u64> = fs::read_dir(&dir)
            .map_err(io_err(&dir, "list"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let cursor = read_cursor(&dir);
        let mut rec = Recovered::default();
        let mut segments = VecDeque::new();
        let mut disk_bytes = 0;
        for id in ids {
            let path = seg_path(&dir, id);
            if cursor.is_some_and(|(cid, _)| id < cid) {
                // Fully delivered before the crash; only its deletion was lost.
                let _ = fs::remove_file(&path);
                continue;
            }
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&dir, "open segment"))?;
            let len = f.metadata().map_err(io_err(&dir, "stat segment"))?.len();
            let (good, records) = scan(&mut f).map_err(io_err(&dir, "read segment"))?;
            if good < len {
                log::error!(
                    "spool {}: segment {id}: {} byte(s) of torn or corrupt records after offset {good} removed",
                    dir.display(),
                    len - good
                );
                rec.corrupt_bytes += len - good;
                f.set_len(good).map_err(io_err(&dir, "truncate segment"))?;
            }
            // A cursor that is not on a record boundary (cannot happen unless edited) is
            // ignored: the whole segment is sent again rather than risk skipping events.
            let read = match cursor {
                Some((cid, off))
                    if cid == id && (off == good || records.iter().any(|&(o, _)| o == off)) =>
                {
                    off
                }
                _ => 0,
            };
            let live: Vec<_> = records.iter().filter(|&&(o, _)| o >= read).collect();
            let events: u64 = live.iter().map(|&&(_, e)| u64::from(e)).sum();
            rec.events += events;
            rec.records += live.len() as u64;
            disk_bytes += good;
            segments.push_back(Segment {
                id,
                bytes: good,
                read,
                events,
            });
        }
        let mut spool = Spool {
            cfg,
            segments,
            tail: None,
            disk_bytes,
            events: rec.events,
            corrupt_bytes: rec.corrupt_bytes,
        };
        spool.drop_delivered_head()?;
        Ok((spool, rec))
    }

    pub fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// Undelivered events on disk.
    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn bytes(&self) -> u64 {
        self.disk_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    fn full(&self, add: u64) -> Result<(), SpoolError> {
        if self.disk_bytes + add > self.cfg.max_bytes {
            return Err(SpoolError::Full {
                dir: self.cfg.dir.display().to_string(),
                bytes: self.disk_bytes,
                max: self.cfg.max_bytes,
            });
        }
        Ok(())
    }

    fn create_segment(&self, id: u64) -> Result<File, SpoolError> {
        let path = seg_path(&self.cfg.dir, id);
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .mode(0o600)
                .open(&path)
                .map_err(io_err(&self.cfg.dir, "create segment"))
        };
        let f = open()?;
        if self.own(&f).is_ok() {
            return Ok(f);
        }
        // Made as root in the instant this thread's privileges were being dropped (glibc
        // switches threads one by one): made again, now as the dropped user. Only an empty new
        // segment can be in that state.
        drop(f);
        if fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            let _ = fs::remove_file(&path);
        }
        let f = open()?;
        self.own(&f)
            .map_err(io_err(&self.cfg.dir, "give the segment to privileges.user"))?;
        Ok(f)
    }

    /// Files made while still root (before the privilege drop) go to the configured owner;
    /// an error when that could not be done.
    fn own(&self, f: &File) -> io::Result<()> {
        let Some((uid, gid)) = self.cfg.owner else {
            return Ok(());
        };
        if f.metadata()?.uid() == uid {
            return Ok(());
        }
        std::os::unix::fs::fchown(f, Some(uid), Some(gid))
    }

    /// Lines `from..` of `batch` as a record; `None` when there is nothing to write; an
    /// error when it would not fit.
    fn record_of<'b>(
        &self,
        batch: &'b Batch,
        from: usize,
    ) -> Result<Option<Record<'b>>, SpoolError> {
        let events = batch.len().saturating_sub(from) as u32;
        if events == 0 {
            return Ok(None);
        }
        let payload = batch.bytes_from(from);
        let size = HEADER + payload.len() as u64;
        self.full(size)?;
        Ok(Some(Record {
            payload,
            events,
            size,
        }))
    }

    /// Append lines `from..` of `batch` as one record.
    pub fn append(&mut self, batch: &Batch, from: usize) -> Result<(), SpoolError> {
        let Some(Record {
            payload,
            events,
            size,
        }) = self.record_of(batch, from)?
        else {
            return Ok(());
        };
        let next = match self.segments.back() {
            None => Some(FIRST_ID),
            Some(s) if s.bytes + size > SEGMENT_BYTES => Some(s.id + 1),
            Some(_) => None,
        };
        if let Some(id) = next {
            self.tail = Some(self.create_segment(id)?);
            self.segments.push_back(Segment {
                id,
                bytes: 0,
                read: 0,
                events: 0,
            });
        } else if self.tail.is_none() {
            let id = self.segments.back().expect("checked above").id;
            self.tail = Some(self.create_segment(id)?);
        }
        let f = self.tail.as_mut().expect("opened above");
        let seg = self.segments.back_mut().expect("pushed above");
        if let Err(e) = write_record(f, payload, events, self.cfg.fsync) {
            // Cut whatever part of the record reached the file, so the segment stays whole.
            let _ = f.set_len(seg.bytes);
            self.tail = None;
            return Err(io_err(&self.cfg.dir, "append")(e));
        }
        seg.bytes += size;
        seg.events += u64::from(events);
        self.disk_bytes += size;
        self.events += u64::from(events);
        Ok(())
    }

    /// Put `batch` (lines `from..`) back before everything spooled: it is older.
    pub fn push_front(&mut self, batch: &Batch, from: usize) -> Result<(), SpoolError> {
        let Some(Record {
            payload,
            events,
            size,
        }) = self.record_of(batch, from)?
        else {
            return Ok(());
        };
        let id = self.segments.front().map_or(FIRST_ID, |s| s.id - 1);
        let mut f = self.create_segment(id)?;
        if let Err(e) = write_record(&mut f, payload, events, self.cfg.fsync) {
            drop(f);
            let _ = fs::remove_file(seg_path(&self.cfg.dir, id));
            return Err(io_err(&self.cfg.dir, "append")(e));
        }
        if self.segments.is_empty() {
            self.tail = Some(f);
        }
        self.segments.push_front(Segment {
            id,
            bytes: size,
            read: 0,
            events: u64::from(events),
        });
        self.disk_bytes += size;
        self.events += u64::from(events);
        // The cursor must name the first unread record, now this one. If it cannot be
        // written (a full disk), the record is taken back out: the caller counts it lost, so
        // it must not also stay spooled (found by the disk-full test: counted twice).
        if let Err(e) = self.save_cursor() {
            self.segments.pop_front();
            if self.segments.is_empty() {
                self.tail = None;
            }
            let _ = fs::remove_file(seg_path(&self.cfg.dir, id));
            self.disk_bytes -= size;
            self.events -= u64::from(events);
            return Err(e);
        }
        Ok(())
    }

    /// The oldest undelivered record, without consuming it.
    pub fn peek(&mut self) -> Result<Option<Spooled>, SpoolError> {
        let dir = self.cfg.dir.clone();
        let Some(seg) = self.segments.iter().find(|s| s.read < s.bytes) else {
            return Ok(None);
        };
        let mut f = File::open(seg_path(&dir, seg.id)).map_err(io_err(&dir, "open segment"))?;
        f.seek(SeekFrom::Start(seg.read))
            .map_err(io_err(&dir, "seek"))?;
        let mut h = [0u8; HEADER as usize];
        f.read_exact(&mut h).map_err(io_err(&dir, "read"))?;
        let (magic, plen, events, crc) = parse_header(&h);
        let mut payload = vec![0u8; plen as usize];
        if magic == MAGIC {
            f.read_exact(&mut payload).map_err(io_err(&dir, "read"))?;
        }
        if magic != MAGIC || crc32fast::hash(&payload) != crc {
            // Checked at open; changed since (a disk error, someone else's hand).
            return Err(SpoolError::Io {
                dir: dir.display().to_string(),
                what: "read",
                error: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("segment {} offset {}: bad record", seg.id, seg.read),
                ),
            });
        }
        let mut batch = Batch::default();
        for line in payload.split_inclusive(|&b| b == b'\n') {
            batch.push_line(line);
        }
        debug_assert_eq!(batch.len(), events as usize);
        Ok(Some(Spooled {
            batch,
            seg: seg.id,
            end: seg.read + HEADER + u64::from(plen),
        }))
    }

    /// The record from [`peek`](Self::peek) was delivered (or given up): move past it.
    pub fn ack(&mut self, rec: &Spooled) -> Result<(), SpoolError> {
        let Some(seg) = self.segments.iter_mut().find(|s| s.id == rec.seg) else {
            return Ok(());
        };
        if rec.end <= seg.read {
            return Ok(());
        }
        seg.read = rec.end;
        let n = rec.batch.len() as u64;
        seg.events -= n;
        self.events -= n;
        self.drop_delivered_head()?;
        self.save_cursor()
    }

    /// Record the first unread position (none: no cursor file).
    fn save_cursor(&self) -> Result<(), SpoolError> {
        let res = match self.segments.iter().find(|s| s.read < s.bytes) {
            Some(s) => write_cursor(&self.cfg.dir, s.id, s.read, self.cfg.fsync, |f| self.own(f)),
            None => match fs::remove_file(self.cfg.dir.join("cursor")) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        res.map_err(io_err(&self.cfg.dir, "write cursor"))
    }

    /// Delete segments every record of which was delivered.
    fn drop_delivered_head(&mut self) -> Result<(), SpoolError> {
        // A segment being appended to goes too once read: the next append opens a new one.
        while let Some(s) = self.segments.front() {
            if s.read < s.bytes {
                break;
            }
            let s = self.segments.pop_front().expect("front exists");
            if self.segments.is_empty() {
                self.tail = None;
            }
            fs::remove_file(seg_path(&self.cfg.dir, s.id))
                .map_err(io_err(&self.cfg.dir, "delete delivered segment"))?;
            self.disk_bytes -= s.bytes;
        }
        Ok(())
    }
}

/// Give `dir` and every file in it to `uid:gid` (the user the daemon drops to).
fn give_to(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    for e in fs::read_dir(dir)? {
        std::os::unix::fs::lchown(e?.path(), Some(uid), Some(gid))?;
    }
    Ok(())
}

fn write_record(f: &mut File, payload: &[u8], events: u32, fsync: bool) -> io::Result<()> {
    let mut rec = Vec::with_capacity(HEADER as usize + payload.len());
    rec.extend_from_slice(&MAGIC.to_le_bytes());
    rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    rec.extend_from_slice(&events.to_le_bytes());
    rec.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    rec.extend_from_slice(payload);
    // One write: a crash leaves a whole record or a torn tail `open` cuts off.
    f.write_all(&rec)?;
    if fsync {
        f.sync_data()?;
    }
    Ok(())
}

fn read_cursor(dir: &Path) -> Option<(u64, u64)> {
    let s = fs::read_to_string(dir.join("cursor")).ok()?;
    let mut it = s.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn write_cursor(
    dir: &Path,
    id: u64,
    off: u64,
    fsync: bool,
    own: impl Fn(&File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    let create = || {
        OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
    };
    let mut f = create()?;
    if own(&f).is_err() {
        // As for segments: made as root while privileges were being dropped; made again.
        drop(f);
        fs::remove_file(&tmp)?;
        f = create()?;
        own(&f)?;
    }
    writeln!(f, "{id} {off}")?;
    if fsync {
        f.sync_data()?;
    }
    fs::rename(&tmp, dir.join("cursor"))?;
    fs::set_permissions(dir.join("cursor"), fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pauditd_engine::Event;

    fn batch(first: i64, n: i64) -> Batch {
        let mut b = Batch::default();
        for s in first..first + n {
            b.push_event(&Event::new(s, b"1.0"));
        }
        b
    }

    fn seqs(b: &Batch) -> Vec<i64> {
        b.lines()
            .map(|l| {
                let s = std::str::from_utf8(l).unwrap();
                let i = s.find("\"sequence\":").unwrap() + 11;
                s[i..].split(',').next().unwrap().parse().unwrap()
            })
            .collect()
    }

    fn cfg(dir: &Path, max: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            max_bytes: max,
            fsync: false,
            owner: None,
        }
    }

    fn drain(s: &mut Spool) -> Vec<i64> {
        let mut out = vec![];
        while let Some(r) = s.peek().unwrap() {
            out.extend(seqs(&r.batch));
            s.ack(&r).unwrap();
        }
        out
    }

    #[test]
    fn records_come_back_in_order_with_front_pushes_first_and_survive_reopen() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("spool");
        let (mut s, rec) = Spool::open(cfg(&dir, 1 << 20)).unwrap();
        assert_eq!(rec, Recovered::default());
        s.append(&batch(10, 3), 0).unwrap();
        s.append(&batch(13, 4), 2).unwrap(); // 15, 16
        s.push_front(&batch(1, 2), 0).unwrap();
        assert_eq!(s.events(), 7);
        let first = s.peek().unwrap().unwrap();
        assert_eq!(seqs(&first.batch), vec![1, 2]);
        s.ack(&first).unwrap();
        drop(s);
        let (mut s, rec) = Spool::open(cfg(&dir, 1 << 20)).unwrap();
        assert_eq!(rec.events, 5);
        assert_eq!(drain(&mut s), vec![10, 11, 12, 15, 16]);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0, "delivered segments are deleted");
        let mode = fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn unacknowledged_record_is_sent_again_after_a_crash() {
        let t = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(t.path(), 1 << 20)).unwrap();
        s.append(&batch(1, 2), 0).unwrap();
        s.append(&batch(3, 2), 0).unwrap();
        let r = s.peek().unwrap().unwrap();
        assert_eq!(seqs(&r.batch), vec![1, 2]);
        drop(s); // crash before ack
        let (mut s, rec) = Spool::open(cfg(t.path(), 1 << 20)).unwrap();
        assert_eq!(rec.events, 4);
        assert_eq!(drain(&mut s), vec![1, 2, 3, 4]);
    }

    #[test]
    fn torn_and_corrupt_tails_are_cut_and_counted() {
        let t = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(cfg(t.path(), 1 << 20)).unwrap();
        s.append(&batch(1, 2), 0).unwrap();
        s.append(&batch(3, 2), 0).unwrap();
        drop(s);
        let seg = seg_path(t.path(), FIRST_ID);
        let good = fs::metadata(&seg).unwrap().len();
        // A torn append: half a header.
        OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all(&MAGIC.to_le_bytes())
            .unwrap();
        let (mut s, rec) = Spool::open(cfg(t.path(), 1 << 20)).unwrap();
        assert_eq!(rec.corrupt_bytes, 4);
        assert_eq!(fs::metadata(&seg).unwrap().len(), good);
        assert_eq!(rec.events, 4);
        drop(s);
        // A flipped byte in the second record's payload: it and what follows go.
        let mut bytes = fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x55;
        fs::write(&seg, &bytes).unwrap();
        let (s2, rec) = Spool::open(cfg(t.path(), 1 << 20)).unwrap();
        s = s2;
        assert_eq!(rec.events, 2);
        assert!(rec.corrupt_bytes > 16);
        assert_eq!(drain(&mut s), vec![1, 2]);
        // Garbage instead of a segment: nothing recovered, no panic.
        fs::write(seg_path(t.path(), FIRST_ID + 7), b"not a spool at all").unwrap();
        let (_s, rec) = Spool::open(cfg(t.path(), 1 << 20)).unwrap();
        assert_eq!(rec.events, 0);
        assert_eq!(rec.corrupt_bytes, 18);
    }

    #[test]
    fn full_spool_refuses_appends_and_takes_them_again_after_delivery() {
        let t = tempfile::tempdir().unwrap();
        let one = batch(1, 4);
        let size = HEADER + one.bytes().len() as u64;
        let (mut s, _) = Spool::open(cfg(t.path(), size * 2)).unwrap();
        s.append(&one, 0).unwrap();
        s.append(&one, 0).unwrap();
        assert!(matches!(s.append(&one, 0), Err(SpoolError::Full { .. })));
        let r = s.peek().unwrap().unwrap();
        s.ack(&r).unwrap();
        // The first segment still holds the unread second record: space frees per segment.
        drain(&mut s);
        s.append(&one, 0).unwrap();
        assert_eq!(s.events(), 4);
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("open");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = Spool::open(cfg(&dir, 1 << 20)).unwrap_err();
        assert!(matches!(err, SpoolError::Unsafe { .. }), "{err}");
        assert!(err.to_string().contains("writable by others"), "{err}");
    }
}
