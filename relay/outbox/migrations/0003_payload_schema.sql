-- The declared schema a payload was validated against (e.g. 'order/OrderPlaced/v2'), NULL for
-- schemaless JSON events. Both relays put it in the Kafka header 'payload-schema'.
ALTER TABLE outbox ADD COLUMN payload_schema text;
