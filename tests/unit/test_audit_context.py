"""The audit envelope every event carries: who, with which credential, from where, which request."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.api_keys import ApiKey
from domain.audit import AuditContext, acting_as, acting_with, current_audit_context
from domain.key_rings import KeyRing
from domain.reservations import Reservation
from domain.users import User
from domain.values import ERASED, AuditEnvelope, Lockout, PersonalData, reveal


def register(user_id: UUID | None = None) -> User:
    return User.register(
        user_id=user_id or uuid4(), username="alice", email="alice@example.com", password_hash="h"
    )


def issue_key(owner_id: UUID, now: datetime) -> ApiKey:
    return ApiKey.issue(
        key_id=uuid4(),
        owner_id=owner_id,
        owner_is_superuser=False,
        name="ci",
        description=None,
        key_prefix="llk_abcdefgh",
        digest="0" * 64,
        permissions={"users:read": True},
        expires_at=None,
        now=now,
    )


def context(actor_id: UUID | None, actor_type: str, **overrides: Any) -> AuditContext:
    fields: dict[str, Any] = {
        "actor_id": actor_id,
        "actor_type": actor_type,
        "ip_address": "203.0.113.9",
        "user_agent": "ua",
        "request_id": "r1",
    }
    fields.update(overrides)
    return AuditContext(**fields)


def test_events_triggered_by_a_user_carry_the_envelope() -> None:
    admin_id, credential_id = uuid4(), uuid4()
    user = register()
    user.collect_events()

    with acting_as(context(admin_id, "user", credential_id=credential_id, correlation_id="c1")):
        user.update_profile(full_name="Alice")
        user.deactivate()

    events = user.collect_events()
    assert len(events) == 2
    for event in events:
        audit = event.audit
        assert isinstance(audit, AuditEnvelope)
        assert audit.actor_id == admin_id
        assert audit.actor_type == "user"
        assert audit.credential_id == credential_id
        assert audit.request_id == "r1"
        assert audit.correlation_id == "c1"
        assert audit.causation_id is None
        assert audit.ip_address == PersonalData(admin_id, "203.0.113.9")
        assert audit.user_agent == PersonalData(admin_id, "ua")


def test_the_creation_event_carries_the_envelope_too() -> None:
    admin_id = uuid4()

    with acting_as(context(admin_id, "user")):
        user = register()

    (event,) = user.collect_events()
    assert event.audit.actor_id == admin_id
    assert event.audit.request_id == "r1"
    assert event.audit.ip_address == PersonalData(admin_id, "203.0.113.9")


def test_for_an_api_key_actor_the_personal_data_belongs_to_the_acting_user() -> None:
    acting_user_id, key_id = uuid4(), uuid4()
    user = register()
    user.collect_events()

    with acting_as(context(acting_user_id, "api_key", credential_id=key_id)):
        user.grant_superuser()

    (event,) = user.collect_events()
    assert event.audit.actor_type == "api_key"
    assert event.audit.credential_id == key_id
    assert event.audit.ip_address is not None
    assert event.audit.ip_address.subject_id == acting_user_id
    assert event.audit.user_agent is not None
    assert event.audit.user_agent.subject_id == acting_user_id


def test_for_an_anonymous_actor_the_personal_data_belongs_to_the_user() -> None:
    user_id = uuid4()

    with acting_as(context(None, "anonymous")):
        user = register(user_id)  # self-registration
        user.record_failed_login("bad_password", datetime.now(UTC), Lockout())

    events = user.collect_events()
    assert len(events) == 2
    for event in events:
        assert event.audit.actor_id is None
        assert event.audit.actor_type == "anonymous"
        assert event.audit.request_id == "r1"
        assert event.audit.ip_address == PersonalData(user_id, "203.0.113.9")
        assert event.audit.user_agent == PersonalData(user_id, "ua")


def test_for_an_anonymous_actor_a_keys_personal_data_belongs_to_its_owner() -> None:
    owner_id = uuid4()
    now = datetime.now(UTC)

    with acting_as(context(None, "anonymous")):
        key = issue_key(owner_id, now)
        key.record_usage(count=1, last_used_at=now, last_used_ip="198.51.100.7")
        key.rename("renamed", now)

    events = key.collect_events()
    assert len(events) == 3
    for event in events:
        assert event.audit.ip_address == PersonalData(owner_id, "203.0.113.9")
        assert event.audit.user_agent == PersonalData(owner_id, "ua")
    assert events[1].last_used_ip == PersonalData(owner_id, "198.51.100.7")


def test_for_an_anonymous_actor_ring_and_reservation_data_belongs_to_the_subject() -> None:
    owner_id = uuid4()

    with acting_as(context(None, "anonymous")):
        ring = KeyRing.open(owner_id)
        ring.add(uuid4(), "ci")
        reservation = Reservation.claim("username", "alice", owner_id, owner_id)
        reservation.release()

    for event in [*ring.collect_events(), *reservation.collect_events()]:
        assert event.audit.ip_address == PersonalData(owner_id, "203.0.113.9")


def test_a_user_actor_without_an_id_is_treated_like_an_anonymous_one() -> None:
    user_id = uuid4()

    with acting_as(context(None, "user")):
        user = register(user_id)

    (event,) = user.collect_events()
    assert event.audit.ip_address == PersonalData(user_id, "203.0.113.9")


def test_a_login_records_the_ip_as_the_users_personal_data() -> None:
    user = register()
    now = datetime.now(UTC)

    with acting_as(context(None, "anonymous")), acting_with(actor_id=user.id, actor_type="user"):
        user.record_login(now)

    assert user.last_login_ip == PersonalData(user.id, "203.0.113.9")
    assert user.last_login_at is not None
    assert user.last_login_at - now < timedelta(minutes=1)


def test_outside_any_context_the_actor_is_the_system() -> None:
    user = register()
    user.update_profile(full_name="Alice")

    for event in user.collect_events():
        assert event.audit == AuditEnvelope()
        assert event.audit.actor_type == "system"
        assert event.audit.actor_id is None
        assert event.audit.ip_address is None
        assert event.audit.request_id is None


def test_the_context_is_restored_after_the_block_even_on_error() -> None:
    assert current_audit_context().actor_type == "system"

    with pytest.raises(RuntimeError), acting_as(context(uuid4(), "user")):
        assert current_audit_context().actor_type == "user"
        raise RuntimeError("boom")

    assert current_audit_context() == AuditContext()
    user = register()
    (event,) = user.collect_events()
    assert event.audit.actor_type == "system"


def test_acting_with_refines_and_then_restores_the_context() -> None:
    user_id = uuid4()

    with acting_as(context(None, "anonymous")):
        with acting_with(actor_id=user_id, actor_type="user") as refined:
            assert refined.request_id == "r1"
            assert refined.ip_address == "203.0.113.9"
            assert current_audit_context().actor_id == user_id
        assert current_audit_context().actor_type == "anonymous"
        assert current_audit_context().actor_id is None


def test_the_context_does_not_leak_into_other_threads() -> None:
    seen: list[str] = []

    with acting_as(context(uuid4(), "user")):
        thread = threading.Thread(target=lambda: seen.append(current_audit_context().actor_type))
        thread.start()
        thread.join()

    assert seen == ["system"]


# ---- PersonalData -----------------------------------------------------------------------------


def test_personal_data_repr_hides_the_value() -> None:
    subject_id = uuid4()
    data = PersonalData(subject_id, "alice@example.com")

    for text in (repr(data), str(data), repr([data]), f"{data!r}"):
        assert "alice@example.com" not in text
        assert "<hidden>" in text
        assert str(subject_id) in text
    assert data.value == "alice@example.com"


def test_an_envelopes_repr_does_not_show_ip_or_user_agent() -> None:
    with acting_as(context(uuid4(), "user", user_agent="Mozilla/5.0 SecretBrowser")):
        user = register()

    text = repr(user.collect_events()[0])
    assert "203.0.113.9" not in text
    assert "SecretBrowser" not in text
    assert "alice@example.com" not in text


def test_reveal_and_erased() -> None:
    subject_id = uuid4()

    assert reveal(None) is None
    assert reveal(PersonalData(subject_id, "x")) == "x"
    assert PersonalData(subject_id, ERASED).is_erased is True
    assert PersonalData(subject_id, "x").is_erased is False
