#!/bin/sh
# test_deploy: deploy/tcpops.service passes `systemd-analyze verify` without
# a single complaint (verify exits 0 on warnings such as an unknown key, so
# any output fails), run on a copy whose ExecStart names the tcpops just
# built (verify checks that the program exists and is executable). An
# installed unit (test_install), whose ExecStart already names
# TCPOPS_BINARY, is verified as it is. Without systemd-analyze (Debian
# package systemd) the test is skipped (exit 77).
#   test_deploy.sh UNIT TCPOPS_BINARY
set -u
unit=$1
tcpops=$2
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "SKIP: systemd-analyze is not installed (Debian package systemd; scripts/deps.sh)"
    exit 77
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

want='ExecStart=/usr/local/bin/tcpops up --config /etc/tcpops/tcpops.ini'
installed="ExecStart=$tcpops up --config /etc/tcpops/tcpops.ini"
if ! grep -qx "$want" "$unit" && ! grep -qxF "$installed" "$unit"; then
    echo "FAIL: expected the line \"$want\" (or \"$installed\") in $unit, got:"
    grep '^ExecStart' "$unit"
    exit 1
fi
sed "s|^ExecStart=/usr/local/bin/tcpops |ExecStart=$tcpops |" "$unit" >"$tmp/tcpops.service"
systemd-analyze verify "$tmp/tcpops.service" >"$tmp/out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] || [ -s "$tmp/out" ]; then
    echo "FAIL: expected systemd-analyze verify to exit 0 with nothing to say; got exit $rc:"
    cat "$tmp/out"
    exit 1
fi
echo "ok: systemd-analyze verify $unit (ExecStart=$tcpops ...): no complaint"
