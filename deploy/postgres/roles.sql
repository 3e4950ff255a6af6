-- Roles for a lienwatch database (run once as a superuser, then `lienwatch cloud migrate` as
-- lienwatch_migrate). Passwords/certificates are set by your own tooling.
--
-- PostgreSQL lets only a table's owner create partitions of it, and the receiver creates the
-- time partitions ahead (plain storage mode), so receivers act as the owner role. The API gets
-- read access plus the few writes it owns (event lifecycle, commands).

CREATE ROLE lienwatch_owner NOLOGIN;
CREATE ROLE lienwatch_migrate LOGIN IN ROLE lienwatch_owner;
CREATE ROLE lienwatch_ingest LOGIN IN ROLE lienwatch_owner;
CREATE ROLE lienwatch_api LOGIN;

CREATE DATABASE lienwatch OWNER lienwatch_owner;
\connect lienwatch
ALTER SCHEMA public OWNER TO lienwatch_owner;
ALTER ROLE lienwatch_migrate SET role = 'lienwatch_owner';
ALTER ROLE lienwatch_ingest SET role = 'lienwatch_owner';

-- Objects created by migrations belong to lienwatch_owner; let the API read them.
ALTER DEFAULT PRIVILEGES FOR ROLE lienwatch_owner IN SCHEMA public GRANT SELECT ON TABLES TO lienwatch_api;
GRANT USAGE ON SCHEMA public TO lienwatch_api;
-- After the first migration:
--   GRANT INSERT, UPDATE ON event_lifecycle, commands TO lienwatch_api;
--   GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO lienwatch_api;
