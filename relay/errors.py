"""Our error tree. Third-party exceptions are translated into these at the boundary.

Every error carries ``retriable``: True when the same call may succeed later without any change
(a broker or database temporarily away), False when something must change first (bad input,
bad configuration). Retry and dead-letter logic decides on this flag alone.
"""

from __future__ import annotations

from typing import Any, Iterable


class RelayError(Exception):
    """Base of every error raised by outbox-relay."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(RelayError):
    """Settings are invalid. ``problems`` lists every one of them, not just the first."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid settings ({len(self.problems)} problem(s)):\n{lines}")


class InvalidEvent(RelayError, ValueError):
    """An outbox event was rejected before anything was written."""

    def __init__(self, field: str, value: Any, expected: str) -> None:
        self.field, self.value, self.expected = field, value, expected
        shown = repr(value)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        super().__init__(f"invalid outbox event: field {field!r} = {shown}; expected {expected}")


class DatabaseError(RelayError):
    """Postgres failed; retriable when the connection or server was the problem."""


class KafkaUnavailable(RelayError):
    retriable = True


class KafkaAccessDenied(RelayError):
    """Kafka refused who we are (authentication) or what we asked (an ACL is missing). Not
    retriable: the credentials or the ACLs must change first. ``resource`` names what was
    refused (``topic outbox.event.order``, ``group relay-orders``), or is None for a login."""

    def __init__(self, message: str, *, resource: str | None = None) -> None:
        self.resource = resource
        super().__init__(message, retriable=False)


class ConnectError(RelayError):
    """Kafka Connect REST call failed; 5xx and connection errors are retriable, 4xx are not."""

    def __init__(self, message: str, *, status: int | None = None, retriable: bool | None = None) -> None:
        self.status = status
        if retriable is None:
            retriable = status is None or status >= 500 or status == 409
        super().__init__(message, retriable=retriable)


class StackError(RelayError):
    """A part of the native stack did not come up (or down); carries its log tail."""

    def __init__(self, part: str, message: str, log_tail: str = "") -> None:
        self.part, self.log_tail = part, log_tail
        text = f"{part}: {message}"
        if log_tail:
            text += f"\n--- last lines of the {part} log ---\n{log_tail}"
        super().__init__(text)


class MissingExtra(RelayError, ImportError):
    """A command or API needs an optional part of outbox-relay that is not installed (an extra:
    ``pip install 'outbox-relay[worker]'``); raised by :func:`relay.extras.require`. Never retriable:
    installing the extra is the change. ``name`` (as for ImportError) is the first missing module."""

    def __init__(self, extra: str, missing: Iterable[str], by: str) -> None:
        self.extra, self.missing = extra, list(missing)
        plural = "s" if len(self.missing) > 1 else ""
        super().__init__(f"{by} needs the [{extra}] extra: pip install 'outbox-relay[{extra}]' "
                         f"(missing module{plural} {', '.join(self.missing)})")
        self.name = self.missing[0] if self.missing else None


class DecodeError(RelayError):
    """A consumed record cannot be decoded (bytes, schema, missing header): never retriable."""


class IdempotencyConflict(RelayError):
    """The idempotency key was used before for a different request (different request hash)."""

    def __init__(self, aggregatetype: str, key: str, first_event_id: str, first_hash: str | None,
                 new_hash: str) -> None:
        self.aggregatetype, self.key, self.first_event_id = aggregatetype, key, first_event_id
        super().__init__(
            f"idempotency key {key!r} (aggregatetype {aggregatetype!r}) was already used for event "
            f"{first_event_id} with request hash {first_hash}; this request hashes to {new_hash}. "
            "Use a new key for a different request."
        )


class Retry(RelayError):
    """Raised by a handler: handle this event again later. It goes to the next retry stage and
    waits there at least ``delay`` seconds (default: that stage's delay); other keys keep
    flowing, later events of its key wait behind it. It counts as an attempt: after the last
    stage the event is dead-lettered with this reason."""

    retriable = True

    def __init__(self, reason: str = "the handler asked for a retry", *, delay: float | None = None) -> None:
        if delay is not None and not delay >= 0:
            raise ValueError(f"Retry(delay={delay!r}): expected seconds >= 0 or None")
        super().__init__(reason, retriable=True)
        self.delay = delay


class Reject(RelayError):
    """Raised by a handler: this event can never be handled. It goes to the dead-letter topic at
    once with ``reason`` (no retries); later events of its key are not held up."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retriable=False)


class ProblemsError(RelayError):
    """A document (a saga definition, a policy) is invalid. ``problems`` lists every one, each
    naming where, the field, the value and what was expected."""

    what = "document"

    def __init__(self, name: str, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {self.what} {name!r} ({len(self.problems)} problem(s)):\n{lines}")


class SagaDefinitionError(ProblemsError):
    """A saga definition is invalid (every problem names the step)."""

    what = "saga definition"

    def __init__(self, workflow: str, problems: Iterable[str]) -> None:
        self.workflow = workflow
        super().__init__(workflow, problems)


class PolicyError(ProblemsError):
    """A side-effect policy is invalid (every problem names the rule)."""

    what = "policy"

    def __init__(self, policy: str, problems: Iterable[str]) -> None:
        self.policy = policy
        super().__init__(policy, problems)


class EffectUnknown(RelayError):
    """An outside call may have acted, and its outcome is unknown (a timeout after sending): raise
    it from an effect's call. The effect becomes ambiguous and is looked up, never sent blindly."""

    retriable = True


class ApprovalRefused(RelayError):
    """A decision on a policy gate's approval request would not count: another payload hash,
    after expiry, already decided, an approver outside the scope, the initiator under four eyes,
    or a second approval by the same person. Nothing was written. Never retriable as it is."""


class StepFailed(RelayError):
    """Raised by a saga participant: this step failed. The run gets a failed reply with
    ``reason``; ``retriable=True`` lets the run retry the step (with its backoff), False fails it
    at once (the run then compensates what completed). The participant's own writes in the
    handler's transaction are rolled back; the reply and the inbox claim commit. ``uncertain``:
    the step's effect may have happened (an outside call whose outcome is unknown), so if the run
    fails, the step is compensated like one that timed out."""

    def __init__(self, reason: str, *, retriable: bool = False, uncertain: bool = False) -> None:
        super().__init__(reason, retriable=retriable)
        self.reason, self.uncertain = reason, uncertain


class StaleVersion(StepFailed):
    """A command expected another version of its aggregate than the participant found
    (``Command.expect``): refused and never applied; retriable when the step says on_stale: retry."""
