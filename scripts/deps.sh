#!/usr/bin/env bash
# Installs the Debian packages tcpops needs that are missing. As root it runs
# apt-get; otherwise it prints the exact command and fails.
#   scripts/deps.sh build    what building needs (make build, run, install):
#                            the compiler and the libraries' -dev packages
#   scripts/deps.sh          also what the tests run (make test): servers
#                            and tools such as PostgreSQL and Chromium, which
#                            a host that only installs tcpops need not get
#   scripts/deps.sh bench    also the benchmark tools (wrk, redis)
#   scripts/deps.sh fuzz     also clang and its libFuzzer runtime
set -euo pipefail

pkgs=(gcc make cmake pkg-config libc6-dev
      libcivetweb-dev libprotobuf-c-dev protobuf-c-compiler
      libsqlite3-dev libcmocka-dev libjansson-dev libinih-dev
      libunistring-dev libpq-dev
      libssl-dev openssl  # mutual TLS; openssl: scripts/dev-certs.sh
      scdoc                # man/*.1.scd into the man pages (built when found)
      libyaml-dev)         # test_openapi reads docs/openapi.yaml
test_pkgs=(
      postgresql          # a real PostgreSQL server the tests start on their own
      systemd             # systemd-analyze: test_deploy verifies deploy/tcpops.service
      iproute2            # ip netns: test_multihost's hosts
      prometheus          # promtool: test_metrics checks /metrics and `tcpops metrics`
      chromium chromium-driver  # test_statuspage: the status page in headless Chromium
      curl netcat-openbsd) # the README's curl and nc examples
case "${1:-}" in
  build) ;;
  '') pkgs+=("${test_pkgs[@]}") ;;
  bench) pkgs+=("${test_pkgs[@]}" wrk redis-server redis-tools sqlite3 procps) ;;   # procps: pgrep
  fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "tcpops needs these Debian packages; run as root:" >&2
  echo "  apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
