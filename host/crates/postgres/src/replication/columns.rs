//! How the stream reads each column of the streamed tables, so that a
//! value comes out as the very model value the snapshot reader makes of
//! it. The snapshot's read plan (catalog discovery) says what the model
//! holds; this adds what text-mode decoding needs on top: the type's oid
//! (checked against every Relation message), and for the columns the
//! snapshot reads through SQL (`col::text`, `to_json(col)::text`) whether
//! the output text the walsender sends can be turned into the same thing
//! here, or only by the server.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::postgres::types::Oid;
use sqlx::{PgPool, Row};

use super::super::catalog;
use super::super::copy_binary::Wire;
use super::super::types::Read;
use crate::error::{Error, Result, ResultExt};
use dmp_model::TableSchema;

/// Below this oid types are built in (`FirstNormalObjectId`).
const FIRST_USER_OID: u32 = 16_384;

/// A streamed table.
#[derive(Debug, Clone)]
pub(super) struct TablePlan {
    pub(super) oid: u32,
    pub(super) schema: Arc<TableSchema>,
    /// One per schema column, in schema order.
    pub(super) columns: Vec<ColumnPlan>,
    /// Schema indices of the primary key columns.
    pub(super) keys: Vec<usize>,
}

impl TablePlan {
    pub(super) fn namespace(&self) -> &str {
        self.schema.namespace.as_deref().unwrap_or("public")
    }

    /// Whether every value can be read in the binary form of its type.
    pub(super) fn all_native(&self) -> bool {
        self.columns
            .iter()
            .all(|c| matches!(c.read, Read::Native(_)))
    }
}

#[derive(Debug, Clone)]
pub(super) struct ColumnPlan {
    pub(super) name: String,
    pub(super) type_oid: u32,
    /// The column's number in the table (it stays when it is renamed).
    pub(super) attnum: i16,
    /// The type's modifier (`varchar(n)`, `numeric(p,s)`).
    pub(super) typmod: i32,
    /// How the snapshot reads it.
    pub(super) read: Read,
    /// `format_type` of the column: casts in SQL the server evaluates.
    pub(super) sql_type: String,
    /// How its output text becomes the snapshot's value.
    pub(super) text: TextForm,
}

/// What the output function's text of a column is turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextForm {
    /// Parsed as the type the snapshot reads in binary.
    Native(Wire),
    /// The text itself: `col::text` is the output function.
    AsIs,
    /// `inet::text` always shows the netmask, which the output function
    /// leaves out for a single host.
    Inet,
    /// `col::text` is a cast function whose result only the server knows.
    ServerText,
    /// An array printed by `array_out`: rewritten as `to_json` prints it.
    ArrayJson { element: JsonElement, delimiter: u8 },
    /// A value whose `to_json` only the server can print (arrays of
    /// composites, of types with their own cast to json, …).
    ServerJson,
}

/// How `to_json` prints an array element (PostgreSQL's JSON categories).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JsonElement {
    /// Bare when it is a valid JSON number, else a string (`"NaN"`).
    Number,
    Bool,
    /// A string of the output text (dates too: their JSON form is the ISO
    /// output).
    Text,
    /// json and jsonb: embedded as they are.
    Json,
    /// `2020-01-02T03:04:05` instead of `2020-01-02 03:04:05`.
    Timestamp,
    /// Also `+00:00` instead of `+00`.
    TimestampTz,
}

/// A type with domains looked through.
#[derive(Debug, Clone)]
struct BaseType {
    oid: u32,
    name: String,
    schema: String,
    /// `typtype`: `c` composite, `e` enum, …
    kind: char,
    /// `typcategory`: `A` arrays.
    category: char,
    element: u32,
    delimiter: u8,
    /// Printed by `array_out` (true arrays; not `int2vector` and the like).
    array_out: bool,
    /// Has a cast function to json (`to_json` uses it for user types).
    json_cast: bool,
    /// Has a cast function to text (`col::text` is not the output).
    text_cast: bool,
}

/// The read plans of `tables`, from the catalogs as they are now.
pub(super) async fn plan(
    pool: &PgPool,
    place: &str,
    tables: &[Arc<TableSchema>],
) -> Result<Vec<TablePlan>> {
    let mut plans = Vec::with_capacity(tables.len());
    for schema in tables {
        let namespace = schema.namespace.as_deref().unwrap_or("public");
        let found = catalog::discover(pool, namespace, place, None, Some(&schema.name)).await?;
        let Some(source) = found.into_iter().next() else {
            return Err(Error::Config(format!(
                "{place}: table {namespace}.{} no longer exists",
                schema.name
            )));
        };
        let type_oids = column_types(pool, place, source.oid).await?;
        let mut columns = Vec::with_capacity(schema.columns.len());
        for column in &schema.columns {
            let at = source
                .schema
                .columns
                .iter()
                .position(|c| c.name == column.name);
            let (Some(at), Some(&(type_oid, attnum, typmod))) = (at, type_oids.get(&column.name))
            else {
                return Err(Error::Config(format!(
                    "{place}: column {} of table {namespace}.{} no longer exists; run with --restart",
                    column.name, schema.name
                )));
            };
            let read = source.columns[at].read;
            columns.push(ColumnPlan {
                name: column.name.clone(),
                type_oid,
                attnum,
                typmod,
                read,
                sql_type: source.columns[at].sql_type.clone(),
                text: TextForm::Native(Wire::Text),
            });
        }
        plans.push(TablePlan {
            oid: source.oid.0,
            keys: schema.primary_key_indices(),
            schema: schema.clone(),
            columns,
        });
    }
    with_text_forms(pool, place, &mut plans).await?;
    Ok(plans)
}

/// Sets how each column's output text is read (see [`TextForm`]).
pub(super) async fn with_text_forms(
    pool: &PgPool,
    place: &str,
    plans: &mut [TablePlan],
) -> Result<()> {
    let wanted: Vec<u32> = plans
        .iter()
        .flat_map(|p| p.columns.iter().map(|c| c.type_oid))
        .collect();
    let bases = base_types(pool, place, &wanted).await?;
    let elements: Vec<u32> = bases.values().map(|b| b.element).collect();
    let elements = base_types(pool, place, &elements).await?;
    for column in plans.iter_mut().flat_map(|p| p.columns.iter_mut()) {
        let base = bases.get(&column.type_oid);
        let element = base.and_then(|b| elements.get(&b.element));
        column.text = text_form(column.read, base, element);
    }
    Ok(())
}

/// The text form of a column read as `read`, of base type `base` whose
/// array element (if any) has base type `element`.
fn text_form(read: Read, base: Option<&BaseType>, element: Option<&BaseType>) -> TextForm {
    match read {
        Read::Native(wire) => TextForm::Native(wire),
        Read::AsText => match base {
            Some(b) if b.text_cast && b.schema == "pg_catalog" && b.name == "inet" => {
                TextForm::Inet
            }
            Some(b) if !b.text_cast => TextForm::AsIs,
            _ => TextForm::ServerText,
        },
        Read::ArrayAsJson => {
            let (Some(base), Some(element)) = (base, element) else {
                return TextForm::ServerJson;
            };
            if !base.array_out || base.category != 'A' || base.element == 0 {
                return TextForm::ServerJson;
            }
            match json_element(element) {
                Some(kind) => TextForm::ArrayJson {
                    element: kind,
                    delimiter: element.delimiter,
                },
                None => TextForm::ServerJson,
            }
        }
    }
}

/// PostgreSQL's `json_categorize_type` for an element's base type; `None`
/// when the server must print it (composites, nested arrays, user types
/// with a cast to json).
fn json_element(t: &BaseType) -> Option<JsonElement> {
    if t.kind == 'c' || t.kind == 'p' || t.category == 'A' {
        return None;
    }
    if t.oid >= FIRST_USER_OID {
        return (!t.json_cast).then_some(JsonElement::Text);
    }
    if t.schema != "pg_catalog" {
        return Some(JsonElement::Text);
    }
    Some(match t.name.as_str() {
        "int2" | "int4" | "int8" | "float4" | "float8" | "numeric" => JsonElement::Number,
        "bool" => JsonElement::Bool,
        "json" | "jsonb" => JsonElement::Json,
        "timestamp" => JsonElement::Timestamp,
        "timestamptz" => JsonElement::TimestampTz,
        _ => JsonElement::Text,
    })
}

/// Column name → type oid of a table's live columns.
/// The table's columns now: name → (type oid, attnum, typmod).
pub(super) async fn column_types(
    pool: &PgPool,
    place: &str,
    table: Oid,
) -> Result<HashMap<String, (u32, i16, i32)>> {
    let rows: Vec<(String, Oid, i16, i32)> = sqlx::query_as(
        "SELECT attname::text, atttypid, attnum, atttypmod FROM pg_attribute \
         WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .context(|| format!("{place}: reading column types"))?;
    Ok(rows
        .into_iter()
        .map(|(n, o, a, m)| (n, (o.0, a, m)))
        .collect())
}

/// The base types (domains looked through) of `oids`, by the oid asked.
async fn base_types(pool: &PgPool, place: &str, oids: &[u32]) -> Result<HashMap<u32, BaseType>> {
    let mut oids: Vec<Oid> = oids.iter().filter(|o| **o != 0).map(|o| Oid(*o)).collect();
    oids.sort_by_key(|o| o.0);
    oids.dedup();
    if oids.is_empty() {
        return Ok(HashMap::new());
    }
    let ctx = || format!("{place}: reading pg_type");
    let rows = sqlx::query(
        "WITH RECURSIVE chain(start, oid, depth) AS ( \
           SELECT t.oid, t.oid, 0 FROM pg_type t WHERE t.oid = ANY($1) \
           UNION ALL \
           SELECT c.start, t.typbasetype, c.depth + 1 FROM chain c JOIN pg_type t ON t.oid = c.oid \
           WHERE t.typtype = 'd' AND c.depth < 32) \
         SELECT c.start, t.oid, t.typname::text, n.nspname::text, t.typtype::text, \
           t.typcategory::text, t.typelem, t.typdelim::text, t.typoutput = 'array_out'::regproc, \
           EXISTS (SELECT 1 FROM pg_cast k WHERE k.castsource = t.oid \
                   AND k.casttarget = 'json'::regtype AND k.castmethod = 'f'), \
           EXISTS (SELECT 1 FROM pg_cast k WHERE k.castsource = t.oid \
                   AND k.casttarget = 'text'::regtype AND k.castmethod = 'f') \
         FROM chain c JOIN pg_type t ON t.oid = c.oid \
         JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typtype <> 'd'",
    )
    .bind(&oids)
    .fetch_all(pool)
    .await
    .context(ctx)?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let start: Oid = row.try_get(0).context(ctx)?;
        let oid: Oid = row.try_get(1).context(ctx)?;
        let kind: String = row.try_get(4).context(ctx)?;
        let category: String = row.try_get(5).context(ctx)?;
        let element: Oid = row.try_get(6).context(ctx)?;
        let delimiter: String = row.try_get(7).context(ctx)?;
        out.insert(
            start.0,
            BaseType {
                oid: oid.0,
                name: row.try_get(2).context(ctx)?,
                schema: row.try_get(3).context(ctx)?,
                kind: kind.chars().next().unwrap_or('b'),
                category: category.chars().next().unwrap_or('X'),
                element: element.0,
                delimiter: delimiter.bytes().next().unwrap_or(b','),
                array_out: row.try_get(8).context(ctx)?,
                json_cast: row.try_get(9).context(ctx)?,
                text_cast: row.try_get(10).context(ctx)?,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(name: &str, oid: u32) -> BaseType {
        BaseType {
            oid,
            name: name.into(),
            schema: "pg_catalog".into(),
            kind: 'b',
            category: 'X',
            element: 0,
            delimiter: b',',
            array_out: false,
            json_cast: false,
            text_cast: false,
        }
    }

    fn array_of(element: u32) -> BaseType {
        BaseType {
            category: 'A',
            element,
            array_out: true,
            ..base("_x", 1000)
        }
    }

    #[test]
    fn text_forms_follow_the_snapshot_read() {
        assert_eq!(
            text_form(Read::Native(Wire::Int4), None, None),
            TextForm::Native(Wire::Int4)
        );
        let interval = base("interval", 1186);
        assert_eq!(
            text_form(Read::AsText, Some(&interval), None),
            TextForm::AsIs
        );
        let inet = BaseType {
            text_cast: true,
            ..base("inet", 869)
        };
        assert_eq!(text_form(Read::AsText, Some(&inet), None), TextForm::Inet);
        let char1 = BaseType {
            text_cast: true,
            ..base("char", 18)
        };
        assert_eq!(
            text_form(Read::AsText, Some(&char1), None),
            TextForm::ServerText
        );
        assert_eq!(text_form(Read::AsText, None, None), TextForm::ServerText);

        let ints = array_of(23);
        assert_eq!(
            text_form(Read::ArrayAsJson, Some(&ints), Some(&base("int4", 23))),
            TextForm::ArrayJson {
                element: JsonElement::Number,
                delimiter: b','
            }
        );
        let boxes = BaseType {
            delimiter: b';',
            ..base("box", 603)
        };
        assert_eq!(
            text_form(Read::ArrayAsJson, Some(&array_of(603)), Some(&boxes)),
            TextForm::ArrayJson {
                element: JsonElement::Text,
                delimiter: b';'
            }
        );
        let row = BaseType {
            kind: 'c',
            schema: "public".into(),
            ..base("address", 20_000)
        };
        assert_eq!(
            text_form(Read::ArrayAsJson, Some(&array_of(20_000)), Some(&row)),
            TextForm::ServerJson
        );
        let castable = BaseType {
            json_cast: true,
            schema: "public".into(),
            ..base("hstore", 20_001)
        };
        assert_eq!(
            text_form(Read::ArrayAsJson, Some(&array_of(20_001)), Some(&castable)),
            TextForm::ServerJson
        );
        let mood = BaseType {
            kind: 'e',
            schema: "public".into(),
            ..base("mood", 20_002)
        };
        assert_eq!(
            text_form(Read::ArrayAsJson, Some(&array_of(20_002)), Some(&mood)),
            TextForm::ArrayJson {
                element: JsonElement::Text,
                delimiter: b','
            }
        );
        let vector = BaseType {
            array_out: false,
            ..array_of(21)
        };
        assert_eq!(
            text_form(Read::ArrayAsJson, Some(&vector), Some(&base("int2", 21))),
            TextForm::ServerJson,
            "int2vector prints without braces"
        );
        for (name, kind) in [
            ("numeric", JsonElement::Number),
            ("float8", JsonElement::Number),
            ("bool", JsonElement::Bool),
            ("jsonb", JsonElement::Json),
            ("date", JsonElement::Text),
            ("timestamp", JsonElement::Timestamp),
            ("timestamptz", JsonElement::TimestampTz),
            ("uuid", JsonElement::Text),
        ] {
            assert_eq!(json_element(&base(name, 100)), Some(kind), "{name}");
        }
    }
}
