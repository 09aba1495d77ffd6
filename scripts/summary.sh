#!/usr/bin/env bash
# Sums up the suites `make test` ran: one line per suite, then the total as the
# last line, "total: N passed, M failed". Exits 1 when anything failed.
#
#   scripts/summary.sh DIR SUITE...
#
# DIR holds, for each SUITE, SUITE.log (everything it printed) and SUITE.status
# (its exit status). Tests are counted from the logs of cargo test (test-rust),
# vitest (test-ui), pytest (test-api) and node's test runner (test-e2e). A
# suite that failed without a failed test to show for it (a compile error, a
# lint, a crashed test binary, a setup step) counts as one failure, named
# here, so that no failure goes uncounted.
set -euo pipefail

usage="usage: scripts/summary.sh DIR SUITE... (DIR holds each SUITE's .log and .status)"
dir=${1:?$usage}
shift
[ "$#" -gt 0 ] || { echo "$usage" >&2; exit 2; }

# The logs may carry colour codes (vitest colours even into a pipe).
plain() { sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' "$1"; }

# Each counter prints "PASSED FAILED" for the log on its standard input.

# libtest prints one "test result:" line per test binary. A binary that crashed
# prints none, but cargo still names it in "error: test failed, to rerun pass".
count_cargo() {
	awk '
		/^test result:/ { p += $4; f += $6; if ($3 == "FAILED.") reported++ }
		/^error: (doc)?test failed, to rerun pass/ { failing++ }
		END { crashed = failing - reported; if (crashed < 0) crashed = 0; print p + 0, f + crashed }'
}

# vitest's "Tests  1 failed | 19 passed (20)" line.
count_vitest() {
	awk '
		/^ *Tests  / { line = $0 }
		END {
			n = split(line, w, /[ |()]+/)
			for (i = 2; i <= n; i++) {
				if (w[i] == "passed") p = w[i - 1]
				if (w[i] == "failed") f = w[i - 1]
			}
			print p + 0, f + 0
		}'
}

# pytest's last line, e.g. "1 failed, 30 passed, 2 errors in 12.3s"; errors
# (a fixture or collection that broke) are failures too.
count_pytest() {
	awk '
		/[0-9]+ (passed|failed|errors?)([ ,]|$)/ { line = $0 }
		END {
			n = split(line, w, /[ ,=]+/)
			for (i = 2; i <= n; i++) {
				if (w[i] == "passed") p = w[i - 1]
				if (w[i] == "failed" || w[i] == "error" || w[i] == "errors") f += w[i - 1]
			}
			print p + 0, f + 0
		}'
}

# node's test runner: its spec reporter's "ℹ pass 9", "ℹ fail 1", "ℹ cancelled 0"
# (TAP's "# pass 9" alike). A cancelled test (it timed out, or its file ended
# early) is a failure too.
count_node() {
	awk '
		/^(ℹ|#) pass [0-9]+ *$/ { p = $3 }
		/^(ℹ|#) fail [0-9]+ *$/ { f = $3 }
		/^(ℹ|#) cancelled [0-9]+ *$/ { c = $3 }
		END { print p + 0, f + c }'
}

total_passed=0
total_failed=0
for suite in "$@"; do
	log="$dir/$suite.log"
	status_file="$dir/$suite.status"
	if [ ! -f "$log" ] || [ ! -f "$status_file" ]; then
		echo "$suite: 0 passed, 1 failed (it did not run: no $log or $status_file)"
		total_failed=$((total_failed + 1))
		continue
	fi
	status=$(tr -dc '0-9' <"$status_file")
	status=${status:-1}
	case "$suite" in
	test-rust) counter=count_cargo ;;
	test-ui) counter=count_vitest ;;
	test-api) counter=count_pytest ;;
	test-e2e) counter=count_node ;;
	*) counter="" ;;
	esac
	passed=0
	failed=0
	if [ -n "$counter" ]; then
		read -r passed failed < <(plain "$log" | $counter)
	fi
	note=""
	if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
		failed=1
		note=" (it exited with status $status and no failed test: see $log)"
	elif [ "$status" -eq 0 ] && [ -n "$counter" ] && [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
		failed=1
		note=" (it printed no test results: see $log)"
	fi
	echo "$suite: $passed passed, $failed failed$note"
	total_passed=$((total_passed + passed))
	total_failed=$((total_failed + failed))
done

echo "total: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
