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

run: build
	@if [ -x $(BUILD)/bin/tcpops ]; then \
		exec $(BUILD)/bin/tcpops up --data-dir ./var; \
	else \
		echo "make run: not yet: the supervisor (tcpops) and the services are not built yet;"; \
		echo "          the RPC core is: try 'make test' or 'make bench'."; \
		exit 1; \
	fi

bench: build
	@scripts/deps.sh bench
	bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
