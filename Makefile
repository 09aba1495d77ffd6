# Orchard's two commands are `make run` and `make test` (see README.md).
# Both run `make setup` first, which installs what is missing and is quick when
# nothing is.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

CARGO ?= cargo
# Run the desktop app where there is a display (always on macOS).
HAS_DISPLAY := $(shell [ "$$(uname -s)" = Darwin ] || [ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ] && echo yes)

.PHONY: run test setup ui lint test-ui test-rust test-api

FIXTURE := .deps/models/SmolLM2-135M-Instruct-4bit

## setup: install system packages, the MLX runtime, Python tools, UI packages and fixtures
setup:
	@bash scripts/setup.sh

## ui: build the web UI into ui/dist (the desktop app embeds it)
ui: setup
	@cd ui && npm run --silent build

## run: the desktop app with a display; without one, the API server with the SmolLM2 fixture
run: ui
ifeq ($(HAS_DISPLAY),yes)
	$(CARGO) run --locked -p orchard-desktop
else
	@echo "No display: starting the API server (orchard serve) with the SmolLM2 fixture. Ctrl-C stops it."
	$(CARGO) run --locked -q --bin orchard -- serve --model $(FIXTURE)
endif

## test: formatting, lints, UI checks and every test; the last line is the total
test: lint test-ui test-rust test-api
	@awk '/^(rust|api): / { p += $$2; f += $$4 } END { printf "total: %d passed, %d failed\n", p, f }' artifacts/summary.log

lint: ui
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

test-ui: ui
	cd ui && npm run --silent check && npm test

# The last line sums every test binary's result, so the log ends with the total.
test-rust: ui
	@mkdir -p artifacts
	$(CARGO) test --workspace --locked --no-fail-fast 2>&1 | tee artifacts/cargo-test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "rust: %d passed, %d failed\n", p, f }' artifacts/cargo-test.log | tee artifacts/summary.log

# The real `orchard serve` with the official openai and anthropic SDKs,
# schemathesis against docs/openapi.json, and a 2-minute soak.
test-api: ui
	@mkdir -p artifacts
	$(CARGO) build --locked -q --bin orchard
	cd tests/api && ../../.deps/venv/bin/python -m pytest -q -p no:cacheprovider 2>&1 | tee ../../artifacts/api-test.log
	@tail -n 1 artifacts/api-test.log | awk '{ for (i = 2; i <= NF; i++) { if ($$i ~ /^passed/) p = $$(i-1); if ($$i ~ /^failed/) f = $$(i-1) } } END { printf "api: %d passed, %d failed\n", p, f }' | tee -a artifacts/summary.log
