"""The embedded store's recorder: the library's SQLite recorder, extending the log's Merkle tree
in the transaction that appends the events (SQLite's single writer orders positions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import NotSupportedError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from eventstore.audit_chain.records import StoredRecord
from eventstore.audit_chain.tree import TreeAppender


class TreeSQLiteRecorder(SQLiteApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tree = TreeAppender("?")

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        if kwargs.get("tracking") is not None:
            raise NotSupportedError("events with a tracking record would commit outside the tree")
        with self.datastore.transaction(commit=True) as cursor:
            positions = self._insert_events(cursor, stored_events, **kwargs) or []
            records = [
                StoredRecord(position, _stored_id(event), event.originator_version, event.topic, event.state)
                for position, event in zip(positions, stored_events, strict=True)
            ]
            after = self.tree.extend(cursor, self.tree.border(cursor), records)
        self.tree.committed(after)
        return positions


def _stored_id(event: StoredEvent) -> bytes:
    """As the library stores it: a UUID's 32 hex digits, other ids as they are."""
    originator_id = event.originator_id
    return (originator_id if isinstance(originator_id, str) else originator_id.hex).encode()
