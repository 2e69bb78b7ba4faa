#!/bin/sh
# SPDX-License-Identifier: MIT
# Run Check test programs one after another; print each program's Check
# summary and a closing "N passed, N failed" line; exit 1 if any failed.
# Every program runs under a deadline so a hung test cannot hang the suite.
pass=0
fail=0
failed=""
for t in "$@"; do
	name=$(basename "$t")
	echo "== $name"
	timeout --kill-after=10 "${PBUS_TEST_TIMEOUT:-600}" "$t"
	rc=$?
	if [ $rc -eq 0 ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		failed="$failed $name(rc=$rc)"
	fi
done
echo "test programs: $pass passed, $fail failed"
[ $fail -eq 0 ] || { echo "failed:$failed"; exit 1; }
