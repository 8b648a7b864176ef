#!/usr/bin/env bash
# Scale-out benchmark of issue 17, on private PostgreSQL 15 and
# `nats-server -js` instances started by dmp-test-servers.
#
# Coordination overhead: ROWS rows PostgreSQL → PostgreSQL, `dmp run`
# locally against `dmp run --cluster` with one `dmp worker` (as many slots
# as the local run's parallelism, started before the clock), ROUNDS times
# interleaved; medians and their ratio.
#
# Dispatch ceiling: CHUNKS chunks of one row each (SQLite → PostgreSQL,
# chunk_rows = 1), locally and through the cluster with one worker: chunks
# per second each way; the difference is what the coordination costs per
# chunk (queue, progress records, acknowledgements).
#
#   ROWS=1000000 ROUNDS=3 CHUNKS=2000 bench/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-3}
CHUNKS=${CHUNKS:-2000}
SLOTS=${SLOTS:-$(nproc)}

SERVERS="postgres nats"
# shellcheck source=bench/servers.sh
source bench/servers.sh
: "${DMP_TEST_NATS_URL:?nats-server did not start}"
pg_url() { echo "postgres://postgres@127.0.0.1:$DMP_TEST_PG_PORT/$1"; }

echo "creating $ROWS rows…"
pg -c "CREATE DATABASE src"
pg -d src -c "CREATE TABLE t (id bigint PRIMARY KEY, n integer NOT NULL, label text NOT NULL,
  price numeric(12,2), at timestamptz NOT NULL, note text, doc jsonb, flag boolean NOT NULL, u uuid NOT NULL)" \
  -c "INSERT INTO t SELECT g, g % 100000, 'label ' || g, (g % 1000000) / 100.0,
  '2024-01-01 00:00:00+00'::timestamptz + g * interval '1.5 second',
  CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || md5(g::text) END,
  jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 7)), g % 2 = 0,
  overlay(overlay(md5(g::text) placing '4' from 13) placing '8' from 17)::uuid
  FROM generate_series(1, $ROWS) g" -c "VACUUM ANALYZE t"
python3 - "$WORK/tiny.db" "$CHUNKS" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("CREATE TABLE tiny (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
c.executemany("INSERT INTO tiny VALUES (?, ?)", [(i, f"v{i}") for i in range(1, int(sys.argv[2]) + 1)])
c.commit()
PY

pipeline() { # name source target run-settings
    mkdir -p "$WORK/$1"
    printf '[pipeline]\nname = "%s"\n[source]\nurl = "%s"\n[target]\nurl = "%s"\n[run]\nstate = "%s"\n%s\n' \
        "$1" "$2" "$3" "$WORK/$1/state.db" "$4" > "$WORK/$1/p.toml"
}
pipeline load "$(pg_url src)" "$(pg_url dst)" "parallelism = $SLOTS"
pipeline tiny "sqlite://$WORK/tiny.db" "$(pg_url tiny)" "chunk_rows = 1
parallelism = $SLOTS"

now() { date +%s.%N; }
fresh() { pg -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }
local_run() { # pipeline db → seconds
    fresh "$2"; rm -f "$WORK/$1/state.db"*
    local t0; t0=$(now)
    "$DMP" run "$WORK/$1/p.toml" > /dev/null 2>> "$WORK/local.log"
    echo "$(now) - $t0" | bc
}
cluster_run() { # pipeline db → seconds
    fresh "$2"; rm -f "$WORK/$1/state.db"*
    RUST_LOG=${RUST_LOG:-info} "$DMP" worker --cluster "$DMP_TEST_NATS_URL" --name bench --slots "$SLOTS" 2>> "$WORK/worker.log" &
    local worker=$!
    sleep 1
    local t0; t0=$(now)
    RUST_LOG=${RUST_LOG:-info} "$DMP" run "$WORK/$1/p.toml" --cluster "$DMP_TEST_NATS_URL" > /dev/null 2>> "$WORK/submit.log"
    local t1; t1=$(now)
    kill -TERM "$worker"; wait "$worker" || true
    echo "$t1 - $t0" | bc
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for ((r = 1; r <= ROUNDS; r++)); do
    echo "round $r…"
    local_run load dst >> "$WORK/load_local"
    cluster_run load dst >> "$WORK/load_cluster"
    local_run tiny tiny >> "$WORK/tiny_local"
    cluster_run tiny tiny >> "$WORK/tiny_cluster"
done
# LOGS=DIR keeps the runs' logs.
[ -n "${LOGS:-}" ] && mkdir -p "$LOGS" && cp "$WORK"/*.log "$LOGS"/
rows=$(pg -d dst -tAc "SELECT count(*) FROM t")
[ "$rows" = "$ROWS" ] || { echo "the cluster copied $rows rows of $ROWS"; exit 1; }
load_local=$(median < "$WORK/load_local")
load_cluster=$(median < "$WORK/load_cluster")
tiny_local=$(median < "$WORK/tiny_local")
tiny_cluster=$(median < "$WORK/tiny_cluster")
echo
echo "full load, $ROWS rows PostgreSQL → PostgreSQL (median of $ROUNDS):"
printf '  dmp run locally        %8.2f s  %9.0f rows/s\n' "$load_local" "$(echo "$ROWS / $load_local" | bc -l)"
printf '  one worker, --cluster  %8.2f s  %9.0f rows/s  ratio %.2f×\n' "$load_cluster" \
    "$(echo "$ROWS / $load_cluster" | bc -l)" "$(echo "$load_cluster / $load_local" | bc -l)"
echo "$CHUNKS one-row chunks SQLite → PostgreSQL (median of $ROUNDS):"
printf '  dmp run locally        %8.2f s  %7.0f chunks/s\n' "$tiny_local" "$(echo "$CHUNKS / $tiny_local" | bc -l)"
printf '  one worker, --cluster  %8.2f s  %7.0f chunks/s  coordination %.2f ms per chunk\n' "$tiny_cluster" \
    "$(echo "$CHUNKS / $tiny_cluster" | bc -l)" "$(echo "($tiny_cluster - $tiny_local) * 1000 / $CHUNKS" | bc -l)"
