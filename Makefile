# The two commands of the README:
#   make run    install missing build dependencies, build, run the daemon on the
#               embedded (in-process mock) Kafka with config/mqtt2kafka.yaml
#   make test   install missing dependencies, build, run every test
#
#   make test-e2e  the seed pipeline end to end: sensors -> mqtt2kafka -> Apache
#               Kafka -> Kafka Connect -> Apache Cassandra -> a CQL query, all on
#               loopback (docs/end-to-end.md); logs in $(BUILD_DIR)/e2e
#
# Other targets: build, sanitize (ASan+UBSan build running every test),
# fuzz (libFuzzer build with clang), soak (SOAK_S seconds of load with random
# faults, exact accounting, RSS slope; default 600), bench (comparison with
# mosquitto and plain librdkafka, see docs/performance.md), format,
# format-check, clean.

BUILD_DIR ?= build
SAN_DIR   ?= build-asan
FUZZ_DIR  ?= build-fuzz
CONFIG    ?= config/mqtt2kafka.yaml
WERROR    ?= OFF
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS ?=
BENCH_ARGS ?=
SOAK_S    ?= 600

.PHONY: all build run test test-e2e soak bench sanitize fuzz format format-check clean deps-build deps-test deps-run deps-e2e

all: build

deps-build:
	@scripts/install-deps.sh build

deps-test:
	@scripts/install-deps.sh test

# make run: the build dependencies and the README demo's clients
# (mosquitto_pub, kcat).
deps-run:
	@scripts/install-deps.sh run

deps-e2e:
	@scripts/install-deps.sh e2e

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DWERROR=$(WERROR)

build: deps-build $(BUILD_DIR)/CMakeCache.txt
	cmake -S . -B $(BUILD_DIR) -DWERROR=$(WERROR) >/dev/null
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: deps-run build
	./$(BUILD_DIR)/mqtt2kafka -c $(CONFIG)

test: deps-test build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) $(value CTEST_ARGS)

test-e2e: deps-e2e build
	M2K_BUILD_DIR=$(abspath $(BUILD_DIR)) /usr/bin/python3 -m pytest -v -p no:cacheprovider \
		-rP --basetemp=$(BUILD_DIR)/e2e tests/e2e

soak: deps-test build
	/usr/bin/python3 tests/reliability/run.py --scenario soak --duration $(SOAK_S) \
		--build-dir $(BUILD_DIR) --markdown $(BUILD_DIR)/soak.md --json $(BUILD_DIR)/soak.json

sanitize: deps-test
	cmake -S . -B $(SAN_DIR) -DENABLE_SANITIZERS=ON -DWERROR=$(WERROR) -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(SAN_DIR) -j $(JOBS)
	ctest --test-dir $(SAN_DIR) --output-on-failure -j $(JOBS) $(value CTEST_ARGS)

fuzz: deps-test
	CC=clang cmake -S . -B $(FUZZ_DIR) -DENABLE_FUZZ=ON -DWERROR=$(WERROR) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(FUZZ_DIR) -j $(JOBS)

# mqtt2kafka vs mosquitto vs a plain librdkafka producer on this machine;
# writes the table into docs/performance.md. BENCH_ARGS="--quick" for a short
# run, "--only q1-c10,idle" for a subset (bench/run-comparison --help).
bench: deps-test build
	/usr/bin/python3 bench/run-comparison --build-dir $(BUILD_DIR) $(BENCH_ARGS)

format:
	clang-format -i src/*.c src/*.h src/*/*.c src/*/*.h include/*.h include/*/*.h tests/unit/*.c tests/unit/*.h tests/fuzz/*.c tests/tools/*.c bench/*.c bench/*.h

format-check:
	clang-format --dry-run --Werror src/*.c src/*.h src/*/*.c src/*/*.h include/*.h include/*/*.h tests/unit/*.c tests/unit/*.h tests/fuzz/*.c tests/tools/*.c bench/*.c bench/*.h

clean:
	rm -rf $(BUILD_DIR) $(SAN_DIR) $(FUZZ_DIR) $(PKG_DIR)

# ---- install and Debian package (ops) ----
# make install: into CMAKE_INSTALL_PREFIX of $(BUILD_DIR) (default /usr/local;
#   DESTDIR honoured); never overwrites an existing mqtt2kafka.yaml.
# make package: a release build with prefix /usr in $(PKG_DIR), then
#   $(PKG_DIR)/mqtt2kafka_<version>_<arch>.deb
PKG_DIR ?= build-pkg
.PHONY: install package
install: build
	cmake --install $(BUILD_DIR)

package: deps-build
	cmake -S . -B $(PKG_DIR) -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF -DWERROR=$(WERROR)
	cmake --build $(PKG_DIR) -j $(JOBS)
	cd $(PKG_DIR) && cpack -G DEB
