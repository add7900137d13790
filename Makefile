# tcpops: thin wrapper over CMake. `make run` and `make test` do all set-up.
BUILD     ?= build
SAN_BUILD ?= build-san
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build test test-san run bench clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test-san: deps
	cmake -S . -B $(SAN_BUILD) -DTCPOPS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)
	cmake --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole system in the foreground on 127.0.0.1:5001-5003, data in ./var.
# Ctrl-C stops it gracefully.
run: build
	exec $(BUILD)/bin/tcpops up --data-dir ./var

bench: build
	@scripts/deps.sh bench
	bench/run.sh $(BUILD) all
	bench/faults.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
