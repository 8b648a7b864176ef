//! The migration assessment: every object of the selected source schema
//! with what becomes of it on the target — carried as it is, converted (to
//! what), or not carried (why). `dmp plan` prints it; `strict_schema`
//! refuses to run while anything is not carried.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Carry;

/// Kinds of schema objects, as the assessment names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Table,
    Column,
    PrimaryKey,
    Index,
    ForeignKey,
    Check,
    Default,
    Identity,
    OnUpdate,
    Comment,
    Collation,
    View,
    MaterializedView,
    Sequence,
    Trigger,
    Routine,
    Partition,
    Type,
    Rule,
    Policy,
    Extension,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::Column => "column",
            ObjectKind::PrimaryKey => "primary key",
            ObjectKind::Index => "index",
            ObjectKind::ForeignKey => "foreign key",
            ObjectKind::Check => "check",
            ObjectKind::Default => "default",
            ObjectKind::Identity => "identity",
            ObjectKind::OnUpdate => "on update",
            ObjectKind::Comment => "comment",
            ObjectKind::Collation => "collation",
            ObjectKind::View => "view",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::Sequence => "sequence",
            ObjectKind::Trigger => "trigger",
            ObjectKind::Routine => "routine",
            ObjectKind::Partition => "partition",
            ObjectKind::Type => "type",
            ObjectKind::Rule => "rule",
            ObjectKind::Policy => "policy",
            ObjectKind::Extension => "extension",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What becomes of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Carried,
    Converted,
    NotCarried,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Carried => "carried",
            Status::Converted => "converted",
            Status::NotCarried => "not carried",
        }
    }
}

/// One line of the assessment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessed {
    pub kind: ObjectKind,
    /// The table it belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    pub name: String,
    pub status: Status,
    /// Converted: to what; not carried: why; carried: what the target
    /// creates, where it says more than the name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Assessed {
    pub fn new(
        kind: ObjectKind,
        table: Option<&str>,
        name: &str,
        status: Status,
        detail: impl Into<String>,
    ) -> Self {
        Assessed {
            kind,
            table: table.map(str::to_string),
            name: name.to_string(),
            status,
            detail: detail.into(),
        }
    }

    /// From a [`Carry`] whose value describes the target's form.
    pub fn from_carry(
        kind: ObjectKind,
        table: Option<&str>,
        name: &str,
        carry: Carry<String>,
    ) -> Self {
        let (status, detail) = match carry {
            Carry::Carried(d) => (Status::Carried, d),
            Carry::Converted(d) => (Status::Converted, d),
            Carry::NotCarried(why) => (Status::NotCarried, why),
        };
        Assessed::new(kind, table, name, status, detail)
    }

    pub fn not_carried(&self) -> bool {
        self.status == Status::NotCarried
    }
}
