//! The items of a source schema a target is asked about for the migration
//! assessment. Each target answers from the same functions its DDL uses,
//! so that what `dmp plan` says is what a run creates.

use dmp_model::{Check, Column, ForeignKey, Index, ObjectKind, Partitioning, Sequence, View};

/// One thing of the source schema, of a table or of the schema.
#[derive(Debug, Clone, Copy)]
pub enum SchemaItem<'a> {
    Column(&'a Column),
    PrimaryKey,
    Index(&'a Index),
    ForeignKey(&'a ForeignKey),
    Check(&'a Check),
    /// The column's default, constant or expression.
    Default(&'a Column),
    Identity(&'a Column),
    OnUpdate(&'a Column),
    Collation(&'a Column),
    ColumnComment(&'a Column),
    TableComment(&'a str),
    /// A partitioned table's partitions.
    Partitioning(&'a Partitioning),
    View(&'a View),
    Sequence(&'a Sequence),
}

impl SchemaItem<'_> {
    pub fn kind(&self) -> ObjectKind {
        match self {
            SchemaItem::Column(_) => ObjectKind::Column,
            SchemaItem::PrimaryKey => ObjectKind::PrimaryKey,
            SchemaItem::Index(_) => ObjectKind::Index,
            SchemaItem::ForeignKey(_) => ObjectKind::ForeignKey,
            SchemaItem::Check(_) => ObjectKind::Check,
            SchemaItem::Default(_) => ObjectKind::Default,
            SchemaItem::Identity(_) => ObjectKind::Identity,
            SchemaItem::OnUpdate(_) => ObjectKind::OnUpdate,
            SchemaItem::Collation(_) => ObjectKind::Collation,
            SchemaItem::ColumnComment(_) | SchemaItem::TableComment(_) => ObjectKind::Comment,
            SchemaItem::Partitioning(_) => ObjectKind::Partition,
            SchemaItem::View(v) if v.materialized => ObjectKind::MaterializedView,
            SchemaItem::View(_) => ObjectKind::View,
            SchemaItem::Sequence(_) => ObjectKind::Sequence,
        }
    }
}
