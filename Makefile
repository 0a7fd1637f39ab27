# The two commands of the README:
#   make run    install missing build dependencies, build, run the daemon on the
#               embedded (in-process mock) Kafka with config/mqtt2kafka.yaml
#   make test   install missing dependencies, build, run every test
#
# Other targets: build, bench (comparison with peers, see docs/performance.md), sanitize (ASan+UBSan build running every test),
# fuzz (libFuzzer build with clang), format, format-check, clean.

BUILD_DIR ?= build
SAN_DIR   ?= build-asan
FUZZ_DIR  ?= build-fuzz
CONFIG    ?= config/mqtt2kafka.yaml
WERROR    ?= OFF
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: all build run test bench sanitize fuzz format format-check clean deps-build deps-test

all: build

deps-build:
	@scripts/install-deps.sh build

deps-test:
	@scripts/install-deps.sh test

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DWERROR=$(WERROR)

build: deps-build $(BUILD_DIR)/CMakeCache.txt
	cmake -S . -B $(BUILD_DIR) -DWERROR=$(WERROR) >/dev/null
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	./$(BUILD_DIR)/mqtt2kafka -c $(CONFIG)

test: deps-test build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) $(CTEST_ARGS)

sanitize: deps-test
	cmake -S . -B $(SAN_DIR) -DENABLE_SANITIZERS=ON -DWERROR=$(WERROR) -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(SAN_DIR) -j $(JOBS)
	ctest --test-dir $(SAN_DIR) --output-on-failure -j $(JOBS) $(CTEST_ARGS)

fuzz: deps-test
	CC=clang cmake -S . -B $(FUZZ_DIR) -DENABLE_FUZZ=ON -DWERROR=$(WERROR) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(FUZZ_DIR) -j $(JOBS)

# mqtt2kafka vs mosquitto vs a plain librdkafka producer on this machine;
# writes the table into docs/performance.md. BENCH_ARGS="--quick" for a short
# run, "--only q1-c10,idle" for a subset (bench/run-comparison --help).
bench: deps-test build
	/usr/bin/python3 bench/run-comparison --build-dir $(BUILD_DIR) $(BENCH_ARGS)

format:
	clang-format -i src/*.c include/*.h tests/unit/*.c tests/fuzz/*.c tests/tools/*.c bench/*.c

format-check:
	clang-format --dry-run --Werror src/*.c include/*.h tests/unit/*.c tests/fuzz/*.c tests/tools/*.c bench/*.c

clean:
	rm -rf $(BUILD_DIR) $(SAN_DIR) $(FUZZ_DIR)
