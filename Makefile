# The two commands of the README: `make demo` (the main job, no server
# needed) and `make test` (the whole suite; CI runs it through .ci/run).

CARGO ?= cargo
export CARGO_BUILD_JOBS ?= 2

.PHONY: demo test lint bench bench-sql bench-cdc bench-verify bench-clone bench-cluster bench-two-way plugins rust-plugins servers

# Rust plugins build as plain core modules carrying their WIT type; the host
# turns them into components. Without WASI they can import nothing but what
# the host grants.
WASM_TARGET := wasm32-unknown-unknown
PLUGIN_DIR := target/plugins/$(WASM_TARGET)/release

demo: rust-plugins
	$(CARGO) run --release --bin dmp -- demo

test: plugins servers
	$(CARGO) test --workspace

# The SQL tests start private PostgreSQL 15 and MariaDB 10.11 servers
# (tests/servers) from the Debian packages' binaries; install them if
# missing. The packages' own services are not used and must stay stopped:
# where a policy-rc.d denies starting them during the install, that is fine.
PG_BIN := /usr/lib/postgresql/15/bin
APT_INSTALL := apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y

servers:
	command -v mariadbd >/dev/null || test -x /usr/sbin/mariadbd || ($(APT_INSTALL) mariadb-server)
	test -x $(PG_BIN)/initdb || ($(APT_INSTALL) postgresql)
	# The dashboard's browser tests (tests/browser) drive headless Chromium
	# through chromedriver.
	test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || ($(APT_INSTALL) chromium chromium-driver)
	# The NATS connector's tests run a private nats-server with JetStream.
	command -v nats-server >/dev/null || test -x /usr/sbin/nats-server || ($(APT_INSTALL) nats-server)
	# A third-party consumer of the bus, in Python (tests/nats/consumer.py).
	python3 -c 'import nats' 2>/dev/null || pip install nats-py

# The mask_pii plugin again in Python and JavaScript, against the same WIT.
PY_PLUGIN := target/plugins/mask_pii_py.wasm
JS_PLUGIN := target/plugins/mask_pii_js.wasm
# Test-only: identities that rebuild every column, in Python and JavaScript.
PY_REBUILD := target/plugins/rebuild_py.wasm
JS_REBUILD := target/plugins/rebuild_js.wasm

plugins: rust-plugins $(PY_PLUGIN) $(JS_PLUGIN) $(PY_REBUILD) $(JS_REBUILD)

rust-plugins:
	rustup target add $(WASM_TARGET) wasm32-wasip2
	$(CARGO) build --release --target $(WASM_TARGET) --manifest-path plugins/Cargo.toml --target-dir target/plugins
	$(CARGO) build --release --target $(WASM_TARGET) --manifest-path tests/plugins/Cargo.toml --target-dir target/plugins
	# Three builds of `stamp` for the hot-swap test.
	for v in v1 v2 broken; do \
	  STAMP_VERSION=$$v $(CARGO) build --release --target $(WASM_TARGET) --manifest-path tests/plugins/Cargo.toml --target-dir target/plugins -p stamp && \
	  cp $(PLUGIN_DIR)/stamp.wasm $(PLUGIN_DIR)/stamp_$$v.wasm || exit 1; \
	done
	# Plugins built against WASI (they import the filesystem, the CLI world...):
	# the host must refuse them.
	$(CARGO) build --release --target wasm32-wasip2 --manifest-path tests/plugins/Cargo.toml --target-dir target/plugins -p identity -p hostile

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

bench-sql: servers
	bench/pg_full.sh

bench-cdc: servers
	bench/cdc_pg.sh

bench-verify: servers
	bench/verify.sh

bench-clone: servers
	bench/clone.sh

bench-cluster: servers
	bench/cluster.sh

bench-two-way: servers
	bench/two_way.sh

bench: rust-plugins
	$(CARGO) bench --bench sqlite_to_sqlite

# --stub-wasi: the component imports nothing but the host interface.
PY_BUILD = python3 -m pip install --quiet --disable-pip-version-check componentize-py==0.25.1 && \
	mkdir -p target/plugins && componentize-py -d wit -w plugin componentize --stub-wasi -p

$(PY_PLUGIN): plugins/python/mask_pii/app.py plugins/python/mask_pii/transform.py wit/transform.wit
	$(PY_BUILD) plugins/python/mask_pii app -o $@

$(PY_REBUILD): tests/plugins/python/rebuild/app.py tests/plugins/python/rebuild/transform.py wit/transform.wit
	$(PY_BUILD) tests/plugins/python/rebuild app -o $@

plugins/js/node_modules: plugins/js/package-lock.json
	cd plugins/js && npm ci --no-audit --no-fund
	touch $@

$(JS_PLUGIN): plugins/js/mask_pii/plugin.js plugins/js/build.mjs wit/transform.wit plugins/js/node_modules
	mkdir -p target/plugins && node plugins/js/build.mjs mask_pii $(abspath $@)

$(JS_REBUILD): tests/plugins/js/rebuild/plugin.js plugins/js/build.mjs wit/transform.wit plugins/js/node_modules
	mkdir -p target/plugins && node plugins/js/build.mjs $(abspath tests/plugins/js/rebuild) $(abspath $@)
