#!/usr/bin/env bash
# NATS JetStream benchmark of issue 16, on private PostgreSQL 15 and
# `nats-server -js` instances started by dmp-test-servers.
#
# Full load: `dmp run` copies ROWS rows of a mixed table (about 1 KB each
# as a JSON envelope) from PostgreSQL onto stream DMP; the baseline, in the
# same run, is a plain async-nats publish loop (examples/publish_baseline.rs)
# publishing the very payloads dmp wrote (read back first, held in memory)
# onto stream BASE with ids and WINDOW acknowledgements in flight. Reports
# rows/s, the ratio, and dmp's peak RSS.
#
# CDC: `full+cdc` onto the bus, then pgbench one-update transactions at
# RATE per second for DURATION seconds; reports dmp's lag p50/p99/max (source
# commit → JetStream acknowledgement of the change, as bench/cdc_pg.sh
# measures to the target's commit) and checks every change is on the bus.
#
#   ROWS=1000000 WINDOW=256 RATE=5000 DURATION=60 bench/nats.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
WINDOW=${WINDOW:-256}
RATE=${RATE:-5000}
DURATION=${DURATION:-60}
CLIENTS=${CLIENTS:-4}

cargo build --release -q -p dmp-nats --example publish_baseline
SERVERS="postgres nats"
# shellcheck source=bench/servers.sh
source bench/servers.sh
: "${DMP_TEST_NATS_URL:?nats-server did not start}"
BIN=$DMP_TEST_PG_BIN_DIR
pg_url() { echo "postgres://postgres@127.0.0.1:$DMP_TEST_PG_PORT/$1"; }

echo "creating $ROWS rows…"
pg -c "CREATE DATABASE src"
pg -d src -c "CREATE TABLE t (id bigint PRIMARY KEY, n integer NOT NULL, label text NOT NULL,
  price numeric(12,2), at timestamptz NOT NULL, note text, doc jsonb, flag boolean NOT NULL, u uuid NOT NULL,
  body text NOT NULL)" -c "INSERT INTO t SELECT g, g % 100000, 'label ' || g, (g % 1000000) / 100.0,
  '2024-01-01 00:00:00+00'::timestamptz + g * interval '1.5 second',
  CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || md5(g::text) END,
  jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 7)), g % 2 = 0,
  overlay(overlay(md5(g::text) placing '4' from 13) placing '8' from 17)::uuid,
  repeat(md5(g::text), 20)
  FROM generate_series(1, $ROWS) g" -c "VACUUM ANALYZE t"

cat > "$WORK/full.toml" <<TOML
[pipeline]
name = "bench_nats"
[source]
url = "$(pg_url src)"
[target]
url = "$DMP_TEST_NATS_URL/DMP"
[run]
mode = "full"
state = "$WORK/state.db"
TOML
echo "dmp run PostgreSQL → NATS…"
t0=$(date +%s.%N)
/usr/bin/time -f %M -o "$WORK/rss" "$DMP" run "$WORK/full.toml" > /dev/null 2> "$WORK/full.log"
t1=$(date +%s.%N)
dmp_secs=$(echo "$t1 - $t0" | bc -l)
rss=$(( $(cat "$WORK/rss") / 1024 ))
bytes=$(grep -oP 'bytes=\K[0-9]+' "$WORK/full.log" | tail -1 || true)
echo "baseline: async-nats publish loop of the same payloads, $WINDOW in flight…"
baseline=$(target/release/examples/publish_baseline "$DMP_TEST_NATS_URL" DMP BASE "$WINDOW")
echo "  $baseline"
base_rate=$(echo "$baseline" | grep -oP '[0-9.]+(?= msg/s)')
dmp_rate=$(echo "$ROWS / $dmp_secs" | bc -l)
printf 'full load PG → NATS, %d rows: dmp %.0f rows/s (%.1f s, peak RSS %d MiB); baseline %.0f msg/s; dmp/baseline %.2f\n' \
    "$ROWS" "$dmp_rate" "$dmp_secs" "$rss" "$base_rate" "$(echo "$dmp_rate / $base_rate" | bc -l)"

echo "CDC PostgreSQL → NATS at $RATE changes/s for ${DURATION}s…"
pg -d src -c "DROP TABLE t" -c "CREATE TABLE accounts (id bigint PRIMARY KEY, n integer NOT NULL, balance bigint NOT NULL,
  filler text NOT NULL, at timestamptz NOT NULL)" \
  -c "INSERT INTO accounts SELECT g, 0, 0, repeat('x', 60), now() FROM generate_series(1, 100000) g"
cat > "$WORK/update.sql" <<SQL
\set id random(1, 100000)
\set delta random(-5000, 5000)
UPDATE accounts SET n = n + 1, balance = balance + :delta, at = clock_timestamp() WHERE id = :id;
SQL
cat > "$WORK/cdc.toml" <<TOML
[pipeline]
name = "bench_nats_cdc"
[source]
url = "$(pg_url src)"
[target]
url = "$DMP_TEST_NATS_URL/CDC"
[run]
mode = "full+cdc"
state = "$WORK/state-cdc.db"
[cdc]
slot = "dmp_bench_nats"
heartbeat = "1s"
TOML
/usr/bin/time -f %M -o "$WORK/rss-cdc" "$DMP" run "$WORK/cdc.toml" --json > "$WORK/summary.json" 2> "$WORK/cdc.log" &
DMP_PID=$!
until grep -q "streaming changes" "$WORK/cdc.log"; do
    kill -0 "$DMP_PID" 2>/dev/null || { cat "$WORK/cdc.log" >&2; exit 1; }
    sleep 0.2
done
sleep 2
DMP_REAL=$(pgrep -P "$DMP_PID" -x dmp || echo "$DMP_PID")
PGOPTIONS='-c synchronous_commit=on' "$BIN/pgbench" -n -f "$WORK/update.sql" -c "$CLIENTS" -j 2 -T "$DURATION" -R "$RATE" \
    -h 127.0.0.1 -p "$DMP_TEST_PG_PORT" -U postgres src > "$WORK/pgbench.out" 2>&1
tps=$(grep -oP 'tps = \K[0-9.]+' "$WORK/pgbench.out" | head -1)
updates=$(grep -oP 'number of transactions actually processed: \K[0-9]+' "$WORK/pgbench.out")
sleep 5
kill -INT "$DMP_REAL"
wait "$DMP_PID" || true
read -r p50 p99 max changes < <(python3 -c '
import json,sys
s=json.load(open(sys.argv[1]))["stream"]
print(s.get("lag_p50_ms"), s.get("lag_p99_ms"), s.get("lag_max_ms"), s["changes"])' "$WORK/summary.json")
[ "$changes" -ge "$updates" ] || { echo "only $changes of $updates changes streamed" >&2; exit 1; }
windows=$(grep ' stream changes_per_sec' "$WORK/cdc.log" | grep -oP 'lag_p99_ms=\K[0-9.]+' || true)
printf 'CDC PG → NATS: %s offered, %.0f changes/s reached, %s changes: lag p50 %s ms, p99 %s ms, max %s ms; p99 per 10 s window: %s; peak RSS %d MiB\n' \
    "$RATE" "$tps" "$changes" "$p50" "$p99" "$max" "$(echo $windows)" "$(( $(cat "$WORK/rss-cdc") / 1024 ))"
"$DMP" cdc drop-slot "$WORK/cdc.toml" > /dev/null
