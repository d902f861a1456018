"""The audit log reads stored events, not domain events (issue 13): each row must be exactly the
one the decoded event gives (the reference below is the rule the projection followed before),
for every kind of event, and for an event stored in an older shape of its class."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.audit import AuditContext, acting_as
from domain.errors import AuthenticationError
from domain.users import User
from domain.values import PersonalData
from eventstore.personal_data import Sealer
from ledgerline.bootstrap import Components
from projections.audit_log.projection import (
    FAILURES,
    REDACTED,
    RESOURCE_TYPES,
    SECRET_FIELDS,
    SHOWN_AS,
    AuditLogProjection,
    action_of,
)
from projections.events import BASE_FIELDS
from tests.integration.helpers import STRONG_PASSWORD, register, user_context


def reference_row(position: int, event: Any, sealer: Sealer) -> dict[str, Any]:
    """The audit row built from the decoded domain event."""

    def shown(name: str, value: Any) -> Any:
        if name in SECRET_FIELDS:
            return REDACTED
        if name in SHOWN_AS and isinstance(value, str):
            return SHOWN_AS[name](value)
        if isinstance(value, PersonalData):
            return {"sealed": sealer.seal(value)}
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, UUID):
            return str(value)
        if isinstance(value, dict):
            return {str(k): shown(str(k), v) for k, v in value.items()}
        return value

    audit = event.audit
    return {
        "position": position,
        "occurred_at": event.timestamp,
        "action": action_of(type(event)),
        "resource_type": RESOURCE_TYPES[event.TOPIC.rsplit(".", 1)[0]],
        "resource_id": event.originator_id,
        "resource_version": event.originator_version,
        "actor_id": audit.actor_id,
        "actor_type": audit.actor_type,
        "credential_id": audit.credential_id,
        "ip_address": sealer.seal(audit.ip_address),
        "user_agent": sealer.seal(audit.user_agent),
        "request_id": audit.request_id,
        "correlation_id": audit.correlation_id,
        "causation_id": audit.causation_id,
        "status": "failure" if type(event) in FAILURES else "success",
        "changes": {
            name: shown(name, value) for name, value in vars(event).items() if name not in BASE_FIELDS
        },
    }


def every_kind_of_event(components: Components) -> None:
    identity = components.identity
    with acting_as(AuditContext(actor_type="anonymous", ip_address="192.0.2.1", user_agent="ua/1")):
        alice = register(identity, "alice", full_name="Alice Doe")
        tokens = identity.log_in("alice", STRONG_PASSWORD)
        identity.refresh_session(tokens.refresh_token)
        for _ in range(6):
            with pytest.raises(AuthenticationError):
                identity.authenticate("alice", "Wrong-password-1")
    bob = register(identity, "bob")
    with user_context(alice.id, ip="192.0.2.2"):
        identity.unlock_user(alice.id)
        identity.verify_user(alice.id)
        identity.update_user(alice.id, full_name="Alice Roe", email="alice@new.example")
        identity.change_password(
            alice.id, current_password=STRONG_PASSWORD, new_password=STRONG_PASSWORD + "x"
        )
        issued = identity.issue_api_key(
            alice.id,
            name="ci",
            permissions={"users:read": True},
            expires_at=datetime.now(UTC) + timedelta(days=9),
        )
        identity.update_api_key(issued.result.id, name="cd", permissions={"api_keys:read": True})
        identity.rotate_api_key(issued.result.id, grace_seconds=60)
        identity.record_api_key_usage(
            issued.result.id, count=2, last_used_at=datetime.now(UTC), last_used_ip="198.51.100.7"
        )
        identity.revoke_api_key(issued.result.id, reason="done")
        identity.end_session(tokens.session_id)
    subscription = identity.create_subscription(url="https://hooks.example/secret-path?token=x", actions=None)
    identity.pause_subscription(subscription.result.id)
    identity.resume_subscription(subscription.result.id)
    identity.delete_subscription(subscription.result.id)
    identity.deactivate_user(bob.id)
    identity.delete_user(bob.id)
    identity.erase_user(alice.id)


def test_each_row_read_from_the_stored_event_is_the_one_its_decoded_event_gives(
    components: Components,
) -> None:
    every_kind_of_event(components)
    identity = components.identity
    projection = components.projections["audit_log"]
    assert isinstance(projection, AuditLogProjection) and projection.reads_stored
    sealer = projection.context.sealer
    topics = set()
    for stored in identity.recorder.select_notifications(0, 1000):
        if stored.topic not in projection.topics:
            continue
        topics.add(stored.topic)
        row = projection.entry(stored.id, stored)
        expected = reference_row(stored.id, identity.mapper.to_domain_event(stored), sealer)
        assert {k: v for k, v in row.items() if k != "mac"} == expected, stored.topic
    assert len(topics) >= 20, sorted(topics)  # most kinds of event, sessions and subscriptions too


def test_a_state_it_cannot_render_is_refused_not_stored_half_read(components: Components) -> None:
    """A custom type the audit row has no rendering for fails the event (the projector names
    its position) instead of landing in the table as something a reader cannot use."""
    alice = register(components.identity, "alice")
    projection = components.projections["audit_log"]
    notifications = components.identity.recorder.select_notifications(0, 10)
    (stored,) = [n for n in notifications if n.originator_id == alice.id]
    odd = stored.state.replace(b'"username":"alice"', b'"username":{"_type_":"decimal_str","_data_":"1.5"}')
    assert odd != stored.state
    with pytest.raises(ValueError, match="decimal_str"):
        projection.entry(stored.id, replace(stored, state=odd))


def test_an_event_stored_in_an_older_shape_is_upcast_first(
    components: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = register(components.identity, "alice")
    components.identity.update_user(alice.id, full_name="Alice Roe")
    (stored,) = [n for n in components.identity.recorder.select_notifications(0, 10) if "Profile" in n.topic]
    monkeypatch.setattr(User.ProfileUpdated, "class_version", 2, raising=False)
    monkeypatch.setattr(
        User.ProfileUpdated,
        "upcast_v1_v2",
        staticmethod(lambda state: state.update(source="v1")),
        raising=False,
    )
    projection = components.projections["audit_log"]
    row = projection.entry(stored.id, stored)  # type: ignore[attr-defined]
    assert row["changes"]["source"] == "v1" and "sealed" in row["changes"]["full_name"]
    event = components.identity.mapper.to_domain_event(stored)
    expected = reference_row(stored.id, event, Sealer(components.identity.data_keys))
    assert {k: v for k, v in row.items() if k != "mac"} == expected


def _tamper(state: dict[str, Any], how: str) -> None:
    """What someone with write access to the events table might leave in a stored state."""
    email, audit = state["email"]["_data_"], state["audit"]["_data_"]
    box = {"_type_": "uuid_hex", "_data_": uuid4().hex}
    if how == "format as text":
        email["v"] = "1"
    elif how == "quote in the ciphertext":
        email["c"] += '","s":"' + "0" * 32
    elif how == "subject in capitals":
        email["s"] = email["s"].upper()
    elif how == "subject not a uuid":
        email["s"] = "not-a-subject"
    elif how.startswith("class_version "):
        state["class_version"] = json.loads(how.split(" ", 1)[1])
    elif how == "custom value in a list":
        state["tags"] = ["plain", box]
    elif how == "custom value deep in a list":
        state["tags"] = [{"inner": [box]}]
    elif how == "plain list":
        state["tags"] = ["a", 1, None, {"k": "v"}]
    elif how == "extra envelope field":
        audit["planted"] = "x"
    elif how == "unknown custom type":
        state["username"] = {"_type_": "decimal_str", "_data_": "1.5"}
    elif how == "custom value in a secret":
        state["password_hash"] = {"_type_": "made_up", "_data_": 1}
    else:
        raise AssertionError(how)


def _by_decoding(components: Components, stored: Any) -> Any:
    """The former path's outcome: the row, or that it failed (the JSON column refusing what
    is not JSON included)."""
    try:
        row = reference_row(
            stored.id,
            components.identity.mapper.to_domain_event(stored),
            Sealer(components.identity.data_keys),
        )
        json.dumps(row["changes"])
    except Exception:
        return "refused"
    return row


def _by_stored_state(components: Components, stored: Any) -> Any:
    try:
        row = components.projections["audit_log"].entry(stored.id, stored)  # type: ignore[attr-defined]
    except Exception:
        return "refused"
    return {k: v for k, v in row.items() if k != "mac"}


TAMPERINGS = [
    "format as text", "quote in the ciphertext", "subject in capitals", "subject not a uuid",
    "class_version 0", "class_version 5", 'class_version "x"', "custom value in a list",
    "custom value deep in a list", "plain list", "extra envelope field", "unknown custom type",
    "custom value in a secret",
]  # fmt: skip


@pytest.mark.parametrize("how", TAMPERINGS)
def test_a_tampered_state_is_read_as_decoding_read_it_or_refused(components: Components, how: str) -> None:
    """Never a row that decoding would have refused, nor another row than it gave (issue 13)."""
    alice = register(components.identity, "alice")
    notifications = components.identity.recorder.select_notifications(0, 10)
    (stored,) = [n for n in notifications if n.originator_id == alice.id]
    state = json.loads(stored.state)
    _tamper(state, how)
    tampered = replace(stored, state=json.dumps(state, separators=(",", ":")).encode())
    by_stored = _by_stored_state(components, tampered)
    by_decoding = _by_decoding(components, tampered)
    if how == "custom value in a secret":  # redacted before anyone reads it: shown either way
        assert by_stored != "refused"
        return
    assert by_stored == by_decoding
