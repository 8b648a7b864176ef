//! Every type of the mapping table, with its extremes, travels PostgreSQL →
//! MariaDB → PostgreSQL and MariaDB → PostgreSQL → MariaDB and comes back
//! with the same values. Rows a system cannot hold (NaN in MariaDB, a MySQL
//! TIME beyond a day in the model) are dead-lettered, named, not corrupted.

use dmp_test_servers::{TestDb, mariadb, postgres};

use super::verify::verified;
use crate::support::sql::{assert_same_dump, dump, scalar_i64, sql_pipeline};
use crate::support::{assert_exit, dead_letters, pipeline, run_dmp, text};

pub(crate) const PG_TABLE: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE every_type (
    id bigint PRIMARY KEY,
    b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
    d38 numeric(38,10), dfree numeric, c5 char(5), vc varchar(20), t text, by bytea,
    j json, jb jsonb, dt date, tm time, ts timestamp, tstz timestamptz, u uuid,
    arr integer[], tags text[], m mood, iv interval
);
INSERT INTO every_type VALUES
 (1, true, 1, 2, 3, 1.5, 2.25, 123.4500000000, 1.5, 'ab', 'héllo', 'plain text', '\xdeadbeef00ff',
  '{"a": null, "bb": [1, 2.50, "x"]}', '{"k": "v", "n": 1}', '2024-02-29', '12:34:56.789012',
  '2024-06-30 23:59:59.999999', '2024-03-10 02:30:00.123456+05:30', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{1,2,NULL,4}', '{"a b","c\"d"}', 'happy', '1 year 2 mons 3 days 04:05:06.789'),
 (2, false, 32767, 2147483647, 9223372036854775807, 3.4028235e38, 1.7976931348623157e308,
  9999999999999999999999999999.9999999999, 123456789012345678901234567890.123456789012345678901234567890,
  'zzzzz', repeat('x', 20), repeat('long ', 10000), '\x00', '[]', '{}', '9999-12-31', '23:59:59.999999',
  '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '{}', '{}', 'sad', '-3 days'),
 (3, false, -32768, -2147483648, -9223372036854775808, -1.17549435e-38, -2.2250738585072014e-308,
  -9999999999999999999999999999.9999999999, -0.000000000000000000000000000001,
  '', '', '', '\x', '0', 'null', '1000-01-01', '00:00:00',
  '1000-01-01 00:00:00', '1000-01-01 00:00:00+00', '00000000-0000-0000-0000-000000000000',
  '{-1}', '{""}', 'ok', '00:00:00'),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (5, true, 0, 0, 0, -0.0, 0.1, 0, 0, 'é😀', '😀𝄞 naïve', E'tab\there\nnewline \\ back', decode(repeat(md5('dmp'), 1048576), 'hex'),
  '"x"', '[1, "two", {"three": 3}]', '2000-01-01', '00:00:00.000001',
  '1999-12-31 23:59:59.999999', '2000-01-01 00:00:00+00', 'c232ab00-9414-11ec-b3c8-9f6bdeced846',
  NULL, '{NULL}', NULL, NULL),
 (6, true, 1, 1, 1, 'Infinity', 'NaN', 1, 1, 'x', 'x', 'x', '\x01', '1', '1', '2024-01-01', '01:00:00',
  '2024-01-01 00:00:00', '2024-01-01 00:00:00+00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13',
  '{1}', '{x}', 'ok', '1 day');
"#;

/// One select list for the original and the copies: json compared as jsonb,
/// arrays as the json they become, unconstrained decimals without trailing
/// zeros, the 16 MiB bytea by length and digest.
const PG_DUMP: &str = "SELECT id, b, i2, i4, i8, f4, f8, d38, trim_scale(dfree), c5, vc, md5(t), length(t), \
    length(by), md5(by), j::jsonb, jb, dt, tm, ts, tstz, u, to_jsonb(arr), to_jsonb(tags), m::text, iv::text \
    FROM every_type ORDER BY id";
const PG_COLUMNS: &[&str] = &[
    "id",
    "b",
    "i2",
    "i4",
    "i8",
    "f4",
    "f8",
    "d38",
    "dfree",
    "c5",
    "vc",
    "md5(t)",
    "length(t)",
    "length(by)",
    "md5(by)",
    "j",
    "jb",
    "dt",
    "tm",
    "ts",
    "tstz",
    "u",
    "arr",
    "tags",
    "m",
    "iv",
];

fn migrate(dir: &std::path::Path, file: &str, source: &TestDb, target: &TestDb, exit: i32) {
    pipeline(
        dir,
        file,
        &sql_pipeline(&source.url, &target.url, "batch_rows = 2\nchunk_rows = 2"),
    );
    let out = run_dmp(dir, &["run", file]);
    assert_exit(&out, exit);
}

#[test]
fn postgres_types_round_trip_through_mariadb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = postgres().create_database("types_origin");
    origin.exec(PG_TABLE);
    let middle = mariadb().create_database("types_middle");
    let back = postgres().create_database("types_back");
    let direct = postgres().create_database("types_direct");

    // PostgreSQL → PostgreSQL keeps everything, NaN and Infinity included.
    migrate(dir.path(), "direct.toml", &origin, &direct, 0);
    assert_same_dump(
        &dump(&origin, PG_DUMP),
        &dump(&direct, PG_DUMP),
        PG_COLUMNS,
        "PostgreSQL → PostgreSQL",
    );
    verified(dir.path(), "direct.toml", 0, &[]);

    // MariaDB has no NaN or Infinity: that row is dead-lettered, named.
    migrate(dir.path(), "there.toml", &origin, &middle, 1);
    let rejected = dead_letters(dir.path(), "there", "every_type");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].1.contains("NaN") || rejected[0].1.contains("nfinity"),
        "{rejected:?}"
    );
    // Every type hashes alike on both systems: only that row differs.
    verified(
        dir.path(),
        "there.toml",
        1,
        &[
            "1 differences: 1 missing in target",
            "missing in target: id=\"6\"",
        ],
    );
    migrate(dir.path(), "back.toml", &middle, &back, 0);
    verified(dir.path(), "back.toml", 0, &[]);

    let expected: Vec<_> = dump(&origin, PG_DUMP)
        .into_iter()
        .filter(|row| row[0].as_deref() != Some("6"))
        .collect();
    assert_same_dump(
        &expected,
        &dump(&back, PG_DUMP),
        PG_COLUMNS,
        "PostgreSQL → MariaDB → PostgreSQL",
    );
    // Types survive the trip where MariaDB has no equivalent.
    let types = back.query(
        "SELECT column_name, data_type FROM information_schema.columns \
         WHERE table_name = 'every_type' AND column_name IN ('tstz', 'u', 'jb', 'i8', 'b') ORDER BY 1",
    );
    let types: Vec<String> = types
        .into_iter()
        .map(|r| {
            format!(
                "{}={}",
                r[0].clone().unwrap_or_default(),
                r[1].clone().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            "b=boolean",
            "i8=bigint",
            "jb=jsonb",
            "tstz=timestamp with time zone",
            "u=uuid"
        ]
    );
}

const MY_TABLE: &str = r#"
SET SESSION sql_mode = '';
SET time_zone = '+00:00';
CREATE TABLE every_type (
  id bigint PRIMARY KEY,
  flag tinyint(1), ti tinyint, tiu tinyint unsigned, si smallint, siu smallint unsigned,
  mi mediumint, miu mediumint unsigned, i int, iu int unsigned, bi bigint, biu bigint unsigned,
  d38 decimal(38,10), d65 decimal(65,30), f float, db double, bt1 bit(1), bt12 bit(12),
  c5 char(5), vc varchar(300), tt tinytext, t text, mt mediumtext, lt longtext,
  bn binary(4), vb varbinary(100), bl blob, lb longblob,
  j json, dt date, tm time(6), dtm datetime(6), ts timestamp(6) NULL DEFAULT NULL, y year,
  e enum('small','medium','large'), s set('a','b','c'), u uuid
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO every_type VALUES
 (1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 123.45, 1.5, 1.5, 2.25, b'1', b'101',
  'ab', 'héllo', 'tiny', 'text', 'medium', 'long', 'ab', x'00ff', x'deadbeef', x'00',
  '{"a":null,"bb":[1,2.50,"x"]}', '2024-02-29', '12:34:56.789012', '2024-06-30 23:59:59.999999',
  '2024-03-10 02:30:00.123456', 2024, 'medium', 'a,c', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
 (2, 0, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807,
  18446744073709551615, 9999999999999999999999999999.9999999999,
  99999999999999999999999999999999999.999999999999999999999999999999, 3.40282e38, 1.7976931348623157e308,
  b'0', b'111111111111', 'zzzzz', REPEAT('x', 300), REPEAT('t', 255), REPEAT('y', 65535), REPEAT('m', 100000),
  REPEAT('l', 200000), 'abcd', REPEAT(x'ff', 100), REPEAT(x'00', 65535), REPEAT(UNHEX(MD5('dmp')), 1048576),
  '[]', '9999-12-31', '23:59:59.999999', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', 2155,
  'large', 'a,b,c', 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
 (3, 0, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
  -9999999999999999999999999999.9999999999, -0.000000000000000000000000000001, -1.17549e-38,
  -2.2250738585072014e-308, b'0', b'0', '', '', '', '', '', '', '', '', '', '',
  '{}', '1000-01-01', '00:00:00', '1000-01-01 00:00:00', '1970-01-01 00:00:01', 1901,
  'small', '', '00000000-0000-0000-0000-000000000000'),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.1, b'1', b'0', 'é😀', '😀𝄞 naïve', 'tab\there',
  'new\nline \\ back', '', '', x'00000000', '', '', '', '"x"', '2000-01-01', '00:00:00.000001',
  '1999-12-31 23:59:59.999999', '2000-01-01 00:00:00', 0, 'small', 'b', 'c232ab00-9414-11ec-b3c8-9f6bdeced846'),
 (7, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, b'1', b'1', 'z', 'zero dates', '', '', '', '', 'z', '', '', '',
  '1', '0000-00-00', '01:00:00', '0000-00-00 00:00:00', NULL, 1999, 'small', 'a', NULL),
 (8, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, b'1', b'1', 'z', 'long time', '', '', '', '', 'z', '', '', '',
  '1', '2024-01-01', '838:59:59', '2024-01-01 00:00:00', NULL, 1999, 'small', 'a', NULL);
"#;

/// Floats through DOUBLE (MariaDB prints FLOAT rounded to 6 digits), bits as
/// numbers, binaries as hex, big blobs by length and digest, JSON compacted.
const MY_DUMP: &str = "SET time_zone = '+00:00'; SELECT id, flag+0, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, d38, d65, \
    CAST(f AS DOUBLE), db, bt1+0, bt12+0, c5, vc, tt, MD5(t), MD5(mt), MD5(lt), HEX(bn), HEX(vb), MD5(bl), \
    LENGTH(lb), MD5(lb), JSON_COMPACT(j), dt, tm, dtm, ts, y+0, e, s, u FROM every_type ORDER BY id";
const MY_COLUMNS: &[&str] = &[
    "id",
    "flag",
    "ti",
    "tiu",
    "si",
    "siu",
    "mi",
    "miu",
    "i",
    "iu",
    "bi",
    "biu",
    "d38",
    "d65",
    "f",
    "db",
    "bt1",
    "bt12",
    "c5",
    "vc",
    "tt",
    "t",
    "mt",
    "lt",
    "bn",
    "vb",
    "bl",
    "length(lb)",
    "md5(lb)",
    "j",
    "dt",
    "tm",
    "dtm",
    "ts",
    "y",
    "e",
    "s",
    "u",
];

#[test]
fn mariadb_types_round_trip_through_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = mariadb().create_database("types_origin");
    origin.exec(MY_TABLE);
    let middle = postgres().create_database("types_middle");
    let back = mariadb().create_database("types_back");

    // The model's time is a time of day: 838:59:59 is refused, named.
    migrate(dir.path(), "there.toml", &origin, &middle, 1);
    let rejected = dead_letters(dir.path(), "there", "every_type");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].1.contains("838:59:59"), "{rejected:?}");
    // Zero dates arrive as NULL (the documented policy).
    assert_eq!(
        scalar_i64(
            &middle,
            "SELECT count(*) FROM every_type WHERE id = 7 AND dt IS NULL AND dtm IS NULL"
        ),
        1
    );
    // Unsigned and wide types keep their values in PostgreSQL's types.
    assert_eq!(
        middle.scalar("SELECT biu::text || ' ' || iu::text || ' ' || pg_typeof(biu)::text FROM every_type WHERE id = 2"),
        "18446744073709551615 4294967295 numeric"
    );

    // That row cannot be read: verify says so rather than call the
    // tables equal.
    verified(
        dir.path(),
        "there.toml",
        1,
        &["1 source rows could not be read"],
    );
    migrate(dir.path(), "back.toml", &middle, &back, 0);
    verified(dir.path(), "back.toml", 0, &[]);
    let expected: Vec<_> = dump(&origin, MY_DUMP)
        .into_iter()
        .filter(|row| !matches!(row[0].as_deref(), Some("7" | "8")))
        .collect();
    let actual: Vec<_> = dump(&back, MY_DUMP)
        .into_iter()
        .filter(|row| row[0].as_deref() != Some("7"))
        .collect();
    assert_same_dump(
        &expected,
        &actual,
        MY_COLUMNS,
        "MariaDB → PostgreSQL → MariaDB",
    );
}

#[test]
fn sqlite_migrates_to_postgres_and_mariadb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = dir.path().join("every.db");
    crate::support::create_every_type_db(&sqlite);
    let pg = postgres().create_database("from_sqlite");
    let my = mariadb().create_database("from_sqlite");
    for (file, target) in [("to_pg.toml", &pg), ("to_my.toml", &my)] {
        pipeline(
            dir.path(),
            file,
            &sql_pipeline("sqlite://every.db", &target.url, ""),
        );
        let out = run_dmp(dir.path(), &["run", file]);
        assert_exit(&out, 0);
        verified(dir.path(), file, 0, &[]);
        // And back into SQLite: the same rows as the original.
        let back = format!("back_{file}.db");
        let back_file = format!("back_{file}");
        pipeline(
            dir.path(),
            &back_file,
            &sql_pipeline(&target.url, &format!("sqlite://{back}"), ""),
        );
        let out = run_dmp(dir.path(), &["run", &back_file]);
        assert_exit(&out, 0);
        verified(dir.path(), &back_file, 0, &[]);
        let tables = crate::support::tables(&sqlite);
        assert!(!tables.is_empty());
        for table in tables {
            crate::support::assert_same_rows(
                &crate::support::rows(&sqlite, &table),
                &crate::support::rows(&dir.path().join(&back), &table),
                &format!(
                    "SQLite → {file} → SQLite, table {table}: {}",
                    text(&out.stdout)
                ),
            );
        }
    }
}
