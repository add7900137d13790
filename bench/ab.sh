#!/usr/bin/env bash
# Before/after on this machine: builds REV (a commit) beside the working tree
# and measures both the same way, alternating, so the machine's noise falls
# on both. Figures for bench/RESULTS.md.
#   bench/ab.sh REV [ROUNDS]   (BENCH_SECONDS=4 per wrk run, ROUNDS=3)
set -euo pipefail
rev=$1
rounds=${2:-3}
secs=${BENCH_SECONDS:-4}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  git -C "$root" worktree remove --force "$tmp/base" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
. "$root/bench/lib.sh"

git -C "$root" worktree add --detach "$tmp/base" "$rev" >/dev/null
cmake -S "$tmp/base" -B "$tmp/base/build" -DTCPOPS_WERROR=OFF >/dev/null
cmake --build "$tmp/base/build" -j 2 >/dev/null
make -C "$root" build >/dev/null

for r in $(seq 1 "$rounds"); do
  for side in before after; do
    bin=$root/build/bin
    [ "$side" = before ] && bin=$tmp/base/build/bin
    start_system
    url="http://127.0.0.1:$gp/people/pets?owner=bob"
    echo "round $r $side $(wrk_line c64 "$url" | cut -d' ' -f3-)"
    echo "round $r $side $(wrk_line c1 "$url" -t1 -c1 | cut -d' ' -f3-)"
    stop_all
  done
done
