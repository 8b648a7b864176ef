//! NATS JetStream as a target and a source, on a private `nats-server -js`:
//! PostgreSQL → NATS → PostgreSQL / MariaDB, change streams through the
//! bus under SIGKILLs, a server restarted under load, a third-party
//! consumer and producer.

mod bad_messages;
mod crash;
mod crash_point;
mod restart;
mod round_trip;
mod third_party;

/// Starts `mode = "cdc"` from `bus` into `dir/copy.db` (pipeline file
/// `dir/p.toml`).
pub(crate) fn read_into_sqlite(dir: &std::path::Path, bus: &str) -> std::process::Child {
    crate::support::pipeline(
        dir,
        "p.toml",
        &format!(
            "[source]\nurl = \"{bus}\"\n[target]\nurl = \"sqlite://copy.db\"\n[run]\nmode = \"cdc\"\n"
        ),
    );
    crate::sql::cdc::spawn_run(dir)
}

/// Writes `dir/load.toml`: a full copy of SQLite file `db` (in `dir`) onto
/// `bus`.
pub(crate) fn load_onto_bus(dir: &std::path::Path, db: &str, bus: &str) {
    crate::support::pipeline(
        dir,
        "load.toml",
        &format!(
            "[source]\nurl = \"sqlite://{db}\"\n[target]\nurl = \"{bus}\"\n[run]\nmode = \"full\"\n"
        ),
    );
}
