#!/bin/sh
# Regenerates the test-only certificates and keys in this folder with the
# openssl command. They are valid for 100 years and trusted only by the tests.
set -eu
cd "$(dirname "$0")"
days=36500
leaf_ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
intermediate_ext="basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign"

# sign NAME ISSUER EXTENSIONS: signs NAME.csr with ISSUER.pem / ISSUER.key.
sign() {
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
        -days "$days" -sha256 -extfile "$1.ext" -out "$1.pem"
    rm -f "$1.csr" "$1.ext" "$2.srl"
}

# Root and intermediate CA, ECDSA P-256.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout ca.key -out ca.pem -days "$days" -subj "/O=Hyper Registry Tests/CN=Test Root CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout intermediate.key -out intermediate.csr -subj "/O=Hyper Registry Tests/CN=Test Intermediate CA"
sign intermediate ca "$intermediate_ext"

# RSA-4096 with a PKCS#8 key, self-signed, as `openssl req -x509 -newkey
# rsa:4096 -nodes` writes it. CA:FALSE lets webpki accept it as a server
# certificate while the tests trust it directly.
openssl req -x509 -newkey rsa:4096 -nodes -keyout rsa4096-pkcs8.key -out rsa4096-pkcs8.pem \
    -days "$days" -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
    -addext "basicConstraints=critical,CA:FALSE"

# RSA-2048 with a PKCS#1 key (BEGIN RSA PRIVATE KEY), signed by the root.
openssl genrsa -traditional -out rsa-pkcs1.key 2048
openssl req -new -key rsa-pkcs1.key -out rsa-pkcs1.csr -subj "/CN=localhost"
sign rsa-pkcs1 ca "$leaf_ext"

# ECDSA P-256 with a SEC1 key preceded by an EC PARAMETERS block, signed by the root.
openssl ecparam -name prime256v1 -genkey -out ec-sec1.key
openssl req -new -key ec-sec1.key -out ec-sec1.csr -subj "/CN=localhost"
sign ec-sec1 ca "$leaf_ext"

# A certbot-style pair: leaf signed by the intermediate, fullchain = leaf +
# intermediate, privkey in PKCS#8.
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout privkey.pem -out leaf.csr -subj "/CN=localhost"
sign leaf intermediate "$leaf_ext"
cat leaf.pem intermediate.pem > fullchain.pem
rm -f leaf.pem intermediate.key
chmod 600 *.key privkey.pem
