#!/bin/sh
# Regenerates every test certificate in this directory with openssl.
# File names are fixed: tests and configs refer to them. Keys are RSA 2048,
# validity 10 years, except client-expired-cert.pem which ended in 2021.
#   ca.pem / ca-key.pem                   the test CA
#   server-cert.pem / server-key.pem      localhost, 127.0.0.1, ::1 (serverAuth)
#   client-cert.pem / client-key.pem      client certificate (clientAuth)
#   client-expired-cert.pem / -key.pem    expired client certificate, same CA
#   wrongca.pem / wrongca-key.pem         a second, unrelated CA
#   client-wrongca-cert.pem / -key.pem    client certificate signed by wrongca
#   srva-*.pem, srvb-*.pem                route certificates (serverAuth+clientAuth)
#   client-dns-cert.pem / -key.pem        client certificate, DNS SAN only (verify_and_map)
#   client-dn-cert.pem / -key.pem         client certificate, no SAN: mapped by subject DN
set -eu
cd "$(dirname "$0")"
DAYS=3650
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

# ca NAME CN: a self-signed CA certificate NAME.pem with key NAME-key.pem
ca() {
    key "$1-key.pem"
    cat > "$TMP/ca.ext" <<EXT
[req]
distinguished_name = dn
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EXT
    openssl req -new -x509 -sha256 -days $DAYS -key "$1-key.pem" -out "$1.pem" \
        -subj "/O=gnatsd.py test/CN=$2" -config "$TMP/ca.ext" -extensions v3_ca
}

# ext USAGE SAN: write the extension file for a leaf certificate
ext() {
    {
        echo "basicConstraints = critical, CA:FALSE"
        echo "keyUsage = critical, digitalSignature, keyEncipherment"
        echo "extendedKeyUsage = $1"
        echo "subjectKeyIdentifier = hash"
        echo "authorityKeyIdentifier = keyid"
        if [ -n "$2" ]; then echo "subjectAltName = $2"; fi
    } > "$TMP/leaf.ext"
}

# leaf CERT KEY CN CA USAGE SAN: a certificate signed by CA (ca.pem, wrongca.pem)
leaf() {
    key "$2"
    openssl req -new -key "$2" -subj "/O=gnatsd.py test/CN=$3" -out "$TMP/leaf.csr"
    ext "$5" "$6"
    openssl x509 -req -sha256 -days $DAYS -in "$TMP/leaf.csr" -CA "$4.pem" \
        -CAkey "$4-key.pem" -set_serial "0x$(openssl rand -hex 16)" \
        -extfile "$TMP/leaf.ext" -out "$1" 2>/dev/null
}

LOCAL="DNS:localhost, IP:127.0.0.1, IP:::1"

ca ca "gnatsd.py test CA"
ca wrongca "gnatsd.py wrong CA"
leaf server-cert.pem server-key.pem localhost ca serverAuth "$LOCAL"
leaf client-cert.pem client-key.pem client ca clientAuth "DNS:localhost, email:client@localhost"
leaf client-wrongca-cert.pem client-wrongca-key.pem client wrongca clientAuth "DNS:localhost"
leaf srva-cert.pem srva-key.pem srva ca "serverAuth, clientAuth" "$LOCAL"
leaf srvb-cert.pem srvb-key.pem srvb ca "serverAuth, clientAuth" "$LOCAL"
leaf client-dns-cert.pem client-dns-key.pem client-dns ca clientAuth "DNS:mapped.example.com"
leaf client-dn-cert.pem client-dn-key.pem client-dn ca clientAuth ""

# The expired certificate: 'openssl x509' cannot back-date, 'openssl ca' can.
key client-expired-key.pem
openssl req -new -key client-expired-key.pem -subj "/O=gnatsd.py test/CN=client-expired" \
    -out "$TMP/expired.csr"
ext clientAuth "DNS:localhost"
: > "$TMP/index.txt"
cat > "$TMP/ca.cnf" <<CNF
[ca]
default_ca = test
[test]
database = $TMP/index.txt
new_certs_dir = $TMP
serial = $TMP/serial
default_md = sha256
policy = any
unique_subject = no
[any]
organizationName = optional
commonName = supplied
CNF
openssl rand -hex 16 > "$TMP/serial"
openssl ca -batch -notext -config "$TMP/ca.cnf" -cert ca.pem -keyfile ca-key.pem \
    -startdate 20200101000000Z -enddate 20210101000000Z \
    -extfile "$TMP/leaf.ext" -in "$TMP/expired.csr" -out client-expired-cert.pem 2>/dev/null

chmod 644 ./*.pem
# Check the result: every certificate verifies against its CA, the expired one
# fails for exactly that reason.
for c in server-cert client-cert client-dns-cert client-dn-cert srva-cert srvb-cert; do
    openssl verify -CAfile ca.pem "$c.pem"
done
openssl verify -CAfile wrongca.pem client-wrongca-cert.pem
if openssl verify -CAfile ca.pem client-expired-cert.pem 2>&1 | grep -q 'has expired'; then
    echo "client-expired-cert.pem: expired (as intended)"
else
    echo "client-expired-cert.pem: NOT expired" >&2; exit 1
fi
