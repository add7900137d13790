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
    echo "round $r $side $(wrk_line c64 "$url" | cut -d' ' -f3-)" | tee -a "$tmp/rounds"
    echo "round $r $side $(wrk_line c1 "$url" -t1 -c1 | cut -d' ' -f3-)" | tee -a "$tmp/rounds"
    stop_all
  done
done

# Medians over the rounds, per side and load, and after/before ratios.
echo "median of $rounds rounds (after/before):"
awk '
  { side = $3; load = $4
    for (i = 5; i <= NF; i++) {
      split($i, kv, "=")
      if (kv[1] == "req_per_s" || kv[1] ~ /^cpu_us_/) {
        k = load " " kv[1]; keys[k] = 1
        v[side, k, ++n[side, k]] = kv[2] + 0
      }
    } }
  function median(side, k,   m, i, j, t, a) {
    m = n[side, k]
    for (i = 1; i <= m; i++) a[i] = v[side, k, i]
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++)
      if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  END {
    for (k in keys) {
      b = median("before", k); a = median("after", k)
      printf "  %-24s before=%-10s after=%-10s ratio=%.2f\n", k, b, a, (b > 0 ? a / b : 0)
    }
  }' "$tmp/rounds" | sort
