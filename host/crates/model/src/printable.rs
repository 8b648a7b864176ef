//! Names from a source (tables, columns) shown on a terminal: a name may
//! hold a newline or an escape sequence that would forge output lines or
//! drive the terminal, so control characters are shown escaped.

use std::borrow::Cow;

/// `name` with its control characters escaped as Rust writes them (`\n`,
/// `\t`, `\u{1b}`); names without any are returned as they are.
pub fn printable(name: &str) -> Cow<'_, str> {
    if !name.chars().any(char::is_control) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(printable("orders"), "orders");
        assert_eq!(printable("Ünïcode \\ \"q\""), "Ünïcode \\ \"q\"");
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable("\x1b[31mred"), "\\u{1b}[31mred");
        assert_eq!(
            printable("nul\0 del\x7f c1\u{9b}"),
            "nul\\u{0} del\\u{7f} c1\\u{9b}"
        );
    }
}
