#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Compare two revisions on the core benchmark, for effects smaller than the
# spread between runs: builds each revision in a git worktree, then runs
# `pbus-bench --only core --quick` for each in turn (A B B A, ROUNDS times),
# so that both meet the same minutes of the host's noise, and prints, per
# row, the median over the runs of the pbus p50 and of its ratio to the
# futex ping-pong of the same run.
#
#   tests/bench/ab.sh REV_A REV_B [ROUNDS]      (default 5: 10 runs each)
#
# Example: tests/bench/ab.sh HEAD~1 HEAD 8
# The worktrees and builds live under ${TMPDIR:-/tmp}/pbus-ab-$$ and are
# removed on exit. Run it on a machine doing nothing else.
set -eu

usage() {
	echo "usage: $0 REV_A REV_B [ROUNDS]"
	echo "Runs pbus-bench --only core --quick for two revisions in turns"
	echo "(A B B A, ROUNDS times, default 5) and prints per row the median"
	echo "p50 and p50 ratio over the futex ping-pong for each."
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
[ $# -ge 2 ] || { usage >&2; exit 2; }
rev_a=$1
rev_b=$2
rounds=${3:-5}
case "$rounds" in '' | *[!0-9]* | 0) usage >&2; exit 2 ;; esac

top=$(git rev-parse --show-toplevel)
dir=${TMPDIR:-/tmp}/pbus-ab-$$
cleanup() {
	for t in a b; do
		[ -d "$dir/$t" ] && git -C "$top" worktree remove --force "$dir/$t"
	done
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
mkdir -p "$dir"

for t in a b; do
	rev=$rev_a
	[ $t = b ] && rev=$rev_b
	echo "building $t = $rev ..." >&2
	git -C "$top" worktree add -q --detach "$dir/$t" "$rev"
	make -C "$dir/$t" -s -j"$(nproc)" all tests >/dev/null
done

# one run: "t|row|p50|ratio" per table row
run() {
	"$dir/$1/build/bin/pbus-bench" --only core --quick |
		awk -F'|' -v t="$1" '
		/^(continuous|paced|pipelined|pipe64|2 threads)/ {
			row = $1; gsub(/^ +| +$/, "", row); gsub(/  +/, " ", row)
			split($2, p, " "); split($5, r, " ")
			print t "|" row "|" p[1] "|" r[2]
		}'
}

i=0
while [ $i -lt "$rounds" ]; do
	i=$((i + 1))
	echo "round $i of $rounds ..." >&2
	for t in a b b a; do
		run $t >>"$dir/runs"
	done
done

echo "A = $rev_a, B = $rev_b: medians of $((2 * rounds)) runs each" \
     "(pbus-bench --only core --quick)"
printf '%-22s | %9s %9s | %9s %9s\n' "row" "A p50 us" "B p50 us" \
       "A /futex" "B /futex"
awk -F'|' '
function med(list,   n, i, j, x, v) {
	n = split(list, v, " ")
	for (i = 2; i <= n; i++) { # insertion sort: mawk has no asort()
		x = v[i] + 0
		for (j = i - 1; j >= 1 && v[j] + 0 > x; j--)
			v[j + 1] = v[j]
		v[j + 1] = x
	}
	if (n % 2)
		return v[(n + 1) / 2]
	return (v[n / 2] + v[n / 2 + 1]) / 2
}
{
	key = $2
	if (!(key in seen)) { seen[key] = 1; order[++nk] = key }
	p[key, $1] = p[key, $1] " " $3
	if ($4 != "-")
		r[key, $1] = r[key, $1] " " $4
}
END {
	for (k = 1; k <= nk; k++) {
		key = order[k]
		ra = r[key, "a"] == "" ? "-" : sprintf("%.3f", med(r[key, "a"]))
		rb = r[key, "b"] == "" ? "-" : sprintf("%.3f", med(r[key, "b"]))
		printf "%-22s | %9.2f %9.2f | %9s %9s\n", key,
		       med(p[key, "a"]), med(p[key, "b"]), ra, rb
	}
}' "$dir/runs"
