#!/usr/bin/env bash
# Change data capture benchmark of issue 5, on a private PostgreSQL 15
# started by dmp-test-servers (no server of the machine is used).
#
# A table of ROWS rows is copied by `dmp run` in mode full+cdc (PostgreSQL →
# PostgreSQL, another database of the same server); then pgbench runs
# one-update-by-primary-key transactions for DURATION seconds at each rate
# of RATES (transactions = changes per second; `max` = as fast as pgbench
# goes) while dmp streams. dmp measures every transaction's lag from its
# commit at the source (pgoutput commit time) to the commit of the target
# transaction that applied it; the script reports dmp's p50/p99/max lag,
# the p99 of the first and last 10 s windows (growth), the rate pgbench
# reached, dmp's peak RSS, and checks the target equals the source.
#
#   ROWS=1000000 DURATION=60 RATES="2000 5000 max" bench/cdc_pg.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
DURATION=${DURATION:-60}
RATES=${RATES:-"2000 5000 max"}
CLIENTS=${CLIENTS:-4}

cargo build --release -q -p dmp -p dmp-test-servers
DMP=$PWD/target/release/dmp
WORK=$(mktemp -d)
trap 'kill "$SERVERS_PID" 2>/dev/null || true; [ -n "${DMP_PID:-}" ] && kill "$DMP_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

coproc SERVERS { exec target/release/dmp-test-servers start postgres; }
while IFS= read -r line <&"${SERVERS[0]}"; do
    case "$line" in
        export\ *) eval "$line" ;;
        ready) break ;;
    esac
done
: "${DMP_TEST_PG_PORT:?server did not start}"
BIN=$DMP_TEST_PG_BIN_DIR
pg() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DMP_TEST_PG_PORT" -U postgres "$@"; }
pg_url() { echo "postgres://postgres@127.0.0.1:$DMP_TEST_PG_PORT/$1"; }

echo "creating $ROWS rows…"
pg -c "CREATE DATABASE src"
pg -d src -c "CREATE TABLE accounts (id bigint PRIMARY KEY, n integer NOT NULL, balance bigint NOT NULL,
  filler text NOT NULL, at timestamptz NOT NULL)" \
  -c "INSERT INTO accounts SELECT g, 0, 0, repeat('x', 60), now() FROM generate_series(1, $ROWS) g" \
  -c "VACUUM ANALYZE accounts"
cat > "$WORK/update.sql" <<SQL
\set id random(1, $ROWS)
\set delta random(-5000, 5000)
UPDATE accounts SET n = n + 1, balance = balance + :delta, at = clock_timestamp() WHERE id = :id;
SQL

declare -a LINES
for rate in $RATES; do
    pg -c "DROP DATABASE IF EXISTS dst" -c "CREATE DATABASE dst"
    cat > "$WORK/p.toml" <<TOML
[pipeline]
name = "bench_cdc"
[source]
url = "$(pg_url src)"
[target]
url = "$(pg_url dst)"
[run]
mode = "full+cdc"
state = "$WORK/state.db"
[cdc]
slot = "dmp_bench"
heartbeat = "1s"
TOML
    rm -f "$WORK"/state.*
    "$DMP" cdc drop-slot "$WORK/p.toml" > /dev/null 2>&1 || true
    /usr/bin/time -f %M -o "$WORK/rss" env RUST_LOG="${DMP_LOG:-info}" "$DMP" run "$WORK/p.toml" --json > "$WORK/summary.json" 2> "$WORK/dmp.log" &
    DMP_PID=$!
    # The snapshot is copied first; the load starts once dmp streams.
    until grep -q "streaming changes" "$WORK/dmp.log"; do
        kill -0 "$DMP_PID" 2>/dev/null || { cat "$WORK/dmp.log" >&2; exit 1; }
        sleep 0.2
    done
    # Source and target share one server here, so the WAL of the target's
    # own load (a few hundred MB) is in the slot's way: the load starts once
    # the stream has read past it (the slot confirms to within 1 MiB).
    until [ "$(pg -At -c "SELECT COALESCE(pg_current_wal_lsn() - confirmed_flush_lsn < 1048576, false) FROM pg_replication_slots WHERE slot_name = 'dmp_bench'")" = t ]; do
        kill -0 "$DMP_PID" 2>/dev/null || { cat "$WORK/dmp.log" >&2; exit 1; }
        sleep 0.5
    done
    # The time process is the child: signal dmp itself.
    DMP_REAL=$(pgrep -P "$DMP_PID" -x dmp || echo "$DMP_PID")
    args=(-n -f "$WORK/update.sql" -c "$CLIENTS" -j 2 -T "$DURATION")
    [ "$rate" != max ] && args+=(-R "$rate")
    echo "rate $rate: pgbench for ${DURATION}s…"
    # The private server runs with synchronous_commit=off (WAL flushed every
    # 200 ms, which would delay every change that long); sources in
    # production commit synchronously, so the load does.
    PGOPTIONS='-c synchronous_commit=on' "$BIN/pgbench" "${args[@]}" -h 127.0.0.1 -p "$DMP_TEST_PG_PORT" -U postgres src > "$WORK/pgbench.out" 2>&1
    tps=$(grep -oP 'tps = \K[0-9.]+' "$WORK/pgbench.out" | head -1)
    # Let the stream drain, then stop it (SIGINT: it stops between transactions).
    deadline=$((SECONDS + 60))
    digest="SELECT md5(string_agg(md5(a::text), '' ORDER BY id)) FROM (SELECT id, n, balance, filler, at FROM accounts) a"
    want=$(pg -d src -At -c "$digest")
    until [ "$(pg -d dst -At -c "$digest")" = "$want" ]; do
        [ $SECONDS -lt $deadline ] || { echo "rate $rate: the target did not catch up" >&2; exit 1; }
        sleep 1
    done
    kill -INT "$DMP_REAL"
    wait "$DMP_PID" || true
    DMP_PID=
    read -r p50 p99 max changes < <(python3 -c '
import json,sys
s=json.load(open(sys.argv[1]))["stream"]
print(s.get("lag_p50_ms"), s.get("lag_p99_ms"), s.get("lag_max_ms"), s["changes"])' "$WORK/summary.json")
    windows=$(grep ' stream changes_per_sec' "$WORK/dmp.log" | grep -oP 'lag_p99_ms=\K[0-9.]+' || true)
    first=$(echo "$windows" | head -1); last=$(echo "$windows" | tail -1)
    echo "    p99 per 10 s window (ms): $(echo $windows)"
    [ -n "${LOGDIR:-}" ] && cp "$WORK/dmp.log" "$LOGDIR/dmp-$rate.log"
    rss=$(( $(cat "$WORK/rss") / 1024 ))
    line=$(printf '%-5s offered, %7.0f changes/s reached: lag p50 %6.1f ms  p99 %6.1f ms  max %7.1f ms  (10 s windows p99: first %s ms, last %s ms)  %s changes  peak RSS %d MiB  target = source' \
        "$rate" "$tps" "$p50" "$p99" "$max" "${first:--}" "${last:--}" "$changes" "$rss")
    echo "  $line"
    LINES+=("$line")
    "$DMP" cdc drop-slot "$WORK/p.toml" > /dev/null
done
echo
echo "CDC PostgreSQL → PostgreSQL, $ROWS-row table, ${DURATION}s of one-update transactions ($CLIENTS pgbench clients)"
for line in "${LINES[@]}"; do echo "  $line"; done
