//! A streamed table's change of shape on a MySQL-family target. DDL
//! commits on its own here, so it runs after the transaction of the rows
//! before it (and their checkpoint) commits: a crash in between replays the
//! change from the checkpoint, and each step first looks whether it is
//! already made.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tracing::info;

use super::ddl::column_def;
use super::server::Server;
use super::sql::quote;
use crate::error::{Error, Result, ResultExt};
use dmp_model::{SchemaDelta, TableSchema};

/// Changes table `from` into `to` by `changes`.
pub(super) async fn evolve(
    conn: &mut Conn,
    server: Server,
    from: &TableSchema,
    to: &TableSchema,
    changes: &[SchemaDelta],
) -> Result<()> {
    let ctx = || format!("changing the shape of target table {}", to.name);
    for change in changes {
        let columns = column_names(conn, &to.name).await.context(ctx)?;
        let has = |name: &str| columns.iter().any(|c| c.eq_ignore_ascii_case(name));
        let sql = match change {
            SchemaDelta::AddColumn(column) if !has(&column.name) => Some(format!(
                "ALTER TABLE {} ADD COLUMN {}",
                quote(&to.name),
                definition(to, &column.name, server)?
            )),
            SchemaDelta::DropColumn(name) if has(name) => Some(format!(
                "ALTER TABLE {} DROP COLUMN {}",
                quote(&to.name),
                quote(name)
            )),
            SchemaDelta::RenameColumn { from: old, to: new } if has(old) && !has(new) => {
                Some(format!(
                    "ALTER TABLE {} CHANGE COLUMN {} {}",
                    quote(&to.name),
                    quote(old),
                    definition(to, new, server)?
                ))
            }
            SchemaDelta::AlterColumn { to: column, .. } if has(&column.name) => Some(format!(
                "ALTER TABLE {} MODIFY COLUMN {}",
                quote(&to.name),
                definition(to, &column.name, server)?
            )),
            SchemaDelta::RenameTable { from: old } if columns.is_empty() => {
                let old_columns = column_names(conn, old).await.context(ctx)?;
                (!old_columns.is_empty())
                    .then(|| format!("RENAME TABLE {} TO {}", quote(old), quote(&to.name)))
            }
            SchemaDelta::DropTable => Some(format!("DROP TABLE IF EXISTS {}", quote(&from.name))),
            // Made already (a batch redone after a crash).
            _ => None,
        };
        if let Some(sql) = sql {
            conn.query_drop(&sql).await.context(ctx)?;
            info!(table = to.name, statement = sql, "target table changed");
        }
    }
    Ok(())
}

fn definition(table: &TableSchema, column: &str, server: Server) -> Result<String> {
    column_def(table, column, server).ok_or_else(|| {
        Error::Data(format!(
            "table {}: column {column} is not in its new shape",
            table.name
        ))
    })
}

async fn column_names(
    conn: &mut Conn,
    table: &str,
) -> std::result::Result<Vec<String>, mysql_async::Error> {
    conn.exec(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
        (table,),
    )
    .await
}
