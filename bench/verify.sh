#!/usr/bin/env bash
# Verify benchmark of issue 6: `dmp verify` against reladiff (the maintained
# fork of datafold's data-diff, installed from PyPI into a virtualenv here),
# on one table of ROWS rows held by a private PostgreSQL 15 and a private
# MariaDB 10.11 (dmp-test-servers; no server of the machine is used).
#
# The MariaDB copy is made by `dmp run`. Then, ROUNDS times interleaved
# (medians reported):
#   equal    both tools on the equal tables;
#   planted  both tools after 10 planted differences in MariaDB (3 changed
#            values, 2 NULL vs empty text, 2 deleted rows, 3 extra rows),
#            with the number of differing keys each found.
# Both tools use 2 threads/connections per database (reladiff -j 2; dmp's
# parallelism), and compare the same columns. reladiff runs with
# --skip-sort-results: without it, 0.6.0 stops with "'<' not supported
# between instances of 'NoneType' and 'str'" when a differing row holds a
# NULL, having printed only some of the differences.
#
#   ROWS=1000000 ROUNDS=3 bench/verify.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-3}
VENV=${VENV:-target/bench-venv}

if [ ! -x "$VENV/bin/reladiff" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "reladiff[postgresql,mysql]==0.6.0"
fi
RELADIFF=$PWD/$VENV/bin/reladiff

# shellcheck source=bench/servers.sh
source bench/servers.sh
PG_URL="postgres://postgres@127.0.0.1:$DMP_TEST_PG_PORT/src"
MY_URL="mysql://root@127.0.0.1:$DMP_TEST_MARIADB_PORT/dst"

echo "creating $ROWS rows in PostgreSQL…"
pg -c "CREATE DATABASE src"
pg -d src -c "CREATE TABLE t (id bigint PRIMARY KEY, n integer NOT NULL, label text NOT NULL,
  price numeric(12,2), at timestamp NOT NULL, note text, score double precision)" \
  -c "INSERT INTO t SELECT g, g % 100000, 'label ' || g, (g % 1000000) / 100.0,
  '2024-01-01 00:00:00'::timestamp + g * interval '1.5 second',
  CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || md5(g::text) END, g / 7.0
  FROM generate_series(1, $ROWS) g" -c "VACUUM ANALYZE t"
echo "copying them to MariaDB with dmp run…"
my -e "CREATE DATABASE dst"
printf '[source]\nurl = "%s"\n[target]\nurl = "%s"\n[run]\nparallelism = 2\n' "$PG_URL" "$MY_URL" > "$WORK/p.toml"
"$DMP" run "$WORK/p.toml" > /dev/null 2>&1
my dst -e "ANALYZE TABLE t" > /dev/null

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# dmp verify: seconds, then the number of differing rows it named.
run_dmp() {
    local start end
    start=$(now)
    "$DMP" verify "$WORK/p.toml" --json --max-listed 1000 > "$WORK/dmp.json" 2> "$WORK/dmp.log" || true
    end=$(now)
    echo "$(elapsed "$start" "$end") $(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["tables"][0]
print(t["missing_in_target"] + t["extra_in_target"] + t["differing_rows"])' "$WORK/dmp.json")"
}

# reladiff: seconds, then the number of distinct keys in its diff.
run_reladiff() {
    local start end
    start=$(now)
    "$RELADIFF" "postgresql://postgres@127.0.0.1:$DMP_TEST_PG_PORT/src" t \
        "mysql://root@127.0.0.1:$DMP_TEST_MARIADB_PORT/dst" t \
        -k id -c n -c label -c price -c at -c note -c score -j 2 --skip-sort-results \
        > "$WORK/reladiff.out" 2> "$WORK/reladiff.log" || true
    end=$(now)
    echo "$(elapsed "$start" "$end") $(grep -E '^[-+] ' "$WORK/reladiff.out" | sed -E 's/^[-+] ([^,]*),.*/\1/' | sort -u | wc -l)"
}

declare -a DMP_EQ REL_EQ DMP_DIFF REL_DIFF
for round in $(seq 1 "$ROUNDS"); do
    read -r t found < <(run_dmp);      DMP_EQ+=("$t");  echo "round $round equal:   dmp verify $t s, $found differing rows"
    read -r t found < <(run_reladiff); REL_EQ+=("$t");  echo "round $round equal:   reladiff   $t s, $found differing keys"
done

echo "planting 10 differences in MariaDB…"
my dst -e "UPDATE t SET price = price + 1 WHERE id = 11;
  UPDATE t SET label = 'changed' WHERE id = 222222;
  UPDATE t SET score = score * 2 WHERE id = 333333;
  UPDATE t SET note = '' WHERE id IN (3, 999999);
  DELETE FROM t WHERE id IN (444444, 555555);
  INSERT INTO t VALUES ($ROWS + 1, 1, 'extra', 1.00, '2030-01-01', NULL, 0.5),
    ($ROWS + 2, 2, 'extra', 2.00, '2030-01-01', 'x', 0.25), ($ROWS + 3, 3, 'extra', NULL, '2030-01-01', NULL, NULL);"

for round in $(seq 1 "$ROUNDS"); do
    read -r t found < <(run_dmp);      DMP_DIFF+=("$t"); echo "round $round planted: dmp verify $t s, $found differing rows"
    read -r t found < <(run_reladiff); REL_DIFF+=("$t"); echo "round $round planted: reladiff   $t s, $found differing keys"
done
python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["tables"][0]
for d in t["differences"]:
    print("  dmp:", d["kind"], d["key"]["id"], ", ".join(c["column"] for c in d.get("columns", [])))' "$WORK/dmp.json"
sed 's/^/  reladiff: /' "$WORK/reladiff.out"

dmp_eq=$(printf '%s\n' "${DMP_EQ[@]}" | median)
rel_eq=$(printf '%s\n' "${REL_EQ[@]}" | median)
dmp_diff=$(printf '%s\n' "${DMP_DIFF[@]}" | median)
rel_diff=$(printf '%s\n' "${REL_DIFF[@]}" | median)
echo
echo "ROWS=$ROWS, medians of $ROUNDS rounds (lower is better)"
printf 'equal tables:    dmp verify %6.2f s   reladiff %6.2f s   dmp/reladiff %.2f\n' "$dmp_eq" "$rel_eq" "$(echo "$dmp_eq / $rel_eq" | bc -l)"
printf '10 differences:  dmp verify %6.2f s   reladiff %6.2f s   dmp/reladiff %.2f\n' "$dmp_diff" "$rel_diff" "$(echo "$dmp_diff / $rel_diff" | bc -l)"
