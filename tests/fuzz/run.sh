#!/bin/sh
# SPDX-License-Identifier: MIT
# Run libFuzzer targets for a fixed time each: run.sh SECONDS target...
# Each target runs on a fresh copy of tests/fuzz/corpus/<target>/ (the
# checked-in seeds are never modified), with a per-input timeout and RSS
# limit; a crash, leak, timeout or OOM leaves its input in
# $FUZZ_B/artifacts/ and makes this script fail. Prints one line per target
# and a total: executions and executions per second.
#
# Environment: FUZZ_B (build/fuzz), FUZZ_ARGS (extra libFuzzer flags),
# FUZZ_TIMEOUT (per-input seconds, 10), FUZZ_KEEP=1 keeps the work corpora.
set -u
secs=${1:-30}
shift
B=${FUZZ_B:-build/fuzz}
mkdir -p "$B/artifacts" "$B/logs"
total=0
fail=0
summary=""
for t in "$@"; do
	bin="$B/$t"
	seeds="tests/fuzz/corpus/$t"
	work="$B/work/$t"
	log="$B/logs/$t.log"
	rm -rf "$work"
	mkdir -p "$work"
	[ -d "$seeds" ] && cp -R "$seeds/." "$work/"
	dict=""
	[ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
	echo "== $t (${secs}s)"
	# -close_fd_mask=1: the targets never print on success; keep stderr
	# for reports.
	"$bin" -max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-10}" \
		-rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$B/artifacts/$t-" $dict ${FUZZ_ARGS:-} \
		"$work" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	execs=${execs:-0}
	total=$((total + execs))
	if [ $rc -ne 0 ]; then
		fail=$((fail + 1))
		echo "FAIL $t (rc=$rc); log $log:"
		grep -E 'ERROR|SUMMARY|check failed|runtime error|Test unit written|deadly signal|timeout' "$log" | head -20
	fi
	line=$(printf '%-14s %12s execs %8s exec/s  cov %s%s' "$t" "$execs" \
		"${rate:-0}" "${cov:-?}" "$([ $rc -ne 0 ] && echo '  FAILED')")
	echo "$line"
	summary="$summary$line
"
	[ "${FUZZ_KEEP:-0}" = 1 ] || rm -rf "$work"
done
echo "== fuzz summary (${secs}s per target)"
printf '%s' "$summary"
printf '%-14s %12s execs\n' total "$total"
[ $fail -eq 0 ] || { echo "fuzz: $fail target(s) failed"; exit 1; }
