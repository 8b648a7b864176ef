//! Sizes in the pipeline file (`[run] batch_bytes`, `max_value_bytes`): a
//! number of bytes, or a number with a binary unit (`"64MiB"`, `"1 KiB"`).

use serde::Deserialize;

/// A size as written: `67108864` or `"64MiB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    /// The size in bytes, at least 1, or why it is not one.
    pub(super) fn bytes(&self) -> Result<usize, String> {
        let bytes = match self {
            ByteSize::Bytes(n) => *n,
            ByteSize::Text(text) => parse(text)?,
        };
        match usize::try_from(bytes) {
            Ok(0) => Err("must be at least 1 byte".into()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!(
                "{bytes} bytes is more than this machine can address"
            )),
        }
    }
}

fn parse(text: &str) -> Result<u64, String> {
    let wrong =
        || format!("`{text}` is not a size such as 65536, \"64KiB\", \"64MiB\" or \"1GiB\"");
    let trimmed = text.trim();
    let digits = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let number: u64 = number.parse().map_err(|_| wrong())?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return Err(wrong()),
    };
    number.checked_mul(1 << shift).ok_or_else(wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_bytes() {
        assert_eq!(ByteSize::Bytes(4096).bytes(), Ok(4096));
        assert_eq!(ByteSize::Text("64MiB".into()).bytes(), Ok(64 << 20));
        assert_eq!(ByteSize::Text("1 KiB".into()).bytes(), Ok(1024));
        assert_eq!(ByteSize::Text("10".into()).bytes(), Ok(10));
        assert!(ByteSize::Bytes(0).bytes().is_err());
        assert!(ByteSize::Text("64MB".into()).bytes().is_err());
        assert!(ByteSize::Text("lots".into()).bytes().is_err());
    }
}
