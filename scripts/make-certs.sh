#!/usr/bin/env bash
# Make the certificates pscope's TLS needs with the openssl command line (docs/security.md):
#   scripts/make-certs.sh DIR [HOST...]
# DIR/ca.pem, ca.key          a private CA (10 years; keep ca.key offline in real use)
# DIR/server.pem, server.key  psd's certificate, for localhost, 127.0.0.1, ::1 and each HOST
# DIR/client.pem, client.key  a client certificate (CN=pscope-client) for --tls-client-auth
# DIR/expired.pem, .key       a client certificate of the same CA that has expired (tests)
# DIR/other-ca.pem, rogue.pem, rogue.key  a second CA and a client certificate it signed (tests)
# Existing files are replaced. Keys are P-256 EC, mode 600.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 DIR [HOST...]" >&2
  exit 2
fi
dir=$1
shift
mkdir -p "$dir"
cd "$dir"
umask 077
san="DNS:localhost,IP:127.0.0.1,IP:::1"
for h in "$@"; do
  case $h in
    *[!0-9.]*) san="$san,DNS:$h" ;;
    *) san="$san,IP:$h" ;;
  esac
done
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -subj "$2" -days 3650 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() { # name ca subject days ext
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "$3" 2>/dev/null
  printf '%s\n' "$5" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" \
    -days "$4" -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "/CN=pscope test CA"
leaf server ca "/CN=psd" 825 "subjectAltName=$san
extendedKeyUsage=serverAuth"
leaf client ca "/CN=pscope-client" 825 "extendedKeyUsage=clientAuth"
leaf expired ca "/CN=pscope-expired" -1 "extendedKeyUsage=clientAuth"
ca other-ca "/CN=some other CA"
leaf rogue other-ca "/CN=pscope-rogue" 825 "extendedKeyUsage=clientAuth"
rm -f ./*.srl
chmod 644 ./*.pem
echo "certificates in $(pwd): ca.pem server.pem client.pem (keys beside them)"
