# Orchard's two commands are `make run` and `make test` (see README.md).
# Both run `make setup` first, which installs what is missing and is quick when
# nothing is.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := run

CARGO ?= cargo
# A CI run builds once from nothing: incremental caches would only take disk.
ifdef CI
export CARGO_INCREMENTAL := 0
endif
# Run the desktop app where there is a display (always on macOS).
HAS_DISPLAY := $(shell [ "$$(uname -s)" = Darwin ] || [ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ] && echo yes)

.PHONY: run test setup ui lint test-ui test-rust test-api test-e2e

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
# Every step runs even when an earlier one fails; scripts/summary.sh then counts
# each one's results (a step that failed without a failed test, e.g. a compile
# error or a lint, counts as one failure), prints "total: N passed, M failed"
# last, and fails the run when anything failed. Each step's output is kept in
# artifacts/steps/.
TEST_STEPS := ui lint test-ui test-rust test-api test-e2e
test:
	@mkdir -p artifacts/steps
	@rm -f artifacts/steps/*.log artifacts/steps/*.status
	@for step in $(TEST_STEPS); do \
		status=0; \
		$(MAKE) --no-print-directory SUITE_DEPS= $$step 2>&1 | tee artifacts/steps/$$step.log || status=$$?; \
		echo $$status > artifacts/steps/$$step.status; \
	done
	@bash scripts/summary.sh artifacts/steps $(TEST_STEPS) | tee artifacts/summary.log

# What each test step needs first. `make test` builds it once, as its first step,
# and runs the steps with SUITE_DEPS empty.
SUITE_DEPS := ui

lint: $(SUITE_DEPS)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

test-ui: $(SUITE_DEPS)
	cd ui && npm run --silent check && npm test

# Every Rust test, every binary even when one fails.
test-rust: $(SUITE_DEPS)
	@mkdir -p artifacts
	$(CARGO) test --workspace --locked --no-fail-fast 2>&1 | tee artifacts/cargo-test.log

# The real `orchard serve` with the official openai and anthropic SDKs,
# schemathesis against docs/openapi.json, and a 2-minute soak.
test-api: $(SUITE_DEPS)
	@mkdir -p artifacts
	$(CARGO) build --locked -q --bin orchard
	cd tests/api && ../../.deps/venv/bin/python -m pytest -q -p no:cacheprovider 2>&1 | tee ../../artifacts/api-test.log

# The Models screens end to end, with tests/e2e/fake-hub.mjs as the Hugging
# Face Hub (serving the real SmolLM2 files): the real `orchard serve` in
# Debian's Chromium (playwright-core), and the real desktop app through
# tauri-driver under Xvfb. Screenshots go to artifacts/screenshots/. The app
# is built as `cargo test --workspace` builds it, so that after test-rust
# nothing is compiled again.
test-e2e: $(SUITE_DEPS)
	@mkdir -p artifacts
	$(CARGO) build --locked -q --bin orchard
	$(CARGO) test --workspace --locked --no-run -q
	cd tests/e2e && timeout 900 node --test --test-concurrency=1 --test-reporter=spec *.test.mjs 2>&1 | tee ../../artifacts/e2e-test.log
