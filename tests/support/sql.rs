//! Reading PostgreSQL and MariaDB tables back for exact comparison: one
//! text dump per table, built from a select list that renders every value
//! the same way on both sides of a round trip.

use dmp_test_servers::TestDb;

/// Rows of `sql` as text cells (`None` for NULL), in the query's order.
pub fn dump(db: &TestDb, sql: &str) -> Vec<Vec<Option<String>>> {
    db.query(sql)
}

/// The single value of a one-row, one-column query.
pub fn scalar_i64(db: &TestDb, sql: &str) -> i64 {
    let value = db.scalar(sql);
    value
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("`{sql}` gave `{value}`, not an integer"))
}

/// Asserts two dumps are equal, naming the first differing row and column.
pub fn assert_same_dump(
    left: &[Vec<Option<String>>],
    right: &[Vec<Option<String>>],
    columns: &[&str],
    what: &str,
) {
    for (i, (l, r)) in left.iter().zip(right).enumerate() {
        for (c, (lv, rv)) in l.iter().zip(r).enumerate() {
            let name = columns.get(c).copied().unwrap_or("?");
            assert!(
                lv == rv,
                "{what}: row {i} (key {:?}) column {name}: {} vs {}",
                l.first(),
                shorten(lv),
                shorten(rv)
            );
        }
        assert_eq!(l.len(), r.len(), "{what}: row {i} column count");
    }
    assert_eq!(left.len(), right.len(), "{what}: row count");
}

fn shorten(v: &Option<String>) -> String {
    match v {
        None => "NULL".into(),
        Some(s) if s.len() > 120 => {
            let head: String = s.chars().take(120).collect();
            format!("{head:?}… ({} bytes)", s.len())
        }
        Some(s) => format!("{s:?}"),
    }
}

/// A pipeline file body from `source` to `target` with extra `[run]` lines.
pub fn sql_pipeline(source: &str, target: &str, run: &str) -> String {
    format!("[source]\nurl = \"{source}\"\n[target]\nurl = \"{target}\"\n[run]\n{run}\n")
}
