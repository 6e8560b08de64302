//! Opening a spool: create or check the directory, take its lock, and recover what an
//! earlier run left (scan every segment, skip and count what is unreadable, rename a segment
//! with nothing readable to `*.corrupt`, import the old single-file format). It must never
//! delete a record the ledger has not passed, and never discard what it can read.

use super::dir::*;
use super::record::*;
use super::*;

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
}
