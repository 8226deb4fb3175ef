"""The confluent-kafka engine: runs a relay.Consumer's pipelines on librdkafka directly (batched
fetches, one idempotent producer for changelogs and stage/dead-letter records, explicit commits of
the finished prefix). Internal: ``relay worker`` picks it with ``RELAY_CONSUMER_ENGINE=kafka``."""
