-- The database `db` owned by `owner`, made when missing (psql variables db,
-- owner). Run as a superuser on the `postgres` database.
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
