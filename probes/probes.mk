# SPDX-License-Identifier: MIT
# probes/: the BPF program, its skeleton and the collector. Included by the
# top-level Makefile (after the tools section, before the tests section).
#
#   $(B)/vmlinux.h                 BTF of the running kernel (or VMLINUX_H=)
#   $(B)/probes/pbus.tmp.bpf.o     clang -target bpf
#   $(B)/probes/pbus.bpf.o         bpftool gen object (linked, BTF fixed up)
#   $(B)/pbus.skel.h               bpftool gen skeleton (name pbus_bpf)
#   $(B)/bin/pbus-collector        probes/{collector,loader,admin,rrdio}.c
#
# The user-space helpers (everything but collector.c) also go into the
# test_obs program and pbus-bench, which attach the program themselves.

VMLINUX_H ?=
BPF_ARCH := $(subst x86_64,x86,$(subst aarch64,arm64,$(shell uname -m)))
# <asm/...> lives in the multiarch include dir, which -target bpf misses.
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(BPF_ARCH) -Wall \
	-I$(B) -Iprobes -idirafter /usr/include/$(shell $(CC) -dumpmachine)

PROBE_LIB_SRCS := probes/loader.c probes/admin.c probes/rrdio.c
PROBE_LIB_OBJS := $(PROBE_LIB_SRCS:%.c=$(B)/%.o)
PROBE_BINS += $(B)/bin/pbus-collector

$(B)/vmlinux.h: | $(B)/.deps
	@mkdir -p $(@D)
	@echo "  GEN     $@"
ifneq ($(VMLINUX_H),)
	$(Q)cp $(VMLINUX_H) $@
else
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@
endif

$(B)/probes/pbus.tmp.bpf.o: probes/pbus.bpf.c probes/pbus_obs.h $(B)/vmlinux.h
	@mkdir -p $(@D)
	@echo "  BPF     $<"
	$(Q)$(CLANG) $(BPF_CFLAGS) -c -o $@ $<

$(B)/probes/pbus.bpf.o: $(B)/probes/pbus.tmp.bpf.o
	@echo "  GENOBJ  $@"
	$(Q)$(BPFTOOL) gen object $@ $<

$(B)/pbus.skel.h: $(B)/probes/pbus.bpf.o
	@echo "  GENSKEL $@"
	$(Q)$(BPFTOOL) gen skeleton $< name pbus_bpf > $@

# Only loader.c includes the skeleton (it embeds the object).
$(B)/probes/loader.o: $(B)/pbus.skel.h

$(B)/bin/pbus-collector: $(B)/probes/collector.o $(PROBE_LIB_OBJS) $(LIB_A)
	@mkdir -p $(@D)
	@echo "  LINK    $@"
	$(Q)$(LINK)

# Extra objects for programs the top-level Makefile links: its recipes link
# $(filter %.o,$^), so prerequisites are enough.
$(B)/tests/test_obs: $(PROBE_LIB_OBJS)
$(B)/bin/pbus-bench: $(PROBE_LIB_OBJS)

probes: $(PROBE_BINS)
tools: $(PROBE_BINS)
