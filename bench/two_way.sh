#!/usr/bin/env bash
# Two-way sync benchmark of issue 18: PostgreSQL (side A) ↔ MariaDB (side
# B), on private servers started by dmp-test-servers.
#
# ROWS accounts on A are loaded into B (`[sync] initial = "a_to_b"`), then
# for DURATION seconds, while `dmp run` syncs both ways:
#   - pgbench on A offers RATE transactions/s, each one UPDATE of an even id;
#   - CLIENTS sessions on B together offer about RATE/s, each one UPDATE of
#     an odd id (paced with sleeps; the rate reached is measured);
#   - one update in twenty on each side goes to the HOT even ids 2..2*HOT,
#     which both sides write: conflicts, settled as CONFLICT says (a_wins,
#     or last_writer_wins by the accounts' update count n) and logged;
#   - a probe each way every 20 ms: a row holding when it was written, and
#     a trigger on the other side holding when DMP's apply wrote it there
#     (the same machine's clock on both sides).
# Reports each direction's lag p50/p99/max from the probes, the p99 of the
# first and last 10 s (growth over the run), the rates reached and DMP's
# peak RSS, the conflicts settled per second, and checks that both sides
# hold the same accounts.
#
#   ROWS=100000 DURATION=60 RATE=2000 CONFLICT=a_wins bench/two_way.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-100000}
DURATION=${DURATION:-60}
RATE=${RATE:-2000}
CLIENTS=${CLIENTS:-4}
HOT=${HOT:-100}
CONFLICT=${CONFLICT:-a_wins}
case "$CONFLICT" in
    a_wins|b_wins) conflict_lines="conflict = \"$CONFLICT\"" ;;
    last_writer_wins) conflict_lines=$'conflict = "last_writer_wins"\nconflict_column = "n"\n[sync.tables.probe]\nconflict = "a_wins"' ;;
    *) echo "CONFLICT=$CONFLICT: a_wins, b_wins or last_writer_wins" >&2; exit 2 ;;
esac

SERVERS="postgres mariadb"
# shellcheck source=bench/servers.sh
source bench/servers.sh
pg_url() { echo "postgres://postgres@127.0.0.1:$DMP_TEST_PG_PORT/$1"; }
my_url() { echo "mysql://root@127.0.0.1:$DMP_TEST_MARIADB_PORT/$1"; }

echo "creating $ROWS accounts on side A…"
pg -c "CREATE DATABASE side_a"
pg -d side_a -c "CREATE TABLE accounts (id bigint PRIMARY KEY, n integer NOT NULL, balance bigint NOT NULL, filler text NOT NULL)" \
    -c "INSERT INTO accounts SELECT g, 0, 0, repeat('x', 60) FROM generate_series(1, $ROWS) g" \
    -c "CREATE TABLE probe (id bigint PRIMARY KEY, dir text NOT NULL, sent timestamptz NOT NULL, arrived timestamptz)" \
    -c "ALTER TABLE accounts REPLICA IDENTITY FULL" -c "ALTER TABLE probe REPLICA IDENTITY FULL" \
    -c "VACUUM ANALYZE accounts"
# When a probe from B reaches A; ALWAYS: DMP applies as a replica.
pg -d side_a -c "CREATE FUNCTION arrived() RETURNS trigger LANGUAGE plpgsql AS \$\$
    BEGIN IF NEW.dir = 'b_to_a' THEN NEW.arrived := clock_timestamp(); END IF; RETURN NEW; END \$\$" \
    -c "CREATE TRIGGER arrived BEFORE INSERT ON probe FOR EACH ROW EXECUTE FUNCTION arrived()" \
    -c "ALTER TABLE probe ENABLE ALWAYS TRIGGER arrived"
my -e "CREATE DATABASE side_b"

cat > "$WORK/p.toml" <<TOML
[pipeline]
name = "bench_two_way"
[source]
url = "$(pg_url side_a)"
[target]
url = "$(my_url side_b)"
[run]
mode = "bidirectional"
state = "$WORK/state.db"
[cdc]
slot = "dmp_bench_two_way"
heartbeat = "1s"
[sync]
initial = "a_to_b"
$conflict_lines
TOML
/usr/bin/time -f %M -o "$WORK/rss" env RUST_LOG="${DMP_LOG:-info}" "$DMP" run "$WORK/p.toml" --json > "$WORK/summary.json" 2> "$WORK/dmp.log" &
DMP_PID=$!
trap 'kill "$DMP_PID" 2>/dev/null || true; kill "$SERVERS_PID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo "first load into side B…"
until [ "$(my -N -e "SELECT count(*) FROM side_b.accounts" 2>/dev/null || echo 0)" = "$ROWS" ] \
    && grep -q 'leg{leg="b_to_a"}.*streaming changes' "$WORK/dmp.log"; do
    kill -0 "$DMP_PID" 2>/dev/null || { cat "$WORK/dmp.log" >&2; exit 1; }
    sleep 0.5
done
# When a probe from A reaches B (DMP's sessions write UTC).
my side_b -e "CREATE TRIGGER arrived BEFORE INSERT ON probe FOR EACH ROW
    SET NEW.arrived = IF(NEW.dir = 'a_to_b', NOW(6), NEW.arrived)"
sleep 2

cat > "$WORK/update_a.sql" <<SQL
\set id 2 * random(1, $ROWS / 2)
\set delta random(-5000, 5000)
UPDATE accounts SET n = n + 1, balance = balance + :delta WHERE id = :id;
SQL
# One update in twenty on each side goes to a hot set both sides write
# (the even ids 2 to 2 * HOT): conflicts, settled by CONFLICT.
cat > "$WORK/update_a_hot.sql" <<SQL
\set id 2 * random(1, $HOT)
\set delta random(-5000, 5000)
UPDATE accounts SET n = n + 1, balance = balance + :delta WHERE id = :id;
SQL
python3 - "$WORK" "$ROWS" "$DURATION" "$RATE" "$CLIENTS" "$HOT" <<'PY'
import random, sys
work, rows, duration, rate, clients, hot = sys.argv[1], *map(int, sys.argv[2:])
per = rate // clients
# Ten updates, then a sleep: about `per` a second when an update takes
# ~0.8 ms (this 2-core machine under the whole load).
pause = max(0.0, 10 / per - 0.008)
for c in range(clients):
    rnd = random.Random(c)
    with open(f"{work}/update_b_{c}.sql", "w") as f:
        f.write("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED;\n")
        for i in range(per * duration):
            key = 2 * rnd.randint(1, hot) if i % 20 == 0 else 2 * rnd.randint(0, rows // 2 - 1) + 1
            f.write(f"UPDATE accounts SET n = n + 1, balance = balance + {rnd.randint(-5000, 5000)} "
                    f"WHERE id = {key};\n")
            if i % 10 == 9:
                f.write(f"DO SLEEP({pause:.4f});\n")
probes = duration * 50
with open(f"{work}/probe_a.sql", "w") as f:
    for i in range(probes):
        f.write(f"INSERT INTO probe VALUES ({2 * i}, 'a_to_b', clock_timestamp(), NULL); SELECT pg_sleep(0.02);\n")
with open(f"{work}/probe_b.sql", "w") as f:
    f.write("SET time_zone = '+00:00';\n")
    for i in range(probes):
        f.write(f"INSERT INTO probe (id, dir, sent) VALUES ({2 * i + 1}, 'b_to_a', NOW(6)); DO SLEEP(0.02);\n")
PY

echo "offering $RATE changes/s on each side for ${DURATION}s…"
started=$(date +%s.%N)
PGOPTIONS='-c synchronous_commit=on' pgbench -n -f "$WORK/update_a.sql@19" -f "$WORK/update_a_hot.sql@1" -c 4 -j 2 -R "$RATE" -T "$DURATION" \
    -h 127.0.0.1 -p "$DMP_TEST_PG_PORT" -U postgres side_a > "$WORK/pgbench.out" 2>&1 &
PGBENCH=$!
pids=()
for ((c = 0; c < CLIENTS; c++)); do
    my side_b < "$WORK/update_b_$c.sql" & pids+=($!)
done
# Commits flushed at once, as in production (the private server's default
# is synchronous_commit=off: WAL flushed every 200 ms).
PGOPTIONS='-c synchronous_commit=on' pg -d side_a -o /dev/null -f "$WORK/probe_a.sql" & pids+=($!)
my side_b < "$WORK/probe_b.sql" > /dev/null & pids+=($!)
wait "$PGBENCH"
for pid in "${pids[@]}"; do wait "$pid"; done
b_secs=$(echo "$(date +%s.%N) - $started" | bc)
tps_a=$(grep -oP 'tps = \K[0-9.]+' "$WORK/pgbench.out" | head -1)

echo "waiting for both sides to hold the same accounts…"
digest_a() { pg -d side_a -At -c "SELECT count(*) || ':' || sum(n) || ':' || sum(balance) FROM accounts"; }
digest_b() { my -N side_b -e "SELECT CONCAT(count(*), ':', sum(n), ':', sum(balance)) FROM accounts"; }
deadline=$((SECONDS + 120))
until [ "$(digest_a)" = "$(digest_b)" ]; do
    [ $SECONDS -lt $deadline ] || {
        echo "the sides did not converge: A $(digest_a), B $(digest_b)" >&2
        if [ -n "${LOGDIR:-}" ]; then mkdir -p "$LOGDIR" && cp "$WORK/dmp.log" "$LOGDIR"/; fi
        exit 1
    }
    sleep 1
done
updates_b=$(( $(my -N side_b -e "SELECT sum(n) FROM accounts WHERE id % 2 = 1") ))
conflicts=$(( $(pg -d side_a -At -c "SELECT count(*) FROM _dmp_conflicts") + $(my -N side_b -e "SELECT count(*) FROM _dmp_conflicts") ))
DMP_REAL=$(pgrep -P "$DMP_PID" -x dmp || echo "$DMP_PID")
kill -INT "$DMP_REAL"
wait "$DMP_PID" || true

pg -d side_a -At -F ' ' -c "SELECT extract(epoch FROM sent) * 1e6, extract(epoch FROM arrived - sent) * 1e6
    FROM probe WHERE dir = 'b_to_a' AND arrived IS NOT NULL ORDER BY sent" > "$WORK/lag_b_to_a"
my -N side_b -e "SET time_zone = '+00:00'; SELECT UNIX_TIMESTAMP(sent) * 1e6, TIMESTAMPDIFF(MICROSECOND, sent, arrived)
    FROM probe WHERE dir = 'a_to_b' AND arrived IS NOT NULL ORDER BY sent" > "$WORK/lag_a_to_b"
if [ -n "${LOGDIR:-}" ]; then mkdir -p "$LOGDIR" && cp "$WORK/dmp.log" "$WORK/summary.json" "$LOGDIR"/; fi
python3 - "$WORK" "$tps_a" "$updates_b" "$b_secs" "$(( $(cat "$WORK/rss") / 1024 ))" "$conflicts" <<'PY'
import sys
work, tps_a, updates_b, b_secs, rss, conflicts = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], int(sys.argv[6])
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
print(f"\nPostgreSQL ↔ MariaDB, changes offered on each side, both sides equal at the end; dmp peak RSS {rss} MiB")
print(f"  side A (pgbench): {tps_a:.0f} changes/s reached; side B: {updates_b / b_secs:.0f} changes/s reached on its own keys")
print(f"  conflicts settled (hot keys written on both sides): {conflicts} in all, {conflicts / b_secs:.1f}/s")
for leg in ("a_to_b", "b_to_a"):
    pts = [tuple(map(float, l.split())) for l in open(f"{work}/lag_{leg}") if l.strip()]
    lags = [lag / 1000 for _, lag in pts]
    t0, t1 = (pts[0][0], pts[-1][0]) if pts else (0, 0)
    first = [lag / 1000 for t, lag in pts if t < t0 + 10e6]
    last = [lag / 1000 for t, lag in pts if t > t1 - 10e6]
    print(f"  {leg.replace('_', ' ')}: {len(lags)} probes, lag p50 {pct(lags, .5):.1f} ms  p99 {pct(lags, .99):.1f} ms  "
          f"max {max(lags, default=float('nan')):.1f} ms  (p99 first 10 s {pct(first, .99):.1f} ms, last 10 s {pct(last, .99):.1f} ms)")
PY
