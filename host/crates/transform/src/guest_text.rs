//! Text a plugin hands the host (a batch error, a row's reject reason, a
//! log line) is the plugin's to choose, size included: it is cut to a
//! bound before the host keeps or prints it, saying that it was cut.

/// The longest error or reject reason kept from a plugin. A reason is
/// stored with every row it refused: a megabyte from a plugin would
/// otherwise cost a megabyte per row.
pub(crate) const MAX_ERROR_BYTES: usize = 4 << 10;

/// The longest log line kept from a plugin.
pub(crate) const MAX_LOG_BYTES: usize = 1 << 10;

/// `text` cut to at most `max` bytes (on a character boundary) with a note
/// of its full length; unchanged when it fits.
pub(crate) fn capped(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("… [truncated: {total} bytes in all]"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary_with_a_note() {
        assert_eq!(capped("short".into(), 10), "short");
        let long = "é".repeat(3000);
        let cut = capped(long, MAX_ERROR_BYTES);
        assert!(cut.ends_with("… [truncated: 6000 bytes in all]"), "{cut}");
        assert!(cut.len() < MAX_ERROR_BYTES + 64);
        assert!(cut.starts_with("éé"));
    }
}
