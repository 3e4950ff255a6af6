#!/bin/sh
# Make a throwaway PKI for tests and integrators' benches (NEVER for production devices).
#
#   deploy/pki/make-test-pki.sh OUT_DIR DEVICE_ID [DEVICE_ID ...]
#
# Writes, under OUT_DIR/pki/ (the layout deploy/mosquitto/lienwatch.conf expects below
# /etc/lienwatch/):
#   ca.crt ca.key                  test CA (EC P-256, 10 years)
#   server.crt server.key          broker certificate, SAN = DNS:localhost, IP:127.0.0.1, IP:::1
#   devices/ID.crt devices/ID.key  one client certificate per device, CN = device id
#   devices/lienwatch-ingest.*     the cloud receiver's client certificate (see the ACL)
#   expired/ID.crt expired/ID.key  signed by the test CA but valid only in January 2020
#   foreign/ca.crt                 another CA nobody trusts, and
#   foreign/ID.crt foreign/ID.key  a client certificate for the first device id from it
# Keys are readable by everyone on purpose (the test broker drops to user `mosquitto`).
set -eu

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
mkdir -p "$out/devices" "$out/expired" "$out/foreign"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

newkey() {  # newkey FILE
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
    chmod 644 "$1"
}

make_ca() {  # make_ca DIR CN
    newkey "$1/ca.key"
    openssl req -x509 -new -key "$1/ca.key" -sha256 -days 3650 -subj "/O=lienwatch test/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$1/ca.crt"
}

sign() {  # sign CA_DIR NAME OUT_PREFIX EXT_FILE
    newkey "$3.key"
    openssl req -new -key "$3.key" -subj "/O=lienwatch test/CN=$2" -out "$work/req.csr"
    openssl x509 -req -in "$work/req.csr" -CA "$1/ca.crt" -CAkey "$1/ca.key" -CAcreateserial \
        -CAserial "$work/serial" -days 825 -sha256 -extfile "$4" -out "$3.crt" 2>/dev/null
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

make_ca "$out" "lienwatch test CA"
sign "$out" "localhost" "$out/server" "$work/server.ext"
for id in "$@" lienwatch-ingest; do
    sign "$out" "$id" "$out/devices/$id" "$work/client.ext"
done

# An expired certificate: `openssl ca` is the one tool in OpenSSL 3.0 that sets arbitrary dates.
mkdir -p "$work/ca"
: > "$work/ca/index.txt"
echo 1000 > "$work/ca/serial"
cat > "$work/ca.cnf" <<EOF
[ca]
default_ca = test
[test]
dir = $work/ca
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir
certificate = $out/ca.crt
private_key = $out/ca.key
default_md = sha256
policy = anything
copy_extensions = none
[anything]
commonName = supplied
organizationName = optional
EOF
newkey "$out/expired/$first_device.key"
openssl req -new -key "$out/expired/$first_device.key" -subj "/O=lienwatch test/CN=$first_device" \
    -out "$work/expired.csr"
openssl ca -batch -config "$work/ca.cnf" -in "$work/expired.csr" -startdate 20200101000000Z \
    -enddate 20200201000000Z -extfile "$work/client.ext" -notext -out "$out/expired/$first_device.crt" \
    2>/dev/null

# A client certificate with the right name from a CA the broker does not trust.
make_ca "$out/foreign" "someone else's CA"
sign "$out/foreign" "$first_device" "$out/foreign/$first_device" "$work/client.ext"
rm -f "$out/foreign/ca.srl" "$out/ca.srl"
chmod 755 "$out" "$out/devices" "$out/expired" "$out/foreign"
echo "test PKI written to $out (CA: $out/ca.crt; devices: $*)"
