#!/usr/bin/env bash
# docker-compose.yml's postgres service: the legacy OMS's database, as
# scripts/stack/components/postgres.sh's post_start makes it natively.
# Mounted at /docker-entrypoint-initdb.d/10-legacy.sh; the official image's
# entrypoint runs it once, when the data volume is empty, against its set-up
# server (unix socket only) as the superuser $POSTGRES_USER. It makes:
#   $LEGACY_USER (legacy)   LOGIN CREATEDB, password $LEGACY_PASSWORD: owns
#                           database $LEGACY_DB (legacy) and everything
#                           $LEGACY_SCHEMAS/*.sql (schemas/legacy, mounted
#                           read-only) makes there, applied in name order as it
#   $CDC_USER (debezium)    LOGIN REPLICATION, password $CDC_PASSWORD: USAGE on
#                           the owner's schemas, SELECT on their tables (default
#                           privileges too), which is what Debezium needs
# The SQL is schemas/legacy/setup/*.sql, shared with the native stack.
# Natively the schema files are applied at every start; here only on the first
# (`make docker-down` drops the volume, and the next start runs this again).
# Debezium's logical replication connections name their database, so the
# image's `host all all all scram-sha-256` line admits them: pg_hba.conf stays.
#
# The entrypoint sources a *.sh without its executable bit: everything runs in
# a subshell, so that no shell option or exit reaches the entrypoint's shell.

legacy_init() (
  set -euo pipefail
  : "${POSTGRES_USER:?}" "${LEGACY_DB:?}" "${LEGACY_USER:?}" "${LEGACY_PASSWORD:?}" "${CDC_USER:?}" "${CDC_PASSWORD:?}"
  local dir="${LEGACY_SCHEMAS:-/legacy-schemas}" f n=0
  [[ "$LEGACY_DB" =~ ^[A-Za-z_][A-Za-z0-9_-]{0,62}$ ]] || { echo "postgres-init: '$LEGACY_DB' is not a plain database name" >&2; return 1; }
  # The unix socket of the set-up server (PGHOST empty), as the entrypoint's own psql.
  export PGHOST= PGHOSTADDR= PGOPTIONS='-c client_min_messages=warning'
  psql_super() { psql -X -q -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password "$@"; }
  psql_owner() { PGPASSWORD="$LEGACY_PASSWORD" psql -X -q -v ON_ERROR_STOP=1 --username "$LEGACY_USER" --dbname "$LEGACY_DB" "$@"; }

  echo "postgres-init: roles $LEGACY_USER and $CDC_USER, database $LEGACY_DB" >&2
  psql_super --dbname postgres -v owner="$LEGACY_USER" -v owner_pw="$LEGACY_PASSWORD" \
    -v cdc="$CDC_USER" -v cdc_pw="$CDC_PASSWORD" -f "$dir/setup/roles.sql"
  psql_super --dbname postgres -v db="$LEGACY_DB" -v owner="$LEGACY_USER" -f "$dir/setup/database.sql"

  for f in "$dir"/*.sql; do
    [[ -f "$f" ]] || continue
    echo "postgres-init: applying $(basename "$f") to $LEGACY_DB as $LEGACY_USER" >&2
    psql_owner -f "$f"
    n=$((n + 1))
  done
  (( n > 0 )) || { echo "postgres-init: no *.sql in $dir (is schemas/legacy mounted there?)" >&2; return 1; }

  psql_owner -v owner="$LEGACY_USER" -v cdc="$CDC_USER" -f "$dir/setup/grants.sql"
  echo "postgres-init: done ($n schema file(s))" >&2
)

legacy_init
