# Throwaway TLS material for the secured side of the native stack (Kafka's
# SASL_SSL listener, nginx TLS terminators in the integration tests). Sourced by
# lib.sh; scripts/stack/start calls tls_ensure before any component starts.
# Needs openssl (and keytool, from the JDK, for Kafka's truststore).
#
# $STACK_TLS_DIR (default .stack/tls), every file mode 0644, keys unencrypted
# PKCS#8 PEM (RSA 2048). Made when missing; a certificate that expires within a
# day, no longer matches its key or is no longer signed by ca.pem is made again
# (a new CA therefore re-issues every certificate under it).
#   ca.pem, ca.key                   "order-gateway test CA", 10 years
#   server.pem, server.key           signed by ca: DNS:localhost, IP:127.0.0.1, serverAuth, 10 years
#   wrong-name.pem, wrong-name.key   signed by ca: DNS:wrong-name.invalid only
#   expired.pem, expired.key         signed by ca: localhost, 127.0.0.1, valid from 30 to 1 days
#                                    before it was made (kept while it stays expired)
#   client.pem, client.key           signed by ca: CN=order-gateway, clientAuth
#   other-ca.pem, other-ca.key       an unrelated CA ("unknown issuer")
#   other-client.pem, other-client.key  signed by other-ca: CN=order-gateway, clientAuth
#   kafka.keystore.p12               PKCS12: server.key + server.pem (no chain), alias "server"
#   kafka.truststore.p12             PKCS12: ca.pem as a trusted certificate, alias "ca"
# Both stores use the password $STACK_TLS_STORE_PASSWORD.

STACK_TLS_DIR="${STACK_TLS_DIR:-$STACK_DIR/tls}"
STACK_TLS_STORE_PASSWORD="${STACK_TLS_STORE_PASSWORD:-order-gateway-test}"

_tls_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

# _tls_lasts CERT: the certificate exists and is valid for at least another day.
_tls_lasts() { [[ -s "$1" ]] && openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1; }

# _tls_pair NAME: NAME.pem and NAME.key exist and belong together.
_tls_pair() {
  local d="$STACK_TLS_DIR"
  [[ -s "$d/$1.pem" && -s "$d/$1.key" ]] || return 1
  [[ "$(openssl x509 -in "$d/$1.pem" -noout -pubkey 2>/dev/null)" == "$(openssl pkey -in "$d/$1.key" -pubout 2>/dev/null)" ]]
}

# _tls_issued NAME CA: NAME.pem is signed by CA.pem (its dates not considered).
_tls_issued() {
  openssl verify -no_check_time -CAfile "$STACK_TLS_DIR/$2.pem" "$STACK_TLS_DIR/$1.pem" >/dev/null 2>&1
}

# _tls_make_ca NAME COMMON_NAME: a self-signed CA, 10 years.
_tls_make_ca() {
  local d="$STACK_TLS_DIR" name="$1" cn="$2" work
  log "tls: making $d/$name.pem ($cn)"
  work="$(mktemp -d "$d/.make.XXXXXX")"
  cat >"$work/req.cnf" <<EOT
[req]
distinguished_name = dn
x509_extensions = ca_ext
prompt = no
[dn]
O = order-gateway tests
CN = $cn
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
EOT
  _tls_key "$work/key.pem" \
    && openssl req -x509 -new -config "$work/req.cnf" -key "$work/key.pem" -days 3650 -sha256 \
      -out "$work/cert.pem" 2>"$work/err" \
    || { cat "$work/err" >&2 2>/dev/null; rm -rf "$work"; fail "tls: making $name failed"; }
  chmod 0644 "$work/key.pem" "$work/cert.pem"
  mv -f "$work/key.pem" "$d/$name.key"
  mv -f "$work/cert.pem" "$d/$name.pem"
  rm -rf "$work"
}

# _tls_make_leaf NAME CA COMMON_NAME EXTENSIONS [STARTDATE ENDDATE]: a key and a
# certificate signed by CA, 10 years unless dates (YYMMDDHHMMSSZ) are given.
# openssl ca rather than x509 -req: OpenSSL 3.0's x509 cannot set a start date.
_tls_make_leaf() {
  local d="$STACK_TLS_DIR" name="$1" ca="$2" cn="$3" ext="$4" start="${5:-}" end="${6:-}" work
  log "tls: making $d/$name.pem (CN=$cn, signed by $ca)"
  work="$(mktemp -d "$d/.make.XXXXXX")"
  : >"$work/index.txt"
  # A random serial: certificates made again never repeat one under the same CA.
  printf '%s\n' "$(openssl rand -hex 16)" >"$work/serial"
  cat >"$work/ca.cnf" <<EOT
[req]
distinguished_name = dn
[dn]
[ca]
default_ca = throwaway
[throwaway]
database = $work/index.txt
serial = $work/serial
new_certs_dir = $work
certificate = $d/$ca.pem
private_key = $d/$ca.key
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
[policy_any]
organizationName = optional
commonName = supplied
[leaf]
$ext
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOT
  local dates=(-days 3650)
  [[ -n "$start" ]] && dates=(-startdate "$start" -enddate "$end")
  _tls_key "$work/key.pem" \
    && openssl req -new -config "$work/ca.cnf" -key "$work/key.pem" -subj "/O=order-gateway tests/CN=$cn" \
      -out "$work/req.pem" 2>"$work/err" \
    && openssl ca -batch -notext -config "$work/ca.cnf" -extensions leaf "${dates[@]}" \
      -in "$work/req.pem" -out "$work/cert.pem" 2>"$work/err" \
    || { cat "$work/err" >&2 2>/dev/null; rm -rf "$work"; fail "tls: making $name failed"; }
  chmod 0644 "$work/key.pem" "$work/cert.pem"
  mv -f "$work/key.pem" "$d/$name.key"
  mv -f "$work/cert.pem" "$d/$name.pem"
  rm -rf "$work"
}

# _tls_leaf NAME CA COMMON_NAME EXTENSIONS: make NAME unless it is current.
_tls_leaf() {
  if _tls_pair "$1" && _tls_issued "$1" "$2" && _tls_lasts "$STACK_TLS_DIR/$1.pem"; then return 0; fi
  _tls_make_leaf "$@"
}

# Kafka's stores, made again whenever the certificates or the password change.
_tls_kafka_stores() {
  local d="$STACK_TLS_DIR" stamp
  stamp="$(cat "$d/server.pem" "$d/server.key" "$d/ca.pem" <(printf '%s' "$STACK_TLS_STORE_PASSWORD") | sha256sum | cut -d' ' -f1)"
  if [[ -s "$d/kafka.keystore.p12" && -s "$d/kafka.truststore.p12" \
        && "$(cat "$d/.kafka-stores" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  command -v keytool >/dev/null || fail "tls: keytool (from the JDK) is needed for Kafka's truststore"
  log "tls: making $d/kafka.keystore.p12 and kafka.truststore.p12"
  local work; work="$(mktemp -d "$d/.make.XXXXXX")"
  openssl pkcs12 -export -in "$d/server.pem" -inkey "$d/server.key" -name server \
      -passout "pass:$STACK_TLS_STORE_PASSWORD" -out "$work/keystore.p12" 2>"$work/err" \
    && keytool -importcert -noprompt -alias ca -file "$d/ca.pem" -storetype PKCS12 \
      -keystore "$work/truststore.p12" -storepass "$STACK_TLS_STORE_PASSWORD" >"$work/err" 2>&1 \
    || { cat "$work/err" >&2 2>/dev/null; rm -rf "$work"; fail "tls: making Kafka's stores failed"; }
  chmod 0644 "$work/keystore.p12" "$work/truststore.p12"
  mv -f "$work/keystore.p12" "$d/kafka.keystore.p12"
  mv -f "$work/truststore.p12" "$d/kafka.truststore.p12"
  printf '%s\n' "$stamp" >"$d/.kafka-stores"
  rm -rf "$work"
}

# tls_ensure: make whatever is missing or stale in $STACK_TLS_DIR (idempotent).
tls_ensure() {
  command -v openssl >/dev/null || fail "tls: openssl is needed (Debian package openssl)"
  local d="$STACK_TLS_DIR"
  mkdir -p "$d"
  # Leftovers of an interrupted run (a running one's is younger).
  find "$d" -maxdepth 1 -name '.make.*' -mmin +10 -exec rm -rf {} +
  _tls_pair ca && _tls_lasts "$d/ca.pem" || _tls_make_ca ca "order-gateway test CA"
  _tls_pair other-ca && _tls_lasts "$d/other-ca.pem" || _tls_make_ca other-ca "unrelated test CA"

  local server_ext="basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth"
  local client_ext="basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth"
  _tls_leaf server ca localhost "$server_ext
subjectAltName = DNS:localhost,IP:127.0.0.1"
  _tls_leaf wrong-name ca wrong-name.invalid "$server_ext
subjectAltName = DNS:wrong-name.invalid"
  _tls_leaf client ca order-gateway "$client_ext"
  _tls_leaf other-client other-ca order-gateway "$client_ext"
  # Kept while it is expired; made again when missing, broken, or (clock set back) valid.
  if ! { _tls_pair expired && _tls_issued expired ca \
         && ! openssl x509 -in "$d/expired.pem" -noout -checkend 0 >/dev/null 2>&1; }; then
    _tls_make_leaf expired ca localhost "$server_ext
subjectAltName = DNS:localhost,IP:127.0.0.1" \
      "$(date -u -d '30 days ago' +%y%m%d%H%M%SZ)" "$(date -u -d '1 day ago' +%y%m%d%H%M%SZ)"
  fi
  _tls_kafka_stores
}
