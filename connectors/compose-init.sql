-- Roles and grants for the docker-compose stack: the same as the native stack creates
-- (relay/stack/postgres.py, PostgresPart.after_ready) with the relay/config.py defaults.
-- The postgres image runs this once, on an empty data volume, as the superuser, connected to
-- POSTGRES_DB (relay). The outbox table, its publication and SELECT for relay_cdc come later from
-- `relay outbox migrate` (the compose `setup` service), exactly as on the native stack.

-- application role: owns the database (and therefore schema public, PG >= 15) and the outbox
CREATE ROLE relay LOGIN PASSWORD 'relay';
ALTER DATABASE relay OWNER TO relay;

-- Debezium's least-privilege role: replication + connect + usage, nothing else
CREATE ROLE relay_cdc LOGIN REPLICATION PASSWORD 'cdc-dev-secret';
GRANT CONNECT ON DATABASE relay TO relay_cdc;
GRANT USAGE ON SCHEMA public TO relay_cdc;
