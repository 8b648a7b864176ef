//! Log output, one line per event: a name from the source with a newline
//! or an escape sequence in it would otherwise start a line of its own
//! that reads like another event, or drive the terminal. Without colours
//! every control character is escaped; with colours the escape character
//! is the formatter's own and stays (span fields that hold names are
//! escaped where the spans are made, event fields by tracing-subscriber).

use std::io::{self, Stderr, Write};

use tracing_subscriber::fmt::MakeWriter;

use crate::model::printable;

/// Standard error, each event written with its control characters escaped
/// (the event's final newline excepted, and with `colours` the escape
/// character).
pub(super) struct OneLineStderr {
    pub(super) colours: bool,
}

impl<'a> MakeWriter<'a> for OneLineStderr {
    type Writer = OneLine<Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLine {
            out: io::stderr(),
            colours: self.colours,
        }
    }
}

pub(super) struct OneLine<W> {
    out: W,
    colours: bool,
}

impl<W: Write> Write for OneLine<W> {
    /// Takes a whole event (the formatter writes each with one call).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let mut line = String::with_capacity(body.len() + end.len());
        if self.colours {
            for (i, piece) in body.split('\x1b').enumerate() {
                if i > 0 {
                    line.push('\x1b');
                }
                line.push_str(&printable(piece));
            }
        } else {
            line.push_str(&printable(body));
        }
        line.push_str(end);
        self.out.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_stays_on_one_line_and_keeps_its_colours() {
        let event = b"\x1b[32m INFO\x1b[0m table done table=a\nb\tc\n";
        let mut coloured = OneLine {
            out: Vec::new(),
            colours: true,
        };
        coloured.write_all(event).unwrap();
        assert_eq!(
            String::from_utf8(coloured.out).unwrap(),
            "\x1b[32m INFO\x1b[0m table done table=a\\nb\\tc\n"
        );
        let mut plain = OneLine {
            out: Vec::new(),
            colours: false,
        };
        plain
            .write_all(b"INFO table done table=a\x1b[31m\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(plain.out).unwrap(),
            "INFO table done table=a\\u{1b}[31m\n"
        );
    }
}
