-- NOTIFY serialises commits: a transaction that notifies takes one cluster-wide lock before its
-- commit record and holds it until the commit is flushed, so concurrent writers can no longer
-- share a WAL flush (group commit). With the CDC relay nobody listens, yet every outbox insert
-- paid that price: 16 writers committed ~700 events/s with the notify and ~1,500 without it.
-- The statement trigger now notifies only while a polling relay holds a lease here (it renews
-- the lease every few seconds and deletes it when it stops; a crashed poller's lease runs out).
-- Without a lease, a poller still finds rows by its timer (poller_interval_s): latency, never loss.
CREATE TABLE relay_poller_leases (
    holder      text        PRIMARY KEY,
    expires_at  timestamptz NOT NULL);

CREATE OR REPLACE FUNCTION relay_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM relay_poller_leases WHERE expires_at > now()) THEN
        PERFORM pg_notify('relay_outbox', '');
    END IF;
    RETURN NULL;
END $$;
