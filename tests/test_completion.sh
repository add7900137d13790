#!/usr/bin/env bash
# test_completion: completion/tcpops.bash, sourced as bash-completion would,
# completes tcpops's commands, apps and flags and tcpops-cli's commands and
# flags: each case sets COMP_WORDS and COMP_CWORD, calls the function
# `complete` registered for the command and compares COMPREPLY.
#   test_completion.sh COMPLETION_FILE BIN_DIR
set -u
completion=$1
PATH="$2:$PATH"
# shellcheck source=/dev/null
source "$completion" || { echo "FAIL: could not source $completion"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/a.ini" "$tmp/a.crt"
mkdir "$tmp/adir"
failed=0

# expect "WANT" WORD... : completing the last WORD gives exactly WANT
# (sorted, space-separated).
expect()
{
    local want=$1 fn got
    shift
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    fn=$(complete -p "$1" 2>/dev/null | sed -nE 's/.*-F ([^ ]+) .*/\1/p')
    if [ -z "$fn" ]; then
        echo "FAIL: expected a completion function for $1, found none"
        failed=1
        return
    fi
    "$fn"
    got=$(printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort -u | tr '\n' ' ')
    got=${got% }
    if [ "$got" != "$want" ]; then
        echo "FAIL: completing \"$*\": expected \"$want\", got \"$got\""
        failed=1
    fi
}

# Every flag PROGRAM ARGS... --help prints, sorted, space-separated.
help_flags()
{
    "$@" --help | sed -E 's/--\[no-\]([a-z0-9-]+)/--\1 --no-\1/g' |
        grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u | tr '\n' ' ' | sed 's/ $//'
}

expect "down logs metrics ps restart scale up" tcpops ""
expect "scale" tcpops sc
expect "down logs metrics ps restart scale up" tcpops --data-dir "$tmp" ""
expect "$tmp/adir" tcpops --data-dir "$tmp/ad"
expect "--data-dir --help --version -h" tcpops -
expect "people pets" tcpops scale ""
expect "people pets" tcpops --data-dir "$tmp" scale p
expect "" tcpops scale people ""
expect "gateway people pets" tcpops restart ""
expect "gateway people pets" tcpops logs ""
expect "gateway people pets" tcpops restart --data-dir "$tmp" ""
expect "--data-dir --json -h" tcpops ps -
expect "--workers" tcpops up --wo
expect "--detach" tcpops up --det
expect "--no-detach" tcpops up --no-d
expect "$(help_flags tcpops up)" tcpops up --
expect "people" tcpops up --apps peo
expect "gateway,people gateway,pets" tcpops up --apps gateway,p
expect "$tmp/a.ini" tcpops up --config "$tmp/a.i"
expect "$tmp/a.crt" tcpops up --drain-ms 5 --https-cert "$tmp/a.c"
expect "" tcpops up --workers ""

expect "people pets ping status" tcpops-cli ""
expect "add-pet create list pets" tcpops-cli people ""
expect "create get" tcpops-cli --addr 127.0.0.1:5003 pets ""
expect "create get" tcpops-cli --timeout 100 pets ""
expect "" tcpops-cli people list ""
expect "--timeout --tls-ca --tls-cert --tls-key" tcpops-cli --t
expect "--addr --after" tcpops-cli people list --a
expect "--limit" tcpops-cli --addr 127.0.0.1:5002 people list --after bo --l
expect "$tmp/a.crt" tcpops-cli --tls-cert "$tmp/a.c"
expect "--version" tcpops-cli --v

# A word on the command line is never run: one shaped as a sed program
# with the e flag (which runs its pattern space, here `touch pwned` in $tmp)
# is not taken for a flag.
cd "$tmp" || exit 1
expect "" tcpops up '--data-dir/touch pwned/e;#' ""
expect "people pets ping status" tcpops-cli '--addr/touch pwned/e;#' ""
cd - >/dev/null || exit 1
if [ -e "$tmp/pwned" ]; then
    echo "FAIL: completing after a word shaped as a sed command ran it (expected no $tmp/pwned)"
    failed=1
fi

[ "$failed" -eq 0 ] && echo "ok: tcpops and tcpops-cli complete as expected"
exit "$failed"
