# SPDX-License-Identifier: MIT
# Hardening targets (docs/hardening.md), included by the top-level Makefile:
# the libFuzzer targets in tests/fuzz/, their replay build, and the valgrind
# session.
#
#   make fuzz                     build every target, run each FUZZ_SECONDS (30)
#   make fuzz FUZZ_SECONDS=300 FUZZ_TARGETS="fuzz_mp fuzz_chan"
#   make fuzz-build               build only: $(FUZZ_B)/fuzz_<t>
#   make fuzz-replay              replay the corpora without libFuzzer ($(B))
#   make valgrind                 gateway + agents session under memcheck
#
# Everything is built with clang into $(FUZZ_B) (build/fuzz): the library
# sources once more with coverage, ASan and UBSan (-fsanitize=fuzzer-no-link),
# then each tests/fuzz/fuzz_<t>.c linked with -fsanitize=fuzzer. UBSan does
# not recover, so undefined behaviour is a crash like any other.
#
# Each run works on a fresh copy of tests/fuzz/corpus/<t>/ (the checked-in
# seeds are never grown automatically; add interesting inputs by hand), and a
# crash leaves its input in $(FUZZ_B)/artifacts/. tests/fuzz/run.sh prints
# executions and exec/s per target and a total, and fails if any target
# found something. See docs/hardening.md.

FUZZ_B ?= build/fuzz
FUZZ_CC ?= $(CLANG)
FUZZ_SECONDS ?= 30
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS := -O1 -g -fno-omit-frame-pointer -std=gnu11 -pthread -fPIC \
	-Wall -Wextra -Wno-unused-parameter -Wno-string-concatenation \
	$(FUZZ_SAN)
FUZZ_CPPFLAGS := -D_GNU_SOURCE -Iinclude -Ibus -I$(FUZZ_B) \
	-DPBUS_VERSION_STR='"$(VERSION)"'

FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(FUZZ_SRCS:tests/fuzz/%.c=%)
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_BINS := $(FUZZ_NAMES:%=$(FUZZ_B)/%)
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_B)/obj/%.o)

.PHONY: fuzz fuzz-build

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	$(Q)FUZZ_B=$(FUZZ_B) sh tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

$(FUZZ_B)/.deps: .ci/deps.sh
	$(Q)mkdir -p $(FUZZ_B)
	$(Q)sh .ci/deps.sh
	$(Q)touch $@

# The library: coverage-instrumented, no libFuzzer main.
$(FUZZ_B)/obj/%.o: %.c | $(FUZZ_B)/.deps
	@mkdir -p $(@D)
	@echo "  FZCC    $<"
	$(Q)$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(PKG_CFLAGS) $(FUZZ_CFLAGS) \
		-fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_B)/libpbus-fuzz.a: $(FUZZ_LIB_OBJS)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_B)/fuzz_%: $(FUZZ_B)/obj/tests/fuzz/fuzz_%.o $(FUZZ_B)/libpbus-fuzz.a
	@echo "  FZLINK  $@"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< \
		$(FUZZ_B)/libpbus-fuzz.a $(PKG_LIBS) -pthread -lm

-include $(shell find $(FUZZ_B)/obj -name '*.d' 2>/dev/null)

# ---------------------------------------------------------------- replay
# The same targets built with $(CC) and no sanitizer, with a plain main()
# (tests/fuzz/replay.c) that runs each input once: replay the checked-in
# corpora and regression inputs under valgrind or gdb.
#
#   make fuzz-replay                        every corpus, once
#   make fuzz-replay FUZZ_WRAP="valgrind -q --error-exitcode=1"
FUZZ_REPLAY_BINS := $(FUZZ_NAMES:%=$(B)/fuzz-replay/%)
FUZZ_WRAP ?=

.PHONY: fuzz-replay
fuzz-replay: $(FUZZ_REPLAY_BINS)
	$(Q)for t in $(FUZZ_TARGETS); do \
		echo "== replay $$t"; \
		$(FUZZ_WRAP) $(B)/fuzz-replay/$$t tests/fuzz/corpus/$$t || exit 1; \
	done

$(B)/fuzz-replay/%: $(B)/tests/fuzz/%.o $(B)/tests/fuzz/replay.o $(LIB_A)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK)

# ---------------------------------------------------------------- valgrind
# A short gateway + agents session under memcheck (tests/valgrind.sh).
VG_CHAINS ?= 1000

.PHONY: valgrind
valgrind: all $(B)/tests/vg_session
	$(Q)sh tests/valgrind.sh $(B) $(VG_CHAINS)

$(B)/tests/vg_session: $(B)/tests/vg_session.o $(LIB_A)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK)
