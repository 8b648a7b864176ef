#!/usr/bin/env bash
# Full-load benchmark of issue 4, on private PostgreSQL 15 and MariaDB 10.11
# servers started by dmp-test-servers (no server of the machine is used).
#
# One run times, ROUNDS times interleaved (medians reported):
#   pipe   psql COPY t TO STDOUT (FORMAT binary) | psql COPY t FROM STDIN (FORMAT binary)
#          into an empty table with its primary key: the practical limit;
#   pg     dmp run PostgreSQL → PostgreSQL (dmp creates the table, PK included);
#   maria  dmp run MariaDB → PostgreSQL of the same rows;
# and reports dmp/pipe ratios and dmp's peak RSS (GNU time).
#
#   ROWS=1000000 ROUNDS=3 bench/pg_full.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-3}
PARALLELISM=${PARALLELISM:-$(nproc)}   # dmp's default: one chunk per core

# shellcheck source=bench/servers.sh
source bench/servers.sh
pg_url() { echo "postgres://postgres@127.0.0.1:$DMP_TEST_PG_PORT/$1"; }
my_url() { echo "mysql://root@127.0.0.1:$DMP_TEST_MARIADB_PORT/$1"; }

TABLE="CREATE TABLE t (id bigint PRIMARY KEY, n integer NOT NULL, label text NOT NULL,
  price numeric(12,2), at timestamptz NOT NULL, note text, doc jsonb, flag boolean NOT NULL, u uuid NOT NULL)"

echo "creating $ROWS rows in PostgreSQL…"
pg -c "CREATE DATABASE src"
pg -d src -c "$TABLE" -c "INSERT INTO t SELECT g, g % 100000, 'label ' || g, (g % 1000000) / 100.0,
  '2024-01-01 00:00:00+00'::timestamptz + g * interval '1.5 second',
  CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || md5(g::text) END,
  jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 7)), g % 2 = 0,
  overlay(overlay(md5(g::text) placing '4' from 13) placing '8' from 17)::uuid
  FROM generate_series(1, $ROWS) g" -c "VACUUM ANALYZE t"
echo "loading the same rows into MariaDB…"
my -e "CREATE DATABASE src"
printf '[source]\nurl = "%s"\n[target]\nurl = "%s"\n' "$(pg_url src)" "$(my_url src)" > "$WORK/load.toml"
"$DMP" run "$WORK/load.toml" > /dev/null

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

declare -a PIPE PG MARIA RSS_PG RSS_MARIA
for round in $(seq 1 "$ROUNDS"); do
    for db in pipe dmp_pg dmp_maria; do pg -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"; done
    pg -d pipe -c "$TABLE"

    t0=$(now)
    pg -d src -c "COPY t TO STDOUT (FORMAT binary)" | pg -d pipe -c "COPY t FROM STDIN (FORMAT binary)"
    t1=$(now); PIPE+=("$(elapsed "$t0" "$t1")")

    printf '[source]\nurl = "%s"\n[target]\nurl = "%s"\n[run]\nparallelism = %s\n' \
        "$(pg_url src)" "$(pg_url dmp_pg)" "$PARALLELISM" > "$WORK/pg.toml"
    t0=$(now)
    /usr/bin/time -f %M -o "$WORK/rss" "$DMP" run "$WORK/pg.toml" --restart > /dev/null
    t1=$(now); PG+=("$(elapsed "$t0" "$t1")"); RSS_PG+=("$(cat "$WORK/rss")")

    printf '[source]\nurl = "%s"\n[target]\nurl = "%s"\n[run]\nparallelism = %s\n' \
        "$(my_url src)" "$(pg_url dmp_maria)" "$PARALLELISM" > "$WORK/maria.toml"
    t0=$(now)
    /usr/bin/time -f %M -o "$WORK/rss" "$DMP" run "$WORK/maria.toml" --restart > /dev/null
    t1=$(now); MARIA+=("$(elapsed "$t0" "$t1")"); RSS_MARIA+=("$(cat "$WORK/rss")")

    for db in pipe dmp_pg dmp_maria; do
        count=$(pg -d "$db" -At -c "SELECT count(*) FROM t")
        [ "$count" = "$ROWS" ] || { echo "$db has $count rows, expected $ROWS" >&2; exit 1; }
    done
    printf 'round %s: pipe %.2fs  dmp pg→pg %.2fs  dmp mariadb→pg %.2fs\n' \
        "$round" "${PIPE[-1]}" "${PG[-1]}" "${MARIA[-1]}"
done

# The copies hold the same rows as the source (order-independent digest).
digest="SELECT md5(string_agg(md5(t::text), '' ORDER BY id)) FROM (SELECT id, n, label, price, at, note, doc, flag, u FROM t) t"
src_digest=$(pg -d src -At -c "$digest")
for db in pipe dmp_pg dmp_maria; do
    [ "$(pg -d "$db" -At -c "$digest")" = "$src_digest" ] || { echo "$db differs from the source" >&2; exit 1; }
done

pipe=$(printf '%s\n' "${PIPE[@]}" | median)
dmp_pg=$(printf '%s\n' "${PG[@]}" | median)
dmp_maria=$(printf '%s\n' "${MARIA[@]}" | median)
rss_pg=$(printf '%s\n' "${RSS_PG[@]}" | sort -g | tail -1)
rss_maria=$(printf '%s\n' "${RSS_MARIA[@]}" | sort -g | tail -1)
echo
echo "$ROWS rows, medians of $ROUNDS interleaved rounds, parallelism $PARALLELISM"
printf '  psql binary COPY pipe      %6.2fs  %9.0f rows/s  (baseline)\n' "$pipe" "$(echo "$ROWS / $pipe" | bc -l)"
printf '  dmp PostgreSQL→PostgreSQL  %6.2fs  %9.0f rows/s  %.2fx the pipe (goal ≤ 1.3x)  peak RSS %d MiB\n' \
    "$dmp_pg" "$(echo "$ROWS / $dmp_pg" | bc -l)" "$(echo "$dmp_pg / $pipe" | bc -l)" $((rss_pg / 1024))
printf '  dmp MariaDB→PostgreSQL     %6.2fs  %9.0f rows/s  %.2fx the pipe (goal ≤ 2x)  peak RSS %d MiB\n' \
    "$dmp_maria" "$(echo "$ROWS / $dmp_maria" | bc -l)" "$(echo "$dmp_maria / $pipe" | bc -l)" $((rss_maria / 1024))
echo "  copies verified equal to the source (md5 over all rows)"
