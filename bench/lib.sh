# Shared by the bench scripts: free loopback ports, waiting for a listener,
# starting and stopping what is measured, one wrk run on one line. The caller
# sets bin (the binaries), tmp (a scratch directory), secs and pids=().

# free_port: a loopback port nothing listens on now, below the kernel's
# ephemeral range (32768 and up), so no connection's source port takes it
# before the program binds it.
free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((10000 + RANDOM % 22000))
    if ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
  done
  echo "bench: no free port found" >&2; exit 1
}

# wait_port PORT: until something accepts on it (at most 10 s).
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: nothing listens on $1" >&2; exit 1
}

# start NAME PORT ARGS...: starts build/bin/NAME in the background on PORT.
start() {
  local name=$1 port=$2; shift 2
  "$bin/$name" --listen "127.0.0.1:$port" "$@" 2>>"$tmp/$name.log" &
  pids+=($!)
  wait_port "$port"
}

stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  cpu_names=""
}

# stop_pid PID: stops one process started here (SIGTERM, then waits for it)
# and drops it from pids, so no later kill reaches whatever reuses the PID.
stop_pid() {
  local p keep=()
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

# tls_flags DIR ROLE: the --tls-* flags of ROLE (server or client) with the
# certificates scripts/dev-certs.sh made in DIR. For unquoted expansion: DIR
# is under $tmp, which mktemp names without spaces.
tls_flags() { echo "--tls-cert $1/$2.crt --tls-key $1/$2.key --tls-ca $1/ca.crt"; }

# median N...: the middle value (the lower middle of an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# shown N...: the median of the values, then every value in brackets when
# there are more than one, so a table shows each run beside its median.
shown() {
  if [ $# -gt 1 ]; then echo "$(median "$@") [$*]"; else echo "${1:--}"; fi
}

# now_ms: wall-clock milliseconds.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# figures_table: reads "what|ours|reference|target" lines, where ours and
# reference are one value or the space-separated values of several runs,
# and prints each with its medians (every run shown), the ratio of the
# medians ours / reference ("-" when the reference is 0 or not a number)
# and whether the target is met. A target ">= 0.5x ..." or "<= 2x ..." is
# on the ratio, ">= N", "<= N" or "= N" on ours; any other is not checked.
figures_table() {
  local label ours ref target
  # shellcheck disable=SC2086  # ours and ref are lists of values
  while IFS="|" read -r label ours ref target; do
    printf "%s|%s|%s|%s|%s|%s\n" "$label" "$(shown $ours)" "$(shown $ref)" "$target" \
      "$(median $ours)" "$(median $ref)"
  done | awk -F'|' '
    function num(x) { return x ~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/ }
    function verdict(t, o, r,   op, n) {
      if (!match(t, /^(>=|<=|=) *[0-9.]+/)) return ""
      op = t; sub(/ *[0-9.].*/, "", op)
      n = substr(t, RSTART, RLENGTH); sub(/^[<>=]+ */, "", n); n += 0
      if (substr(t, RSTART + RLENGTH, 1) == "x") { if (r == "-") return "?"; o = r }
      else if (!num(o)) return "?"
      if (op == ">=") return (o + 0 >= n) ? "met" : "NOT MET"
      if (op == "<=") return (o + 0 <= n) ? "met" : "NOT MET"
      return (o + 0 == n) ? "met" : "NOT MET"
    }
    { r = (num($5) && num($6) && $6 + 0 != 0) ? sprintf("%.2f", $5 / $6) : "-"
      printf "%-32s ours %-26s ref %-26s ratio %-5s target %-12s %s\n", \
        $1, $2, $3, r, $4, verdict($4, $5, r) }'
}

field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

# cpu_ticks PID: user + system CPU the process has used, in clock ticks.
cpu_ticks() {
  # Fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends the
  # command name (which may itself hold spaces).
  sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# cpu_names: "name=pid ..." of the processes whose CPU per request
# wrk_line reports (set by start_system; empty: none).
cpu_names=""

# wrk_line LABEL URL [wrk args...]: one wrk run summarised on one line, with
# the CPU microseconds per request of each process in cpu_names.
wrk_line() {
  local label=$1 url=$2; shift 2
  local out np before=()
  for np in $cpu_names; do before+=("$(cpu_ticks "${np#*=}")"); done
  out=$(wrk -t2 -c64 -d"${secs}s" --latency "$@" "$url")
  local rps p50 p99 non2xx errs total
  rps=$(echo "$out" | awk '/^Requests\/sec/ {printf "%.0f", $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  # "Socket errors: connect 1, read 2, write 0, timeout 3": summed, with
  # the parts kept on the line when there are any.
  errs=$(echo "$out" | awk '/Socket errors/ { gsub(",", "")
    printf "socket_errors=%d (connect %d read %d write %d timeout %d)", $4 + $6 + $8 + $10, $4, $6, $8, $10 }')
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  local cpu="" i=0 hz
  hz=$(getconf CLK_TCK)
  for np in $cpu_names; do
    local d=$(( $(cpu_ticks "${np#*=}") - before[i] ))
    cpu="$cpu cpu_us_${np%%=*}=$(awk -v d="$d" -v hz="$hz" -v n="$total" \
      'BEGIN { printf "%.1f", (n > 0 ? d * 1e6 / hz / n : 0) }')"
    i=$((i + 1))
  done
  echo "http  $label req_per_s=$rps p50=$p50 p99=$p99 requests=$total non2xx=${non2xx:-0} ${errs:-socket_errors=0}$cpu"
}

# ms VALUE: a wrk latency (850.00us, 5.79ms, 1.02s) in milliseconds.
ms() { echo "$1" | awk '/us$/ {print $0 / 1000; next} /ms$/ {print $0 + 0; next} /s$/ {print $0 * 1000}'; }

# bare_threads C: the --threads of tcpops-bench-bare for C keep-alive
# connections: civetweb gives each open connection a thread of its own, so
# C connections need C threads (64 spare), and never fewer than 128.
bare_threads() { if [ "$1" -le 64 ]; then echo 128; else echo $(($1 + 64)); fi; }

# The columns of sweep.tsv, one row per wrk run of the concurrency sweep;
# gateway_rss_kb is the gateway's VmRSS right after the run.
sweep_columns=(round target conns req_per_s p50_ms p99_ms requests non2xx socket_errors
               cpu_us_gateway cpu_us_people cpu_us_pets cpu_us_bare gateway_rss_kb)

# sweep_row ROUND TARGET CONNS LINE [RSS_KB]: one wrk_line as a row of
# sweep.tsv (tab-separated, latencies in ms), "-" for what the line lacks.
sweep_row() {
  local c v row="$1"$'\t'"$2"$'\t'"$3"
  for c in "${sweep_columns[@]:3:10}"; do
    v=$(echo "$4" | field "${c%_ms}")
    case $c in *_ms) [ -n "$v" ] && v=$(ms "$v") ;; esac
    row+=$'\t'"${v:--}"
  done
  echo "$row"$'\t'"${5:--}"
}

# sweep_values TSV TARGETS CONNS COLUMN: COLUMN of the rows of TARGETS
# ("|"-separated) at CONNS, one value per round in round order (the largest
# when several targets match); COLUMN "a+b" is the sum of two columns.
sweep_values() {
  awk -F'\t' -v t="|$2|" -v c="$3" -v col="$4" '
    NR == 1 { for (i = 1; i <= NF; i++) k[$i] = i; n = split(col, cols, "+"); next }
    index(t, "|" $2 "|") && $3 == c {
      for (i = 1; i <= n; i++) { x = $k[cols[i]]; if (x == "-") { v = "-"; break } v = (i == 1) ? x : v + x }
      if (!($1 in best)) { best[$1] = v; order[++m] = $1 }
      else if (v != "-" && (best[$1] == "-" || v + 0 > best[$1] + 0)) best[$1] = v
    }
    END { for (i = 1; i <= m; i++) printf "%s%s", (i > 1 ? " " : ""), best[order[i]] }' "$1"
}

# cpu_table TSV CONNS TARGET...: CPU microseconds per request of each
# process (gateway, people, pets, bare) for each TARGET at CONNS, the
# median over the rounds.
cpu_table() {
  local tsv=$1 conns=$2 t c
  shift 2
  printf '%-26s %9s %9s %9s %9s\n' "CPU us/request at C=$conns" gateway people pets reference
  for t in "$@"; do
    printf '%-26s' "$t"
    for c in cpu_us_gateway cpu_us_people cpu_us_pets cpu_us_bare; do
      # shellcheck disable=SC2046  # one word per round
      printf ' %9s' "$(median $(sweep_values "$tsv" "$t" "$conns" "$c"))"
    done
    echo
  done
}

# start_system [CERT_DIR [POOL]]: one worker of each service (data in
# $tmp/data, made fresh) and a gateway in front (--pool POOL; if not
# given, the gateway's own default: measured as shipped); with CERT_DIR (scripts/dev-certs.sh's files) both service hops are
# mutual TLS. Sets gp and gpid (the gateway's port and PID), qp, qpid and
# pets_args (the pets worker's port, PID and other flags: its member port
# is fixed, so the same command starts it again at the same two addresses).
start_system() {
  rm -rf "$tmp/data"; mkdir -p "$tmp/data"
  local pp svc_tls="" gw_tls=""
  if [ -n "${1:-}" ]; then svc_tls=$(tls_flags "$1" server); gw_tls=$(tls_flags "$1" client); fi
  pp=$(free_port); qp=$(free_port); gp=$(free_port)
  start tcpops-people "$pp" --data-dir "$tmp/data" $svc_tls
  pets_args=(--member-listen "127.0.0.1:$(free_port)" --data-dir "$tmp/data" $svc_tls)
  start tcpops-pets "$qp" "${pets_args[@]}"
  qpid=${pids[-1]}
  cpu_names="people=${pids[-2]} pets=${pids[-1]}"
  "$bin/tcpops-gateway" --listen "127.0.0.1:$gp" --people "127.0.0.1:$pp" \
    --pets "127.0.0.1:$qp" ${2:+--pool "$2"} $gw_tls 2>>"$tmp/gateway.log" &
  gpid=$!
  pids+=($gpid)
  cpu_names="gateway=$gpid $cpu_names"
  wait_port "$gp"
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$gp/readyz")" = 200 ] && return 0
    sleep 0.05
  done
  echo "bench: the gateway on $gp was not ready" >&2; exit 1
}

# pg_start: a PostgreSQL of the bench's own under $tmp/pg on a free port
# (as the postgres user when root: PostgreSQL refuses root), fsync and
# synchronous_commit on; sets pg_url and pg_stop (the command that stops
# it). Binaries from pg_config --bindir or /usr/lib/postgresql/N/bin.
pg_start() {
  local bindir run=() port
  bindir=$(pg_config --bindir 2>/dev/null || true)
  [ -x "$bindir/initdb" ] || bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$bindir/initdb" ] || { echo "bench: PostgreSQL is not installed (scripts/deps.sh)" >&2; return 1; }
  mkdir -p "$tmp/pg"
  if [ "$(id -u)" = 0 ]; then
    chmod 755 "$tmp"; chown postgres "$tmp/pg"; run=(runuser -u postgres --)
  fi
  port=$(free_port)
  "${run[@]}" "$bindir/initdb" -D "$tmp/pg/data" -A trust -U tcpops -E UTF8 --locale=C \
    --no-sync >/dev/null
  "${run[@]}" "$bindir/pg_ctl" -D "$tmp/pg/data" -l "$tmp/pg/log" -w \
    -o "-p $port -k $tmp/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  pg_stop="${run[*]} $bindir/pg_ctl -D $tmp/pg/data -m fast -w stop"
  psql -Xq "postgresql://tcpops@127.0.0.1:$port/postgres" -c "CREATE DATABASE tcpops"
  pg_url="postgresql://tcpops@127.0.0.1:$port/tcpops"
}

# pg_ticks: CPU clock ticks used so far by every PostgreSQL process of the
# bench's server (the postmaster and its children).
pg_ticks() {
  local pm t=0 p
  pm=$(head -1 "$tmp/pg/data/postmaster.pid")
  for p in $pm $(pgrep -P "$pm"); do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done
  echo "$t"
}
