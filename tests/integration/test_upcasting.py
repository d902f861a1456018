"""Events stored in an older shape are upcast when read (the library's ``class_version``)."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import StoredEvent

from domain.base import LedgerAggregate
from domain.values import AuditEnvelope
from ledgerline.bootstrap import Components


class Widget(LedgerAggregate):
    """A test aggregate whose creation event is at version 2 of its shape."""

    TOPIC = "ledgerline.test.Widget"

    class Event(LedgerAggregate.Event):
        pass

    class Made(Event, LedgerAggregate.Created):
        TOPIC = "ledgerline.test.Widget.Made"
        class_version = 2
        name: str
        colour: str  # added in version 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["colour"] = "grey"

    Created = Made

    name: str = ""
    colour: str = ""


def test_a_version_1_event_reads_as_version_2(components: Components) -> None:
    identity = components.identity
    widget_id = uuid4()
    v1_state = {
        "timestamp": Widget.Made.create_timestamp(),
        "originator_topic": Widget.TOPIC,
        "audit": AuditEnvelope(actor_type="system", request_id="from-2025"),
        "name": "sprocket",
    }  # as written before `colour` existed: no class_version in the payload
    stored = StoredEvent(
        originator_id=widget_id,
        originator_version=1,
        topic=Widget.Made.TOPIC,
        state=identity.mapper.transcoder.encode(v1_state),
    )
    identity.recorder.insert_events([stored])

    widget = identity.repository.get(widget_id)
    assert isinstance(widget, Widget)
    assert (widget.name, widget.colour) == ("sprocket", "grey")
    event = next(iter(identity.events.get(widget_id)))
    assert event.audit.request_id == "from-2025"

    fresh = Widget._create_with_audit(
        Widget.Made, id=uuid4(), audit_subject=UUID(int=1), name="new", colour="red"
    )
    identity.save(fresh)
    assert identity.repository.get(fresh.id).colour == "red"  # the current shape round-trips
