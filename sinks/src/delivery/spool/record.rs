//! One record on disk: the 24-byte header (magic, payload length, event count, CRC-32 of id
//! and payload, id), reading a record back, resynchronising past a bad one, scanning a
//! segment at recovery. It must never allocate past [`RECORD_LIMIT`] on a header's word, and
//! never take a payload whose CRC does not match.

use super::*;

pub(super) fn header(payload: &[u8], events: u32, id: u64) -> [u8; HEADER as usize] {
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
pub(super) fn parse_header(h: &[u8]) -> (u32, u64, u32, u32, u64) {
    let w = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let id = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    (w(0), u64::from(w(4)), w(8), w(12), id)
}

pub(super) fn count_lines(b: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', b).count()
}

/// What reading one record at an offset found.
pub(super) enum Read {
    /// A whole valid record: id, events, payload.
    Record(u64, u32, Vec<u8>),
    /// Bad; `Some(events)` when the header was intact (only the payload is damaged).
    Bad(Option<u32>),
    /// Not enough bytes for a header.
    End,
}

pub(super) fn read_record(f: &File, off: u64, len: u64) -> io::Result<Read> {
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
pub(super) fn resync(f: &File, from: u64, len: u64) -> io::Result<u64> {
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
pub(super) struct Scan {
    pub(super) records: Vec<(u64, u64, u32)>,
    pub(super) corrupt_bytes: u64,
    pub(super) corrupt_events: u64,
    pub(super) corrupt_regions: u64,
}

pub(super) fn scan(f: &File) -> io::Result<Scan> {
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
