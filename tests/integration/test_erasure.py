"""GDPR erasure by crypto-shredding: personal data reads as [erased] everywhere, events stay."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import text

from domain.audit import AuditContext, acting_as
from domain.errors import UserErasedError
from domain.values import ERASED, PersonalData
from ledgerline.bootstrap import Components
from tests.integration.helpers import STRONG_PASSWORD, events_of, every_stored_byte, register, user_context

EMAIL = "alice.personal@example.com"
NAME = "Alice Quixotic-Smith"
IP = "198.51.100.77"
AGENT = "AliceBrowser/1.0"


def personal_values(value: object) -> list[PersonalData]:
    """Every PersonalData inside an event or its audit envelope."""
    found: list[PersonalData] = []
    items = value.__dict__.values() if hasattr(value, "__dict__") else ()
    for item in items:
        if isinstance(item, PersonalData):
            found.append(item)
        elif hasattr(item, "__slots__") and not isinstance(item, str):
            found.extend(
                v for v in (getattr(item, s, None) for s in item.__slots__) if isinstance(v, PersonalData)
            )
    return found


def test_erased_user_reads_as_erased_everywhere_and_events_stay(components: Components) -> None:
    identity = components.identity
    with acting_as(AuditContext(actor_type="anonymous", ip_address=IP, user_agent=AGENT)):
        alice = register(identity, "alice", email=EMAIL, full_name=NAME)
        identity.authenticate("alice", STRONG_PASSWORD)
    with user_context(alice.id, ip=IP):
        for n in range(55):  # a snapshot (interval 50) now holds her personal data too
            identity.update_profile(alice.id, full_name=f"{NAME} {n}")
        key = identity.issue_api_key(alice.id, name="laptop", permissions={"users:read": True})
    admin = register(identity, "root", is_superuser=True)

    before = identity.get_user(alice.id)
    assert (before.email_address, before.last_login_ip and before.last_login_ip.value) == (EMAIL, IP)
    stored_events_before = _raw_events(components, alice.id)

    with user_context(admin.id, ip="192.0.2.1"):
        identity.erase_user(alice.id)

    after = identity.get_user(alice.id)
    assert after.email_address == ERASED
    assert after.full_name is not None and after.full_name.value == ERASED
    assert after.last_login_ip is not None and after.last_login_ip.value == ERASED
    assert after.is_erased and after.is_deleted and not after.is_active
    assert identity.get_user(alice.id, version=1).email_address == ERASED  # history too
    for event in events_of(identity, alice.id):
        for data in personal_values(event):
            if data.subject_id == alice.id:
                assert data.value == ERASED
    erased_event = events_of(identity, alice.id)[-1]
    assert erased_event.audit.ip_address.value == "192.0.2.1"  # the admin's data is not hers
    assert identity.get_api_key(key.result.id).is_revoked
    assert _raw_events(components, alice.id)[: len(stored_events_before)] == stored_events_before

    everything = every_stored_byte(components.engine)
    for secret in (EMAIL, NAME, IP, AGENT):
        assert secret.encode() not in everything
    if components.settings.database.is_sqlite:
        path = Path(components.settings.database.sqlite_path)
        for file in (path, path.with_name(path.name + "-wal")):
            if file.exists():
                assert EMAIL.encode() not in file.read_bytes()
                assert NAME.encode() not in file.read_bytes()

    assert identity.find_user_id(EMAIL) == alice.id  # the address stays reserved (keyed hash)
    with pytest.raises(UserErasedError):
        identity.erase_user(alice.id)
    with pytest.raises(UserErasedError):
        identity.restore_user(alice.id)


def test_personal_data_is_never_stored_in_plain(components: Components) -> None:
    identity = components.identity
    with acting_as(AuditContext(actor_type="anonymous", ip_address=IP, user_agent=AGENT)):
        alice = register(identity, "alice", email=EMAIL, full_name=NAME)
    assert identity.get_user(alice.id).email_address == EMAIL  # readable through the store...
    everything = every_stored_byte(components.engine)
    for secret in (EMAIL, NAME, IP, AGENT):
        assert secret.encode() not in everything  # ...but in no table in plain


def _raw_events(components: Components, aggregate_id: UUID) -> list[tuple[object, ...]]:
    table = components.settings.database.events_table
    key = aggregate_id.hex if components.settings.database.is_sqlite else aggregate_id
    with components.engine.connect() as conn:
        rows = conn.execute(
            text(
                f"SELECT originator_version, topic, state FROM {table} "
                "WHERE originator_id = :id ORDER BY originator_version"
            ),
            {"id": key},
        )
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]
