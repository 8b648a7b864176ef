//! Which server we talk to: MariaDB and MySQL differ in types (MariaDB has
//! UUID from 10.7, MySQL a real JSON type), catalogs and statements.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::error::{Result, ResultExt};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Server {
    pub(super) mariadb: bool,
    pub(super) version: (u16, u16, u16),
    /// `@@max_allowed_packet`: no single value can be larger.
    pub(super) max_packet: u64,
}

/// MySQL's default `max_allowed_packet` (64 MiB from 8.0; MariaDB 16 MiB).
const DEFAULT_MAX_PACKET: u64 = 16 << 20;

impl Server {
    /// The SQL dialect of expressions and definitions read from this
    /// server.
    pub(super) fn dialect(self) -> dmp_model::Dialect {
        if self.mariadb {
            dmp_model::Dialect::Mariadb
        } else {
            dmp_model::Dialect::Mysql
        }
    }

    /// Asks the server: `SELECT VERSION()` says `10.11.14-MariaDB-…` or
    /// `8.0.36`.
    pub(super) async fn detect(conn: &mut Conn, place: &str) -> Result<Server> {
        let found: Option<(String, u64)> = conn
            .query_first("SELECT VERSION(), @@max_allowed_packet")
            .await
            .context(|| format!("{place}: asking the server's version"))?;
        let (version, max_packet) = found.unwrap_or_default();
        Ok(Server {
            max_packet,
            ..Self::from_version(&version)
        })
    }

    fn from_version(text: &str) -> Server {
        let mut parts = text
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u16>().unwrap_or(0));
        Server {
            max_packet: DEFAULT_MAX_PACKET,
            mariadb: text.to_ascii_lowercase().contains("mariadb"),
            version: (
                parts.next().unwrap_or(0),
                parts.next().unwrap_or(0),
                parts.next().unwrap_or(0),
            ),
        }
    }

    /// What `dmp plan` assumes before it has talked to the server.
    pub(super) fn assumed() -> Server {
        Server {
            mariadb: true,
            version: (10, 11, 0),
            max_packet: DEFAULT_MAX_PACKET,
        }
    }

    /// MariaDB 10.7 brought a native UUID type.
    pub(super) fn has_uuid_type(self) -> bool {
        self.mariadb && self.version >= (10, 7, 0)
    }

    pub(super) fn name(self) -> &'static str {
        if self.mariadb { "MariaDB" } else { "MySQL" }
    }

    #[cfg(test)]
    pub(super) fn for_tests(mariadb: bool, version: (u16, u16, u16)) -> Server {
        Server {
            mariadb,
            version,
            max_packet: DEFAULT_MAX_PACKET,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_their_text() {
        let m = Server::from_version("10.11.14-MariaDB-0+deb12u2-log");
        assert!(m.mariadb && m.has_uuid_type());
        assert_eq!(m.version, (10, 11, 14));
        let old = Server::from_version("10.6.2-MariaDB");
        assert!(!old.has_uuid_type());
        let my = Server::from_version("8.0.36");
        assert!(!my.mariadb && !my.has_uuid_type());
        assert_eq!(my.version, (8, 0, 36));
    }
}
