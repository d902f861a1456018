"""GDPR erasure by crypto-shredding: personal data reads as [erased] everywhere, events stay."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import select, text

from domain.audit import AuditContext, acting_as
from domain.errors import AuthenticationError, UserErasedError
from domain.values import ERASED, PersonalData
from eventstore.passwords import Passwords
from eventstore.personal_data import WrongSecretKeyError, data_keys
from ledgerline.bootstrap import Components, build
from tests.conftest import settings_for
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
            identity.update_user(alice.id, full_name=f"{NAME} {n}")
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

    assert identity.find_user_id(EMAIL) is None  # her address no longer points at her...
    assert identity.find_user_id("alice") == alice.id  # ...her username stays reserved
    again = identity.erase_user(alice.id)  # idempotent: a repeat answers like the first call
    assert (again.id, again.version) == (alice.id, after.version)
    with pytest.raises(UserErasedError):
        identity.restore_user(alice.id)
    with pytest.raises(AuthenticationError):
        identity.authenticate("alice", STRONG_PASSWORD)  # her password hash is gone too
    register(identity, "alice2", email=EMAIL)  # and the address can be registered afresh


def test_wrapped_key_bytes_leave_the_sqlite_files(tmp_path: Path, fast_passwords: Passwords) -> None:
    built = build(
        settings_for(f"sqlite:///{tmp_path / 'l.sqlite3'}", tmp_path), init=True, passwords=fast_passwords
    )
    try:
        alice = register(built.identity, "alice")
        with built.engine.connect() as conn:
            wrapped = conn.execute(
                select(data_keys.c.wrapped_key).where(data_keys.c.subject_id == alice.id)
            ).scalar_one()
        files = [tmp_path / "l.sqlite3", tmp_path / "l.sqlite3-wal"]
        assert any(wrapped in f.read_bytes() for f in files if f.exists())  # the test can see it...
        built.identity.erase_user(alice.id)
        assert not any(wrapped in f.read_bytes() for f in files if f.exists())  # ...until it is gone
    finally:
        built.close()


def test_an_erasure_interrupted_before_the_key_went_is_finished(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice", email=EMAIL)
    original_erase = identity.data_keys.erase

    def crash(_: UUID) -> None:
        raise RuntimeError("power cut")

    identity.data_keys.erase = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        identity.erase_user(alice.id)
    identity.data_keys.erase = original_erase  # type: ignore[method-assign]
    assert identity.data_keys.is_erased(alice.id) is False  # the event is stored, the key is not gone

    assert identity.finish_erasures() == 1
    assert identity.get_user(alice.id).email_address == ERASED
    assert identity.finish_erasures() == 0


def test_another_secret_key_is_refused_not_misread(
    database_url: str, tmp_path: Path, fast_passwords: Passwords
) -> None:
    built = build(settings_for(database_url, tmp_path), init=True, passwords=fast_passwords)
    try:
        alice = register(built.identity, "alice")
    finally:
        built.close()
    assert alice.id
    with pytest.raises(WrongSecretKeyError, match="LEDGERLINE_SECRET_KEY"):
        build(settings_for(database_url, tmp_path, LEDGERLINE_SECRET_KEY="33" * 32), passwords=fast_passwords)


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
