//! Table shapes: columns, primary key and indexes, as discovered from a
//! source and as created on a target.

use serde::{Deserialize, Serialize};

use super::assessment::ObjectKind;
use super::{DataType, Dialect, SqlExpr, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: DataType,
    #[serde(default = "default_nullable")]
    pub nullable: bool,
    /// A constant default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// A default computed by an expression (`CURRENT_TIMESTAMP`,
    /// `nextval('s')`), when there is no constant one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_expr: Option<SqlExpr>,
    /// The database fills the column from a counter when a row comes
    /// without it (identity, serial, AUTO_INCREMENT, SQLite's rowid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// Set to this expression whenever the row is updated (MySQL's `ON
    /// UPDATE CURRENT_TIMESTAMP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_update: Option<SqlExpr>,
    /// The values a text column may hold (a MySQL `ENUM`); targets enforce
    /// them with a CHECK constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<Vec<String>>,
    /// An SQL `CHAR(n)`: stored padded with spaces to its length, which
    /// are not part of the value (they are read without them). Targets
    /// that have the type create it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fixed_length: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The column's collation where it is not the database's binary or
    /// default one (`utf8mb4_general_ci`, `"de-x-icu"`): targets compare
    /// with their own, which the assessment says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
    /// The type as the source declares it (`smallint unsigned`,
    /// `character varying(20)`), for reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<String>,
}

/// How a column's values are generated from a counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// The database refuses explicit values (PostgreSQL `GENERATED
    /// ALWAYS`); otherwise explicit values are taken as given.
    #[serde(default)]
    pub always: bool,
    /// The value the source's counter would hand out next, when known (it
    /// may be past the largest key: rows were deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
    /// The PostgreSQL sequence behind a `serial` column (a `nextval`
    /// default on a sequence the column owns), which a PostgreSQL target
    /// creates under the same name; `None` for identity columns and other
    /// systems' counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
}

const fn default_nullable() -> bool {
    true
}

impl Column {
    pub fn new(name: impl Into<String>, data_type: DataType) -> Self {
        Column {
            name: name.into(),
            data_type,
            nullable: true,
            default: None,
            default_expr: None,
            identity: None,
            on_update: None,
            enum_values: None,
            fixed_length: false,
            comment: None,
            collation: None,
            source_type: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub name: String,
    pub columns: Vec<String>,
    #[serde(default)]
    pub unique: bool,
    /// The name at the source, when the plan gave the index another one
    /// on the target (whose namespace for it is wider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
}

/// A foreign key: `columns` of this table reference `columns` of another
/// table of the same source. Targets create them after every table is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    /// The referenced table, by name (its namespace is this table's).
    pub references: String,
    pub referenced_columns: Vec<String>,
    /// `CASCADE`, `SET NULL`, `SET DEFAULT`, `RESTRICT` or `NO ACTION`.
    #[serde(default = "no_action")]
    pub on_delete: String,
    #[serde(default = "no_action")]
    pub on_update: String,
    /// The name at the source, when the plan renamed it for the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
}

fn no_action() -> String {
    "NO ACTION".to_string()
}

/// A CHECK constraint of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub name: String,
    pub expr: SqlExpr,
    /// The name at the source, when the plan renamed it for the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
}

/// How a partitioned table splits its rows (PostgreSQL declarative
/// partitioning), kept in the source's SQL: only a target of the same
/// dialect recreates it; others take the rows into one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partitioning {
    pub dialect: Dialect,
    /// The partition key as the source prints it: `RANGE (sold_on)`.
    pub key: String,
    pub partitions: Vec<Partition>,
}

/// One partition of a partitioned table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub name: String,
    /// `FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`, or `DEFAULT`.
    pub bound: String,
    /// A partition that is itself partitioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioning: Option<Box<Partitioning>>,
}

impl Partitioning {
    /// Every partition, at any depth, each before its own partitions.
    pub fn all_partitions(&self) -> Vec<&Partition> {
        let mut out = Vec::new();
        for partition in &self.partitions {
            out.push(partition);
            if let Some(sub) = &partition.partitioning {
                out.extend(sub.all_partitions());
            }
        }
        out
    }
}

/// Something of a table's definition at the source that the model does not
/// hold (an expression index, a trigger, a foreign key into another
/// schema): listed by the migration assessment as not carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    pub kind: ObjectKind,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSchema {
    /// Schema (PostgreSQL) or database (MySQL); `None` where there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub columns: Vec<Column>,
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// The primary key constraint's name, where the source names it (a
    /// PostgreSQL target otherwise names it `<table>_pkey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key_name: Option<String>,
    #[serde(default)]
    pub indexes: Vec<Index>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_keys: Vec<ForeignKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// A partitioned table's partitions (its rows are read through it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitioning: Option<Partitioning>,
    /// What discovery found and the model cannot hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

impl TableSchema {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Positions of the primary key columns, in key order.
    pub fn primary_key_indices(&self) -> Vec<usize> {
        self.primary_key
            .iter()
            .filter_map(|k| self.column_index(k))
            .collect()
    }

    /// The name as users write it: `namespace.name` or `name`.
    pub fn qualified_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}.{}", self.name),
            None => self.name.clone(),
        }
    }
}
