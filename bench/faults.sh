#!/usr/bin/env bash
# Fault figures: the gateway benchmark's load (wrk -t2 -c64 on
# /people/pets?owner=bob) while the supervisor's workers are killed, scaled
# and restarted. Prints the errors during each event, the time from a killed
# worker listening again to its first served call, and each worker's share
# of calls 5 s after a scale-up. Everything runs on free loopback ports with
# data in a temporary directory, and is stopped by PID at the end.
#   bench/faults.sh [BUILD_DIR]          (FAULT_SECONDS=8 per event)
set -euo pipefail
build=${1:-build}
bin=$build/bin
secs=${FAULT_SECONDS:-8}
tmp=$(mktemp -d)
master=""
cleanup() {
  if [ -n "$master" ]; then kill "$master" 2>/dev/null || true; wait "$master" 2>/dev/null || true; fi
  [ -n "${KEEP_LOG:-}" ] && cp "$tmp/master.log" /tmp/faults-master.log; rm -rf "$tmp"
}
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"

gp=$(free_port); pp=$(free_port); qp=$(free_port)
T() { "$bin/tcpops" --data-dir "$tmp" "$@"; }
url="http://127.0.0.1:$gp/people/pets?owner=bob"

"$bin/tcpops" up --data-dir "$tmp" --gateway "127.0.0.1:$gp" --people "127.0.0.1:$pp" \
  --pets "127.0.0.1:$qp" --gateway-args "--access-log=false" --pets-args "--log-calls" \
  2>"$tmp/master.log" &
master=$!
for _ in $(seq 1 200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$gp/readyz")" = 200 ] && break
  sleep 0.05
done

# event NAME COMMAND...: wrk for $secs seconds, COMMAND run 2 s in.
event() {
  local name=$1; shift
  wrk -t2 -c64 -d"${secs}s" --latency "$url" > "$tmp/wrk.txt" &
  local w=$!
  sleep 2
  "$@" > /dev/null
  wait "$w"
  local total non2xx errs
  total=$(awk '/requests in/ {print $1}' "$tmp/wrk.txt")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$tmp/wrk.txt")
  errs=$(awk '/Socket errors/ {print}' "$tmp/wrk.txt")
  echo "fault $name: requests=$total non2xx=${non2xx:-0}${errs:+ ($errs)}"
}

pets_pid() { T ps --json | grep -o '"app":"pets","worker":1,"pid":[0-9]*' | grep -o '[0-9]*$' || true; }

# 1. kill -9 the only pets worker.
old=$(pets_pid)
event "kill -9 pets (1 worker)" kill -9 "$old"
new=$(pets_pid)
# grep -m1, not | head: under pipefail a reader that stops early fails the pipe.
stamp() { grep -m1 "^ts=.* worker=pets.1 pid=$new msg=$1" "$tmp/master.log" | sed -n 's/^ts=\([^ ]*\) .*/\1/p'; }
listen_ts=$(stamp listening || true)
call_ts=$(stamp call || true)
if [ -n "$listen_ts" ] && [ -n "$call_ts" ]; then
  l=$(date -d "$listen_ts" +%s%3N); c=$(date -d "$call_ts" +%s%3N)
  echo "fault kill -9 pets: worker listening again -> first served call = $((c - l)) ms"
fi

# 1b. a long outage: no pets worker for OUTAGE seconds, under load. The
# first success after it listens again must not grow with the outage
# (backoff is capped at 2 s and reset once a connection is healthy).
outage=${FAULT_OUTAGE_SECONDS:-30}
wrk -t2 -c64 -d"$((outage + 6))s" "$url" > /dev/null &
w=$!
sleep 1
T scale pets 0 > /dev/null
sleep "$outage"
T scale pets 1 > /dev/null
wait "$w"
new=$(pets_pid)
listen_ts=$(stamp listening || true)
call_ts=$(stamp call || true)
if [ -n "$listen_ts" ] && [ -n "$call_ts" ]; then
  l=$(date -d "$listen_ts" +%s%3N); c=$(date -d "$call_ts" +%s%3N)
  echo "fault outage of ${outage}s: pets listening again -> first served call = $((c - l)) ms (cap 2000 ms x 1.2 jitter + 100)"
fi

# 2. scale people 1 -> 4, then the share each worker carries 5 s later.
event "scale people 1->4" T scale people 4
sleep 0
calls_of() { "$bin/tcpops-cli" --addr "$1" status | grep -o '"calls":[0-9]*' | grep -o '[0-9]*$'; }
# The people members: the "members" list inside "people", before "pets".
members=$(curl -s "http://127.0.0.1:$gp/status" | sed 's/"pets":{.*//; s/.*"members":\[//' |
          grep -o '"address":"[^"]*"' | cut -d'"' -f4 | sort -u)
wrk -t2 -c64 -d5s "$url" > /dev/null &
w=$!
declare -A before
for m in $members; do before[$m]=$(calls_of "$m"); done
wait "$w"
sum=0; declare -A delta
for m in $members; do delta[$m]=$(( $(calls_of "$m") - before[$m] )); sum=$((sum + delta[$m])); done
for m in $members; do
  awk -v m="$m" -v d="${delta[$m]}" -v s="$sum" \
    'BEGIN { printf "fault scale-up share: member %s carried %d of %d calls (%.0f%%)\n", m, d, s, 100 * d / s }'
done

# 3. scale back down, 4. rolling restarts.
event "scale people 4->1" T scale people 1
T scale pets 2 > /dev/null
event "restart pets (2 workers)" T restart pets
event "restart people (1 worker)" T restart people
T down > /dev/null
wait "$master" 2>/dev/null || true
master=""
