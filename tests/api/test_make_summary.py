"""`make test` runs every step even when one fails, ends with
"total: N passed, M failed" and fails when anything failed.

The real Makefile runs here with each step's recipe replaced by one that prints
what the real tool prints (cargo test, vitest, pytest) and exits as it would,
so no real suite runs. scripts/summary.sh is also fed logs of failures that
show no failed test: a compile error, a crashed test binary, a broken fixture.
"""

import pathlib
import shutil
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Later recipes replace the real ones (make warns, and uses the last).
FAKE_STEPS = """
setup:
\t@true
ui:
\t@echo "built the UI"
lint:
\t@echo "{lint_output}"; exit {lint_status}
test-ui:
\t@printf '\\033[2m      Tests \\033[22m \\033[1m\\033[32m2 passed\\033[39m\\033[22m\\033[90m (2)\\033[39m\\n'
test-rust:
\t@echo "test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s"
\t@echo "test result: {rust_result}"; exit {rust_status}
test-api:
\t@echo "5 passed, 1 skipped in 1.20s"
test-e2e:
\t@printf '\\xe2\\x84\\xb9 tests 4\\n\\xe2\\x84\\xb9 pass 3\\n\\xe2\\x84\\xb9 fail 0\\n\\xe2\\x84\\xb9 cancelled 0\\n\\xe2\\x84\\xb9 skipped 1\\n'
"""


def run_make_test(tmp_path, **fake):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    with open(tmp_path / "Makefile", "a") as makefile:
        makefile.write(FAKE_STEPS.format(**fake))
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "summary.sh", tmp_path / "scripts" / "summary.sh")
    return subprocess.run(
        ["make", "--no-print-directory", "test"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_failing_rust_test_and_lint_still_run_every_step_and_fail_the_run(tmp_path):
    done = run_make_test(
        tmp_path,
        lint_output="error: this lint says no",
        lint_status=1,
        rust_result="FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        rust_status=101,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode != 0, done.stdout + done.stderr
    assert lines[-1] == "total: 17 passed, 2 failed", done.stdout + done.stderr
    # The API tests ran after the failing Rust test.
    assert "test-api: 5 passed, 0 failed" in lines, done.stdout
    assert "test-e2e: 3 passed, 0 failed" in lines, done.stdout
    assert any(line.startswith("lint: 0 passed, 1 failed (it exited with status") for line in lines), done.stdout
    assert "test-rust: 7 passed, 1 failed" in lines, done.stdout


def test_a_clean_run_passes_and_ends_with_the_total(tmp_path):
    done = run_make_test(
        tmp_path,
        lint_output="clean",
        lint_status=0,
        rust_result="ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
        rust_status=0,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "total: 17 passed, 0 failed"


def summarize(tmp_path, logs):
    """Runs scripts/summary.sh on {step: (log, status)}."""
    for step, (log, status) in logs.items():
        (tmp_path / f"{step}.log").write_text(log)
        (tmp_path / f"{step}.status").write_text(f"{status}\n")
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "summary.sh"), str(tmp_path), *logs],
        capture_output=True,
        text=True,
        timeout=30,
    )


COMPILE_ERROR = """   Compiling orchard-store v0.1.0
error[E0308]: mismatched types
error: could not compile `orchard-store` (lib) due to 1 previous error
"""

# cargo test --no-fail-fast: one binary fails a test, another aborts (no result line).
CRASH = """     Running unittests src/lib.rs (target/debug/deps/demo-8348ca7a80742723)
test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.08s

error: test failed, to rerun pass `--lib`
     Running tests/crash.rs (target/debug/deps/crash-73660483e1969ded)

running 2 tests
error: test failed, to rerun pass `--test crash`

Caused by:
  process didn't exit successfully: `target/debug/deps/crash-73660483e1969ded` (signal: 6, SIGABRT: process abort signal)
     Running tests/fine.rs (target/debug/deps/fine-4367691344ed9395)
test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

error: 2 targets failed:
    `--lib`
    `--test crash`
"""


def test_failures_without_failed_tests_are_counted_and_named(tmp_path):
    done = summarize(
        tmp_path,
        {
            "lint": ("Diff in crates/store/src/lib.rs\n", 1),
            "test-ui": ("svelte-check found 1 error\n", 1),
            "test-rust": (COMPILE_ERROR, 101),
            "test-api": ("ERROR tests/api/test_x.py\n3 passed, 1 failed, 2 errors in 4.00s\n", 1),
        },
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 1, done.stdout + done.stderr
    assert lines[-1] == "total: 3 passed, 6 failed", done.stdout
    assert lines[2].startswith("test-rust: 0 passed, 1 failed (it exited with status 101"), done.stdout
    assert "test-api: 3 passed, 3 failed" in lines, done.stdout


def test_a_crashed_test_binary_counts_as_a_failure(tmp_path):
    done = summarize(tmp_path, {"test-rust": (CRASH, 101)})
    assert done.returncode == 1
    assert done.stdout.strip().splitlines()[-1] == "total: 2 passed, 2 failed", done.stdout


# node --test --test-reporter=spec: a failed test, and one cancelled (it timed out).
NODE_FAILURES = """\u2714 the fake Hub answers the real client (12.1ms)
\u2716 a download reaches 100% (30012.5ms)
\u2139 tests 5
\u2139 suites 0
\u2139 pass 3
\u2139 fail 1
\u2139 cancelled 1
\u2139 skipped 0
\u2139 todo 0
\u2139 duration_ms 61234.5
"""


def test_node_test_runner_results_count_failed_and_cancelled_tests(tmp_path):
    done = summarize(tmp_path, {"test-e2e": (NODE_FAILURES, 1)})
    assert done.returncode == 1
    assert done.stdout.strip().splitlines() == ["test-e2e: 3 passed, 2 failed", "total: 3 passed, 2 failed"], done.stdout
    # The TAP reporter's closing lines count the same.
    tap = "# tests 2\n# pass 2\n# fail 0\n# cancelled 0\n"
    assert summarize(tmp_path, {"test-e2e": (tap, 0)}).stdout.strip().splitlines()[-1] == "total: 2 passed, 0 failed"
    # No test ran at all (a missing file, a broken import): a failure.
    none = summarize(tmp_path, {"test-e2e": ("\u2139 tests 0\n\u2139 pass 0\n\u2139 fail 0\n", 0)})
    assert none.returncode == 1 and "printed no test results" in none.stdout, none.stdout


def test_a_step_that_did_not_run_or_printed_no_results_fails(tmp_path):
    done = summarize(tmp_path, {"test-api": ("no tests ran in 0.01s\n", 0)})
    assert done.returncode == 1
    assert "printed no test results" in done.stdout
    missing = subprocess.run(
        ["bash", str(ROOT / "scripts" / "summary.sh"), str(tmp_path), "test-rust"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 1
    assert missing.stdout.strip().splitlines()[-1] == "total: 0 passed, 1 failed", missing.stdout
