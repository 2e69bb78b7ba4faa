#!/bin/sh
# SPDX-License-Identifier: MIT
# valgrind (memcheck) over a short gateway + agents session: BUILD_DIR/tests/
# vg_session runs CHAINS chains through two pbus-passthrough agents that its
# plugin manager spawns; --trace-children puts the agents under memcheck too.
# Every process must end with zero errors and zero definite leaks (definite
# leaks count as errors here). Logs: BUILD_DIR/valgrind/vg.<pid>.log.
#
#	sh tests/valgrind.sh BUILD_DIR [CHAINS]     (make valgrind)
set -u
B=${1:?usage: valgrind.sh BUILD_DIR [CHAINS]}
chains=${2:-1000}
logs="$B/valgrind"
rm -rf "$logs"
mkdir -p "$logs"
supp=""
[ -f tests/valgrind.supp ] && supp="--suppressions=tests/valgrind.supp"
echo "== valgrind: vg_session, $chains chains, 2 agents"
start=$(date +%s)
valgrind --quiet --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite --show-leak-kinds=definite \
	--track-fds=no --num-callers=30 $supp \
	--trace-children=yes --child-silent-after-fork=yes \
	--log-file="$logs/vg.%p.log" \
	"$B/tests/vg_session" "$(cd "$B/bin" && pwd)" "$chains"
rc=$?
end=$(date +%s)
nlogs=0
bad=0
for f in "$logs"/vg.*.log; do
	[ -f "$f" ] || continue
	nlogs=$((nlogs + 1))
	# --quiet logs nothing unless something is wrong
	if [ -s "$f" ]; then
		bad=$((bad + 1))
		echo "---- $f"
		cat "$f"
	fi
done
echo "valgrind: $nlogs processes checked in $((end - start)) s, $bad with" \
	"errors, session exit $rc"
[ $rc -eq 0 ] && [ $bad -eq 0 ] && [ $nlogs -ge 3 ]
