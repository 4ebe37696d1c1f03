# Fuzz targets, one per parser of outside bytes (included by the top Makefile).
#
#   make fuzz          build every target with clang + libFuzzer + ASan + UBSan
#                      into build-fuzz/ and run each for FUZZ_SECONDS (default
#                      60) on tests/fuzz/corpus/<target>/; new inputs go to
#                      build-fuzz/new/<target>/ (FUZZ_MERGE=1 merges the ones
#                      that add coverage into the corpus with -merge=1); the
#                      libFuzzer output goes to build-fuzz/<target>.log and one
#                      line per target (seconds, executions, coverage,
#                      result, UTC date of the run) to build-fuzz/summary.tsv;
#                      a run replaces only its own targets' lines, so the
#                      file keeps the latest figures of every target. A crash is copied into the
#                      corpus as crash-<sha1> so that fuzz-replay keeps it.
#   make fuzz-replay   (part of `make test`) build every target with $(CC) +
#                      ASan + UBSan and tests/fuzz/replay_main.c, and run it
#                      once over its committed corpus: seconds, no fuzzing;
#                      fails on any crash, sanitizer report or leak.
#   make fuzz FUZZ_TARGETS="payload filter" FUZZ_SECONDS=600   a subset, longer
#   make fuzz FUZZ_ARGS=-dict=...   extra libFuzzer flags (tests/fuzz/run.sh)
#   ASAN_OPTIONS=detect_leaks=0 make fuzz ...   look past a known leak
#
# Engine sources are compiled directly (not from build/libdvecdb.a) so the
# sanitizer and coverage flags apply to them. A target is enabled only when
# its fuzz_<name>.c and every engine source it needs exist, so a module that
# has not landed yet does not break the build.

FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_BUILD := build-fuzz
FUZZ_MERGE ?=
FUZZ_CORPUS := tests/fuzz/corpus

# Engine sources each target links (besides tests/fuzz/fuzz_<name>.c).
FUZZ_SRCS_payload := src/err.c src/utf8.c src/payload.c
FUZZ_SRCS_filter := src/err.c src/utf8.c src/payload.c
FUZZ_SRCS_wal := src/err.c src/io.c src/wal.c
FUZZ_SRCS_index := src/err.c $(sort $(wildcard src/dist*.c src/hnsw*.c))
FUZZ_SRCS_readers := src/err.c cli/ingest_readers.c
FUZZ_SRCS_snap := src/err.c src/io.c src/names.c src/snap.c
FUZZ_SRCS_legacy := src/err.c src/payload.c src/utf8.c src/import_legacy.c
FUZZ_SRCS_fastjson := server/fastjson.c
# the whole engine (a database holds the backup)
FUZZ_SRCS_backup := $(sort $(wildcard src/*.c)) src/backup.c
FUZZ_SRCS_import := $(sort $(wildcard src/*.c)) src/import.c
# the whole server but its main(), over the whole engine
# (enabled once the recovery modules its handlers call exist)
FUZZ_SRCS_http := $(filter-out server/main.c,$(sort $(wildcard server/*.c))) $(sort $(wildcard src/*.c)) \
    src/backup.c src/import.c src/restore.c
FUZZ_LIBS_http := -lmicrohttpd -linih

FUZZ_KNOWN := payload filter wal index snap legacy readers fastjson backup import http
# all sources of a list exist -> "yes"
fuzz_have = $(if $(strip $(1)),$(if $(filter-out $(wildcard $(1)),$(1)),,yes))
FUZZ_TARGETS ?= $(foreach t,$(FUZZ_KNOWN),$(if $(and $(wildcard tests/fuzz/fuzz_$(t).c),$(call fuzz_have,$(FUZZ_SRCS_$(t)))),$(t)))

FUZZ_BASE_CFLAGS := -std=c11 -g -O1 -D_GNU_SOURCE -Iinclude -Isrc -pthread -fno-omit-frame-pointer -MMD -MP
# libFuzzer build: coverage instrumentation on every object, fuzzer main at link.
FUZZ_LF_CFLAGS := $(FUZZ_BASE_CFLAGS) -Wall -Wextra -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
FUZZ_LF_LDFLAGS := -pthread -fsanitize=fuzzer,address,undefined
# Replay build: the project compiler and warnings, plain sanitizers.
FUZZ_RP_CFLAGS := $(FUZZ_BASE_CFLAGS) $(WARN) -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_RP_LDFLAGS := -pthread -fsanitize=address,undefined
FUZZ_LIBS := -ljansson -lxxhash -lm

# The SIMD kernels need their ISA flags here too (as in the top Makefile).
fuzz_isa = $(if $(filter src/dist_avx2.c,$(1)),-mavx2 -mfma,$(if $(filter src/dist_avx512.c,$(1)),-mavx512f -mavx512dq -mavx2 -mfma))

$(FUZZ_BUILD)/lf/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_LF_CFLAGS) $(call fuzz_isa,$<) -c $< -o $@

$(FUZZ_BUILD)/rp/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_RP_CFLAGS) $(call fuzz_isa,$<) -c $< -o $@

# Per-target link rules (one pair per enabled target).
define FUZZ_TARGET_RULES
$(FUZZ_BUILD)/fuzz_$(1): $(FUZZ_BUILD)/lf/obj/tests/fuzz/fuzz_$(1).o $(FUZZ_SRCS_$(1):%.c=$(FUZZ_BUILD)/lf/obj/%.o)
	$(FUZZ_CC) $(FUZZ_LF_LDFLAGS) -o $$@ $$^ $(FUZZ_LIBS_$(1)) $(FUZZ_LIBS)
$(FUZZ_BUILD)/replay/fuzz_$(1): $(FUZZ_BUILD)/rp/obj/tests/fuzz/fuzz_$(1).o $(FUZZ_BUILD)/rp/obj/tests/fuzz/replay_main.o $(FUZZ_SRCS_$(1):%.c=$(FUZZ_BUILD)/rp/obj/%.o)
	@mkdir -p $$(dir $$@)
	$(CC) $(FUZZ_RP_LDFLAGS) -o $$@ $$^ $(FUZZ_LIBS_$(1)) $(FUZZ_LIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_TARGET_RULES,$(t))))

.PHONY: fuzz fuzz-build fuzz-replay fuzz-replay-build

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

fuzz: fuzz-build
	@fail=0; for t in $(FUZZ_TARGETS); do \
	    FUZZ_MERGE=$(FUZZ_MERGE) FUZZ_ARGS="$(FUZZ_ARGS)" tests/fuzz/run.sh $$t $(FUZZ_SECONDS) || fail=1; \
	done; \
	echo "fuzz: target / seconds / executions / coverage / features / result / date (latest run of every target)"; \
	cat $(FUZZ_BUILD)/summary.tsv; \
	exit $$fail

fuzz-replay-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/replay/fuzz_%)

fuzz-replay: fuzz-replay-build
	@fail=0; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_CORPUS)/$$t; \
	    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	        $(FUZZ_BUILD)/replay/fuzz_$$t $(FUZZ_CORPUS)/$$t || { echo "fuzz-replay: $$t FAILED" >&2; fail=1; }; \
	done; \
	[ $$fail -eq 0 ] && echo "fuzz-replay: $(words $(FUZZ_TARGETS)) targets passed ($(strip $(FUZZ_TARGETS)))"; \
	exit $$fail

-include $(shell find $(FUZZ_BUILD) -name '*.d' 2>/dev/null)
