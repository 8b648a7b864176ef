# The two commands of the README: `make demo` (the main job, no server
# needed) and `make test` (the whole suite; CI runs it through .ci/run).

CARGO ?= cargo
export CARGO_BUILD_JOBS ?= 2

.PHONY: demo test lint bench

demo:
	$(CARGO) run --release --bin dmp -- demo

test:
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

bench:
	$(CARGO) bench --bench sqlite_to_sqlite
