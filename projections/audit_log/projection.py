"""The audit log: one entry per user, API-key, session or subscription event, straight from the
event and its envelope."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from sqlalchemy import MetaData, Table
from sqlalchemy.engine import Connection

from domain.api_keys import ApiKey
from domain.sessions import Session
from domain.subscriptions import Subscription, url_for_audit
from domain.users import User
from domain.values import PersonalData
from projections.audit_log.counts import add_counts
from projections.audit_log.tables import define_audit_counts, define_audit_log
from projections.base import Positioned, ProjectionContext
from projections.events import payload, topics_of
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


def row_content(row: Mapping[str, Any]) -> bytes:
    """What a row's MAC covers: every column but the MAC, as the same bytes whether the values
    come from the event (aware datetimes, UUIDs) or back from the table (its own types)."""
    values = [_plain(row[column]) for column in MAC_COLUMNS]
    return b"ledgerline-audit-row-v1\x00" + _canonical.encode(values)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    if isinstance(value, UUID):
        return str(value)
    return value


class AuditLogProjection:
    name = "audit_log"
    shape = 3  # 2: per-value counts beside the entries; 3: each row's MAC
    topics = topics_of(User) | topics_of(ApiKey) | topics_of(Session) | topics_of(Subscription)

    def __init__(self, context: ProjectionContext) -> None:
        self.context = context

    def define_tables(self, metadata: MetaData, generation: int) -> list[Table]:
        return [define_audit_log(metadata, generation), define_audit_counts(metadata, generation)]

    def apply(self, conn: Connection, tables: Sequence[Table], events: Sequence[Positioned]) -> None:
        if events:
            rows = [self.entry(item) for item in events]
            append_rows(conn, tables[0], rows)
            add_counts(conn, tables[1], rows)

    def entry(self, item: Positioned) -> dict[str, Any]:
        row = self._entry(item)
        row["mac"] = self.context.sealer.vouch(row_content(row))
        return row

    def vouched(self, row: Mapping[str, Any]) -> bool:
        """Whether the row is as the projection wrote it (its MAC holds)."""
        mac = row.get("mac")
        if not isinstance(mac, str) or not mac.isascii():  # compare_digest takes ASCII text only
            return False
        return hmac.compare_digest(mac, self.context.sealer.vouch(row_content(row)))

    def _entry(self, item: Positioned) -> dict[str, Any]:
        event, audit = item.event, item.event.audit
        return {
            "position": item.position,
            "occurred_at": event.timestamp,
            "action": action_of(type(event)),
            "resource_type": RESOURCE_TYPES[event.TOPIC.rsplit(".", 1)[0]],
            "resource_id": event.originator_id,
            "resource_version": event.originator_version,
            "actor_id": audit.actor_id,
            "actor_type": audit.actor_type,
            "credential_id": audit.credential_id,
            "ip_address": self.context.sealer.seal(audit.ip_address),
            "user_agent": self.context.sealer.seal(audit.user_agent),
            "request_id": audit.request_id,
            "correlation_id": audit.correlation_id,
            "causation_id": audit.causation_id,
            "status": "failure" if type(event) in FAILURES else "success",
            "changes": {name: self._shown(name, value) for name, value in payload(event).items()},
        }

    def _shown(self, name: str, value: Any) -> Any:
        if name in SECRET_FIELDS:
            return REDACTED
        if name in SHOWN_AS and isinstance(value, str):
            return SHOWN_AS[name](value)
        if isinstance(value, PersonalData):
            return {"sealed": self.context.sealer.seal(value)}
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, UUID):
            return str(value)
        if isinstance(value, dict):
            return {str(k): self._shown(str(k), v) for k, v in value.items()}
        return value
