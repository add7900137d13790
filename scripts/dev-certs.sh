#!/usr/bin/env bash
# Makes certificates for trying TLS and for the tests, with the openssl
# command: a CA, a server certificate and a client certificate, each with
# its key (ECDSA P-256), valid for 825 days.
#
#   scripts/dev-certs.sh DIR [NAME|ADDRESS ...]
#
# DIR/ca.crt (and ca.key), DIR/server.crt + server.key valid for 127.0.0.1,
# ::1 and localhost plus every name or IPv4/IPv6 address given after DIR
# (and as a client: a host's programs share it), and DIR/client.crt + client.key. Keys are readable by their owner only.
# A CA already in DIR is kept (its certificates stay trusted); the server
# and client certificates are made anew. Nothing here is for production:
# the CA key sits beside the certificates it signs.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: $0 DIR [NAME|ADDRESS ...]" >&2
  [ $# -ge 1 ] && exit 0 || exit 2
fi
command -v openssl >/dev/null || { echo "$0: openssl not found (scripts/deps.sh installs it)" >&2; exit 1; }

dir=$1
shift
mkdir -p "$dir"
umask 077

san="IP:127.0.0.1,IP:::1,DNS:localhost"
for n in "$@"; do
  if [[ $n =~ ^[0-9]+(\.[0-9]+){3}$ || ( $n == *:* && $n =~ ^[0-9a-fA-F:]+$ ) ]]; then
    san+=",IP:$n"
  elif [[ $n =~ ^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]]; then
    san+=",DNS:$n"
  else
    echo "$0: \"$n\" is neither an IPv4/IPv6 address nor a DNS name (no :PORT)" >&2
    exit 2
  fi
done

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -f "$dir/ca.crt" ] || [ ! -f "$dir/ca.key" ]; then
  newkey "$dir/ca.key"
  openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 825 -subj "/CN=tcpops dev CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.crt"
fi

# sign NAME CN EXTENSIONS
sign() {
  newkey "$dir/$1.key"
  openssl req -new -key "$dir/$1.key" -subj "/CN=$2" -out "$dir/$1.csr"
  local out
  if ! out=$(openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
      -CAcreateserial -sha256 -days 825 -extfile <(printf '%s\n' "$3") -out "$dir/$1.crt" 2>&1); then
    echo "$0: openssl could not sign $1.crt: $out" >&2
    exit 1
  fi
  rm -f "$dir/$1.csr"
}

# The server certificate may dial too (clientAuth): `tcpops up --tls-cert`
# gives one certificate to every program on a host, services and gateway.
sign server "tcpops server" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san"
sign client "tcpops client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
chmod 644 "$dir/ca.crt" "$dir/server.crt" "$dir/client.crt"
echo "$dir: ca.crt server.crt server.key client.crt client.key (server valid for ${san//,/ })"
