"""processors.preflight: how an app declares its database, and psycopg's reasons as one line
without the password (no I/O)."""

import psycopg

from processors.preflight import databases, needs_database, postgres_error

DSN = "postgresql://relay:pw-123@127.0.0.1:55432/relay"


def test_an_app_declares_each_database_once():
    class App:
        pass

    app = App()
    assert databases(app) == []
    needs_database(app, DSN)
    needs_database(app, DSN)
    assert databases(app) == [DSN]


def test_reasons_are_one_line_with_the_password_masked():
    refused = postgres_error(psycopg.OperationalError(
        'connection failed: connection to server at "127.0.0.1", port 55432 failed: FATAL:  password '
        'authentication failed for user "relay"'), DSN)
    assert str(refused) == ('Postgres at postgresql://relay:****@127.0.0.1:55432/relay: authentication failed '
                            '(connection to server at "127.0.0.1", port 55432 failed: FATAL: password '
                            'authentication failed for user "relay")')
    assert not refused.retriable
    down = postgres_error(psycopg.OperationalError(
        'connection failed: connection to server at "127.0.0.1", port 55432 failed: Connection refused\n\tIs the '
        'server running on that host and accepting TCP/IP connections?'), DSN)
    assert "unreachable: " in str(down) and "\n" not in str(down) and down.retriable
    missing = postgres_error(psycopg.OperationalError(f'{DSN}: FATAL:  database "x" does not exist'), DSN)
    assert "refused the connection" in str(missing) and not missing.retriable
    for err in (refused, down, missing):
        assert "pw-123" not in str(err)
