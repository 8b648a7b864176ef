//! Values longer than `[run] max_value_bytes` met by the database and
//! Parquet readers: the row is refused as a dead letter naming its table,
//! column, size and place, with only the value's first bytes (at most
//! `EXCERPT_BYTES`) kept. The value itself is never decoded or copied on.

use dmp_model::json::value_to_json;
use dmp_model::{Position, Reject, RejectStage, Value, encode_hex};

/// Bytes of an oversized value kept in its dead letter, at most.
pub const EXCERPT_BYTES: usize = 1024;

/// Marks the excerpt as cut. It also keeps the stored row from reading as
/// a JSON record, so `dmp dlq replay` refuses it rather than write a
/// truncated value.
const CUT: &str = "…";

/// How an oversized value's first bytes are shown.
#[derive(Debug, Clone, Copy)]
pub enum Head<'a> {
    /// UTF-8 text (its last character may be cut).
    Text(&'a [u8]),
    /// Bytes, shown as hex after `\x`.
    Binary(&'a [u8]),
}

impl<'a> Head<'a> {
    /// The bytes shown.
    pub fn bytes(self) -> &'a [u8] {
        match self {
            Head::Text(bytes) | Head::Binary(bytes) => bytes,
        }
    }
}

/// A value of `bytes` bytes in `column`, more than `max_value_bytes`.
#[derive(Debug)]
pub struct Oversized<'a> {
    pub column: &'a str,
    pub bytes: usize,
    /// The value, or at least its first `EXCERPT_BYTES` bytes.
    pub head: Head<'a>,
}

impl Oversized<'_> {
    /// The dead letter of the row that holds the value. `place` names the
    /// table (and the source or file), `position` the row.
    pub fn reject(&self, place: &str, max: usize, position: Position) -> Reject {
        let (excerpt, shown) = excerpt(self.head);
        Reject {
            stage: RejectStage::Source,
            error: format!(
                "{place}, {}, column {}: a value of {} bytes, longer than max_value_bytes ({max}); the row is refused and the value's first {} bytes kept",
                row_at(&position),
                self.column,
                self.bytes,
                shown
            ),
            row: serde_json::Value::String(excerpt),
            position,
        }
    }
}

/// The text kept of a value or record: its head cut to fit `EXCERPT_BYTES`
/// with the cut mark, and how many of its bytes that shows.
pub fn excerpt(head: Head<'_>) -> (String, usize) {
    let budget = EXCERPT_BYTES - CUT.len();
    let mut text = match head {
        Head::Text(bytes) => {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(budget)]);
            let mut end = text.len().min(budget);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_string()
        }
        Head::Binary(bytes) => {
            let shown = &bytes[..bytes.len().min((budget - 2) / 2)];
            format!("\\x{}", encode_hex(shown))
        }
    };
    let shown = match head {
        Head::Text(_) => text.len(),
        Head::Binary(_) => (text.len() - 2) / 2,
    };
    text.push_str(CUT);
    (text, shown)
}

/// The row a position stands after, for an error message; values are cut
/// short (a key may be long text).
fn row_at(position: &Position) -> String {
    let values = |values: &[Value]| {
        values
            .iter()
            .map(|v| {
                let text = value_to_json(v).to_string();
                match text.char_indices().nth(64) {
                    Some((cut, _)) => format!("{}…", &text[..cut]),
                    None => text,
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match position {
        Position::Key { key } => format!("row with key ({})", values(key)),
        Position::Record { index } => format!("row {index}"),
        Position::Cursor { cursor, key } => format!(
            "row with cursor {} and key ({})",
            values(std::slice::from_ref(cursor)),
            values(key)
        ),
        Position::Start => "a row".to_string(),
        Position::Log { log, skip } => format!("change {} of the transaction at {log}", skip + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_letter_names_the_place_and_keeps_at_most_a_kib() {
        let value = "é".repeat(4000);
        let oversized = Oversized {
            column: "body",
            bytes: value.len(),
            head: Head::Text(value.as_bytes()),
        };
        let key = Position::Key {
            key: vec![Value::Int(7), Value::Text("x".repeat(100))],
        };
        let reject = oversized.reject("src: table docs", 1000, key.clone());
        assert_eq!(reject.position, key);
        assert_eq!(reject.stage, RejectStage::Source);
        let error = &reject.error;
        assert!(
            error.starts_with(&format!(
                "src: table docs, row with key (7, \"{}…), column body: a value of 8000 bytes, longer than max_value_bytes (1000)",
                "x".repeat(63)
            )),
            "{error}"
        );
        let excerpt = reject.row.as_str().unwrap();
        assert!(excerpt.len() <= EXCERPT_BYTES, "{}", excerpt.len());
        assert!(excerpt.starts_with("éé") && excerpt.ends_with("é…"));
        assert!(error.ends_with(&format!(
            "the value's first {} bytes kept",
            excerpt.len() - 3
        )));
        // Whatever it holds, the excerpt never reads as a record to replay.
        let small = Oversized {
            column: "doc",
            bytes: 9,
            head: Head::Text(br#"{"id": 1}"#),
        };
        let row = small.reject("t", 8, Position::Record { index: 3 }).row;
        assert!(serde_json::from_str::<serde_json::Value>(row.as_str().unwrap()).is_err());
    }

    #[test]
    fn bytes_are_shown_as_hex() {
        let value = vec![0xabu8; 5000];
        let oversized = Oversized {
            column: "blob",
            bytes: value.len(),
            head: Head::Binary(&value),
        };
        let reject = oversized.reject("table t", 10, Position::Record { index: 2 });
        let excerpt = reject.row.as_str().unwrap();
        assert!(excerpt.starts_with("\\xabab"));
        assert!(excerpt.len() <= EXCERPT_BYTES);
        assert!(reject.error.starts_with("table t, row 2, column blob:"));
        // Invalid UTF-8 cut at the bound stays within it too.
        let text = vec![0xffu8; 5000];
        let reject = Oversized {
            column: "c",
            bytes: text.len(),
            head: Head::Text(&text),
        }
        .reject("t", 1, Position::Start);
        assert!(reject.row.as_str().unwrap().len() <= EXCERPT_BYTES);
    }
}
