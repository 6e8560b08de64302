//! Reading auditd logs line by line with a bounded line length.
//!
//! Owns splitting a byte stream into lines (memchr over a reused buffer) and refusing lines
//! over the limit without ever buffering them whole, so a 10 MB line or a file of NUL bytes
//! costs bounded memory. It must never interpret the lines.

use std::io::{self, BufRead, BufReader, Read};

/// A line, or notice that one was too long (its first bytes are kept as a sample).
pub enum Line<'a> {
    Text(&'a [u8]),
    TooLong { sample: &'a [u8], len: u64 },
}

pub struct LineReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
    max: usize,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: BufReader<R>, max_line: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::with_capacity(4096),
            max: max_line,
        }
    }

    /// Whether the next line can be read without waiting for the input (the buffer holds
    /// unread bytes). Streaming callers flush their output before a read that may block.
    pub fn has_buffered_input(&self) -> bool {
        !self.inner.buffer().is_empty()
    }

    /// The next line without its `\n`, or `None` at end of input.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let mut total: u64 = 0;
        let mut too_long = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                if total == 0 {
                    return Ok(None);
                }
                break;
            }
            let (take, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            total += take as u64;
            if !too_long {
                if self.buf.len() + take > self.max {
                    too_long = true;
                    let room = self.max.min(256).saturating_sub(self.buf.len());
                    self.buf.extend_from_slice(&chunk[..take.min(room)]);
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.inner.consume(if done { take + 1 } else { take });
            if done {
                total += 1;
                break;
            }
        }
        if too_long {
            Ok(Some(Line::TooLong {
                sample: &self.buf,
                len: total,
            }))
        } else {
            Ok(Some(Line::Text(&self.buf)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, u64>> {
        let mut r = LineReader::new(io::BufReader::with_capacity(7, input), max);
        let mut v = vec![];
        while let Some(l) = r.next_line().unwrap() {
            v.push(match l {
                Line::Text(t) => Ok(t.to_vec()),
                Line::TooLong { len, .. } => Err(len),
            });
        }
        v
    }

    #[test]
    fn splits_across_small_buffers() {
        assert_eq!(
            lines(b"ab\n\ncdefghijk\nlast", 100),
            vec![
                Ok(b"ab".to_vec()),
                Ok(vec![]),
                Ok(b"cdefghijk".to_vec()),
                Ok(b"last".to_vec())
            ]
        );
        assert!(lines(b"", 100).is_empty());
    }

    #[test]
    fn overlong_lines_are_reported_and_skipped() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\nok\n");
        assert_eq!(lines(&input, 10), vec![Err(51), Ok(b"ok".to_vec())]);
    }
}
