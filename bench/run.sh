#!/usr/bin/env bash
# make bench: the figures of bench/RESULTS.md, measured in one run on this
# machine. Starts what it measures on free loopback ports, with data in a
# temporary directory, and stops it by PID.
#   bench/run.sh [BUILD_DIR] [rpc|services|postgres|gateway|all]   (BENCH_SECONDS=5 per figure)
set -euo pipefail
build=${1:-build}
what=${2:-all}
bin=$build/bin
secs=${BENCH_SECONDS:-5}
tmp=$(mktemp -d)
pids=()
pg_stop=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "$pg_stop" ]; then $pg_stop >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"



rpc_figures() {
  echo "== RPC echo over loopback (tcpops-test-echo, one channel, pool of 2) =="
  local port; port=$(free_port)
  "$bin/tcpops-test-echo" --listen "127.0.0.1:$port" --threads 4 >/dev/null &
  pids+=($!)
  wait_port "$port"
  local rps64=0
  for t in 1 8 64; do
    line=$("$bin/tcpops-bench-rpc" --addr "127.0.0.1:$port" --threads "$t" --seconds "$secs")
    echo "echo  $line"
    [ "$t" = 64 ] && rps64=$(echo "$line" | field calls_per_s)
  done
  stop_all

  echo "== reference: redis-benchmark GET, 64 clients, over loopback =="
  local rport; rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --logfile /dev/null &
  pids+=($!)
  wait_port "$rport"
  rline=$(redis-benchmark -p "$rport" -t get -c 64 -n 300000 -q | tr '\r' '\n' |
          grep -E 'GET: [0-9.]+ requests' | tail -1)
  echo "redis $rline"
  redis_rps=$(echo "$rline" | sed -n 's/GET: \([0-9.]*\) requests.*/\1/p')
  stop_all
  awk -v a="$rps64" -v b="$redis_rps" \
    'BEGIN { printf "ratio echo@64 / redis GET = %.0f / %.0f = %.2f (target >= 0.70)\n", a, b, a / b }'
}

service_figures() {
  echo "== services: 64 concurrent callers on one channel (pool of 2), --threads 4 =="
  local pp qp
  for sync in normal full; do
    rm -rf "$tmp/data"; mkdir -p "$tmp/data"
    pp=$(free_port); qp=$(free_port)
    start tcpops-people "$pp" --data-dir "$tmp/data" --sync "$sync"
    start tcpops-pets "$qp" --data-dir "$tmp/data" --sync "$sync"
    if [ "$sync" = normal ]; then
      echo "svc   $("$bin/tcpops-bench-rpc" --addr "127.0.0.1:$pp" --method people.PetIds --threads 64 --seconds "$secs")"
      echo "svc   $("$bin/tcpops-bench-rpc" --addr "127.0.0.1:$qp" --method pets.GetByIds --threads 64 --seconds "$secs")"
    fi
    line=$("$bin/tcpops-bench-rpc" --addr "127.0.0.1:$pp" --method people.Create --threads 64 --seconds "$secs")
    echo "svc   sync=$sync $line"
    stop_all
    rows=$(sqlite3 "$tmp/data/people.db" "SELECT count(*) FROM people WHERE name LIKE 'bench-%'")
    calls=$(echo "$line" | field calls)
    echo "      sync=$sync creates acknowledged=$calls rows on disk=$rows (target >= 5000/s with normal)"
  done
}

# rpc_cpu_line LABEL PORT METHOD PID [pg]: one tcpops-bench-rpc run (64
# callers) with the CPU microseconds per call of the worker PID and, with
# pg, of the PostgreSQL server.
rpc_cpu_line() {
  local label=$1 port=$2 method=$3 pid=$4 pg=${5:-}
  local w0 p0=0 w1 p1=0 line calls hz
  hz=$(getconf CLK_TCK)
  w0=$(cpu_ticks "$pid"); [ -n "$pg" ] && p0=$(pg_ticks)
  line=$("$bin/tcpops-bench-rpc" --addr "127.0.0.1:$port" --method "$method" --threads 64 \
         --seconds "$secs")
  w1=$(cpu_ticks "$pid"); [ -n "$pg" ] && p1=$(pg_ticks)
  calls=$(echo "$line" | field calls)
  awk -v l="$label" -v line="$line" -v w=$((w1 - w0)) -v p=$((p1 - p0)) -v c="$calls" \
      -v hz="$hz" -v pg="$pg" 'BEGIN {
    printf "%-9s %s cpu_us_worker=%.1f", l, line, w * 1e6 / hz / c
    if (pg != "") printf " cpu_us_postgres=%.1f", p * 1e6 / hz / c
    printf "\n" }'
}

# The PostgreSQL store beside SQLite, in the same run: one worker of each
# service on each store, 64 callers on one channel; creates with
# synchronous_commit on (PostgreSQL) and synchronous=normal (SQLite), every
# acknowledged row counted afterwards.
postgres_figures() {
  echo "== stores: SQLite and PostgreSQL, one worker, 64 callers on one channel =="
  pg_start || return 0
  local store db pp qp line rows
  for store in sqlite postgresql; do
    rm -rf "$tmp/data"; mkdir -p "$tmp/data"
    db=sqlite:; [ "$store" = postgresql ] && db=$pg_url
    pp=$(free_port); qp=$(free_port)
    start tcpops-people "$pp" --data-dir "$tmp/data" --db "$db"
    local people=${pids[-1]}
    start tcpops-pets "$qp" --data-dir "$tmp/data" --db "$db"
    local pets=${pids[-1]}
    local pg=; [ "$store" = postgresql ] && pg=1
    rpc_cpu_line "$store" "$pp" people.PetIds "$people" $pg
    rpc_cpu_line "$store" "$qp" pets.GetByIds "$pets" $pg
    line=$(rpc_cpu_line "$store" "$pp" people.Create "$people" $pg); echo "$line"
    stop_all
    if [ "$store" = postgresql ]; then
      rows=$(psql -XAtq "$pg_url" -c "SELECT count(*) FROM people WHERE name LIKE 'bench-%'")
    else
      rows=$(sqlite3 "$tmp/data/people.db" "SELECT count(*) FROM people WHERE name LIKE 'bench-%'")
    fi
    echo "          $store creates acknowledged=$(echo "$line" | field calls) rows stored=$rows"
  done
  $pg_stop >/dev/null
  pg_stop=""
  echo "targets on PostgreSQL: people.Create >= 5000/s (synchronous_commit=on), people.PetIds >= 20000/s"
}

# ms VALUE: a wrk latency (850.00us, 5.79ms, 1.02s) in milliseconds.
ms() { echo "$1" | awk '/us$/ {print $0 / 1000; next} /ms$/ {print $0 + 0; next} /s$/ {print $0 * 1000}'; }

gateway_figures() {
  echo "== HTTP: wrk -t2 -c64, ${secs}s each (-c1 and -c1000 where it says) =="
  local paced; paced="$(dirname "$0")/paced.lua"
  local bp; bp=$(free_port)
  "$bin/tcpops-bench-bare" --listen "127.0.0.1:$bp" --threads 1100 &
  pids+=($!)
  wait_port "$bp"
  local bare bare1 bare1k bare1kp
  bare=$(wrk_line bare-civetweb "http://127.0.0.1:$bp/"); echo "$bare"
  bare1=$(wrk_line bare-civetweb-c1 "http://127.0.0.1:$bp/" -t1 -c1); echo "$bare1"
  bare1k=$(wrk_line bare-civetweb-c1000 "http://127.0.0.1:$bp/" -t2 -c1000); echo "$bare1k"
  bare1kp=$(wrk_line bare-civetweb-c1000-paced "http://127.0.0.1:$bp/" -t2 -c1000 -s "$paced")
  echo "$bare1kp"
  stop_all

  start_system
  local url="http://127.0.0.1:$gp/people/pets?owner=bob"
  local pets list pets1 pets1k pets1kp rss post
  pets=$(wrk_line people-pets "$url"); echo "$pets"
  list=$(wrk_line people-list "http://127.0.0.1:$gp/people"); echo "$list"
  pets1=$(wrk_line people-pets-c1 "$url" -t1 -c1); echo "$pets1"
  pets1k=$(wrk_line people-pets-c1000 "$url" -t2 -c1000); echo "$pets1k"
  pets1kp=$(wrk_line people-pets-c1000-paced "$url" -t2 -c1000 -s "$paced"); echo "$pets1kp"
  rss=$(awk '/VmRSS/ {print $2}' /proc/"$gpid"/status)
  echo "      gateway RSS after 1000 connections: $rss kB"
  post=$(wrk_line post-unique "http://127.0.0.1:$gp" -s "$(dirname "$0")/post_unique.lua")
  echo "$post"
  stop_all
  local rows; rows=$(sqlite3 "$tmp/data/people.db" "SELECT count(*) FROM people WHERE name LIKE 'w%'")
  local posted; posted=$(echo "$post" | field requests)
  echo "      creates on disk after the POST run: $rows, answered by wrk: $posted (every 201 must be there)"

  echo "== performance figures: ours, reference in this run, ratio, target =="
  printf '%s\n' \
    "/people/pets req/s|$(echo "$pets" | field req_per_s)|$(echo "$bare" | field req_per_s)|>= 0.5x bare" \
    "/people req/s|$(echo "$list" | field req_per_s)|$(echo "$bare" | field req_per_s)|>= 0.6x bare" \
    "/people/pets p99 ms at -c64|$(ms "$(echo "$pets" | field p99)")|$(ms "$(echo "$bare" | field p99)")|<= 5 ms" \
    "/people/pets non-2xx at -c64|$(echo "$pets" | field non2xx)|0|0" \
    "POST /people creates/s|$(echo "$post" | field req_per_s)|10000|>= 10000, all on disk" \
    "-c1000 p99 ms, closed loop|$(ms "$(echo "$pets1k" | field p99)")|$(ms "$(echo "$bare1k" | field p99)")|<= 20 ms" \
    "-c1000 p99 ms, paced ~10k req/s|$(ms "$(echo "$pets1kp" | field p99)")|$(ms "$(echo "$bare1kp" | field p99)")|<= 20 ms" \
    "gateway RSS MiB at -c1000|$((rss / 1024))|64|<= 64 MiB" \
    "-c1 p50 ms|$(ms "$(echo "$pets1" | field p50)")|$(ms "$(echo "$bare1" | field p50)")|<= 0.150 ms" |
  awk -F'|' '{ r = ($3 + 0 != 0) ? sprintf("%.2f", $2 / $3) : "-";
               printf "%-34s ours %-10s ref %-10s ratio %-6s target %s\n", $1, $2, $3, r, $4 }'
}

case "$what" in
  rpc) rpc_figures ;;
  services) service_figures ;;
  postgres) postgres_figures ;;
  gateway) gateway_figures ;;
  all) rpc_figures; service_figures; postgres_figures; gateway_figures ;;
  *) echo "usage: bench/run.sh [BUILD_DIR] [rpc|services|postgres|gateway|all]" >&2; exit 2 ;;
esac
