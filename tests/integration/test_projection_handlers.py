"""Each projection: events in, expected rows out, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.audit import AuditContext, acting_as
from domain.errors import AuthenticationError
from domain.values import ERASED
from eventstore.personal_data import Sealer
from ledgerline.bootstrap import Components
from projections.api_keys.queries import api_key_by_id
from projections.audit_log.queries import AuditFilter, list_entries
from projections.users.queries import count_users, user_by_id, user_by_username
from tests.integration.helpers import STRONG_PASSWORD, project_all, register, user_context


def test_users_rows_follow_the_user_events(components: Components) -> None:
    identity = components.identity
    with acting_as(AuditContext(actor_type="anonymous", ip_address="203.0.113.5", user_agent="ua")):
        alice = register(identity, "Alice", full_name="Alice Doe")
        identity.authenticate("alice", STRONG_PASSWORD)
    bob = register(identity, "bob")
    identity.verify_user(alice.id)
    identity.update_user(alice.id, full_name="Alice Roe")
    identity.update_user(alice.id, email="alice@new.example")
    for _ in range(5):  # counted failures lock bob
        with pytest.raises(AuthenticationError):
            identity.authenticate("bob", "wrong")
    identity.delete_user(bob.id)
    project_all(components)

    with components.engine.connect() as conn:
        row = user_by_id(conn, alice.id)
        assert row is not None
        assert (row["username"], row["email"], row["full_name"]) == (
            "Alice",
            "alice@new.example",
            "Alice Roe",
        )
        assert (row["is_verified"], row["verified_at"]) == (False, None)  # the new address is unverified
        assert row["version"] == identity.get_user(alice.id).version
        assert row["last_login_at"] is not None
        assert Sealer(identity.data_keys).reveal(row["last_login_ip"]) == "203.0.113.5"
        assert user_by_username(conn, "ALICE")["id"] == alice.id  # type: ignore[index]
        bob_row = user_by_id(conn, bob.id)
        assert bob_row is not None and bob_row["deleted_at"] is not None
        assert bob_row["locked_until"] is not None and bob_row["locked_until"] > datetime.now(UTC)
        assert count_users(conn) == 1 and count_users(conn, include_deleted=True) == 2

    identity.erase_user(alice.id)
    project_all(components)
    with components.engine.connect() as conn:
        row = user_by_id(conn, alice.id)
        assert row is not None
        assert (row["email"], row["full_name"], row["full_name_folded"]) == (ERASED, ERASED, ERASED)
        assert row["erased_at"] is not None and row["deleted_at"] is not None
        assert Sealer(identity.data_keys).reveal(row["last_login_ip"]) == ERASED


def test_api_key_rows_follow_the_key_events(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    expires = datetime.now(UTC) + timedelta(days=30)
    issued = identity.issue_api_key(alice.id, name="ci", permissions={"users:read": True}, expires_at=expires)
    identity.update_api_key(
        issued.result.id, name="deploy", description="for CD", permissions={"api_keys:read": True}
    )
    rotated = identity.rotate_api_key(issued.result.id, grace_seconds=60)
    now = datetime.now(UTC)
    with user_context(alice.id):
        identity.record_api_key_usage(
            issued.result.id, count=3, last_used_at=now, last_used_ip="198.51.100.1"
        )
        identity.record_api_key_usage(
            issued.result.id, count=4, last_used_at=now - timedelta(seconds=5), last_used_ip="x"
        )
    identity.revoke_api_key(issued.result.id, reason="done")
    project_all(components)

    with components.engine.connect() as conn:
        row = api_key_by_id(conn, issued.result.id)
    assert row is not None
    assert (row["name"], row["description"], row["permissions"]) == (
        "deploy",
        "for CD",
        {"api_keys:read": True},
    )
    assert row["key_prefix"] == rotated.key[:12] and row["grace_until"] is not None
    assert row["usage_count"] == 7 and row["last_used_at"] == now  # the later use wins, not the later batch
    assert Sealer(identity.data_keys).reveal(row["last_used_ip"]) == "198.51.100.1"
    assert row["revoked_at"] is not None and row["expires_at"] == expires
    assert "digest" not in row and issued.key not in str(row) and rotated.key not in str(row)


def test_audit_entries_carry_the_envelope_with_secrets_redacted(components: Components) -> None:
    identity = components.identity
    context = AuditContext(
        actor_type="anonymous",
        ip_address="192.0.2.44",
        user_agent="curl/8",
        request_id="req-9",
        correlation_id="c-1",
    )
    with acting_as(context):
        alice = register(identity, "alice", email="alice@example.com")
        with pytest.raises(AuthenticationError):  # recorded as a failure
            identity.authenticate("alice", "Wrong-password-1")
    with user_context(alice.id, ip="192.0.2.45"):
        issued = identity.issue_api_key(alice.id, name="ci", permissions={"users:read": True})
    project_all(components)

    with components.engine.connect() as conn:
        about_alice = list_entries(conn, AuditFilter(resource_id=alice.id), order="asc")
        about_key = list_entries(conn, AuditFilter(resource_id=issued.result.id), order="asc")
        by_alice = list_entries(conn, AuditFilter(actor_id=alice.id), order="asc")
    assert [e["action"] for e in about_alice] == ["user.registered", "auth.login_failed"]
    assert [e["status"] for e in about_alice] == ["success", "failure"]
    registered = about_alice[0]
    assert (registered["request_id"], registered["correlation_id"], registered["actor_type"]) == (
        "req-9",
        "c-1",
        "anonymous",
    )
    assert registered["changes"]["password_hash"] == "[REDACTED]"
    sealer = Sealer(identity.data_keys)
    assert sealer.reveal(registered["ip_address"]) == "192.0.2.44"
    assert sealer.reveal(registered["changes"]["email"]["sealed"]) == "alice@example.com"
    assert "alice@example.com" not in str(registered) and "192.0.2.44" not in str(registered)
    assert [e["action"] for e in about_key] == ["api_key.issued"] and about_key == by_alice
    assert about_key[0]["changes"]["digest"] == "[REDACTED]"
    assert about_key[0]["actor_id"] == alice.id and about_key[0]["resource_version"] == 1

    identity.erase_user(alice.id)
    assert sealer.reveal(registered["ip_address"]) == ERASED  # erasure reaches the read copy
    assert sealer.reveal(registered["changes"]["email"]["sealed"]) == ERASED
