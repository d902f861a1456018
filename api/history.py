"""An entity's history, replayed from the event store: each event with what it changed.

Changes are derived by replay (state before and after each event, as clients see it), so they
are exactly what the API showed at the time; secrets appear only as "[REDACTED]". Positions
come from the audit log (caught up to the request's ``min_position`` first, by default to
everything written so far).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import msgspec

from api.schemas import Change, HistoryActor, HistoryEntry
from api.services import Services
from projections.audit_log.projection import SECRET_FIELDS, action_of
from projections.audit_log.queries import positions_by_version

REDACTED = "[REDACTED]"
NOT_CHANGES = frozenset({"version", "updated_at"})


def history(
    services: Services, entity_id: UUID, present: Callable[[Any], Any], min_position: int | None
) -> list[HistoryEntry]:
    services.read_side_at(min_position)  # the positions come from the audit log
    with services.engine.connect() as conn:
        positions = positions_by_version(conn, entity_id)
    entries: list[HistoryEntry] = []
    state: Any = None
    before: dict[str, Any] = {}
    event: Any
    for event in services.identity.events.get(entity_id):
        state = event.mutate(state)
        after = _plain(present(state))
        changes = {
            field: Change(before=before.get(field), after=value)
            for field, value in after.items()
            if field not in NOT_CHANGES and before.get(field) != value
        }
        for secret in SECRET_FIELDS & set(vars(event)):
            changes[secret] = Change(before=REDACTED, after=REDACTED)
        audit = event.audit
        entries.append(
            HistoryEntry(
                position=positions.get(event.originator_version),
                version=event.originator_version,
                action=action_of(type(event)),
                occurred_at=event.timestamp,
                actor=HistoryActor(audit.actor_id, audit.actor_type, audit.credential_id),
                changes=changes,
            )
        )
        before = after
    return entries


def _plain(value: Any) -> dict[str, Any]:
    """A presented resource (Struct or dict) as JSON-ready values, so before/after compare."""
    plain: dict[str, Any] = msgspec.to_builtins(value)
    return plain
