# tcpops: thin wrapper over CMake. `make run` and `make test` do all set-up.
BUILD     ?= build
SAN_BUILD ?= build-san
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps test-deps build install test test-san fuzz run bench clean
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60

all: build

# What building needs; the tests' servers and tools (PostgreSQL, Chromium,
# promtool, ...) only for make test, so make install on a host that only
# runs tcpops does not install them.
deps:
	@scripts/deps.sh build

test-deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# PREFIX/bin, PREFIX/share/man/man1, PREFIX/lib/systemd/system (the unit
# runs PREFIX/bin/tcpops), PREFIX/share/bash-completion/completions and
# PREFIX/share/doc/tcpops; DESTDIR=/staging puts it all under /staging.
PREFIX ?= /usr/local
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

test: build test-deps
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The same tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test-san: deps test-deps
	cmake -S . -B $(SAN_BUILD) -DTCPOPS_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)
	cmake --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && ctest --output-on-failure -j $(JOBS)

# libFuzzer targets under ASan + UBSan, FUZZ_SECONDS each, over the seed
# corpus in tests/fuzz/corpus.
fuzz:
	@scripts/deps.sh fuzz
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DTCPOPS_FUZZ=ON -DTCPOPS_WERROR=OFF \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_frame fuzz_dispatch fuzz_text fuzz_http
	tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# The whole system in the foreground on 127.0.0.1:5001-5003, data in ./var.
# Ctrl-C stops it gracefully.
run: build
	exec $(BUILD)/bin/tcpops up --data-dir ./var

bench: build
	@scripts/deps.sh bench
	bench/run.sh $(BUILD) all
	bench/faults.sh $(BUILD)
	bench/cold.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD)
