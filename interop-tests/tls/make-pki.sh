#!/usr/bin/env bash
# Writes a throwaway PKI for the TLS interop tests into DIR (made fresh each run, never
# committed), with the openssl CLI:
#
#   ca.pem                 the test CA (brokers verify client certificates against it; clients
#                          verify the broker against it)
#   server.pem server.key  the broker: CN=localhost, SAN DNS:localhost and IP:127.0.0.1
#   client.pem client.key  a client certificate, subject C=XX, O=Acme, OU=interop, CN=app
#                          (EXTERNAL logs in as its RFC 2253 subject, CN=app,OU=interop,O=Acme,C=XX)
#   nobody.pem nobody.key  a client certificate whose subject is no user (EXTERNAL is refused)
#   tricky.pem tricky.key  a client certificate with a subject that needs escapes, non-ASCII, and
#                          attributes that RabbitMQ names otherwise than openssl
#   other-ca.pem           an unrelated CA (a client trusting only it refuses the broker)
#   other-client.pem other-client.key  a client certificate issued by the unrelated CA (a
#                          broker with verify_peer refuses it)
#   client.dn nobody.dn tricky.dn  the subjects as `openssl x509 -noout -subject -nameopt RFC2253` prints
#
# Usage: make-pki.sh DIR
set -euo pipefail
dir=${1:?usage: make-pki.sh DIR}
mkdir -p "$dir"
cd "$dir"

ssl() { openssl "$@" 2>/dev/null; }

key() { ssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }

# A self-signed CA: ca NAME SUBJECT
ca() {
  key "$1.key"
  cat >"$1.ext" <<EXT
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EXT
  ssl req -new -x509 -days 2 -key "$1.key" -subj "$2" -out "$1.pem" -extensions v3 \
    -config <(printf '[req]\ndistinguished_name = dn\n[dn]\n[v3]\n'; cat "$1.ext")
  rm "$1.ext"
}

# A leaf certificate: leaf NAME ISSUER SUBJECT EXTENSIONS...
leaf() {
  local name=$1 issuer=$2 subject=$3
  shift 3
  key "$name.key"
  ssl req -new -utf8 -key "$name.key" -subj "$subject" -out "$name.csr"
  {
    echo 'basicConstraints = critical, CA:FALSE'
    echo 'subjectKeyIdentifier = hash'
    echo 'authorityKeyIdentifier = keyid'
    printf '%s\n' "$@"
  } >"$name.ext"
  ssl x509 -req -days 2 -in "$name.csr" -CA "$issuer.pem" -CAkey "$issuer.key" -CAcreateserial \
    -extfile "$name.ext" -out "$name.pem"
  rm "$name.csr" "$name.ext"
}

ca ca "/CN=Warren interop TLS CA"
ca other-ca "/CN=Some other CA"
leaf server ca "/CN=localhost" 'keyUsage = critical, digitalSignature, keyEncipherment' \
  'extendedKeyUsage = serverAuth' 'subjectAltName = DNS:localhost, IP:127.0.0.1'
client_ext=('keyUsage = critical, digitalSignature, keyEncipherment' 'extendedKeyUsage = clientAuth')
leaf client ca "/C=XX/O=Acme/OU=interop/CN=app" "${client_ext[@]}"
leaf nobody ca "/C=XX/O=Acme/CN=nobody" "${client_ext[@]}"
# A subject where RabbitMQ's user name differs from openssl's RFC 2253 output (EMAILADDRESS, TITLE;
# '~' escaped): the tests expect RabbitMQ's form.
leaf tricky ca "/C=XX/O=Acme, Inc./OU=a\\+b/title=Dr/CN=José <x> ~;/emailAddress=app@example.com" "${client_ext[@]}"
leaf other-client other-ca "/C=XX/O=Acme/OU=interop/CN=app" "${client_ext[@]}"
rm -f ./*.srl
for c in client nobody tricky; do
  openssl x509 -in "$c.pem" -noout -subject -nameopt RFC2253 | sed 's/^subject=//' >"$c.dn"
done
chmod 0644 ./*.pem ./*.key ./*.dn # RabbitMQ runs as this user too, but keep them readable
