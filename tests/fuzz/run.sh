#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each over a copy of its checked-in seed
# corpus (the corpus in git is never modified). Fails on any crash, leak or
# sanitizer report, and prints how many inputs each target ran.
#   tests/fuzz/run.sh BUILD_DIR SECONDS
set -euo pipefail
build=$1
secs=${2:-30}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for t in frame dispatch text http; do
  mkdir -p "$work/$t" "$work/artifacts"
  echo "== fuzz_$t: ${secs}s"
  if ! (cd "$work" && "$OLDPWD/$build/bin/fuzz_$t" -max_total_time="$secs" -timeout=10 \
          -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
          "$work/$t" "$here/corpus/$t" > "$work/$t.log" 2>&1); then
    echo "fuzz_$t FAILED:"; tail -40 "$work/$t.log"
    for a in "$work"/artifacts/*; do [ -e "$a" ] && echo "input: $(od -An -tx1 "$a" | head -4)"; done
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$work/$t.log" | tail -1)
  echo "fuzz_$t: ${runs:-?} executions, ${cov:-cov: ?}, no crash or leak"
done
exit $status
