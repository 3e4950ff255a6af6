#!/bin/sh
# Make a throwaway PKI for tests and integrators' benches (NEVER for production devices).
#
#   deploy/pki/make-test-pki.sh OUT_DIR DEVICE_ID [DEVICE_ID ...]
#
# Writes, under OUT_DIR/pki/ (the layout deploy/mosquitto/lienwatch.conf expects below
# /etc/lienwatch/):
#   ca.crt ca.key ca.crl ca-db/    device CA (EC P-256, 10 years), its CRL (no entry yet) and its
#                                  `openssl ca` database (`lienwatch cloud pki revoke` uses both)
#   server.crt server.key          broker certificate from the device CA, SAN = DNS:localhost,
#                                  IP:127.0.0.1, IP:::1 (every client pins ca.crt to verify it)
#   devices/ID.crt devices/ID.key  one client certificate per device, CN = device id
#   services/ca.crt ca.key ca.crl ca-db/
#                                  service CA: only the service listener trusts it, only that
#                                  listener grants service rights (deploy/mosquitto/acl-services)
#   services/lienwatch-ingest.*    the cloud receiver's client certificate from the service CA
#   services/lienwatch-api.*       the API's (it publishes signed commands: deploy/mosquitto/acl-services)
#   expired/ID.crt expired/ID.key  signed by the device CA but valid only in January 2020
#   foreign/ca.crt                 another CA nobody trusts, and
#   foreign/ID.crt foreign/ID.key  a client certificate for the first device id from it
#
# Keys are 0600, readable only by whoever ran this script, except server.key: when run as root it
# is given to $BROKER_USER (default `mosquitto`, if that user exists), the user mosquitto drops to
# before it reads its key.
set -eu
umask 077

if [ "$#" -lt 2 ]; then
    echo "usage: $0 OUT_DIR DEVICE_ID [DEVICE_ID ...]" >&2
    exit 2
fi
out="$1/pki"
shift
first_device="$1"
for id in "$@"; do
    case "$id" in
        *[!A-Za-z0-9._-]*|"") echo "$0: device id '$id' must match [A-Za-z0-9._-]+" >&2; exit 2 ;;
    esac
done
mkdir -p "$out/devices" "$out/services" "$out/expired" "$out/foreign"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

newkey() {  # newkey FILE
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
    chmod 600 "$1"
}

make_ca() {  # make_ca DIR CN: a CA with an `openssl ca` database and an empty CRL
    newkey "$1/ca.key"
    openssl req -x509 -new -key "$1/ca.key" -sha256 -days 3650 -subj "/O=lienwatch test/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$1/ca.crt"
    chmod 644 "$1/ca.crt"
    mkdir -p "$1/ca-db/certs"
    : > "$1/ca-db/index.txt"
    echo 1000 > "$1/ca-db/serial"
    echo 1000 > "$1/ca-db/crlnumber"
    # The same layout and settings as cloud/pki.py's (which revokes and regenerates the CRL).
    cat > "$1/ca-db/openssl.cnf" <<EOF
[ca]
default_ca = lienwatch
[lienwatch]
dir = $1
database = \$dir/ca-db/index.txt
serial = \$dir/ca-db/serial
crlnumber = \$dir/ca-db/crlnumber
new_certs_dir = \$dir/ca-db/certs
certificate = \$dir/ca.crt
private_key = \$dir/ca.key
default_md = sha256
default_days = 825
default_crl_days = 30
unique_subject = no
policy = anything
copy_extensions = none
[anything]
organizationName = optional
commonName = supplied
EOF
    gencrl "$1"
}

gencrl() {  # gencrl CA_DIR
    openssl ca -batch -config "$1/ca-db/openssl.cnf" -gencrl -out "$1/ca.crl" 2>/dev/null
    chmod 644 "$1/ca.crl"
}

sign() {  # sign CA_DIR NAME OUT_PREFIX EXT_FILE [openssl ca options]
    ca_dir="$1" name="$2" prefix="$3" ext="$4"
    shift 4
    newkey "$prefix.key"
    openssl req -new -key "$prefix.key" -subj "/O=lienwatch test/CN=$name" -out "$work/req.csr"
    openssl ca -batch -config "$ca_dir/ca-db/openssl.cnf" -in "$work/req.csr" -extfile "$ext" \
        -notext -out "$prefix.crt" "$@" 2>/dev/null
    chmod 644 "$prefix.crt"
}

cat > "$work/client.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EOF
cat > "$work/server.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EOF

make_ca "$out" "lienwatch test device CA"
make_ca "$out/services" "lienwatch test service CA"
sign "$out" "localhost" "$out/server" "$work/server.ext"
for id in "$@"; do
    sign "$out" "$id" "$out/devices/$id" "$work/client.ext"
done
sign "$out/services" "lienwatch-ingest" "$out/services/lienwatch-ingest" "$work/client.ext"
sign "$out/services" "lienwatch-api" "$out/services/lienwatch-api" "$work/client.ext"
# An expired certificate (`openssl ca` is the one tool in OpenSSL 3.0 that sets arbitrary dates).
sign "$out" "$first_device" "$out/expired/$first_device" "$work/client.ext" \
    -startdate 20200101000000Z -enddate 20200201000000Z

# A client certificate with the right name from a CA the broker does not trust.
make_ca "$out/foreign" "someone else's CA"
sign "$out/foreign" "$first_device" "$out/foreign/$first_device" "$work/client.ext"

broker_user="${BROKER_USER-}"
if [ -z "$broker_user" ] && [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    broker_user=mosquitto
fi
if [ -n "$broker_user" ]; then
    chown "$broker_user" "$out/server.key"
fi
# Directories stay traversable (the broker reads certificates, CRLs and its key below them).
chmod 755 "$out" "$out/devices" "$out/services" "$out/expired" "$out/foreign"
echo "test PKI written to $out (device CA: $out/ca.crt; service CA: $out/services/ca.crt; devices: $*)"
