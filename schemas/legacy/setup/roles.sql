-- The legacy database's roles, for the native stack
-- (scripts/stack/components/postgres.sh) and the compose file
-- (deploy/compose/postgres-init.sh) alike. psql variables: owner, owner_pw,
-- cdc, cdc_pw. Run as a superuser on any database; idempotent.
SELECT format('CREATE ROLE %I', :'owner') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner') \gexec
ALTER ROLE :"owner" WITH LOGIN CREATEDB NOSUPERUSER NOREPLICATION PASSWORD :'owner_pw';
SELECT format('CREATE ROLE %I', :'cdc') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'cdc') \gexec
ALTER ROLE :"cdc" WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB PASSWORD :'cdc_pw';
