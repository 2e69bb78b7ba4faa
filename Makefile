# SPDX-License-Identifier: MIT
# pbus: one non-recursive Makefile (musl style). Output goes to $(B); every
# sanitizer variant gets its own directory so objects never mix.
#
#   make            build library, agents, tools
#   make test       build and run every Check program (installs deps first)
#   make run        the main job (see README)
#   make bench      benchmarks
#   make SAN=address,undefined test    sanitizer build in build/san-address-undefined
#   make install PREFIX=/usr/local DESTDIR=...

B ?= build
ifneq ($(SAN),)
comma := ,
override B := $(B)/san-$(subst $(comma),-,$(SAN))
endif

MAJOR := 0
MINOR := 1
VERSION := $(MAJOR).$(MINOR).0
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin

CC ?= cc
CLANG ?= clang
BPFTOOL ?= bpftool
CFLAGS ?= -O2 -g
override CFLAGS += -std=gnu11 -Wall -Wextra -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wformat=2 -Wvla -fvisibility=hidden -fPIC \
	-pthread
ifeq ($(WERROR),1)
override CFLAGS += -Werror
endif
ifneq ($(SAN),)
override CFLAGS += -fsanitize=$(SAN) -fno-omit-frame-pointer
override LDFLAGS += -fsanitize=$(SAN)
endif
override CPPFLAGS += -D_GNU_SOURCE -Iinclude -Ibus -I$(B) -DPBUS_VERSION_STR='"$(VERSION)"'

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Dependencies: pkg-config only. Recursively expanded, so they are read when a
# recipe runs, after $(B)/.deps has installed whatever was missing.
PKGS := yaml-0.1 msgpack libbpf librrd jansson
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS))
CHECK_CFLAGS = $(shell pkg-config --cflags check)
CHECK_LIBS = $(shell pkg-config --libs check)
EXTRA_PKGS := jansson libpcre2-8
EXTRA_CFLAGS = $(shell pkg-config --cflags $(EXTRA_PKGS))
EXTRA_LIBS = $(shell pkg-config --libs $(EXTRA_PKGS))

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all lib agents tools tests test run bench clean install uninstall \
	hdrcheck format format-check compile_commands.json deps probes fuzz

all: lib agents tools

deps: $(B)/.deps
$(B)/.deps: .ci/deps.sh
	$(Q)mkdir -p $(B)
	$(Q)sh .ci/deps.sh
	$(Q)touch $@

# ---------------------------------------------------------------- library
LIB_SRCS := $(wildcard bus/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(B)/%.o)
LIB_A := $(B)/libpbus.a
LIB_SO := $(B)/libpbus.so.$(MAJOR)

lib: $(LIB_A) $(LIB_SO)

$(LIB_A): $(LIB_OBJS)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIB_SO): $(LIB_OBJS) bus/libpbus.map
	@echo "  LD      $@"
	$(Q)$(CC) -shared -Wl,-soname,libpbus.so.$(MAJOR) \
		-Wl,--version-script=bus/libpbus.map -Wl,-z,defs $(LDFLAGS) \
		-o $@ $(LIB_OBJS) $(PKG_LIBS) -pthread -lm

$(B)/%.o: %.c | $(B)/.deps
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(EXTRA_CFLAGS) $(CHECK_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# Everything that links libpbus statically links these too.
LINK = $(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIB_A) $(PKG_LIBS) $(EXTRA_LIBS) -pthread -lm

# ---------------------------------------------------------------- agents
# agents/<name>/*.c -> $(B)/bin/pbus-<name>; agents/runtime/*.c is linked into
# every agent; agents/examples/<x>.c -> $(B)/bin/pbus-example-<x>.
RT_SRCS := $(wildcard agents/runtime/*.c)
RT_OBJS := $(RT_SRCS:%.c=$(B)/%.o)
AGENT_NAMES := $(filter-out runtime examples,$(notdir $(patsubst %/,%,$(sort $(dir $(wildcard agents/*/*.c))))))
AGENT_BINS := $(AGENT_NAMES:%=$(B)/bin/pbus-%)
EXAMPLE_SRCS := $(wildcard agents/examples/*.c)
EXAMPLE_BINS := $(EXAMPLE_SRCS:agents/examples/%.c=$(B)/bin/pbus-example-%)

define agent_rule
$(B)/bin/pbus-$(1): $(patsubst %.c,$(B)/%.o,$(wildcard agents/$(1)/*.c)) $(RT_OBJS) $(LIB_A)
	@mkdir -p $$(@D)
	@echo "  LINK    $$@"
	$(Q)$$(LINK)
endef
$(foreach a,$(AGENT_NAMES),$(eval $(call agent_rule,$(a))))

$(B)/bin/pbus-example-%: $(B)/agents/examples/%.o $(RT_OBJS) $(LIB_A)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK)

agents: $(AGENT_BINS) $(EXAMPLE_BINS)

# ---------------------------------------------------------------- tools
# bus/cmd/*.c -> the pbus command; tests/bench/*.c -> pbus-bench.
CMD_SRCS := $(wildcard bus/cmd/*.c)
CMD_OBJS := $(CMD_SRCS:%.c=$(B)/%.o)
BENCH_SRCS := $(wildcard tests/bench/*.c)
BENCH_OBJS := $(BENCH_SRCS:%.c=$(B)/%.o)
TOOL_BINS :=
ifneq ($(CMD_SRCS),)
TOOL_BINS += $(B)/bin/pbus
$(B)/bin/pbus: $(CMD_OBJS) $(LIB_A)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK)
endif
ifneq ($(BENCH_SRCS),)
TOOL_BINS += $(B)/bin/pbus-bench
$(B)/bin/pbus-bench: $(BENCH_OBJS) $(LIB_A)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK)
endif

tools: $(TOOL_BINS) $(PROBE_BINS)

# ---------------------------------------------------------------- probes
-include probes/probes.mk
-include tests/fuzz/fuzz.mk

# ---------------------------------------------------------------- tests
# tests/test_<m>.c -> $(B)/tests/test_<m>, each linked with tests/helpers.c.
# tests/agents/<x>.c -> $(B)/tests/agent-<x> (small agents the tests drive).
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(B)/tests/%)
TAGENT_SRCS := $(wildcard tests/agents/*.c)
TAGENT_BINS := $(TAGENT_SRCS:tests/agents/%.c=$(B)/tests/agent-%)
HELPER_OBJS := $(patsubst %.c,$(B)/%.o,$(wildcard tests/helpers.c))

$(B)/tests/test_%: $(B)/tests/test_%.o $(HELPER_OBJS) $(LIB_A)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIB_A) $(PKG_LIBS) $(EXTRA_LIBS) $(CHECK_LIBS) -pthread -lm

$(B)/tests/agent-%: $(B)/tests/agents/%.o $(RT_OBJS) $(LIB_A)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK)

tests: all $(TEST_BINS) $(TAGENT_BINS)

# Run every test program; fail if any failed. T=name runs one.
T ?= $(notdir $(TEST_BINS))
test: tests
	$(Q)PBUS_BUILD=$(abspath $(B)) sh tests/run.sh $(addprefix $(B)/tests/,$(notdir $(T)))

# ---------------------------------------------------------------- jobs
run: all
	$(Q)if [ -x $(B)/bin/pbus ] && [ -f examples/plugins.yaml ]; then \
		$(B)/bin/pbus run -c examples/plugins.yaml --replay examples/traffic.jsonl; \
	else $(B)/bin/pbus-bench --quick; fi

bench: all
	$(Q)$(B)/bin/pbus-bench $(BENCH_ARGS)

# ---------------------------------------------------------------- install
pbus.pc: bus/pbus.pc.in
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCDIR@|$(INCDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $(B)/pbus.pc

install: all pbus.pc
	install -D -m 644 $(LIB_A) $(DESTDIR)$(LIBDIR)/libpbus.a
	install -D -m 755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/libpbus.so.$(MAJOR)
	ln -sf libpbus.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libpbus.so
	install -D -m 644 $(B)/pbus.pc $(DESTDIR)$(LIBDIR)/pkgconfig/pbus.pc
	for h in include/pbus/*.h; do install -D -m 644 $$h $(DESTDIR)$(INCDIR)/pbus/$$(basename $$h); done
	for b in $(B)/bin/*; do install -D -m 755 $$b $(DESTDIR)$(BINDIR)/$$(basename $$b); done

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libpbus.a $(DESTDIR)$(LIBDIR)/libpbus.so* \
	      $(DESTDIR)$(LIBDIR)/pkgconfig/pbus.pc
	rm -rf $(DESTDIR)$(INCDIR)/pbus
	for b in $(notdir $(wildcard $(B)/bin/*)); do rm -f $(DESTDIR)$(BINDIR)/$$b; done

# ---------------------------------------------------------------- hygiene
hdrcheck: | $(B)/.deps
	$(Q)for h in include/pbus/*.h; do \
		echo "#include \"$$h\"" | $(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -x c -fsyntax-only - || exit 1; \
	done; echo "headers ok"

format:
	clang-format -i $(shell git ls-files '*.c' '*.h')
format-check:
	clang-format --dry-run --Werror $(shell git ls-files '*.c' '*.h')

compile_commands.json:
	bear -- $(MAKE) -B all tests

clean:
	rm -rf $(B) pbus.pc

-include $(shell find $(B) -name '*.d' 2>/dev/null)
