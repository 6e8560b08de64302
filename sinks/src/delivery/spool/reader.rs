//! The delivering half ([`SpoolReader`], on the output's delivery thread): records in id
//! order, the ledger moved after delivery, delivered segments deleted, and at shutdown the
//! batches still held in memory written back with their own ids. It must never reorder,
//! never move the ledger past what was delivered, and never delete a segment the ledger has
//! not passed.

use super::record::*;
use super::*;

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
