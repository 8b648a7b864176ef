//! Type mapping between PostgreSQL and the model: which model type a
//! column has and how its values are read (native binary, or through
//! `to_json(col)::text` / `col::text`), how a target column's values are
//! encoded, and the DDL type created for a model column.

use dmp_model::{Column, DataType};

use super::copy_binary::{Encoding, Limits, Wire};

/// Longest `varchar(n)` PostgreSQL accepts.
const MAX_VARCHAR: u32 = 10_485_760;
/// Largest `numeric(p)` precision.
const MAX_NUMERIC_PRECISION: u16 = 1000;

/// A column's type as the catalogs describe it, domains resolved to their
/// base type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PgType {
    /// `pg_type.typname` of the base type.
    pub(super) name: String,
    /// Namespace of the base type.
    pub(super) schema: String,
    /// `typtype`: `b` base, `e` enum, `r` range, `c` composite, …
    pub(super) kind: char,
    /// `typcategory`: `A` for arrays.
    pub(super) category: char,
    /// The type modifier in force (the column's, or the domain's).
    pub(super) typmod: i32,
}

/// How a source column is selected in the chunk query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    /// The column itself, in its type's binary form.
    Native(Wire),
    /// `to_json(col)::text`, decoded as a JSON document.
    ArrayAsJson,
    /// `col::text`.
    AsText,
}

impl Read {
    /// The select-list expression for column `quoted`.
    pub(super) fn select_expr(self, quoted: &str) -> String {
        match self {
            Read::Native(_) => quoted.to_string(),
            Read::ArrayAsJson => format!("to_json({quoted})::text"),
            Read::AsText => format!("{quoted}::text"),
        }
    }

    /// The wire the selected expression arrives in.
    pub(super) fn wire(self) -> Wire {
        match self {
            Read::Native(w) => w,
            Read::ArrayAsJson => Wire::JsonText,
            Read::AsText => Wire::Text,
        }
    }
}

/// What discovery makes of a source column's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SourceType {
    pub(super) data_type: DataType,
    pub(super) read: Read,
    /// Read as text because the model has no such type: warned about.
    pub(super) fallback: bool,
}

/// The binary wire and limits of a type dmp encodes and decodes natively.
pub(super) fn native(t: &PgType) -> Option<Encoding> {
    if t.kind == 'e' {
        // enum_send / enum_recv: the label's bytes.
        return Some(Encoding::plain(Wire::Text));
    }
    if t.name == "citext" {
        return Some(Encoding::plain(Wire::Text));
    }
    if t.schema != "pg_catalog" || t.kind != 'b' {
        return None;
    }
    let mut limits = Limits::default();
    let wire = match t.name.as_str() {
        "bool" => Wire::Bool,
        "int2" => Wire::Int2,
        "int4" => Wire::Int4,
        "int8" => Wire::Int8,
        "float4" => Wire::Float4,
        "float8" => Wire::Float8,
        "numeric" => {
            limits.numeric = numeric_typmod(t.typmod)
                .and_then(|(p, s)| Some((p, u16::try_from(s).ok()?)))
                .filter(|(p, s)| s <= p);
            Wire::Numeric
        }
        "text" | "name" => Wire::Text,
        "varchar" => {
            limits.max_chars = char_typmod(t.typmod);
            Wire::Text
        }
        "bpchar" => {
            limits.max_chars = char_typmod(t.typmod);
            Wire::Char
        }
        "bytea" => Wire::Bytea,
        "json" => Wire::Json,
        "jsonb" => Wire::Jsonb,
        "date" => Wire::Date,
        "time" | "timestamp" | "timestamptz" => {
            limits.fraction_digits = u8::try_from(t.typmod).ok().filter(|p| *p <= 6);
            match t.name.as_str() {
                "time" => Wire::Time,
                "timestamp" => Wire::Timestamp,
                _ => Wire::TimestampTz,
            }
        }
        "uuid" => Wire::Uuid,
        _ => return None,
    };
    Some(Encoding { wire, limits })
}

/// `numeric(p,s)` from a type modifier; the scale may be negative or
/// larger than the precision since PostgreSQL 15.
fn numeric_typmod(typmod: i32) -> Option<(u16, i16)> {
    if typmod < 4 {
        return None;
    }
    let m = typmod - 4;
    let precision = u16::try_from((m >> 16) & 0xffff).ok()?;
    // The scale is an 11-bit signed field.
    let raw = m & 0x7ff;
    let scale = i16::try_from(if raw & 0x400 != 0 { raw - 0x800 } else { raw }).ok()?;
    Some((precision, scale))
}

fn char_typmod(typmod: i32) -> Option<u32> {
    u32::try_from(typmod - 4).ok().filter(|_| typmod >= 4)
}

/// The model type and read plan of a source column (an enum's labels are
/// added by discovery).
pub(super) fn source_type(t: &PgType) -> SourceType {
    if t.kind == 'e' {
        return SourceType {
            data_type: DataType::TEXT,
            read: Read::AsText,
            fallback: false,
        };
    }
    if t.category == 'A' {
        return SourceType {
            data_type: DataType::Json,
            read: Read::ArrayAsJson,
            fallback: false,
        };
    }
    // citext's binary form is text, but it is an extension type: read it
    // as text rather than trust every installed version's send function.
    let Some(enc) = native(t).filter(|_| t.name != "citext") else {
        return SourceType {
            data_type: DataType::TEXT,
            read: Read::AsText,
            fallback: t.name != "citext",
        };
    };
    let data_type = match enc.wire {
        Wire::Numeric => match numeric_typmod(t.typmod) {
            // numeric(2,-3) holds 99000: five integer digits, no fraction.
            Some((p, s)) if s < 0 => DataType::Decimal {
                precision: Some(p.saturating_add(s.unsigned_abs())),
                scale: Some(0),
            },
            // numeric(3,5) holds 0.00123: five fraction digits.
            Some((p, s)) => {
                let s = s.unsigned_abs();
                DataType::Decimal {
                    precision: Some(p.max(s)),
                    scale: Some(s),
                }
            }
            None => DataType::Decimal {
                precision: None,
                scale: None,
            },
        },
        Wire::Text | Wire::Char => DataType::Text {
            max_len: enc.limits.max_chars,
        },
        other => other.model_type(),
    };
    SourceType {
        data_type,
        read: Read::Native(enc.wire),
        fallback: false,
    }
}

/// The column type the target creates for a model column.
pub(super) fn ddl_type(column: &Column) -> String {
    match column.data_type {
        DataType::Bool => "boolean".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal {
            precision: Some(p),
            scale,
        } if (1..=MAX_NUMERIC_PRECISION).contains(&p) => {
            format!("numeric({p},{})", scale.unwrap_or(0).min(p))
        }
        DataType::Decimal { .. } => "numeric".into(),
        DataType::Text { max_len: Some(n) }
            if column.fixed_length && (1..=MAX_VARCHAR).contains(&n) =>
        {
            format!("character({n})")
        }
        DataType::Text { max_len: Some(n) } if (1..=MAX_VARCHAR).contains(&n) => {
            format!("varchar({n})")
        }
        DataType::Text { .. } => "text".into(),
        DataType::Bytes => "bytea".into(),
        DataType::Json => "jsonb".into(),
        DataType::Date => "date".into(),
        DataType::Time => "time".into(),
        DataType::Timestamp => "timestamp".into(),
        DataType::TimestampTz => "timestamptz".into(),
        DataType::Uuid => "uuid".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(name: &str, typmod: i32) -> PgType {
        PgType {
            name: name.into(),
            schema: "pg_catalog".into(),
            kind: 'b',
            category: 'X',
            typmod,
        }
    }

    fn model(name: &str, typmod: i32) -> String {
        source_type(&pg(name, typmod)).data_type.to_string()
    }

    #[test]
    fn source_types_map_as_documented() {
        assert_eq!(model("bool", -1), "bool");
        assert_eq!(model("int2", -1), "int16");
        assert_eq!(model("int4", -1), "int32");
        assert_eq!(model("int8", -1), "int64");
        assert_eq!(model("float4", -1), "float32");
        assert_eq!(model("float8", -1), "float64");
        // numeric(12,2): typmod ((12 << 16) | 2) + 4
        assert_eq!(model("numeric", (12 << 16 | 2) + 4), "decimal(12,2)");
        assert_eq!(model("numeric", (38 << 16 | 10) + 4), "decimal(38,10)");
        assert_eq!(model("numeric", -1), "decimal");
        // numeric(2,-3) and numeric(3,5) (PostgreSQL 15).
        assert_eq!(model("numeric", (2 << 16 | 0x7fd) + 4), "decimal(5,0)");
        assert_eq!(model("numeric", (3 << 16 | 5) + 4), "decimal(5,5)");
        assert_eq!(model("varchar", 24), "text(20)");
        assert_eq!(model("bpchar", 9), "text(5)");
        assert_eq!(model("varchar", -1), "text");
        assert_eq!(model("text", -1), "text");
        assert_eq!(model("name", -1), "text");
        assert_eq!(model("bytea", -1), "bytes");
        assert_eq!(model("json", -1), "json");
        assert_eq!(model("jsonb", -1), "json");
        assert_eq!(model("date", -1), "date");
        assert_eq!(model("time", 3), "time");
        assert_eq!(model("timestamp", -1), "timestamp");
        assert_eq!(model("timestamptz", 6), "timestamptz");
        assert_eq!(model("uuid", -1), "uuid");
        let interval = source_type(&pg("interval", -1));
        assert_eq!(interval.read, Read::AsText);
        assert!(interval.fallback);
        let mut array = pg("_int4", -1);
        array.category = 'A';
        assert_eq!(source_type(&array).read, Read::ArrayAsJson);
        assert_eq!(source_type(&array).data_type, DataType::Json);
        let mut mood = pg("mood", -1);
        mood.kind = 'e';
        mood.schema = "public".into();
        assert_eq!(source_type(&mood).read, Read::AsText);
        // A user type that shadows a built-in name is not the built-in.
        let mut fake = pg("int4", -1);
        fake.schema = "public".into();
        assert_eq!(source_type(&fake).read, Read::AsText);
    }

    #[test]
    fn select_expressions() {
        assert_eq!(
            Read::ArrayAsJson.select_expr("\"a\""),
            "to_json(\"a\")::text"
        );
        assert_eq!(Read::AsText.select_expr("\"a\""), "\"a\"::text");
        assert_eq!(Read::Native(Wire::Int4).select_expr("\"a\""), "\"a\"");
    }

    #[test]
    fn target_limits_come_from_the_type_modifier() {
        let n = native(&pg("numeric", (12 << 16 | 2) + 4)).unwrap();
        assert_eq!(n.limits.numeric, Some((12, 2)));
        let v = native(&pg("varchar", 14)).unwrap();
        assert_eq!(v.limits.max_chars, Some(10));
        let t = native(&pg("timestamptz", 0)).unwrap();
        assert_eq!(t.limits.fraction_digits, Some(0));
        assert!(native(&pg("inet", -1)).is_none());
    }

    #[test]
    fn ddl_types_as_documented() {
        let ddl = |t: &str| ddl_type(&Column::new("c", t.parse().unwrap()));
        assert_eq!(ddl("bool"), "boolean");
        assert_eq!(ddl("int16"), "smallint");
        assert_eq!(ddl("int32"), "integer");
        assert_eq!(ddl("int64"), "bigint");
        assert_eq!(ddl("float32"), "real");
        assert_eq!(ddl("float64"), "double precision");
        assert_eq!(ddl("decimal(38,10)"), "numeric(38,10)");
        assert_eq!(ddl("decimal(2000,2)"), "numeric");
        assert_eq!(ddl("decimal"), "numeric");
        assert_eq!(ddl("text(255)"), "varchar(255)");
        assert_eq!(ddl("text"), "text");
        assert_eq!(ddl("bytes"), "bytea");
        assert_eq!(ddl("json"), "jsonb");
        assert_eq!(ddl("date"), "date");
        assert_eq!(ddl("time"), "time");
        assert_eq!(ddl("timestamp"), "timestamp");
        assert_eq!(ddl("timestamptz"), "timestamptz");
        assert_eq!(ddl("uuid"), "uuid");
    }
}
