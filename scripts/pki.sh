#!/usr/bin/env bash
# Generates the test and demo PKI into DIR (never committed): a CA, the API's server certificate, two
# partner-app client certificates, two workload certificates with spiffe:// URI SANs, and server
# certificates for an issuer's JWKS host (auth-eu.bank.example) and an impostor (other.example). P-256 keys,
# valid for two days. Usage: scripts/pki.sh DIR
set -euo pipefail
dir=${1:?usage: scripts/pki.sh DIR}
mkdir -p "$dir"
cd "$dir"
command -v openssl >/dev/null || { echo "pki: openssl is needed (apt-get install openssl)" >&2; exit 1; }

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

key ca
openssl req -x509 -new -key ca.key -subj "/O=nhi-guard demo/CN=nhi-guard demo CA" -days 2 -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# leaf NAME SUBJECT SAN EXTENDED_KEY_USAGE
leaf() {
  key "$1"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$4" "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out "$1.pem" \
    -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

leaf server "/O=Bank/CN=api.bank.example" "DNS:api.bank.example,IP:127.0.0.1" serverAuth
# An issuer's JWKS host on another machine, and an impostor presenting a certificate for another name.
leaf auth-eu "/O=Bank/CN=auth-eu.bank.example" "DNS:auth-eu.bank.example" serverAuth
leaf impostor "/O=Elsewhere/CN=other.example" "DNS:other.example" serverAuth
leaf moneywise-app "/O=Moneywise Ltd/CN=moneywise-app" "URI:https://moneywise.example/apps/moneywise-app" clientAuth
leaf moneywise-insights "/O=Moneywise Ltd/CN=moneywise-insights" "URI:https://moneywise.example/apps/insights" clientAuth
leaf statements-batch "/O=Bank/CN=statements-batch" "URI:spiffe://bank.internal/ns/statements/sa/statements-batch" clientAuth
leaf unknown-workload "/O=Bank/CN=unknown-workload" "URI:spiffe://bank.internal/ns/sandbox/sa/unknown-workload" clientAuth
rm -f ca.srl
echo "pki: wrote CA, server and client certificates to $dir"
