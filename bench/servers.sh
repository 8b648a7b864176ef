# Sourced by the benchmark scripts: builds dmp, starts private PostgreSQL
# and MariaDB servers, or those $SERVERS names (dmp-test-servers; no server
# of the machine is used)
# and defines DMP, WORK, pg and my. The servers live as long as the
# coprocess; the EXIT trap stops them and removes WORK.

cargo build --release -q -p dmp -p dmp-test-servers
DMP=$PWD/target/release/dmp
WORK=$(mktemp -d)
trap 'kill "$SERVERS_PID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

coproc SERVERS { exec target/release/dmp-test-servers start ${SERVERS:-postgres mariadb}; }
while IFS= read -r line <&"${SERVERS[0]}"; do
    case "$line" in
        export\ *) eval "$line" ;;
        ready) break ;;
    esac
done
: "${DMP_TEST_PG_PORT:?servers did not start}"

pg() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DMP_TEST_PG_PORT" -U postgres "$@"; }
my() { mariadb -h 127.0.0.1 -P "$DMP_TEST_MARIADB_PORT" -u root "$@"; }
