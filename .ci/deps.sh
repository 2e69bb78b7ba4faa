#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the Debian packages pbus needs, only when something is missing.
# Libraries are detected with pkg-config, tools with command -v. Root only
# installs; anyone else gets the apt-get line to run.
set -eu
need=""
pc() { pkg-config --exists "$1" 2>/dev/null || need="$need $2"; }
tool() { command -v "$1" >/dev/null 2>&1 || need="$need $2"; }
hdr() { [ -e "$1" ] || need="$need $2"; }
tool pkg-config pkg-config
tool cc gcc
tool make make
pc yaml-0.1 libyaml-dev
pc msgpack libmsgpack-dev
pc libbpf libbpf-dev
pc librrd librrd-dev
pc check "check libsubunit-dev"
pc jansson libjansson-dev
pc libpcre2-8 libpcre2-dev
tool clang clang
tool llvm-strip llvm
tool bpftool bpftool
tool valgrind valgrind
hdr /usr/include/x86_64-linux-gnu/sys/sdt.h systemtap-sdt-dev
[ -n "${PBUS_DEPS_EXTRA:-}" ] && need="$need $PBUS_DEPS_EXTRA"
[ -z "$need" ] && exit 0
echo "pbus: installing missing Debian packages:$need" >&2
if [ "$(id -u)" != 0 ]; then
	echo "pbus: not root; run: apt-get install -y$need" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q $need >/dev/null 2>&1 || {
	apt-get update -q >/dev/null 2>&1 || true
	apt-get install -y -q $need
}
