//! How a table's name becomes a file name in a folder, and back. Table
//! names come from the source and may hold `/`, `..` or control
//! characters; percent-encoding them keeps every file a plain entry of the
//! folder, reversibly, while ordinary names (`orders`, `public.orders`)
//! keep the file names they always had.

use std::borrow::Cow;
use std::fmt::Write as _;

/// What the empty table name is written as: a lone `%`, which `encode`
/// never gives for any other name (a `%` in a name becomes `%25`).
const EMPTY: &str = "%";

/// The file-name form of a table (or pipeline) name: `%`, `/`, `\`,
/// control characters and a leading `.` become `%XX` (their UTF-8 bytes,
/// upper-case hex); the empty name becomes `%`. `.` and `..` therefore
/// become `%2E` and `%2E.`.
pub(crate) fn encode(name: &str) -> Cow<'_, str> {
    if name.is_empty() {
        return Cow::Borrowed(EMPTY);
    }
    let escaped =
        |i: usize, c: char| matches!(c, '%' | '/' | '\\') || c.is_control() || (i == 0 && c == '.');
    if !name.char_indices().any(|(i, c)| escaped(i, c)) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for (i, c) in name.char_indices() {
        if escaped(i, c) {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                // Writing to a String cannot fail.
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The table name a file-name stem stands for: `%XX` sequences decoded. A
/// `%` not followed by two hex digits, or sequences that do not decode to
/// UTF-8, are kept as they are: such a file was not named by DMP, and its
/// name is taken literally, as before.
pub(crate) fn decode(stem: &str) -> Cow<'_, str> {
    if stem == EMPTY {
        return Cow::Borrowed("");
    }
    if !stem.contains('%') {
        return Cow::Borrowed(stem);
    }
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(name) => Cow::Owned(name),
        Err(_) => Cow::Borrowed(stem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_keep_their_file_names() {
        for name in [
            "orders",
            "public.orders",
            "Mixed Case",
            "Ünïcode 中文",
            "a.b.c",
            "x-y_z",
        ] {
            assert_eq!(encode(name), name);
            assert_eq!(decode(name), name);
        }
    }

    #[test]
    fn names_that_would_leave_the_folder_are_encoded_and_come_back() {
        let cases = [
            ("./../../esc2", "%2E%2F..%2F..%2Fesc2"),
            ("..", "%2E."),
            (".", "%2E"),
            ("", "%"),
            ("a/b\nc", "a%2Fb%0Ac"),
            ("back\\slash", "back%5Cslash"),
            ("100%", "100%25"),
            ("nul\0", "nul%00"),
            ("esc\x1b[31m", "esc%1B[31m"),
            (".hidden", "%2Ehidden"),
            ("%", "%25"),
            ("\u{85}next line", "%C2%85next line"),
        ];
        for (name, file) in cases {
            assert_eq!(encode(name), file, "{name:?}");
            assert_eq!(decode(file), name, "{file:?}");
            let encoded = encode(name);
            assert!(
                !encoded.contains('/') && !encoded.contains('\0'),
                "{name:?}"
            );
            assert!(!encoded.starts_with('.'), "{name:?}");
        }
    }

    #[test]
    fn files_dmp_did_not_name_are_taken_literally() {
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("a%zzb"), "a%zzb");
        // %FF alone is not UTF-8.
        assert_eq!(decode("bad%FF"), "bad%FF");
        assert_eq!(decode("mixed%2Fok%"), "mixed/ok%");
    }
}
