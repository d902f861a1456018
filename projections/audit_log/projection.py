"""The audit log: one entry per user, API-key, session or subscription event, straight from the
event and its envelope."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.utils import resolve_topic
from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Connection

from domain.api_keys import ApiKey
from domain.sessions import Session
from domain.subscriptions import Subscription, url_for_audit
from domain.users import User
from projections.audit_log.counts import add_counts
from projections.audit_log.stored import boxed, envelope, moment, stored_state, unboxed
from projections.audit_log.tables import define_audit_counts, define_audit_log
from projections.base import Positioned, ProjectionContext
from projections.events import BASE_FIELDS, topics_of
from projections.rows import append_rows

REDACTED = "[REDACTED]"
SECRET_FIELDS = frozenset({"password_hash", "digest", "token_digest", "refresh_digest", "secret_salt"})
SHOWN_AS = {"url": url_for_audit}  # fields shown only in part (a webhook URL's path carries secrets)
RESOURCE_TYPES = {
    "ledgerline.User": "user",
    "ledgerline.ApiKey": "api_key",
    "ledgerline.Session": "session",
    "ledgerline.Subscription": "subscription",
}
ACTIONS = {  # where the event's name is not the action's
    User.LoggedIn: "auth.logged_in",
    User.LoginFailed: "auth.login_failed",
    Session.Started: "auth.session_started",
    Session.Refreshed: "auth.session_refreshed",
    Session.Revoked: "auth.session_ended",
}
FAILURES = frozenset({User.LoginFailed, User.Locked})


def action_of(event_class: type) -> str:
    if event_class in ACTIONS:
        return ACTIONS[event_class]
    resource = RESOURCE_TYPES[event_class.TOPIC.rsplit(".", 1)[0]]  # type: ignore[attr-defined]
    return f"{resource}.{re.sub(r'(?<!^)(?=[A-Z])', '_', event_class.__name__).lower()}"


def _every_action() -> frozenset[str]:
    """Every action an audit entry can have (a subscription's filter names some of them)."""
    found = set()
    for aggregate in (User, ApiKey, Session, Subscription):
        for value in vars(aggregate).values():
            concrete = isinstance(value, type) and issubclass(value, aggregate.Event)
            if concrete and value is not aggregate.Event and "TOPIC" in vars(value):
                found.add(action_of(value))
    return frozenset(found)


EVERY_ACTION = _every_action()
MAC_COLUMNS = (
    "position", "occurred_at", "action", "resource_type", "resource_id", "resource_version", "actor_id",
    "actor_type", "credential_id", "ip_address", "user_agent", "request_id", "correlation_id",
    "causation_id", "status", "changes",
)  # fmt: skip
_canonical = msgspec.json.Encoder(order="sorted")
_AS_IS = frozenset({str, int, type(None), dict})


def row_content(row: Mapping[str, Any]) -> bytes:
    """What a row's MAC covers: every column but the MAC, as the same bytes whether the values
    come from the event (aware datetimes, UUIDs) or back from the table (its own types)."""
    values = [_plain(row[column]) for column in MAC_COLUMNS]
    return b"ledgerline-audit-row-v1\x00" + _canonical.encode(values)


def _plain(value: Any) -> Any:
    if type(value) in _AS_IS:
        return value
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


class AuditLogProjection:
    name = "audit_log"
    shape = 3  # 2: per-value counts beside the entries; 3: each row's MAC
    topics = topics_of(User) | topics_of(ApiKey) | topics_of(Session) | topics_of(Subscription)
    reads_stored = True  # see projections.audit_log.stored

    def __init__(self, context: ProjectionContext) -> None:
        self.context = context

    def define_tables(self, metadata: MetaData, generation: int) -> list[Table]:
        return [define_audit_log(metadata, generation), define_audit_counts(metadata, generation)]

    def apply(self, conn: Connection, tables: Sequence[Table], events: Sequence[Positioned]) -> None:
        if events:
            rows = [self.entry(item.position, item.event) for item in events]
            append_rows(conn, tables[0], rows)
            add_counts(conn, tables[1], rows)

    def entry(self, position: int, stored: Any) -> dict[str, Any]:
        """The row of the stored event (topic, originator, version, state) at ``position``."""
        row = self._entry(position, stored)
        row["mac"] = self.context.sealer.vouch(row_content(row))
        return row

    def vouched(self, row: Mapping[str, Any]) -> bool:
        """Whether the row is as the projection wrote it (its MAC holds)."""
        mac = row.get("mac")
        if not isinstance(mac, str) or not mac.isascii():  # compare_digest takes ASCII text only
            return False
        return hmac.compare_digest(mac, self.context.sealer.vouch(row_content(row)))

    def _entry(self, position: int, stored: Any) -> dict[str, Any]:
        action, resource_type, status = _kind(stored.topic)
        state = stored_state(stored, self.context.mapper)
        audit = envelope(state["audit"])
        return {
            "position": position,
            "occurred_at": moment(state["timestamp"]),
            "action": action,
            "resource_type": resource_type,
            "resource_id": stored.originator_id,
            "resource_version": stored.originator_version,
            "actor_id": audit["actor_id"],
            "actor_type": audit["actor_type"],
            "credential_id": audit["credential_id"],
            "ip_address": self._sealed(audit["ip_address"]),
            "user_agent": self._sealed(audit["user_agent"]),
            "request_id": audit["request_id"],
            "correlation_id": audit["correlation_id"],
            "causation_id": audit["causation_id"],
            "status": status,
            "changes": {
                name: self._shown(name, value) for name, value in state.items() if name not in BASE_FIELDS
            },
        }

    def _sealed(self, value: Any) -> str | None:
        return None if value is None else self.context.sealer.seal_stored(boxed(value, "personal_data"))

    def _shown(self, name: str, value: Any) -> Any:
        """A changed field as the entry shows it: secrets redacted, personal data sealed."""
        if name in SECRET_FIELDS:
            return REDACTED
        if name in SHOWN_AS and isinstance(value, str):
            return SHOWN_AS[name](value)
        if type(value) is list:  # shown as stored, which only plain JSON can be
            if _holds_a_box(value):
                raise ValueError(f"no audit rendering for a list of stored values in {name!r}")
            return value
        if type(value) is not dict:
            return value
        box = unboxed(value)
        if box is None:
            return {str(k): self._shown(str(k), v) for k, v in value.items()}
        kind, data = box
        if kind == "personal_data":
            return {"sealed": self._sealed(value)}
        if kind == "datetime_iso":
            return datetime.fromisoformat(data).isoformat()
        if kind == "uuid_hex":
            return str(UUID(data))
        raise ValueError(f"no audit rendering for a stored {kind!r}")


def _holds_a_box(value: Any) -> bool:
    """Whether a custom value (``{"_type_", "_data_"}``) is anywhere inside ``value``."""
    if type(value) is list:
        return any(_holds_a_box(item) for item in value)
    if type(value) is dict:
        return unboxed(value) is not None or any(_holds_a_box(item) for item in value.values())
    return False


@cache
def _kind(topic: str) -> tuple[str, str, str]:
    """(action, resource type, status) of the events of a topic."""
    event_class = resolve_topic(topic)
    resource = RESOURCE_TYPES[topic.rsplit(".", 1)[0]]
    return action_of(event_class), resource, "failure" if event_class in FAILURES else "success"
