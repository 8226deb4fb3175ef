"""The Faust adapter of the consumer: agents, commit rule, lanes, continuity guard, gauges.

Private: users write handlers for :class:`relay.Consumer`; this package runs them on Faust."""
