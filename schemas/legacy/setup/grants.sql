-- What Debezium's role `cdc` needs on the schemas `owner` owns: USAGE, and
-- SELECT on their tables, present and future (psql variables owner, cdc).
-- Run as the owner on the database, after the schema files.
SELECT format('GRANT USAGE ON SCHEMA %I TO %I', n.nspname, :'cdc'),
       format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', n.nspname, :'cdc'),
       format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON TABLES TO %I',
              :'owner', n.nspname, :'cdc')
  FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
 WHERE r.rolname = :'owner' \gexec
