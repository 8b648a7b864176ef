//! Column types as DMP understands them, independent of any database. The
//! text form (`decimal(10,2)`, `text(255)`, `int64`) is what schema files,
//! `dmp plan` and error messages show.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A column type. Sizes are part of the type where systems need them for DDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// Exact decimal; `None` means unconstrained (PostgreSQL `numeric`).
    Decimal {
        precision: Option<u16>,
        scale: Option<u16>,
    },
    /// UTF-8 text with an optional maximum length in characters.
    Text {
        max_len: Option<u32>,
    },
    Bytes,
    /// A JSON document, kept as its exact text.
    Json,
    Date,
    /// Time of day with microseconds, no zone.
    Time,
    /// Date and time with microseconds, no zone.
    Timestamp,
    /// An instant: date and time with microseconds, normalized to UTC.
    TimestampTz,
    Uuid,
}

impl DataType {
    /// Unbounded text, the fallback type of files without a declared schema.
    pub const TEXT: DataType = DataType::Text { max_len: None };
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Bool => f.write_str("bool"),
            DataType::Int16 => f.write_str("int16"),
            DataType::Int32 => f.write_str("int32"),
            DataType::Int64 => f.write_str("int64"),
            DataType::Float32 => f.write_str("float32"),
            DataType::Float64 => f.write_str("float64"),
            DataType::Decimal {
                precision: Some(p),
                scale,
            } => write!(f, "decimal({p},{})", scale.unwrap_or(0)),
            DataType::Decimal { .. } => f.write_str("decimal"),
            DataType::Text { max_len: Some(n) } => write!(f, "text({n})"),
            DataType::Text { max_len: None } => f.write_str("text"),
            DataType::Bytes => f.write_str("bytes"),
            DataType::Json => f.write_str("json"),
            DataType::Date => f.write_str("date"),
            DataType::Time => f.write_str("time"),
            DataType::Timestamp => f.write_str("timestamp"),
            DataType::TimestampTz => f.write_str("timestamptz"),
            DataType::Uuid => f.write_str("uuid"),
        }
    }
}

impl FromStr for DataType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let (name, args) = match s.split_once('(') {
            Some((name, rest)) => {
                let args = rest
                    .strip_suffix(')')
                    .ok_or_else(|| format!("unclosed parenthesis in type `{s}`"))?;
                let args: Result<Vec<u32>, _> =
                    args.split(',').map(|a| a.trim().parse::<u32>()).collect();
                (
                    name.trim(),
                    args.map_err(|_| format!("bad size in type `{s}`"))?,
                )
            }
            None => (s.as_str(), Vec::new()),
        };
        let no_args = |t: DataType| {
            if args.is_empty() {
                Ok(t)
            } else {
                Err(format!("type `{name}` takes no size"))
            }
        };
        match name {
            "bool" | "boolean" => no_args(DataType::Bool),
            "int16" => no_args(DataType::Int16),
            "int32" => no_args(DataType::Int32),
            "int64" => no_args(DataType::Int64),
            "float32" => no_args(DataType::Float32),
            "float64" => no_args(DataType::Float64),
            "decimal" => {
                let narrow =
                    |v: u32| u16::try_from(v).map_err(|_| format!("size too big in `{s}`"));
                match args.as_slice() {
                    [] => Ok(DataType::Decimal {
                        precision: None,
                        scale: None,
                    }),
                    [p] => Ok(DataType::Decimal {
                        precision: Some(narrow(*p)?),
                        scale: Some(0),
                    }),
                    [p, sc] if sc <= p => Ok(DataType::Decimal {
                        precision: Some(narrow(*p)?),
                        scale: Some(narrow(*sc)?),
                    }),
                    _ => Err(format!(
                        "bad decimal type `{s}`: expected decimal(p,s) with s <= p"
                    )),
                }
            }
            "text" => match args.as_slice() {
                [] => Ok(DataType::TEXT),
                [n] => Ok(DataType::Text { max_len: Some(*n) }),
                _ => Err(format!("bad text type `{s}`: expected text or text(n)")),
            },
            "bytes" => no_args(DataType::Bytes),
            "json" => no_args(DataType::Json),
            "date" => no_args(DataType::Date),
            "time" => no_args(DataType::Time),
            "timestamp" => no_args(DataType::Timestamp),
            "timestamptz" => no_args(DataType::TimestampTz),
            "uuid" => no_args(DataType::Uuid),
            other => Err(format!(
                "unknown type `{other}` (expected one of bool, int16, int32, int64, float32, float64, decimal(p,s), text(n), bytes, json, date, time, timestamp, timestamptz, uuid)"
            )),
        }
    }
}

impl Serialize for DataType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DataType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let all = [
            "bool",
            "int16",
            "int32",
            "int64",
            "float32",
            "float64",
            "decimal(10,2)",
            "decimal",
            "text(255)",
            "text",
            "bytes",
            "json",
            "date",
            "time",
            "timestamp",
            "timestamptz",
            "uuid",
        ];
        for name in all {
            let t: DataType = name.parse().expect(name);
            assert_eq!(t.to_string(), name);
        }
    }

    #[test]
    fn bad_types_are_explained() {
        assert!(
            "decimal(2,5)"
                .parse::<DataType>()
                .unwrap_err()
                .contains("s <= p")
        );
        assert!(
            "int64(3)"
                .parse::<DataType>()
                .unwrap_err()
                .contains("takes no size")
        );
        assert!(
            "money"
                .parse::<DataType>()
                .unwrap_err()
                .contains("unknown type `money`")
        );
    }
}
