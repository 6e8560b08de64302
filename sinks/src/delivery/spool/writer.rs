//! The appending half ([`SpoolWriter`], on the output's buffer thread): ids for every batch
//! the output takes, records appended to the tail segment, segments sealed at their size.
//! It is the only writer of segments; it must never write an id below the ledger, nor grow
//! the spool past `max_bytes`.

use super::record::*;
use super::*;

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
    pub(super) fn seal(&mut self) {
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

    pub(super) fn append_record(&mut self, payload: &[u8], events: u32) -> Result<(), SpoolError> {
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
