#!/usr/bin/env bash
# make bench: the figures of bench/RESULTS.md, measured in one run on this
# machine. Starts what it measures on free loopback ports, with data in a
# temporary directory, and stops it by PID.
#   bench/run.sh [BUILD_DIR] [rpc|services|postgres|gateway|tls|all]   (BENCH_SECONDS=5 per figure)
# The gateway part sweeps BENCH_CONNS (default "1 8 64 256 1000") in
# BENCH_ROUNDS rounds (default 3) and writes sweep.tsv and its charts to
# BENCH_OUT (default BUILD_DIR/bench-out).
set -euo pipefail
build=${1:-build}
what=${2:-all}
bin=$build/bin
secs=${BENCH_SECONDS:-5}
tmp=$(mktemp -d)
pids=()
pg_stop=""
bench_out=""   # set by gateway_figures: where sweep.tsv and the charts are
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
  echo "== services: 64 concurrent callers on one channel (pool of 2), --threads 4; CPU us per call of worker and client =="
  local pp qp
  for sync in normal full; do
    rm -rf "$tmp/data"; mkdir -p "$tmp/data"
    pp=$(free_port); qp=$(free_port)
    start tcpops-people "$pp" --data-dir "$tmp/data" --sync "$sync"
    start tcpops-pets "$qp" --data-dir "$tmp/data" --sync "$sync"
    if [ "$sync" = normal ]; then
      rpc_cpu_line svc "$pp" people.PetIds "${pids[-2]}"
      rpc_cpu_line svc "$qp" pets.GetByIds "${pids[-1]}"
    fi
    line=$(rpc_cpu_line "sync=$sync" "$pp" people.Create "${pids[-2]}")
    echo "$line"
    stop_all
    rows=$(sqlite3 "$tmp/data/people.db" "SELECT count(*) FROM people WHERE name LIKE 'bench-%'")
    calls=$(echo "$line" | field calls)
    echo "      sync=$sync creates acknowledged=$calls rows on disk=$rows (target >= 5000/s with normal)"
  done
}

# rpc_cpu_line LABEL PORT METHOD PID [pg [ARGS...]]: one tcpops-bench-rpc
# run (64 callers, ARGS added) with the CPU microseconds per call of the
# worker PID and, with pg non-empty, of the PostgreSQL server.
rpc_cpu_line() {
  local label=$1 port=$2 method=$3 pid=$4 pg=${5:-}
  shift 4; [ $# -gt 0 ] && shift
  local w0 p0=0 w1 p1=0 line calls hz
  hz=$(getconf CLK_TCK)
  w0=$(cpu_ticks "$pid"); [ -n "$pg" ] && p0=$(pg_ticks)
  line=$("$bin/tcpops-bench-rpc" --addr "127.0.0.1:$port" --method "$method" --threads 64 \
         --seconds "$secs" "$@")
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

# The gateway's figures, in one run: wrk closed loop at each concurrency of
# BENCH_CONNS (default 1 8 64 256 1000) in BENCH_ROUNDS rounds (default 3).
# Each round runs the reference (tcpops-bench-bare with bare_threads C
# threads), /people/pets and /people in turn at each concurrency, so a
# drift of the machine touches all three alike; every run is a row of
# $BENCH_OUT/sweep.tsv and every figure the median over the rounds, each run
# shown. Then single runs: paced -c1000 and POST creates. The charts of
# bench/plot.py go beside sweep.tsv.
gateway_figures() {
  local out=${BENCH_OUT:-$build/bench-out} rounds=${BENCH_ROUNDS:-3}
  local conns=${BENCH_CONNS:-1 8 64 256 1000}
  local pets="/people/pets?owner=bob" list="/people" ref=reference
  # Read by bare_for and sweep_run: the sweep's data file, the gateway's
  # cpu_names, the reference's port, PID and thread count.
  local tsv=$out/sweep.tsv gw_cpu bp="" bpid="" bthreads=""
  mkdir -p "$out"
  echo "== HTTP: wrk closed loop at $conns connections, ${secs}s each, $rounds rounds alternating =="
  start_system
  gw_cpu=$cpu_names
  (IFS=$'\t'; echo "${sweep_columns[*]}") >"$tsv"
  local r c t
  for r in $(seq 1 "$rounds"); do
    for c in $conns; do
      bare_for "$c"
      for t in $ref "$pets" $list; do sweep_run "$r" "$t" "$c"; done
    done
  done

  local paced; paced="$(dirname "$0")/paced.lua"
  bare_for 1000
  local barep gwp post rows posted
  cpu_names="bare=$bpid"
  barep=$(wrk_line reference-c1000-paced "http://127.0.0.1:$bp/" -t2 -c1000 -s "$paced")
  echo "$barep"
  stop_pid "$bpid"
  cpu_names=$gw_cpu
  gwp=$(wrk_line people-pets-c1000-paced "http://127.0.0.1:$gp$pets" -t2 -c1000 -s "$paced")
  echo "$gwp"
  post=$(wrk_line post-unique "http://127.0.0.1:$gp" -s "$(dirname "$0")/post_unique.lua")
  echo "$post"
  stop_all
  rows=$(sqlite3 "$tmp/data/people.db" "SELECT count(*) FROM people WHERE name LIKE 'w%'")
  posted=$(echo "$post" | field requests)
  echo "      creates on disk after the POST run: $rows, answered by wrk: $posted (every 201 must be there)"

  echo "== performance figures: ours, reference in this run, ratio, target; median of $rounds rounds [each run] =="
  local rss
  rss=$(sweep_values "$tsv" "$pets|$list" 1000 gateway_rss_kb |
        awk '{ for (i = 1; i <= NF; i++) printf "%s%.1f", (i > 1 ? " " : ""), $i / 1024 }')
  printf '%s\n' \
    "/people/pets req/s, C=64|$(sweep_values "$tsv" "$pets" 64 req_per_s)|$(sweep_values "$tsv" $ref 64 req_per_s)|>= 0.5x ref" \
    "/people/pets p99 ms, C=64|$(sweep_values "$tsv" "$pets" 64 p99_ms)|$(sweep_values "$tsv" $ref 64 p99_ms)|<= 5 ms" \
    "/people/pets non-2xx, C=64|$(sweep_values "$tsv" "$pets" 64 non2xx)|$(sweep_values "$tsv" $ref 64 non2xx)|= 0" \
    "/people req/s, C=64|$(sweep_values "$tsv" $list 64 req_per_s)|$(sweep_values "$tsv" $ref 64 req_per_s)|>= 0.65x ref" \
    "/people/pets p50 ms, C=1|$(sweep_values "$tsv" "$pets" 1 p50_ms)|$(sweep_values "$tsv" $ref 1 p50_ms)|<= 2x ref" \
    "/people/pets errors, C=1000|$(sweep_values "$tsv" "$pets" 1000 non2xx+socket_errors)|$(sweep_values "$tsv" $ref 1000 non2xx+socket_errors)|= 0" \
    "/people errors, C=1000|$(sweep_values "$tsv" $list 1000 non2xx+socket_errors)|$(sweep_values "$tsv" $ref 1000 non2xx+socket_errors)|= 0" \
    "/people/pets p99 ms, C=1000|$(sweep_values "$tsv" "$pets" 1000 p99_ms)|$(sweep_values "$tsv" $ref 1000 p99_ms)|-" \
    "gateway RSS MiB after C=1000|$rss|-|<= 64 MiB" \
    "-c1000 p99 ms, paced ~10k req/s|$(ms "$(echo "$gwp" | field p99)")|$(ms "$(echo "$barep" | field p99)")|<= 20 ms" \
    "POST /people creates/s|$(echo "$post" | field req_per_s)|-|>= 10000" |
  figures_table
  cpu_table "$tsv" 64 $ref "$pets" $list
  if command -v python3 >/dev/null; then
    python3 "$(dirname "$0")/plot.py" "$tsv" "$out" "one $(nproc)-core machine" >/dev/null
  else
    echo "bench: no python3, no charts"
  fi
  bench_out=$(cd "$out" && pwd)
}

# bare_for C: a tcpops-bench-bare with bare_threads C threads listening on
# bp (PID bpid); the one running is kept when it has that many, else it is
# stopped and another started.
bare_for() {
  local n; n=$(bare_threads "$1")
  [ "$n" = "$bthreads" ] && return 0
  [ -n "$bpid" ] && stop_pid "$bpid"
  bp=$(free_port)
  start tcpops-bench-bare "$bp" --threads "$n"
  bpid=${pids[-1]} bthreads=$n
}

# sweep_run ROUND TARGET CONNS: one wrk run of the sweep (-t1 at one
# connection), against the reference when TARGET is "reference", else the
# gateway's path TARGET; printed, and a row of $tsv.
sweep_run() {
  local t=$2 c=$3 url line rss="" wt=-t2
  [ "$c" = 1 ] && wt=-t1
  if [ "$t" = reference ]; then
    cpu_names="bare=$bpid" url="http://127.0.0.1:$bp/"
  else
    cpu_names=$gw_cpu url="http://127.0.0.1:$gp$t"
  fi
  line=$(wrk_line "$t" "$url" "$wt" -c"$c")
  [ "$t" = reference ] || rss=$(awk '/VmRSS/ {print $2}' /proc/"$gpid"/status)
  echo "r$1 c=$c $line"
  sweep_row "$1" "$t" "$c" "$line" "$rss" >>"$tsv"
}

# The TLS figures, in one run: the same load over plaintext and over mutual
# TLS, alternating (plain, TLS, plain, TLS, plain, TLS) so that a drift of
# the machine touches both alike, each figure the median of its three runs;
# then a pets worker restarted under a gateway holding 64 TLS connections.
# Certificates from scripts/dev-certs.sh, made in $tmp.
tls_figures() {
  local certs=$tmp/certs
  tls_rows=()
  "$(dirname "$0")/../scripts/dev-certs.sh" "$certs" >/dev/null
  tls_echo_figures "$certs"
  tls_gateway_figures "$certs"
  tls_resume_figures "$certs"
  echo "== TLS figures: ours = TLS, reference = plaintext in this run (medians of 3 [each run]) =="
  printf '%s\n' "${tls_rows[@]}" | figures_table
}

# field_values [-ms] FIELD LINE...: FIELD of each line, space-separated
# (figures_table shows them with their median); with -ms FIELD is a wrk
# latency (850.00us, 1.02ms), taken in ms.
field_values() {
  local conv="" l f x v=()
  [ "$1" = -ms ] && { conv=1; shift; }
  f=$1; shift
  for l in "$@"; do
    x=$(echo "$l" | field "$f")
    if [ -n "$conv" ]; then v+=("$(ms "$x")"); else v+=("$x"); fi
  done
  echo "${v[*]}"
}

tls_echo_figures() {
  local certs=$1 pp tp ppid tpid line plain=() tls=()
  echo "== RPC echo: 64 callers on one channel (pool of 2), --threads 4, plaintext and TLS alternating =="
  pp=$(free_port)
  start tcpops-test-echo "$pp" --threads 4 >/dev/null
  ppid=${pids[-1]}
  tp=$(free_port)
  start tcpops-test-echo "$tp" --threads 4 $(tls_flags "$certs" server) >/dev/null
  tpid=${pids[-1]}
  for _ in 1 2 3; do
    line=$(rpc_cpu_line plain "$pp" test.Echo "$ppid"); echo "$line"; plain+=("$line")
    line=$(rpc_cpu_line tls "$tp" test.Echo "$tpid" "" $(tls_flags "$certs" client))
    echo "$line"; tls+=("$line")
  done
  # Connect + handshake alone, one connection at a time: 200 full, 200 resumed.
  local hs
  hs=$("$bin/tcpops-bench-rpc" --addr "127.0.0.1:$tp" --handshakes 200 $(tls_flags "$certs" client))
  echo "tls       $hs"
  stop_all
  local f
  tls_rows+=("echo@64 calls/s|$(field_values calls_per_s "${tls[@]}")|$(field_values calls_per_s "${plain[@]}")|>= 0.7x plaintext")
  for f in p99_us cpu_us_worker cpu_us_client; do
    tls_rows+=("echo@64 $f|$(field_values $f "${tls[@]}")|$(field_values $f "${plain[@]}")|-")
  done
  tls_rows+=("TLS handshake us: resumed vs full|$(echo "$hs" | field resumed_us)|$(echo "$hs" | field full_us)|-")
}

tls_gateway_figures() {
  local certs=$1 cfg line plain=() tls=()
  local url="/people/pets?owner=bob"
  echo "== gateway $url: wrk -t2 -c64, both service hops plaintext and TLS alternating =="
  for _ in 1 2 3; do
    for cfg in plain tls; do
      if [ "$cfg" = tls ]; then start_system "$certs"; else start_system; fi
      line=$(wrk_line "pets-$cfg" "http://127.0.0.1:$gp$url"); echo "$line"
      stop_all
      if [ "$cfg" = tls ]; then tls+=("$line"); else plain+=("$line"); fi
    done
  done
  local f
  tls_rows+=("/people/pets req/s|$(field_values req_per_s "${tls[@]}")|$(field_values req_per_s "${plain[@]}")|>= 0.8x plaintext")
  tls_rows+=("/people/pets p99 ms|$(field_values -ms p99 "${tls[@]}")|$(field_values -ms p99 "${plain[@]}")|-")
  for f in non2xx cpu_us_gateway cpu_us_people cpu_us_pets; do
    tls_rows+=("/people/pets $f|$(field_values $f "${tls[@]}")|$(field_values $f "${plain[@]}")|-")
  done
}

# gw_metric NAME SERVICE: the gateway's tcpops_rpc_NAME{service="SERVICE"} (0 if absent).
gw_metric() {
  local v
  v=$(curl -s "http://127.0.0.1:$gp/metrics" |
      awk -v k="tcpops_rpc_$1{service=\"$2\"}" '$1 == k { print $2 }')
  echo "${v:-0}"
}

# pets_tls_conns: TLS connections the gateway has made to pets so far
# (full handshakes and resumed ones).
pets_tls_conns() {
  echo $(( $(gw_metric tls_handshakes_total pets) + $(gw_metric tls_resumed_total pets) ))
}

# wait_pets_conns N MADE SECONDS: until the gateway has N connections to
# pets open and has made N more TLS connections than MADE; 1 past SECONDS.
wait_pets_conns() {
  local end=$(( $(now_ms) + $3 * 1000 ))
  while [ "$(now_ms)" -lt "$end" ]; do
    if [ "$(gw_metric connections_open pets)" -ge "$1" ] &&
       [ "$(pets_tls_conns)" -ge $(( $2 + $1 )) ]; then
      return 0
    fi
    sleep 0.02
  done
  return 1
}

# status_counter CERT_DIR NAME: counter NAME of the pets worker's svc.Status
# (through tcpops-cli over TLS, whose own connection is one more full
# handshake).
status_counter() {
  "$bin/tcpops-cli" --addr "127.0.0.1:$qp" $(tls_flags "$1" client) status |
    sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"
}

# A pets worker restarted (SIGTERM, then started again at the same addresses
# with the same key) under a gateway holding --pool 64 TLS connections to
# each of its two addresses (the shared port and its member port): how many
# reconnects resumed their session, and how long they took.
tls_resume_figures() {
  local certs=$1 n=128 made t0 t1 t2 h0 r0 full resumed
  echo "== TLS resumption: the pets worker restarted under a gateway with --pool 64 =="
  start_system "$certs" 64
  wait_pets_conns "$n" 0 10 ||
    { echo "bench: the gateway did not open $n connections to pets" >&2; exit 1; }
  h0=$(gw_metric tls_handshakes_total pets); r0=$(gw_metric tls_resumed_total pets)
  made=$(( h0 + r0 ))
  stop_pid "$qpid"
  t0=$(now_ms)
  start tcpops-pets "$qp" "${pets_args[@]}"
  qpid=${pids[-1]}
  t1=$(now_ms)
  wait_pets_conns "$n" "$made" 30 ||
    echo "bench: $(gw_metric connections_open pets) of $n connections to pets back after 30 s" >&2
  t2=$(now_ms)
  full=$(( $(status_counter "$certs" tls_handshakes) - 1 ))
  resumed=$(status_counter "$certs" tls_resumed)
  echo "      $n connections to pets (64 to each address) back $((t2 - t1)) ms after it" \
       "listened again, $((t2 - t0)) ms after its start"
  echo "      pets counters: full handshakes=$full resumed=$resumed (tcpops-cli's own not" \
       "counted; the gateway's membership poll is one more, not in the gateway's counters)"
  echo "      gateway counters since the restart: full handshakes=$(( $(gw_metric tls_handshakes_total pets) - h0 ))" \
       "resumed=$(( $(gw_metric tls_resumed_total pets) - r0 ))"
  stop_all
  tls_rows+=("pets restart: resumed handshakes|$resumed|$((full + resumed))|all resumed, none full")
  tls_rows+=("pets restart: ms until $n back|$((t2 - t1))|-|-")
}

case "$what" in
  rpc) rpc_figures ;;
  services) service_figures ;;
  postgres) postgres_figures ;;
  gateway) gateway_figures ;;
  tls) tls_figures ;;
  all) rpc_figures; service_figures; postgres_figures; gateway_figures; tls_figures ;;
  *) echo "usage: bench/run.sh [BUILD_DIR] [rpc|services|postgres|gateway|tls|all]" >&2; exit 2 ;;
esac
if [ -n "${bench_out:-}" ]; then
  echo "== the gateway sweep's data and charts: $bench_out: $(cd "$bench_out" && echo *) =="
fi
