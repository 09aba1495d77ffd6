# Orchard's two commands are `make run` and `make test` (see README.md).
# Both run `make setup` first, which installs what is missing and is quick when
# nothing is.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

CARGO ?= cargo
# Run the desktop app where there is a display (always on macOS).
HAS_DISPLAY := $(shell [ "$$(uname -s)" = Darwin ] || [ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ] && echo yes)

.PHONY: run test setup ui lint test-ui test-rust

## setup: install system packages, the MLX runtime, Python tools, UI packages and fixtures
setup:
	@bash scripts/setup.sh

## ui: build the web UI into ui/dist (the desktop app embeds it)
ui: setup
	@cd ui && npm run --silent build

## run: the desktop app with a display; without one, check the installation
run: ui
ifeq ($(HAS_DISPLAY),yes)
	$(CARGO) run --locked -p orchard-desktop
else
	@echo "No display: checking the installation (the headless server, 'orchard serve', comes with the API issue)."
	$(CARGO) run --locked -q --bin orchard -- --version
	$(CARGO) run --locked -q --bin orchard -- doctor
endif

## test: formatting, lints, UI checks and every test
test: lint test-ui test-rust

lint: ui
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

test-ui: ui
	cd ui && npm run --silent check && npm test

# The last line sums every test binary's result, so the log ends with the total.
test-rust: ui
	@mkdir -p artifacts
	$(CARGO) test --workspace --locked --no-fail-fast 2>&1 | tee artifacts/cargo-test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "rust: %d passed, %d failed\n", p, f }' artifacts/cargo-test.log
