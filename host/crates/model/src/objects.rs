//! What a source schema holds besides tables: views, materialized views and
//! sequences (which a target of the same dialect recreates), and what DMP
//! cannot carry at all (triggers, routines), so that the migration
//! assessment can list it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Dialect, Skipped};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaObjects {
    /// In an order that creates each after what it reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<View>,
    /// Sequences not owned by a copied column (those travel as the
    /// column's identity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sequences: Vec<Sequence>,
    /// Schema objects DMP does not carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

impl SchemaObjects {
    pub fn is_empty(&self) -> bool {
        self.views.is_empty() && self.sequences.is_empty() && self.skipped.is_empty()
    }
}

/// A view or materialized view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct View {
    pub name: String,
    pub materialized: bool,
    pub dialect: Dialect,
    /// The query, in the source's SQL, naming relations of its own schema
    /// unqualified.
    pub definition: String,
    /// The tables and views of the schema it reads.
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A sequence with its current value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sequence {
    pub name: String,
    /// `smallint`, `integer` or `bigint`.
    pub data_type: String,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cache: i64,
    pub cycle: bool,
    /// The last value handed out; `None` before the first `nextval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_value: Option<i64>,
}

/// Orders views so that each comes after the views it reads (by name, where
/// nothing says otherwise); a cycle keeps its members in name order.
pub fn views_in_dependency_order(views: Vec<View>) -> Vec<View> {
    let mut left: BTreeMap<String, View> = views.into_iter().map(|v| (v.name.clone(), v)).collect();
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready: Vec<String> = left
            .values()
            .filter(|v| {
                v.depends_on
                    .iter()
                    .all(|d| d == &v.name || !left.contains_key(d))
            })
            .map(|v| v.name.clone())
            .collect();
        let ready = if ready.is_empty() {
            left.keys().next().cloned().into_iter().collect()
        } else {
            ready
        };
        for name in ready {
            if let Some(view) = left.remove(&name) {
                out.push(view);
            }
        }
    }
    out
}
