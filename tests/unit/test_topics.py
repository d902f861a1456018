"""Stored events are forever: every aggregate and event class has its own explicit, unique topic.

The classes are discovered, not listed, so a new aggregate or event without a ``TOPIC`` fails here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

import pytest
from eventsourcing.domain import Aggregate, CanMutateAggregate
from eventsourcing.utils import resolve_topic

import domain
from domain.api_keys import ApiKey
from domain.base import LedgerAggregate
from domain.key_rings import KeyRing
from domain.reservations import Reservation
from domain.users import User

ABSTRACT_BASES = {LedgerAggregate}  # never instantiated, so never stored


def import_domain_modules() -> list[str]:
    names = [f"{domain.__name__}.{info.name}" for info in pkgutil.walk_packages(domain.__path__)]
    for name in names:
        importlib.import_module(name)
    return names


def subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *subclasses(sub)}
    return found


def domain_aggregates() -> list[type[Aggregate]]:
    import_domain_modules()
    return sorted(
        (
            cls
            for cls in subclasses(Aggregate)
            if cls.__module__.split(".")[0] == domain.__name__ and cls not in ABSTRACT_BASES
        ),
        key=lambda cls: cls.__qualname__,
    )


def event_classes(aggregate: type) -> list[type]:
    found: dict[type, None] = {}
    for name in dir(aggregate):
        value = getattr(aggregate, name)
        if isinstance(value, type) and issubclass(value, CanMutateAggregate) and name != "Event":
            found[value] = None  # aliases such as ``Created = Registered`` count once
    return list(found)


def topic_problems(classes: Iterable[type]) -> list[str]:
    problems = []
    seen: dict[str, type] = {}
    for cls in classes:
        topic = cls.__dict__.get("TOPIC")
        if not isinstance(topic, str) or not topic.startswith("ledgerline."):
            problems.append(f"{cls.__qualname__} has no TOPIC of its own (found {topic!r})")
            continue
        if topic in seen:
            problems.append(f"{cls.__qualname__} and {seen[topic].__qualname__} share TOPIC {topic!r}")
        seen[topic] = cls
    return problems


AGGREGATES = domain_aggregates()
EVENTS = [event for aggregate in AGGREGATES for event in event_classes(aggregate)]


def test_every_domain_module_imports() -> None:
    assert {"domain.users", "domain.api_keys", "domain.key_rings", "domain.reservations"} <= set(
        import_domain_modules()
    )


def test_the_walk_finds_every_aggregate() -> None:
    assert {User, ApiKey, KeyRing, Reservation} <= set(AGGREGATES)


def test_the_walk_finds_the_event_classes() -> None:
    assert len(EVENTS) >= 30
    assert len(set(EVENTS)) == len(EVENTS)
    samples = {User.Registered, User.Locked, ApiKey.Rotated, KeyRing.KeyAdded, Reservation.Claimed}
    assert samples <= set(EVENTS)
    assert all(event.__name__ != "Event" for event in EVENTS)


def test_every_aggregate_and_event_has_its_own_unique_ledgerline_topic() -> None:
    assert topic_problems([*AGGREGATES, *EVENTS]) == []


@pytest.mark.parametrize("cls", [*AGGREGATES, *EVENTS], ids=lambda cls: cls.__qualname__)
def test_each_topic_resolves_to_its_class(cls: type) -> None:
    assert resolve_topic(cls.__dict__["TOPIC"]) is cls


def test_each_created_event_is_the_aggregates_creation_event() -> None:
    for aggregate in AGGREGATES:
        created = aggregate.__dict__.get("Created")
        assert created in EVENTS, aggregate
        assert issubclass(created, aggregate.Created)


# ---- the check itself fails when it should ----------------------------------------------------


class Untitled(Aggregate):
    """Without explicit topics (the library allows it): what the check must catch."""

    class Started(Aggregate.Created):
        pass

    class Renamed(Aggregate.Event):
        name: str


def test_the_check_reports_classes_without_their_own_topic() -> None:
    class Inherits(User.Verified):
        pass  # only an inherited TOPIC

    problems = topic_problems([Untitled, *event_classes(Untitled), Inherits])

    assert any(problem.startswith("Untitled has no TOPIC") for problem in problems)
    assert any(problem.startswith("Untitled.Renamed has no TOPIC") for problem in problems)
    assert any(problem.startswith("Untitled.Started has no TOPIC") for problem in problems)
    assert any("Inherits has no TOPIC" in problem for problem in problems)


def test_the_check_reports_shared_and_foreign_topics() -> None:
    class Copy:
        TOPIC = "ledgerline.User.Verified"

    class Foreign:
        TOPIC = "other.User"

    problems = topic_problems([User.Verified, Copy, Foreign])

    assert len(problems) == 2
    assert "share TOPIC 'ledgerline.User.Verified'" in problems[0]
    assert "Foreign has no TOPIC" in problems[1]


def test_test_classes_are_not_mistaken_for_domain_aggregates() -> None:
    assert Untitled not in domain_aggregates()
