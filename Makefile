# d-vecDB - plain Makefile. `make run` and `make test` are the two commands.
#
#   make            build build/libdvecdb.a, build/vectordb-server, build/vectordb-cli
#   make run        install deps, build, start the server on ./data, 127.0.0.1:8080
#   make test       install deps, build, unit + crash tests, ASan/UBSan run, e2e (twice: plain
#                   and ASan), fuzz corpus replay, valgrind smoke of the server, bench smoke
#   make test-asan  unit + crash tests under AddressSanitizer + UBSan (build-asan/)
#   make bench      the benchmarks (long; figures go to docs/benchmarks.md)
#   make SANITIZE=address,undefined   any target, sanitized (into build-asan/)
#   make lint       clang-format check of include/ src/ server/ cli/ (.clang-format; part of make test)

SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD ?= build
SANFLAGS :=
OPT ?= -O3
else
BUILD ?= build-asan
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT ?= -O1
endif

CC ?= cc
PY := /usr/bin/python3
WARN := -Wall -Wextra -Wshadow -Wvla -Werror
CFLAGS := -std=c11 $(OPT) -g $(WARN) -D_GNU_SOURCE -Iinclude -Isrc -pthread -MMD -MP $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := -pthread $(SANFLAGS)
LIBS := -ljansson -lxxhash -lm

LIB_SRCS := $(sort $(wildcard src/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libdvecdb.a

SERVER_SRCS := $(sort $(wildcard server/*.c))
SERVER_OBJS := $(SERVER_SRCS:%.c=$(BUILD)/%.o)
CLI_SRCS := $(sort $(wildcard cli/*.c))
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/%.o)

UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
CRASH_SRCS := $(sort $(wildcard tests/crash/*.c))
CRASH_BINS := $(CRASH_SRCS:tests/crash/%.c=$(BUILD)/tests/crash_%)

BINS := $(if $(SERVER_SRCS),$(BUILD)/vectordb-server) $(if $(CLI_SRCS),$(BUILD)/vectordb-cli)

.PHONY: reliability-report soak all deps run test test-unit test-crash test-asan test-e2e test-e2e-asan test-long test-tsan bench bench-smoke lint clean fuzz

all: $(LIB) $(BINS) $(UNIT_BINS) $(CRASH_BINS)

deps:
	@scripts/deps.sh

# SIMD kernels: only these files get the ISA flags; the choice is made at run
# time from the CPU's features (src/dist.c), so the binaries run on any x86-64.
$(BUILD)/src/dist_avx2.o: CFLAGS += -mavx2 -mfma
$(BUILD)/src/dist_avx512.o: CFLAGS += -mavx512f -mavx512dq -mavx2 -mfma

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/vectordb-server: $(SERVER_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(SERVER_OBJS) $(LIB) -lmicrohttpd -linih $(LIBS)

$(BUILD)/vectordb-cli: $(CLI_OBJS) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(LIB) -lcurl $(LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LIBS)

$(BUILD)/tests/crash_%: $(BUILD)/tests/crash/%.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LIBS)

run: deps all
	mkdir -p data
	./$(BUILD)/vectordb-server --data-dir ./data --host 127.0.0.1 --rest-port 8080

test-unit: all
	@scripts/run-tests.sh $(UNIT_BINS)

test-crash: all
	@scripts/run-tests.sh $(CRASH_BINS)

test-asan:
	$(MAKE) SANITIZE=address,undefined test-unit test-crash

E2E_TESTS := $(wildcard tests/e2e/test_*.py)

test-e2e: all
	$(if $(E2E_TESTS),DVECDB_BUILD=$(BUILD) $(PY) -m pytest -p no:cacheprovider -q tests/e2e,@echo "no e2e tests yet")

# ThreadSanitizer (build-tsan/): the engine's unit tests (their concurrent
# readers, writers, checkpoints and slot reuse) and the server's concurrency,
# API, durability and recovery e2e tests; any report fails (the e2e fixture
# scans the server's log, and TSan's exit code is 66). ~15 min on 2 cores:
# part of test-long, not of test.
TSAN_E2E := tests/e2e/test_server_concurrency.py tests/e2e/test_server_api.py \
    tests/e2e/test_server_durability.py tests/e2e/test_recovery_api.py
test-tsan:
	$(MAKE) BUILD=build-tsan SANITIZE=thread all
	TSAN_OPTIONS="halt_on_error=1 report_signal_unsafe=0" scripts/run-tests.sh \
	    $(patsubst $(BUILD)/%,build-tsan/%,$(UNIT_BINS))
	TSAN_OPTIONS="report_signal_unsafe=0" DVECDB_BUILD=build-tsan DVECDB_E2E_QUICK=1 \
	    $(PY) -m pytest -p no:cacheprovider -q $(TSAN_E2E)

test-e2e-asan:
	$(MAKE) SANITIZE=address,undefined all
	$(if $(E2E_TESTS),DVECDB_BUILD=build-asan DVECDB_E2E_QUICK=1 $(PY) -m pytest -p no:cacheprovider -q tests/e2e,@echo "no e2e tests yet")

bench-smoke: all
	@if [ -x bench/run.sh ]; then BENCH_SMOKE=1 bench/run.sh; fi

test: deps
	$(MAKE) lint
	$(MAKE) all
	$(MAKE) test-unit test-crash
	$(MAKE) test-asan
	$(MAKE) test-e2e
	$(MAKE) test-e2e-asan
	$(MAKE) fuzz-replay
	DVECDB_BUILD=$(BUILD) scripts/valgrind-smoke.sh
	$(MAKE) bench-smoke
	@echo "make test: all passed"

# Long runs, not in `make test`: every simulated power-loss point, a 3-minute
# soak, valgrind on the server. `make soak` is the 30-minute soak.
test-long: deps all
	DVECDB_CRASH_ALL=1 scripts/run-tests.sh $(CRASH_BINS)
	DVECDB_BUILD=$(BUILD) $(PY) tests/soak/soak.py --minutes 3 --out $(BUILD)/soak-3min.json
	DVECDB_BUILD=$(BUILD) scripts/valgrind-smoke.sh
	$(MAKE) test-tsan

# docs/reliability.md from measured runs (200 kill -9 rounds, every power-loss
# point, recovery crash points, fuzz summary, soak result, security suite).
reliability-report: deps all
	DVECDB_BUILD=$(BUILD) $(PY) scripts/reliability_report.py

soak: deps all
	DVECDB_BUILD=$(BUILD) $(PY) tests/soak/soak.py --minutes 30 --out $(BUILD)/soak-30min.json

bench: deps all
	bench/run.sh

lint:
	clang-format --dry-run --Werror include/*.h src/*.[ch] server/*.[ch] cli/*.[ch]

clean:
	rm -rf build build-asan build-tsan build-fuzz

# Fuzz targets (tests/fuzz/fuzz.mk defines `fuzz` and `fuzz-replay`).
include tests/fuzz/fuzz.mk

-include $(LIB_OBJS:.o=.d) $(SERVER_OBJS:.o=.d) $(CLI_OBJS:.o=.d)
-include $(UNIT_BINS:$(BUILD)/tests/%=$(BUILD)/tests/unit/%.d) $(CRASH_BINS:$(BUILD)/tests/crash_%=$(BUILD)/tests/crash/%.d)
