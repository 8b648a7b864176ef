//! What of a pipeline file may travel on the bus. A run's record carries
//! the file as written to every worker, in clear on the bus and in the
//! runs bucket, so a secret must stay a `${VAR}` or `${file:PATH}`
//! reference, which each worker resolves from its own environment.

use dmp_contract::{is_secret_key, mask_secrets};

/// The places (`source.url`, `target.options.password`) of `text` that
/// hold a secret written out. A file that does not parse has none: its
/// parse error is told where it is read.
pub(crate) fn written_secrets(text: &str) -> Vec<String> {
    let mut places = Vec::new();
    if let Ok(table) = toml::from_str::<toml::Table>(text) {
        for (key, value) in &table {
            walk(value, key, key, &mut places);
        }
    }
    places
}

fn walk(value: &toml::Value, key: &str, place: &str, places: &mut Vec<String>) {
    match value {
        toml::Value::String(text) if holds_secret(key, text) => places.push(place.to_string()),
        toml::Value::Table(table) => {
            for (inner, value) in table {
                walk(value, inner, &format!("{place}.{inner}"), places);
            }
        }
        toml::Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                walk(value, key, &format!("{place}[{i}]"), places);
            }
        }
        _ => {}
    }
}

/// Whether setting `key = text` writes a secret out: a secret setting
/// with more than references, or a URL whose password or secret option
/// is more than a reference (as the log masking sees it).
fn holds_secret(key: &str, text: &str) -> bool {
    let shown = without_references(text);
    if is_secret_key(key) {
        return !shown.replace("***", "").trim().is_empty();
    }
    mask_secrets(&shown) != shown
}

/// `text` with each `${…}` reference as `***`, the way masking shows a
/// secret.
fn without_references(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                out.push_str("***");
                rest = &rest[start + end + 1..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_secrets_written_out_are_found() {
        let text = r#"
[pipeline]
name = "p"
[source]
url = "postgres://app:s3cret@db:5432/shop"
[target]
url = "mysql://app:${TARGET_PW}@db/shop?ssl-mode=VERIFY_IDENTITY"
[target.options]
password = "hunter2"
token = "${file:/run/secrets/t}"
[[transforms]]
plugin = "p.wasm"
"#;
        assert_eq!(
            written_secrets(text),
            ["source.url", "target.options.password"]
        );
        let clean = r#"
[source]
url = "postgres://app@db/shop?sslmode=verify-full"
[target]
url = "${TARGET_URL}"
"#;
        assert!(written_secrets(clean).is_empty());
        assert_eq!(
            written_secrets("[source]\nurl = \"postgres://u:pre${X}@h/db\"\n"),
            ["source.url"]
        );
        assert_eq!(
            written_secrets("[source]\nurl = \"postgres://h/db?password=pw\"\n"),
            ["source.url"]
        );
    }
}
