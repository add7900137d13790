#!/usr/bin/env bash
# make bench: the figures of bench/RESULTS.md, measured in one run on this
# machine. Starts what it measures on free loopback ports and stops it by PID.
#   bench/run.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
bin=$build/bin
secs=${BENCH_SECONDS:-5}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
  echo "bench: no free port found" >&2; exit 1
}

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

echo "== RPC echo over loopback (tcpops-test-echo, one channel, pool of 2) =="
out=$(mktemp)
"$bin/tcpops-test-echo" --listen 127.0.0.1:0 --threads 4 > "$out" &
pids+=($!)
for _ in $(seq 1 100); do grep -q port= "$out" && break; sleep 0.05; done
port=$(field port < "$out")
declare -A rps
for t in 1 8 64; do
  line=$("$bin/tcpops-bench-echo" --addr "127.0.0.1:$port" --threads "$t" --seconds "$secs")
  echo "echo  $line"
  rps[$t]=$(echo "$line" | field calls_per_s)
done
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

echo "== reference: redis-benchmark GET, 64 clients, over loopback =="
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --logfile /dev/null &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
rline=$(redis-benchmark -p "$rport" -t get -c 64 -n 300000 -q | tr '\r' '\n' | grep -E 'GET: [0-9.]+ requests' | tail -1)
echo "redis $rline"
redis_rps=$(echo "$rline" | sed -n 's/GET: \([0-9.]*\) requests.*/\1/p')
awk -v a="${rps[64]}" -v b="$redis_rps" \
  'BEGIN { printf "ratio echo@64 / redis GET = %.0f / %.0f = %.2f (target >= 0.70)\n", a, b, a / b }'
