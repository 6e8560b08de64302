# pauditd: `make` builds, `make test` runs every test (kernel tests need root and auditctl).
CARGO ?= cargo
BIN := target/release/pauditd
BENCH_INPUT := target/bench-input.log
# sudo only when not already root (a fresh Debian machine has no sudo, and root needs none).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build test lint goldens bench bench-cpu bench-cpulong fuzz soak run deb miri tsan loom clean

all: build

build:
	$(CARGO) build --release

# Unit, golden, CLI and (as root) kernel tests. Kernel tests serialise themselves.
test:
	$(CARGO) test --workspace --features failpoints

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Regenerate golden outputs; review with `git diff tests/data`.
goldens:
	UPDATE_GOLDENS=1 $(CARGO) test --test golden --test enriched_schema

# Run the daemon with the shipped example config (root: it becomes the audit daemon).
# Events go to /var/log/pauditd/pauditd.log, as in the package (`tail -f` it).
run: build
	$(SUDO) install -d -m 0750 /var/log/pauditd
	$(SUDO) $(BIN) -config examples/pauditd.yaml.example

bench:
	$(CARGO) bench --bench pipeline

# A large replay input built from the corpus (each copy renumbered), for profiling.
$(BENCH_INPUT): scripts/make-bench-input
	scripts/make-bench-input 400 > $@

# Profile `pauditd replay` under perf and write a flamegraph SVG into perf/.
bench-cpu: build $(BENCH_INPUT)
	scripts/profile-replay $(BENCH_INPUT) perf/replay.svg 1

bench-cpulong: build $(BENCH_INPUT)
	scripts/profile-replay $(BENCH_INPUT) perf/replay-long.svg 10

# Re-run every fuzz target briefly over its stored corpus (nightly + cargo-fuzz);
# long runs: scripts/fuzz --seconds 600.
fuzz:
	scripts/fuzz --seconds 30

# The daemon under load with an HTTP sink, sampling RSS, queues and counters (root).
soak: build
	scripts/soak --minutes 10

# The lock-free ring's tests under Miri (nightly + `rustup component add miri rust-src`):
# Stacked Borrows and the data-race detector over the SPSC ring, its grants and handshake.
miri:
	MIRIFLAGS=-Zmiri-disable-isolation $(CARGO) +nightly miri test -p pauditd-engine --lib ring::

# The ring's handshake, close and wrap-around under loom's model checker (stable toolchain):
# every interleaving of the real code; a lost wake-up shows up as a deadlock.
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test --release -p pauditd-engine --lib loom_tests

# The ring and io_uring tests (300,000-entry two-thread stress included) under
# ThreadSanitizer (nightly + rust-src; std rebuilt with the sanitizer).
tsan:
	RUSTFLAGS=-Zsanitizer=thread CARGO_TARGET_DIR=target/tsan $(CARGO) +nightly test \
		-Zbuild-std --target x86_64-unknown-linux-gnu -p pauditd-engine --lib ring::

# The Debian package (needs `cargo install cargo-deb`): target/debian/pauditd_*.deb.
deb:
	$(CARGO) build --release --bins
	target/release/pauditd-docs target/docs
	$(CARGO) deb --no-build --strip

clean:
	$(CARGO) clean
