"""Facts about event classes that several projections need."""

from __future__ import annotations

from eventsourcing.domain import Aggregate


def topics_of(aggregate: type[Aggregate]) -> frozenset[str]:
    """The stored topics of an aggregate's concrete events."""
    base = aggregate.Event
    return frozenset(
        vars(value)["TOPIC"]
        for value in vars(aggregate).values()
        if isinstance(value, type)
        and issubclass(value, base)
        and value is not base
        and "TOPIC" in vars(value)
    )


# An event's fields that are not its own: identity, version, time and audit envelope.
BASE_FIELDS = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic", "audit"})
