//! Records read with a bound on their size (`[run] max_value_bytes`): a
//! JSON line or CSV record longer than the bound is never held whole. It is
//! refused with its line and its first KiB, and reading goes on with the
//! next record: for CSV, where an unclosed quote would swallow every line
//! after it, the bound stops the parser, which starts again at the line
//! after the one the runaway record began on.

use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom};

use super::source::RowRead;
use dmp_contract::{EXCERPT_BYTES, Head, excerpt};

/// A record longer than `max_value_bytes`, as far as it was read.
#[derive(Debug, PartialEq)]
pub(super) struct Oversized {
    /// The line it starts on (1 is the first).
    pub line: u64,
    /// Its length, or at least how much of it was seen.
    pub bytes: u64,
    /// Whether `bytes` is the whole record (else it is a lower bound).
    pub whole: bool,
    pub excerpt: Vec<u8>,
}

impl Oversized {
    /// The dead letter it becomes: file and line in the error, the excerpt
    /// as the row (with the cut mark database values get, which also keeps
    /// `dmp dlq replay` from reading it as a record).
    pub(super) fn reject(&self, path: &str, max: usize) -> RowRead {
        let (kept, shown) = excerpt(Head::Text(&self.excerpt));
        let size = if self.whole {
            format!("{} bytes", self.bytes)
        } else {
            format!("more than {} bytes", self.bytes)
        };
        RowRead::Reject {
            error: format!(
                "{path} line {}: a record of {size}, longer than max_value_bytes ({max}); its first {shown} bytes are kept",
                self.line,
            ),
            raw: serde_json::Value::String(kept),
        }
    }
}

/// One line of a text file, read within the bound.
pub(super) enum Line {
    /// The line without its newline, in the caller's buffer.
    Read,
    TooLong(Oversized),
    End,
}

/// Reads `reader`'s next line into `line` (cleared first), holding at most
/// `max` bytes of it: a longer line is consumed to its end and only its
/// first `EXCERPT_BYTES` kept. `number` is the line's number.
pub(super) fn read_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
    number: u64,
) -> io::Result<Line> {
    line.clear();
    let mut seen = 0u64;
    let mut ended = false;
    while !ended {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let (take, newline) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let content = take - usize::from(newline);
        // Up to one byte past the bound: enough to tell the line is too long.
        let room = (max + 1).saturating_sub(line.len());
        line.extend_from_slice(&buf[..content.min(room)]);
        seen += content as u64;
        reader.consume(take);
        ended = newline;
    }
    if seen == 0 && !ended {
        return Ok(Line::End);
    }
    if seen > max as u64 {
        line.truncate(EXCERPT_BYTES);
        return Ok(Line::TooLong(Oversized {
            line: number,
            bytes: seen,
            whole: true,
            excerpt: std::mem::take(line),
        }));
    }
    Ok(Line::Read)
}

/// The file under a CSV reader: hands out bytes only up to `fence`, so
/// that the parser cannot hold more of a record than the bound allows.
pub(super) struct Fenced {
    file: File,
    offset: u64,
    fence: u64,
    /// Set when a read met the fence.
    tripped: bool,
}

impl Fenced {
    pub(super) fn new(file: File) -> Self {
        Fenced {
            file,
            offset: 0,
            fence: u64::MAX,
            tripped: false,
        }
    }

    /// Allows reading up to `fence` (an offset in the file).
    pub(super) fn set_fence(&mut self, fence: u64) {
        self.fence = fence;
        self.tripped = false;
    }

    pub(super) fn tripped(&self) -> bool {
        self.tripped
    }

    /// Up to `EXCERPT_BYTES` (and at most `len`, the record's length when
    /// known) from `at`; the reader's offset is left where it was (the
    /// caller seeks on).
    pub(super) fn excerpt(&mut self, at: u64, len: u64) -> io::Result<Vec<u8>> {
        self.file.seek(SeekFrom::Start(at))?;
        let mut excerpt = Vec::with_capacity(EXCERPT_BYTES);
        (&mut self.file)
            .take(len.min(EXCERPT_BYTES as u64))
            .read_to_end(&mut excerpt)?;
        self.file.seek(SeekFrom::Start(self.offset))?;
        Ok(excerpt)
    }

    /// The offset of the line after the one holding `at`, or `None` when
    /// that line is the file's last. Reads in small pieces.
    pub(super) fn next_line(&mut self, at: u64) -> io::Result<Option<u64>> {
        self.file.seek(SeekFrom::Start(at))?;
        let mut piece = vec![0u8; 64 << 10];
        let mut offset = at;
        let found = loop {
            let n = self.file.read(&mut piece)?;
            if n == 0 {
                break None;
            }
            if let Some(i) = piece[..n].iter().position(|&b| b == b'\n') {
                break Some(offset + i as u64 + 1);
            }
            offset += n as u64;
        };
        self.file.seek(SeekFrom::Start(self.offset))?;
        Ok(found)
    }
}

impl Read for Fenced {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.fence.saturating_sub(self.offset);
        if room == 0 && !buf.is_empty() {
            self.tripped = true;
            return Err(io::Error::other("max_value_bytes reached"));
        }
        let len = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..len])?;
        self.offset += n as u64;
        Ok(n)
    }
}

impl Seek for Fenced {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.offset = self.file.seek(pos)?;
        Ok(self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_within_the_bound_are_read_and_longer_ones_cut_to_an_excerpt() {
        let long = "x".repeat(5000);
        let text = format!("short\n{long}\nlast");
        let mut reader = io::BufReader::with_capacity(16, text.as_bytes());
        let mut line = Vec::new();
        assert!(matches!(
            read_line(&mut reader, &mut line, 100, 1),
            Ok(Line::Read)
        ));
        assert_eq!(line, b"short");
        match read_line(&mut reader, &mut line, 100, 2) {
            Ok(Line::TooLong(o)) => {
                assert_eq!((o.line, o.bytes, o.whole), (2, 5000, true));
                assert_eq!(o.excerpt.len(), 101.min(EXCERPT_BYTES));
                // It never held more than the bound and a byte.
                assert!(o.excerpt.capacity() < 1000);
            }
            _ => panic!("the long line is refused"),
        }
        assert!(matches!(
            read_line(&mut reader, &mut line, 100, 3),
            Ok(Line::Read)
        ));
        assert_eq!(line, b"last");
        assert!(matches!(
            read_line(&mut reader, &mut line, 100, 4),
            Ok(Line::End)
        ));
    }

    #[test]
    fn a_line_of_exactly_the_bound_is_read() {
        let mut reader = io::BufReader::new(&b"abcd\nabcde\n"[..]);
        let mut line = Vec::new();
        assert!(matches!(
            read_line(&mut reader, &mut line, 4, 1),
            Ok(Line::Read)
        ));
        assert!(matches!(
            read_line(&mut reader, &mut line, 4, 2),
            Ok(Line::TooLong(_))
        ));
    }
}
