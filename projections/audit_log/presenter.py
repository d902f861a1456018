"""An audit entry as clients see it (API, export): the contract's fields, personal data revealed
(or "[erased]" once its subject is erased), secrets already "[REDACTED]" by the projection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from eventstore.personal_data import Sealer

ENTRY_FIELDS = (
    "position", "occurred_at", "action", "resource_type", "resource_id", "resource_version",
    "actor_id", "actor_type", "credential_id", "ip_address", "user_agent", "request_id",
    "correlation_id", "status", "changes", "hash",
)  # fmt: skip


def present_entries(rows: list[dict[str, Any]], sealer: Sealer) -> list[dict[str, Any]]:
    """Entries as ``present_entry``, the data keys they need fetched in one query first."""
    sealer.preload(text for row in rows for text in _sealed_in(row))
    return [present_entry(row, sealer) for row in rows]


def _sealed_in(row: dict[str, Any]) -> Iterator[str]:
    for name in ("ip_address", "user_agent"):
        if row[name] is not None:
            yield row[name]
    pending: list[Any] = [row["changes"]]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            if set(value) == {"sealed"} and isinstance(value["sealed"], str):
                yield value["sealed"]
            else:
                pending.extend(value.values())


def present_entry(row: dict[str, Any], sealer: Sealer) -> dict[str, Any]:
    """A row of ``select_entries`` as the contract's entry (values still Python objects:
    UUIDs, datetimes; ``hash`` is the entry's leaf hash in the log's Merkle tree, in hex)."""
    leaf = row.get("leaf_hash")
    return {
        "position": row["position"],
        "occurred_at": row["occurred_at"],
        "action": row["action"],
        "resource_type": row["resource_type"],
        "resource_id": row["resource_id"],
        "resource_version": row["resource_version"],
        "actor_id": row["actor_id"],
        "actor_type": row["actor_type"],
        "credential_id": row["credential_id"],
        "ip_address": sealer.reveal(row["ip_address"]),
        "user_agent": sealer.reveal(row["user_agent"]),
        "request_id": row["request_id"],
        "correlation_id": row["correlation_id"],
        "status": row["status"],
        "changes": _revealed(row["changes"], sealer),
        "hash": None if leaf is None else bytes(leaf).hex(),
    }


def _revealed(value: Any, sealer: Sealer) -> Any:
    """The projection stores personal data in ``changes`` as ``{"sealed": <ciphertext>}``."""
    if isinstance(value, dict):
        if set(value) == {"sealed"} and isinstance(value["sealed"], str):
            return sealer.reveal(value["sealed"])
        return {name: _revealed(item, sealer) for name, item in value.items()}
    return value
