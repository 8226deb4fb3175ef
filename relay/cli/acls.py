"""`relay acls show|apply`: the least-privilege Kafka ACLs of a worker or of Connect."""

from __future__ import annotations

from typing import Optional

import typer

from relay.cli.common import JSON_OPTION, emit_json, handles_errors, say, settings

app = typer.Typer(help="Least-privilege Kafka ACLs of each role (docs/security.md).", no_args_is_help=True)

WORKER = typer.Option(None, "--worker", help="a `relay worker` target (e.g. orders, or module:attribute): its ACLs")
CONNECT = typer.Option(False, "--connect", help="the ACLs of the Kafka Connect workers running the outbox connector")
USER = typer.Option(..., "--user", help="the Kafka user (principal User:<name>) to grant them to")


def _grants(worker: Optional[str], connect: bool, user: str) -> list:
    from relay.errors import ConfigError
    from relay.security.acls import connect_acls, worker_acls

    if (worker is None) == (not connect):
        raise ConfigError(["--worker and --connect: expected exactly one of them"])
    s = settings()
    return connect_acls(user, s) if connect else worker_acls(user, str(worker), s)


@app.command()
@handles_errors
def show(worker: Optional[str] = WORKER, connect: bool = CONNECT, user: str = USER,
         strimzi: bool = typer.Option(False, "--strimzi", help="as a KafkaUser's spec.authorization.acls (YAML)"),
         json_out: bool = JSON_OPTION) -> None:
    """Print the ACLs a worker (--worker) or Connect (--connect) needs, computed from the names the
    code uses: one line per operation, or --strimzi / --json."""
    grants = _grants(worker, connect, user)
    if strimzi:
        from relay.extras import require

        require("saga", by="relay acls show --strimzi")  # PyYAML
        import yaml

        from relay.security.acls import strimzi as as_strimzi

        typer.echo(yaml.safe_dump({"acls": as_strimzi(grants)}, sort_keys=False), nl=False)
    elif json_out:
        emit_json([g._asdict() for g in grants])
    else:
        for g in grants:
            typer.echo(str(g))


@app.command()
@handles_errors
def apply(worker: Optional[str] = WORKER, connect: bool = CONNECT, user: str = USER) -> None:
    """Create those ACLs with Kafka's admin API, as the user of the RELAY_KAFKA_* settings (it needs
    the right to: Alter on the cluster); existing ones are kept. The SCRAM user itself is not made."""
    from relay.security.kafka_admin import create_acls

    grants = _grants(worker, connect, user)
    say(f"{create_acls(settings(), grants)} ACL(s) for User:{user} in place")
