"""Declared Avro schemas of outbox events: kept in the repository, enforced when events are written.

- :class:`SchemaRegistry` loads ``schemas/<aggregatetype>/<EventType>/v<N>.avsc`` and validates
  payloads against the latest version of their event type (event types without a declared schema
  stay schemaless JSON);
- :func:`check_compatibility` applies Avro's schema-resolution rules to two versions, statically
  (``backward`` / ``forward`` / ``full``), and names every problem with its field path.

See ``schemas/README.md`` for the layout and the evolution rules.
"""

from relay.schemas.compat import MODES, check_compatibility
from relay.schemas.registry import MISSING, SchemaRegistry, SchemaVersion

__all__ = ["SchemaRegistry", "SchemaVersion", "check_compatibility", "MODES", "MISSING"]
