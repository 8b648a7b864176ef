//! DDL of the schema objects a PostgreSQL source brings besides tables:
//! sequences (created before the tables whose defaults draw from them, set
//! to the source's value) and views and materialized views (created after
//! every table, each after what it reads; a materialized view is filled
//! then).

use dmp_model::{Carry, Dialect, Sequence, View};

use super::sql::{qualified, quote_literal};

/// Whether a view can be created here.
pub(super) fn view_carry(view: &View) -> Carry<String> {
    if view.dialect != Dialect::Postgres {
        return Carry::NotCarried(format!(
            "a {} view's query is not translated",
            view.dialect.as_str()
        ));
    }
    Carry::Carried(
        if view.materialized {
            "materialized view, filled after the load"
        } else {
            "view"
        }
        .to_string(),
    )
}

/// Drops and creates the view (so that a changed column list is no
/// error), with its comment.
pub(super) fn create_view(schema: &str, view: &View) -> Vec<String> {
    let name = qualified(schema, &view.name);
    let kind = if view.materialized {
        "MATERIALIZED VIEW"
    } else {
        "VIEW"
    };
    let mut statements = vec![
        format!("DROP {kind} IF EXISTS {name} CASCADE"),
        format!("CREATE {kind} {name} AS {}", view.definition),
    ];
    if let Some(comment) = &view.comment {
        statements.push(format!(
            "COMMENT ON {kind} {name} IS {}",
            quote_literal(comment)
        ));
    }
    statements
}

/// Creates the sequence if missing and sets it to the source's value.
pub(super) fn create_sequence(schema: &str, sequence: &Sequence) -> Vec<String> {
    let name = qualified(schema, &sequence.name);
    let data_type = match sequence.data_type.as_str() {
        "smallint" | "integer" | "bigint" => sequence.data_type.as_str(),
        _ => "bigint",
    };
    let setval = match sequence.last_value {
        Some(last) => format!("SELECT setval({}, {last}, true)", quote_literal(&name)),
        None => format!(
            "SELECT setval({}, {}, false)",
            quote_literal(&name),
            sequence.start
        ),
    };
    vec![
        format!(
            "CREATE SEQUENCE IF NOT EXISTS {name} AS {data_type} INCREMENT BY {} MINVALUE {} \
             MAXVALUE {} START WITH {} CACHE {} {}",
            sequence.increment,
            sequence.min,
            sequence.max,
            sequence.start,
            sequence.cache.max(1),
            if sequence.cycle { "CYCLE" } else { "NO CYCLE" }
        ),
        setval,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_created_at_the_source_value() {
        let mut seq = Sequence {
            name: "shared_seq".into(),
            data_type: "bigint".into(),
            start: 1000,
            increment: 5,
            min: 1,
            max: i64::MAX,
            cache: 1,
            cycle: false,
            last_value: Some(1040),
        };
        let sql = create_sequence("s", &seq);
        assert_eq!(
            sql[0],
            "CREATE SEQUENCE IF NOT EXISTS \"s\".\"shared_seq\" AS bigint INCREMENT BY 5 MINVALUE 1 \
             MAXVALUE 9223372036854775807 START WITH 1000 CACHE 1 NO CYCLE"
        );
        assert_eq!(sql[1], "SELECT setval('\"s\".\"shared_seq\"', 1040, true)");
        seq.last_value = None;
        assert_eq!(
            create_sequence("s", &seq)[1],
            "SELECT setval('\"s\".\"shared_seq\"', 1000, false)"
        );
    }
}
