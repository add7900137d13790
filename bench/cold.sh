#!/usr/bin/env bash
# A burst at a cold start: people, pets and a gateway with
# its defaults start, and the moment the gateway listens (not when it is
# ready) wrk -t2 -c1000 loads /people/pets for 5 s. Prints the non-2xx count
# of each round; it must be 0.
#   bench/cold.sh BUILD [ROUNDS]   (ROUNDS=3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-build}" && pwd)/bin
rounds=${2:-3}
tmp=$(mktemp -d)
pids=()
. "$root/bench/lib.sh"
trap 'stop_all; rm -rf "$tmp"' EXIT
for r in $(seq 1 "$rounds"); do
  rm -rf "$tmp/data"; mkdir -p "$tmp/data"
  pp=$(free_port); qp=$(free_port); gp=$(free_port)
  start tcpops-people "$pp" --data-dir "$tmp/data"
  start tcpops-pets "$qp" --data-dir "$tmp/data"
  "$bin/tcpops-gateway" --listen "127.0.0.1:$gp" --people "127.0.0.1:$pp" \
    --pets "127.0.0.1:$qp" --access-log=false 2>>"$tmp/gateway.log" &
  pids+=($!)
  wait_port "$gp"
  out=$(wrk -t2 -c1000 -d5s "http://127.0.0.1:$gp/people/pets?owner=bob")
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "cold -c1000 round $r requests=$total non2xx=${non2xx:-0}"
  stop_all
done
