#!/usr/bin/env bash
# Whole-database clone benchmark, PostgreSQL → PostgreSQL, on the private
# PostgreSQL 15 server started by dmp-test-servers (no server of the machine
# is used). The source is `pgbench -i -s SCALE --foreign-keys` (SCALE × 100,000
# accounts; 3 primary keys, 5 foreign keys), vacuumed and analyzed.
#
# One run times, ROUNDS times interleaved (medians reported), each tool
# cloning into a fresh empty database with 2 table and 2 index jobs:
#   pg_dump   pg_dump -Fd -j2 then pg_restore -j2 (PostgreSQL 15 client; the
#             pair timed together);
#   pgcopydb  pgcopydb clone --table-jobs 2 --index-jobs 2 (Debian package,
#             installed here if missing; it also VACUUM ANALYZEs the target);
#   dmp       dmp run with parallelism = 2;
# checks after each run that the clone has the source's row counts, primary
# keys and (validated) foreign keys, and reports the ratios to pgcopydb and
# dmp's peak RSS (GNU time).
#
#   SCALE=20 ROUNDS=3 bench/clone.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=${SCALE:-20}
ROUNDS=${ROUNDS:-3}
PG_BIN=/usr/lib/postgresql/15/bin
TABLES="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history"

if ! command -v pgcopydb >/dev/null; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y pgcopydb
fi

# shellcheck source=bench/servers.sh
source bench/servers.sh
pg_url() { echo "postgres://postgres@127.0.0.1:$DMP_TEST_PG_PORT/$1"; }

echo "filling src with pgbench -i -s $SCALE --foreign-keys…"
pg -c "CREATE DATABASE src"
"$PG_BIN/pgbench" -h 127.0.0.1 -p "$DMP_TEST_PG_PORT" -U postgres -i -s "$SCALE" --foreign-keys -q src 2> "$WORK/pgbench.log" ||
    { cat "$WORK/pgbench.log" >&2; exit 1; }
pg -d src -c "VACUUM ANALYZE"

# What a clone must hold: the row count of each table, then its primary and
# foreign keys (dmp's own `_dmp_checkpoints` table in the target is left out).
counts() {
    local t
    for t in $TABLES; do printf '%s=%s ' "$t" "$(pg -d "$1" -At -c "SELECT count(*) FROM $t")"; done
}
keys() {
    pg -d "$1" -At -c "SELECT count(*) FILTER (WHERE contype = 'p') || ' primary keys, '
        || count(*) FILTER (WHERE contype = 'f') || ' foreign keys: '
        || string_agg(conrelid::regclass || '.' || conname, ' ' ORDER BY conrelid::regclass::text, conname)
      FROM pg_constraint
      WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'f') AND convalidated
        AND conrelid::regclass::text <> '_dmp_checkpoints'"
}
SRC_COUNTS=$(counts src)
SRC_KEYS=$(keys src)
echo "src: $SRC_COUNTS"
echo "src: $SRC_KEYS"
check() {
    local got
    got=$(counts "$1")
    [ "$got" = "$SRC_COUNTS" ] || { echo "$1 is incomplete: $got (source: $SRC_COUNTS)" >&2; exit 1; }
    got=$(keys "$1")
    [ "$got" = "$SRC_KEYS" ] || { echo "$1 lacks keys: $got (source: $SRC_KEYS)" >&2; exit 1; }
}

# A failed tool stops the benchmark with the end of its log.
run_logged() {
    local log=$1; shift
    "$@" > "$log" 2>&1 || { echo "failed: $*" >&2; tail -n 30 "$log" >&2; exit 1; }
}

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

printf '[source]\nurl = "%s"\n[target]\nurl = "%s"\n[run]\nparallelism = 2\n' \
    "$(pg_url src)" "$(pg_url dst_dmp)" > "$WORK/clone.toml"

declare -a DUMP COPYDB DMP_S RSS
for round in $(seq 1 "$ROUNDS"); do
    for db in dst_dump dst_pgcopydb dst_dmp; do pg -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"; done
    rm -rf "$WORK/dump" "$WORK/pgcopydb"

    pg -c CHECKPOINT
    t0=$(now)
    run_logged "$WORK/pg_dump.log" "$PG_BIN/pg_dump" -Fd -j2 -f "$WORK/dump" "$(pg_url src)"
    run_logged "$WORK/pg_restore.log" "$PG_BIN/pg_restore" -j2 -d "$(pg_url dst_dump)" "$WORK/dump"
    t1=$(now); DUMP+=("$(elapsed "$t0" "$t1")")
    check dst_dump

    # pgcopydb runs the first pg_dump, pg_restore and psql on its PATH: the 15 ones.
    pg -c CHECKPOINT
    t0=$(now)
    PATH="$PG_BIN:$PATH" run_logged "$WORK/pgcopydb.log" pgcopydb clone \
        --source "$(pg_url src)" --target "$(pg_url dst_pgcopydb)" \
        --dir "$WORK/pgcopydb" --table-jobs 2 --index-jobs 2
    t1=$(now); COPYDB+=("$(elapsed "$t0" "$t1")")
    check dst_pgcopydb

    pg -c CHECKPOINT
    t0=$(now)
    run_logged "$WORK/dmp.log" /usr/bin/time -f %M -o "$WORK/rss" "$DMP" run "$WORK/clone.toml" --restart
    t1=$(now); DMP_S+=("$(elapsed "$t0" "$t1")"); RSS+=("$(cat "$WORK/rss")")
    check dst_dmp

    printf 'round %s: pg_dump+pg_restore %.2fs  pgcopydb %.2fs  dmp %.2fs  (all clones complete)\n' \
        "$round" "${DUMP[-1]}" "${COPYDB[-1]}" "${DMP_S[-1]}"
done

dump=$(printf '%s\n' "${DUMP[@]}" | median)
copydb=$(printf '%s\n' "${COPYDB[@]}" | median)
dmp=$(printf '%s\n' "${DMP_S[@]}" | median)
rss=$(printf '%s\n' "${RSS[@]}" | sort -g | tail -1)
echo
echo "pgbench scale $SCALE, medians of $ROUNDS interleaved rounds, 2 jobs each; $(pgcopydb --version 2>/dev/null | head -1)"
printf '  %-22s %8s  %s\n' tool seconds 'ratio to pgcopydb'
printf '  %-22s %8.2f  %.2f\n' 'pg_dump+pg_restore -j2' "$dump" "$(echo "$dump / $copydb" | bc -l)"
printf '  %-22s %8.2f  %.2f\n' pgcopydb "$copydb" 1
printf '  %-22s %8.2f  %.2f\n' dmp "$dmp" "$(echo "$dmp / $copydb" | bc -l)"
printf '  dmp / pgcopydb = %.2f   dmp peak RSS %d MiB\n' "$(echo "$dmp / $copydb" | bc -l)" $((rss / 1024))
