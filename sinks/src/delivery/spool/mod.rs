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
//!
//! One module each: the directory and its lock (`dir`), the record format (`record`),
//! opening and recovery (`recover`), the appending half (`writer`), the delivering half
//! (`reader`). This one holds the types and the index the two halves share.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::Batch;

mod dir;
mod reader;
mod record;
mod recover;
mod writer;

use dir::Dir;
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

impl Spool {
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

#[cfg(test)]
mod tests;
