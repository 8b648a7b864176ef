//! Partitioned tables' partition keys and partitions, at every depth, in
//! the source's SQL: a PostgreSQL target recreates them as they were.

use std::collections::HashMap;

use sqlx::postgres::types::Oid;
use sqlx::{PgConnection, Row};

use crate::error::{Result, ResultExt};
use dmp_model::{Dialect, Partition, Partitioning};

/// A node of a partition tree, as the catalog lists it.
struct Node {
    oid: Oid,
    parent: Oid,
    name: String,
    bound: String,
    /// The node's own key, when it is partitioned again.
    key: Option<String>,
    /// A foreign table or another kind that the target cannot hold as a
    /// partition.
    foreign: bool,
}

/// The partitioning of the partitioned table `oid`, or why it cannot be
/// recreated (a partition that is a foreign table).
pub(super) async fn partitioning(
    conn: &mut PgConnection,
    oid: Oid,
    place: &str,
) -> Result<std::result::Result<Partitioning, String>> {
    let ctx = || format!("{place}: reading partitions");
    let key: String = sqlx::query_scalar("SELECT pg_get_partkeydef($1)")
        .bind(oid)
        .fetch_one(&mut *conn)
        .await
        .context(ctx)?;
    let rows = sqlx::query(
        "SELECT t.relid::oid, t.parentrelid::oid, c.relname::text, \
         coalesce(pg_get_expr(c.relpartbound, c.oid), ''), \
         CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END, \
         c.relkind NOT IN ('r', 'p') \
         FROM pg_partition_tree($1) t JOIN pg_class c ON c.oid = t.relid \
         WHERE t.level > 0 ORDER BY t.level, c.relname",
    )
    .bind(oid)
    .fetch_all(&mut *conn)
    .await
    .context(ctx)?;
    let mut nodes = Vec::with_capacity(rows.len());
    for row in rows {
        nodes.push(Node {
            oid: row.try_get(0).context(ctx)?,
            parent: row.try_get(1).context(ctx)?,
            name: row.try_get(2).context(ctx)?,
            bound: row.try_get(3).context(ctx)?,
            key: row.try_get(4).context(ctx)?,
            foreign: row.try_get(5).context(ctx)?,
        });
    }
    if let Some(foreign) = nodes.iter().find(|n| n.foreign) {
        return Ok(Err(format!(
            "partition {} is a foreign table: the partitions' rows are copied into one table",
            foreign.name
        )));
    }
    let mut children: HashMap<Oid, Vec<Node>> = HashMap::new();
    for node in nodes {
        children.entry(node.parent).or_default().push(node);
    }
    Ok(Ok(tree(oid, key, &mut children)))
}

/// The partitioning below `oid` (key `key`), built from its children.
fn tree(oid: Oid, key: String, children: &mut HashMap<Oid, Vec<Node>>) -> Partitioning {
    let nodes = children.remove(&oid).unwrap_or_default();
    let partitions = nodes
        .into_iter()
        .map(|node| Partition {
            name: node.name,
            bound: node.bound,
            partitioning: node.key.map(|key| Box::new(tree(node.oid, key, children))),
        })
        .collect();
    Partitioning {
        dialect: Dialect::Postgres,
        key,
        partitions,
    }
}
