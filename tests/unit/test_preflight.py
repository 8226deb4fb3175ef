"""relay.consume.preflight: how an app declares the database it needs (no I/O)."""

from relay.consume.preflight import databases, needs_database

DSN = "postgresql://relay:pw-123@127.0.0.1:55432/relay"


def test_an_app_declares_each_database_once():
    class App:
        pass

    app = App()
    assert databases(app) == []
    needs_database(app, DSN)
    needs_database(app, DSN)
    assert databases(app) == [DSN]
