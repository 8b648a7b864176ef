#!/usr/bin/env bash
# Control-plane benchmark of `dmp serve`, on a private PostgreSQL 15 started
# by dmp-test-servers (no server of the machine is used). One service, one
# run of this script, three parts:
#
#   1. full load through the API: a ROWS-row table PostgreSQL → PostgreSQL
#      (pg_full.sh's table) started with POST …/start {"restart": true} and
#      timed until its event stream (GET …/events) says the new run is done,
#      vs `dmp run --restart` of the same pipeline file, ROUNDS interleaved
#      rounds (the order alternates), the target database dropped and
#      recreated before every run. Medians of the wall times (api/cli goal
#      ≤ 1.05) and of the runs' own times (GET …/runs finished_at −
#      started_at; the CLI's --json elapsed).
#   2. 50 pipelines in the service: the one of part 1, SMALL small full
#      loads that finished (one table of SMALL_ROWS rows each) and STREAMS
#      full+cdc pipelines streaming (PostgreSQL → PostgreSQL, one source
#      database, table and replication slot each; no change load yet).
#      REQUESTS sequential requests each of GET /api/v1/pipelines (the
#      overview's data; goal < 100 ms), GET / (the dashboard page), GET
#      /metrics (goal < 50 ms) and GET /healthz (the floor): curl's
#      time_starttransfer, median and p99.
#   3. events to SSE_CLIENTS clients: pgbench runs one-update-by-primary-key
#      transactions on the streams' sources, RATE changes/s in all (RATE /
#      STREAMS each, synchronously committed, as cdc_pg.sh); after WARMUP
#      seconds the streams' lag is measured in periods of PERIOD seconds
#      with no event client and with SSE_CLIENTS `curl -N …/events` spread
#      over the streaming pipelines, alternating, CYCLES of each (a drift
#      of the machine's load then weighs on both alike); side by side:
#        - the engine's own per-transaction lag (source commit → target
#          commit), from the 10 s `stream … lag_p99_ms` reports in the
#          service log that lie within the period (median and largest of
#          the windows' p99 over all streams);
#        - each streaming pipeline's GET …/status lag.ms (the last applied
#          transaction's) sampled every 100 ms, pooled p50/p99/max;
#        - the p99 of the service's dmp_lag_seconds histogram over the
#          period (it samples lag.ms once a second; a bucket's upper bound);
#      and the changes applied, the service's CPU and the status requests'
#      p99. The targets are checked equal to the sources at the end.
#
# Part 2 starts the first pipeline into each target database alone: first
# runs into one database at once race to create _dmp_checkpoints.
#
#   ROWS=1000000 ROUNDS=3 RATE=2000 PERIOD=30 CYCLES=2 bench/serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-3}
PARALLELISM=${PARALLELISM:-$(nproc)}   # dmp's default: one chunk per core
STREAMS=${STREAMS:-10}
SMALL=${SMALL:-$((50 - 1 - STREAMS))}
SMALL_ROWS=${SMALL_ROWS:-1000}
STREAM_ROWS=${STREAM_ROWS:-10000}
REQUESTS=${REQUESTS:-200}
RATE=${RATE:-2000}
WARMUP=${WARMUP:-10}
PERIOD=${PERIOD:-30}
SSE_CLIENTS=${SSE_CLIENTS:-20}
CYCLES=${CYCLES:-2}

cargo build --release -q -p dmp -p dmp-test-servers
DMP=$PWD/target/release/dmp
CLIENT="python3 $PWD/bench/serve_client.py"
WORK=$(mktemp -d)
declare -a BACKGROUND=()

cleanup() {
    set +e
    for pid in "${BACKGROUND[@]}"; do kill "$pid" 2>/dev/null; done
    if [ -n "${SERVE_PID:-}" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
        # SIGINT: every pipeline stops at a batch boundary; then it exits.
        kill -INT "$SERVE_PID"
        for _ in $(seq 1 300); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVE_PID" 2>/dev/null
    fi
    [ -n "${LOGDIR:-}" ] && cp "$WORK/serve.log" "$LOGDIR/serve.log" 2>/dev/null
    # The private server goes with its slots and databases.
    [ -n "${SERVERS_PID:-}" ] && kill "$SERVERS_PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

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
recreate() { PGOPTIONS='-c client_min_messages=warning' pg -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1"; }

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# Nearest-rank percentile $1 of the numbers on stdin.
pct() { sort -g | awk -v q="$1" '{a[NR]=$1} END {r=int((NR*q+99)/100); if (r<1) r=1; print a[r]}'; }
die() { echo "$*" >&2; echo "--- service log (tail) ---" >&2; tail -30 "$WORK/serve.log" >&2; exit 1; }

# The service, with an admin token.
HOME_DIR=$WORK/home
TOKEN=$("$DMP" token create --home "$HOME_DIR" --role admin --name bench)
RUST_LOG="${DMP_LOG:-info}" "$DMP" serve --home "$HOME_DIR" --listen 127.0.0.1:0 > "$WORK/serve.out" 2> "$WORK/serve.log" &
SERVE_PID=$!
until grep -q '^listening on ' "$WORK/serve.out" 2>/dev/null; do
    kill -0 "$SERVE_PID" 2>/dev/null || die "dmp serve did not start"
    sleep 0.1
done
BASE=$(sed -n 's/^listening on //p' "$WORK/serve.out" | head -1)
api() { curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" "$@"; }
create() { api -X POST -H 'Content-Type: application/toml' --data-binary @"$1" "$BASE/api/v1/pipelines" > /dev/null; }
state_of() { api "$BASE/api/v1/pipelines/$1/status" | jq -r .state; }
echo "dmp serve at $BASE"

# ---------------------------------------------------------------- part 1
echo "part 1: creating $ROWS rows…"
TABLE="CREATE TABLE t (id bigint PRIMARY KEY, n integer NOT NULL, label text NOT NULL,
  price numeric(12,2), at timestamptz NOT NULL, note text, doc jsonb, flag boolean NOT NULL, u uuid NOT NULL)"
pg -c "CREATE DATABASE src"
pg -d src -c "$TABLE" -c "INSERT INTO t SELECT g, g % 100000, 'label ' || g, (g % 1000000) / 100.0,
  '2024-01-01 00:00:00+00'::timestamptz + g * interval '1.5 second',
  CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || md5(g::text) END,
  jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 7)), g % 2 = 0,
  overlay(overlay(md5(g::text) placing '4' from 13) placing '8' from 17)::uuid
  FROM generate_series(1, $ROWS) g" -c "VACUUM ANALYZE t" -c CHECKPOINT

# One file for both: the service stores it, `dmp run` reads it.
cat > "$WORK/full.toml" <<TOML
[pipeline]
name = "full_load"
[source]
url = "$(pg_url src)"
[target]
url = "$(pg_url dst)"
[run]
parallelism = $PARALLELISM
TOML
create "$WORK/full.toml"

check_rows() {
    local count
    count=$(pg -d dst -At -c "SELECT count(*) FROM t")
    [ "$count" = "$ROWS" ] || die "$1: the target has $count rows, expected $ROWS"
}
iso_seconds() { date -d "$1" +%s.%N; }

declare -a API_WALL API_OWN CLI_WALL CLI_OWN
run_api() {
    recreate dst
    local out secs state run entry
    out=$($CLIENT start "$BASE" "$TOKEN" full_load) || die "api run: no end seen"
    read -r secs state run <<< "$out"
    [ "$state" = done ] || die "api run: $state"
    entry=$(api "$BASE/api/v1/pipelines/full_load/runs?limit=1" | jq -c '.[0]')
    [ "$(jq -r .run <<< "$entry")" = "$run" ] || die "api run $run is not the last in …/runs: $entry"
    API_WALL+=("$secs")
    API_OWN+=("$(elapsed "$(iso_seconds "$(jq -r .started_at <<< "$entry")")" \
        "$(iso_seconds "$(jq -r .finished_at <<< "$entry")")")")
    check_rows "api run"
}
run_cli() {
    recreate dst
    local t0 t1
    t0=$(now)
    "$DMP" run "$WORK/full.toml" --restart --json > "$WORK/summary.json" 2> "$WORK/cli.log" || die "cli run: $(tail -3 "$WORK/cli.log")"
    t1=$(now)
    CLI_WALL+=("$(elapsed "$t0" "$t1")")
    CLI_OWN+=("$(jq -r '.elapsed | if type == "object" then .secs + .nanos / 1e9 else . end' "$WORK/summary.json")")
    check_rows "cli run"
}
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then run_api; run_cli; else run_cli; run_api; fi
    printf 'round %s: api %.2fs (run %.2fs)  cli %.2fs (run %.2fs)\n' "$round" \
        "${API_WALL[-1]}" "${API_OWN[-1]}" "${CLI_WALL[-1]}" "${CLI_OWN[-1]}"
done
api_wall=$(printf '%s\n' "${API_WALL[@]}" | median)
api_own=$(printf '%s\n' "${API_OWN[@]}" | median)
cli_wall=$(printf '%s\n' "${CLI_WALL[@]}" | median)
cli_own=$(printf '%s\n' "${CLI_OWN[@]}" | median)

# ---------------------------------------------------------------- part 2
echo "part 2: $SMALL small full loads, $STREAMS streams…"
pg -c "DROP DATABASE dst WITH (FORCE)" -c "DROP DATABASE src WITH (FORCE)" -c CHECKPOINT
pg -c "CREATE DATABASE small_src" -c "CREATE DATABASE small_dst" -c "CREATE DATABASE stream_dst"
for i in $(seq -w 1 "$SMALL"); do
    echo "CREATE TABLE s$i (id bigint PRIMARY KEY, n integer NOT NULL, label text NOT NULL);
INSERT INTO s$i SELECT g, g, 'row ' || g FROM generate_series(1, $SMALL_ROWS) g;"
done | pg -d small_src
for i in $(seq -w 1 "$SMALL"); do
    cat > "$WORK/small_$i.toml" <<TOML
[pipeline]
name = "small_$i"
[source]
url = "$(pg_url small_src)"
[target]
url = "$(pg_url small_dst)"
[tables]
include = ["s$i"]
TOML
    create "$WORK/small_$i.toml"
done
# Five at a time (each run has its connection pools).
wait_done() {
    local name state deadline=$((SECONDS + 120))
    for name in "$@"; do
        until state=$(state_of "$name"); [ "$state" = done ]; do
            [ $SECONDS -lt $deadline ] || die "$name is $state, not done"
            [ "$state" = failed ] && die "$name failed: $(api "$BASE/api/v1/pipelines/$name/status" | jq -r .error)"
            sleep 0.1
        done
    done
}
# The first alone: concurrent first runs into one target database race to
# create its checkpoint table (_dmp_checkpoints), and all but one fail.
api -X POST "$BASE/api/v1/pipelines/small_$(printf %02d 1)/start" > /dev/null
wait_done "small_$(printf %02d 1)"
batch=()
for i in $(seq -w 2 "$SMALL"); do
    api -X POST "$BASE/api/v1/pipelines/small_$i/start" > /dev/null
    batch+=("small_$i")
    if [ ${#batch[@]} = 5 ]; then wait_done "${batch[@]}"; batch=(); fi
done
[ ${#batch[@]} = 0 ] || wait_done "${batch[@]}"
STREAM_NAMES=()
[ "$(pg -d small_dst -At -c "SELECT count(*) FROM s$SMALL")" = "$SMALL_ROWS" ] || die "small_$SMALL copied wrong"

for i in $(seq -w 1 "$STREAMS"); do
    pg -c "CREATE DATABASE stream_src_$i"
    pg -d "stream_src_$i" -c "CREATE TABLE c$i (id bigint PRIMARY KEY, n integer NOT NULL,
      balance bigint NOT NULL, filler text NOT NULL, at timestamptz NOT NULL)" \
      -c "INSERT INTO c$i SELECT g, 0, 0, repeat('x', 60), now() FROM generate_series(1, $STREAM_ROWS) g" \
      -c "VACUUM ANALYZE c$i"
    cat > "$WORK/stream_$i.toml" <<TOML
[pipeline]
name = "stream_$i"
[source]
url = "$(pg_url "stream_src_$i")"
[target]
url = "$(pg_url stream_dst)"
[run]
mode = "full+cdc"
[cdc]
slot = "bench_stream_$i"
heartbeat = "1s"
TOML
    create "$WORK/stream_$i.toml"
    STREAM_NAMES+=("stream_$i")
    cat > "$WORK/update_$i.sql" <<SQL
\set id random(1, $STREAM_ROWS)
\set delta random(-5000, 5000)
UPDATE c$i SET n = n + 1, balance = balance + :delta, at = clock_timestamp() WHERE id = :id;
SQL
done
wait_streaming() {
    local name state
    for name in "$@"; do
        until state=$(state_of "$name"); [ "$state" = streaming ]; do
            [ $SECONDS -lt $deadline ] || die "$name is $state, not streaming: $(api "$BASE/api/v1/pipelines/$name/status" | jq -r .error)"
            sleep 0.2
        done
    done
}
deadline=$((SECONDS + 180))
# The first alone again (one target database), then the others at once.
api -X POST "$BASE/api/v1/pipelines/${STREAM_NAMES[0]}/start" > /dev/null
wait_streaming "${STREAM_NAMES[0]}"
for name in "${STREAM_NAMES[@]:1}"; do api -X POST "$BASE/api/v1/pipelines/$name/start" > /dev/null; done
wait_streaming "${STREAM_NAMES[@]}"
# As cdc_pg.sh: the load starts once every slot has read past the WAL of
# the snapshots' own writes (confirmed to within 1 MiB).
until [ "$(pg -At -c "SELECT bool_and(COALESCE(pg_current_wal_lsn() - confirmed_flush_lsn < 1048576, false)) FROM pg_replication_slots WHERE slot_name LIKE 'bench_stream_%'")" = t ]; do
    [ $SECONDS -lt $deadline ] || die "the slots did not catch up"
    sleep 0.5
done

overview=$(api "$BASE/api/v1/pipelines")
total=$(jq length <<< "$overview")
states=$(jq -r '[group_by(.state)[] | "\(length) \(.[0].state)"] | join(", ")' <<< "$overview")
echo "  the service holds $total pipelines: $states"
sessions=$(pg -At -F ' ' -c "SELECT count(*) FILTER (WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()),
  count(*) FILTER (WHERE backend_type = 'walsender') FROM pg_stat_activity")
echo "  PostgreSQL sessions open: ${sessions% *} client, ${sessions#* } walsender"

# REQUESTS GETs of $1: "median p99" of time_starttransfer in ms.
declare -A MEDIAN P99 WINDOWS
timing() {
    local path=$1 key=$2 out=$WORK/timing_$2
    for _ in $(seq 1 "$REQUESTS"); do
        curl -sS -o /dev/null -H "Authorization: Bearer $TOKEN" \
            -w '%{http_code} %{time_starttransfer}\n' "$BASE$path"
    done > "$out"
    grep -qv '^200 ' "$out" && die "GET $path: $(grep -v '^200 ' "$out" | head -1)"
    MEDIAN[$key]=$(awk '{print $2 * 1000}' "$out" | median)
    P99[$key]=$(awk '{print $2 * 1000}' "$out" | pct 99)
    printf '  GET %-18s median %7.2f ms  p99 %7.2f ms  (%s requests, %s bytes)\n' "$path" \
        "${MEDIAN[$key]}" "${P99[$key]}" "$REQUESTS" "$(curl -s -H "Authorization: Bearer $TOKEN" "$BASE$path" | wc -c)"
}
timing /api/v1/pipelines overview
timing / dashboard
timing /metrics metrics
timing /healthz healthz

# ---------------------------------------------------------------- part 3
per_stream=$((RATE / STREAMS))
echo "part 3: $per_stream changes/s on each of $STREAMS streams' sources ($((per_stream * STREAMS)) in all)…"
load_for=$((WARMUP + CYCLES * (2 * PERIOD + 3) + 5))
for i in $(seq -w 1 "$STREAMS"); do
    PGOPTIONS='-c synchronous_commit=on' "$BIN/pgbench" -n -f "$WORK/update_$i.sql" -c 1 -j 1 \
        -R "$per_stream" -T "$load_for" -h 127.0.0.1 -p "$DMP_TEST_PG_PORT" -U postgres \
        "stream_src_$i" > "$WORK/pgbench_$i.out" 2>&1 &
    BACKGROUND+=($!)
    PGBENCH+=($!)
done
sleep "$WARMUP"
# Periods without and with event clients alternate (CYCLES times each), so
# that a drift of the machine's load weighs on both alike.
declare -A TICKS_USED SECS BOUNDS
TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVE_PID/stat"; }
period() {  # kind, cycle
    local t0 t1 c0 c1
    t0=$(now); c0=$(cpu_ticks)
    $CLIENT lag "$BASE" "$TOKEN" "$PERIOD" 0.1 "$WORK/lag_$1_$2.json" "${STREAM_NAMES[@]}" || die "lag sampling failed"
    t1=$(now); c1=$(cpu_ticks)
    TICKS_USED[$1]=$(( ${TICKS_USED[$1]:-0} + c1 - c0 ))
    SECS[$1]=$(echo "${SECS[$1]:-0} + $t1 - $t0" | bc -l)
    BOUNDS[$1]="${BOUNDS[$1]:-} $t0 $t1"
}
for cycle in $(seq 1 "$CYCLES"); do
    echo "  cycle $cycle: ${PERIOD}s without event clients, ${PERIOD}s with $SSE_CLIENTS…"
    period quiet "$cycle"
    SSE=()
    for k in $(seq 1 "$SSE_CLIENTS"); do
        name=${STREAM_NAMES[$(((k - 1) % STREAMS))]}
        curl -sN -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/pipelines/$name/events" >> "$WORK/sse_$k.out" &
        BACKGROUND+=($!)
        SSE+=($!)
    done
    sleep 1
    period watched "$cycle"
    for pid in "${SSE[@]}"; do kill "$pid" 2>/dev/null || true; done
done
status_events=$(cat "$WORK"/sse_*.out | grep -c '^event: *status' || true)
log_events=$(cat "$WORK"/sse_*.out | grep -c '^event: *log' || true)
for pid in "${PGBENCH[@]}"; do wait "$pid" || die "pgbench failed: $(cat "$WORK"/pgbench_*.out | tail -5)"; done
tps=0
for i in $(seq -w 1 "$STREAMS"); do
    tps=$(echo "$tps + $(grep -oP 'tps = \K[0-9.]+' "$WORK/pgbench_$i.out" | head -1)" | bc -l)
done
# Every target table equals its source once the streams drain.
digest() { echo "SELECT md5(string_agg(md5(c::text), '' ORDER BY id)) FROM (SELECT id, n, balance, filler, at FROM $1) c"; }
deadline=$((SECONDS + 60))
for i in $(seq -w 1 "$STREAMS"); do
    want=$(pg -d "stream_src_$i" -At -c "$(digest "c$i")")
    until [ "$(pg -d stream_dst -At -c "$(digest "c$i")")" = "$want" ]; do
        [ $SECONDS -lt $deadline ] || die "stream_$i: the target did not catch up"
        sleep 1
    done
done
for name in "${STREAM_NAMES[@]}"; do
    [ "$(state_of "$name")" = streaming ] || die "$name is $(state_of "$name") after the load"
done

rss=$(awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$SERVE_PID/status")

f() { jq -r ".$2 // \"-\"" <<< "$1"; }
echo
echo "=== dmp serve benchmark ==="
echo "1. full load, $ROWS rows PostgreSQL → PostgreSQL, parallelism $PARALLELISM, medians of $ROUNDS interleaved rounds"
echo "   (API: POST …/start → the event stream's status with the new run done; run: GET …/runs finished_at − started_at)"
printf '   wall  API %7.2fs   CLI %7.2fs   api/cli %.3f (goal ≤ 1.05)\n' "$api_wall" "$cli_wall" "$(echo "$api_wall / $cli_wall" | bc -l)"
printf '   run   API %7.2fs   CLI %7.2fs   api/cli %.3f (CLI: --json elapsed)\n' "$api_own" "$cli_own" "$(echo "$api_own / $cli_own" | bc -l)"
printf '   rounds (api wall/run, cli wall/run):'
for r in $(seq 0 $((ROUNDS - 1))); do
    printf ' %.2f/%.2f,%.2f/%.2f' "${API_WALL[$r]}" "${API_OWN[$r]}" "${CLI_WALL[$r]}" "${CLI_OWN[$r]}"
done
echo
echo "2. $total pipelines ($states; PostgreSQL sessions: ${sessions% *} client, ${sessions#* } walsender), $REQUESTS requests each, time_starttransfer"
printf '   GET /api/v1/pipelines  median %7.2f ms  p99 %7.2f ms  (goal < 100 ms)\n' "${MEDIAN[overview]}" "${P99[overview]}"
printf '   GET /                  median %7.2f ms  p99 %7.2f ms\n' "${MEDIAN[dashboard]}" "${P99[dashboard]}"
printf '   GET /metrics           median %7.2f ms  p99 %7.2f ms  (goal < 50 ms)\n' "${MEDIAN[metrics]}" "${P99[metrics]}"
printf '   GET /healthz           median %7.2f ms  p99 %7.2f ms  (the floor: no work)\n' "${MEDIAN[healthz]}" "${P99[healthz]}"
echo "3. $STREAMS streams, pgbench $(printf '%.0f' "$tps") changes/s offered in all (${per_stream}/s each), $CYCLES × ${PERIOD}s of each, alternating"
declare -A LAG CPU
for key in quiet watched; do
    # shellcheck disable=SC2086 # the bounds are separate words
    WINDOWS[$key]=$($CLIENT windows "$WORK/serve.log" ${BOUNDS[$key]})
    LAG[$key]=$($CLIENT summary "$WORK"/lag_"$key"_*.json)
    CPU[$key]=$(echo "${TICKS_USED[$key]} * 100 / $TICKS / ${SECS[$key]}" | bc -l)
done
row() {  # label, format, then a jq path into LAG or WINDOWS per period
    local label=$1 format=$2 source=$3 path=$4 q w ratio=-
    if [ "$source" = lag ]; then q=$(f "${LAG[quiet]}" "$path"); w=$(f "${LAG[watched]}" "$path")
    elif [ "$source" = cpu ]; then q=${CPU[quiet]}; w=${CPU[watched]}
    else q=$(f "${WINDOWS[quiet]}" "$path"); w=$(f "${WINDOWS[watched]}" "$path"); fi
    if [ "$q" != - ] && [ "$w" != - ] && [ "$(echo "$q > 0" | bc -l)" = 1 ]; then
        ratio=$(printf '%.2f' "$(echo "$w / $q" | bc -l)")
    fi
    [ "$q" = - ] || q=$(printf "$format" "$q")
    [ "$w" = - ] || w=$(printf "$format" "$w")
    printf '   %-52s %12s %12s %7s\n' "$label" "$q" "$w" "$ratio"
}
printf '   %-52s %12s %12s %7s\n' "" "no clients" "$SSE_CLIENTS clients" "ratio"
row "lag p99 ms, engine per txn, 10 s windows: median" %.1f windows p99_median_ms
row "lag p99 ms, engine per txn, 10 s windows: largest" %.1f windows p99_max_ms
row "lag p50 ms, engine per txn, 10 s windows: median" %.1f windows p50_median_ms
row "lag max ms, engine per txn" %.1f windows max_ms
row "lag p99 ms, status lag.ms every 100 ms (pooled)" %.0f lag p99_ms
row "lag p99 ms, status lag.ms, worst pipeline" %.0f lag worst_pipeline_p99_ms
row "lag p50 ms, status lag.ms (pooled)" %.0f lag p50_ms
row "lag p99 ms, dmp_lag_seconds histogram (bucket bound)" %.0f lag hist_p99_ms
row "changes/s applied (dmp_changes_total)" %.0f lag changes_per_s
row "dmp serve CPU, % of one core" %.1f cpu -
row "GET …/status p99 ms (the sampler's own requests)" %.2f lag status_p99_ms
echo "   engine windows used: $(f "${WINDOWS[quiet]}" windows) and $(f "${WINDOWS[watched]}" windows)"
echo "   the event clients got $status_events status and $log_events log events; every target equals its source"
echo "   dmp serve peak RSS $rss MiB"
