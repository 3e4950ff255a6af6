-- Roles for a lienwatch database: run once as a superuser (`psql -v ON_ERROR_STOP=1 -f roles.sql`),
-- then `lienwatch cloud migrate` as lienwatch_migrate, then grants.sql as lienwatch_migrate after
-- every migrate. Passwords/certificates are set by your own tooling. docs/security.md explains
-- the model; in short:
--
--   lienwatch_owner    NOLOGIN; owns the schema, every table, and the partition function below.
--   lienwatch_migrate  LOGIN, acts as the owner: migrations, retention (`lienwatch cloud maintain`).
--   lienwatch_ingest   LOGIN, the receiver, which parses untrusted device payloads: reads, inserts
--                      and updates what it writes, deletes only its summary work queue, creates
--                      time partitions only through lienwatch_create_partition(); no DDL, no
--                      TRUNCATE, no DROP, no DELETE of stored data.
--   lienwatch_api      LOGIN, the HTTP API: reads, plus the few writes it owns (grants.sql).

CREATE ROLE lienwatch_owner NOLOGIN;
CREATE ROLE lienwatch_migrate LOGIN IN ROLE lienwatch_owner;
CREATE ROLE lienwatch_ingest LOGIN;
CREATE ROLE lienwatch_api LOGIN;

CREATE DATABASE lienwatch OWNER lienwatch_owner;
-- Nobody else may connect or create temporary tables (PUBLIC has both by default).
REVOKE ALL ON DATABASE lienwatch FROM PUBLIC;
GRANT CONNECT ON DATABASE lienwatch TO lienwatch_migrate, lienwatch_ingest, lienwatch_api;
-- The receiver stages each batch in session-local temporary tables (cloud/ingest/writer.py).
GRANT TEMPORARY ON DATABASE lienwatch TO lienwatch_ingest;

\connect lienwatch
ALTER SCHEMA public OWNER TO lienwatch_owner;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO lienwatch_ingest, lienwatch_api;
ALTER ROLE lienwatch_migrate SET role = 'lienwatch_owner';

-- Objects created by migrations (and partitions) belong to lienwatch_owner; the others may read
-- them. Writes are granted table by table in grants.sql.
ALTER DEFAULT PRIVILEGES FOR ROLE lienwatch_owner IN SCHEMA public
    GRANT SELECT ON TABLES TO lienwatch_ingest, lienwatch_api;
ALTER DEFAULT PRIVILEGES FOR ROLE lienwatch_owner IN SCHEMA public
    GRANT USAGE ON SEQUENCES TO lienwatch_ingest;
ALTER DEFAULT PRIVILEGES FOR ROLE lienwatch_owner IN SCHEMA public
    REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE lienwatch_owner IN SCHEMA public
    GRANT EXECUTE ON FUNCTIONS TO lienwatch_ingest, lienwatch_api;

-- PostgreSQL lets only a table's owner create a partition of it. The receiver creates the time
-- partitions its rows need (plain storage mode) through this function, which runs as the owner
-- and creates nothing but a partition named and bounded by cloud/store/partitions.py's scheme:
-- `<table>_pYYYYMMDD` covering one UTC day or one calendar month, of a partitioned table in this
-- schema. PostgreSQL itself refuses overlapping partitions.
CREATE FUNCTION lienwatch_create_partition(parent text, start_day date, end_day date)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    key_type regtype;
    name text := parent || '_p' || to_char(start_day, 'YYYYMMDD');
    lower_bound text;
    upper_bound text;
BEGIN
    SELECT a.atttypid::regtype INTO key_type
    FROM pg_partitioned_table p
    JOIN pg_class c ON c.oid = p.partrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0]
    WHERE n.nspname = 'public' AND c.relname = parent AND p.partnatts = 1 AND p.partstrat = 'r';
    -- The granularity of each table, as in cloud/store/layout.py (tests/cloud/test_db_roles.py
    -- checks they agree): a partition of the wrong size would block the right one.
    IF key_type IS NULL OR parent NOT IN ('signal_samples', 'rejected_messages', 'positions', 'events',
            'event_lifecycle', 'device_status', 'command_acks', 'daily_summaries', 'audit_log',
            'track_days') THEN
        RAISE EXCEPTION 'lienwatch_create_partition: % is not a time-partitioned lienwatch table', parent;
    END IF;
    IF parent IN ('signal_samples', 'rejected_messages') THEN
        IF end_day IS DISTINCT FROM start_day + 1 THEN
            RAISE EXCEPTION 'lienwatch_create_partition: % takes one-day partitions', parent;
        END IF;
    ELSIF extract(day FROM start_day) <> 1 OR end_day IS DISTINCT FROM (start_day + interval '1 month')::date THEN
        RAISE EXCEPTION 'lienwatch_create_partition: % takes calendar-month partitions', parent;
    END IF;
    IF start_day > current_date + 400 THEN
        RAISE EXCEPTION 'lienwatch_create_partition: % is too far ahead', start_day;
    END IF;
    IF to_regclass(quote_ident(name)) IS NOT NULL THEN
        RETURN false;
    END IF;
    IF key_type = 'date'::regtype THEN
        lower_bound := start_day::text;
        upper_bound := end_day::text;
    ELSE
        lower_bound := start_day::text || ' 00:00:00+00';
        upper_bound := end_day::text || ' 00:00:00+00';
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                   name, parent, lower_bound, upper_bound);
    RETURN true;
END $$;
ALTER FUNCTION lienwatch_create_partition(text, date, date) OWNER TO lienwatch_owner;
REVOKE ALL ON FUNCTION lienwatch_create_partition(text, date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lienwatch_create_partition(text, date, date) TO lienwatch_ingest, lienwatch_api;
