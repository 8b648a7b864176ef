//! Type inference for files without a declared schema: each column gets the
//! narrowest type that every sampled value fits.

use super::{DataType, Value};

/// The type a text field suggests on its own.
pub fn infer_text_type(text: &str) -> DataType {
    let candidates = [
        DataType::Int64,
        DataType::Float64,
        DataType::Bool,
        DataType::Date,
        DataType::Timestamp,
        DataType::TimestampTz,
        DataType::Uuid,
    ];
    // `0`/`1` parse as booleans too: numbers win since they come first.
    candidates
        .into_iter()
        .find(|t| {
            !text.trim().is_empty()
                && (!matches!(t, DataType::Bool) || looks_boolean(text))
                && Value::parse_text(text, t).is_ok()
        })
        .unwrap_or(DataType::TEXT)
}

fn looks_boolean(text: &str) -> bool {
    matches!(text.trim().to_ascii_lowercase().as_str(), "true" | "false")
}

/// Combines what two values suggested into a type both fit.
pub fn widen(a: DataType, b: DataType) -> DataType {
    use DataType::*;
    match (a, b) {
        (a, b) if a == b => a,
        (Int64, Float64) | (Float64, Int64) => Float64,
        (Date, Timestamp) | (Timestamp, Date) => Timestamp,
        _ => DataType::TEXT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_narrowest_type() {
        assert_eq!(infer_text_type("42"), DataType::Int64);
        assert_eq!(infer_text_type("4.2"), DataType::Float64);
        assert_eq!(infer_text_type("true"), DataType::Bool);
        assert_eq!(infer_text_type("2024-01-02"), DataType::Date);
        assert_eq!(infer_text_type("2024-01-02 10:00:00"), DataType::Timestamp);
        assert_eq!(
            infer_text_type("2024-01-02T10:00:00Z"),
            DataType::TimestampTz
        );
        assert_eq!(infer_text_type("hello"), DataType::TEXT);
        assert_eq!(widen(DataType::Int64, DataType::Float64), DataType::Float64);
        assert_eq!(widen(DataType::Int64, DataType::Date), DataType::TEXT);
    }
}
