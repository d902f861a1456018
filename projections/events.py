"""Facts about event classes that several projections need."""

from __future__ import annotations

from typing import Any

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


BASE_FIELDS = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic", "audit"})


def payload(event: Any) -> dict[str, Any]:
    """The event's own fields (without identity, version, time and audit envelope)."""
    return {name: value for name, value in vars(event).items() if name not in BASE_FIELDS}
