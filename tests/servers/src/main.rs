//! `dmp-test-servers start [postgres] [mariadb] [nats]`: starts the test servers
//! for a script, prints `export` lines and `ready`, and keeps them until its
//! stdin closes or it is killed. See the crate docs for the shell side.

use std::io::{self, Write};
use std::process::ExitCode;

const USAGE: &str = "usage: dmp-test-servers start [postgres] [mariadb] [nats]
Starts private PostgreSQL 15 / MariaDB 10.11 servers (both by default; NATS
with JetStream when named), prints
`export NAME=value` lines and `ready` on stdout, and keeps them until stdin
closes or the process gets SIGTERM/SIGINT; then the servers stop and their
temp dirs are removed.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(("start", servers)) = args.split_first().map(|(c, rest)| (c.as_str(), rest)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut want_pg = servers.is_empty();
    let mut want_my = servers.is_empty();
    let mut want_nats = false;
    for server in servers {
        match server.as_str() {
            "postgres" | "postgresql" | "pg" => want_pg = true,
            "mariadb" | "mysql" => want_my = true,
            "nats" => want_nats = true,
            other => {
                eprintln!("dmp-test-servers: unknown server `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }

    // Both at once: each takes a few seconds, mostly waiting.
    let (pg, my, nats) = std::thread::scope(|s| {
        let pg = s.spawn(|| want_pg.then(dmp_test_servers::try_postgres));
        let my = s.spawn(|| want_my.then(dmp_test_servers::try_mariadb));
        let nats = s.spawn(|| want_nats.then(dmp_test_servers::try_nats));
        (pg.join(), my.join(), nats.join())
    });
    let (Ok(pg), Ok(my), Ok(nats)) = (pg, my, nats) else {
        return ExitCode::FAILURE;
    };
    let mut exports = Vec::new();
    for result in [
        pg.map(|r| r.map(|s| ("PG", s.url(), s.port(), s.bin_dir().to_owned()))),
        my.map(|r| r.map(|s| ("MARIADB", s.url(), s.port(), s.bin_dir().to_owned()))),
        nats.map(|r| r.map(|s| ("NATS", s.url(), s.port(), s.bin_dir().to_owned()))),
    ]
    .into_iter()
    .flatten()
    {
        match result {
            Ok((prefix, url, port, bin_dir)) => {
                exports.push(format!(
                    "export DMP_TEST_{prefix}_URL={}",
                    shell_quote(&url)
                ));
                exports.push(format!("export DMP_TEST_{prefix}_PORT={port}"));
                exports.push(format!(
                    "export DMP_TEST_{prefix}_BIN_DIR={}",
                    shell_quote(&bin_dir.display().to_string())
                ));
            }
            Err(e) => {
                eprintln!("dmp-test-servers: {e}");
                dmp_test_servers::shutdown();
                return ExitCode::FAILURE;
            }
        }
    }
    let mut stdout = io::stdout().lock();
    for line in exports.iter().map(String::as_str).chain(["ready"]) {
        // A reader that went away means nobody needs the servers.
        if writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            dmp_test_servers::shutdown();
            return ExitCode::FAILURE;
        }
    }
    drop(stdout);

    // SIGTERM and SIGINT keep their default action, ending the process: the
    // reapers see our end of their pipes close and stop the servers.
    let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
    dmp_test_servers::shutdown();
    ExitCode::SUCCESS
}

/// `value` in single quotes, for `eval`.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
