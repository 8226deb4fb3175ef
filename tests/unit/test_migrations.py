from relay.outbox.schema import migrations


def test_migrations_are_ordered_and_create_the_contract_columns():
    found = migrations()
    assert [m.version for m in found] == sorted(m.version for m in found)
    first = found[0].sql
    for column in ("id", "aggregatetype", "aggregateid", "type", "payload", "idempotency_key", "request_hash",
                   "headers", "created_at", "published_at", "publish_attempts", "last_error"):
        assert f"\n    {column} " in first, column
