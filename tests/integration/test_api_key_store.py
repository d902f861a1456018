"""API keys in the event store: issue, verify, rotate, revoke, names, usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import (
    ApiKeyNameTakenError,
    ApiKeyRevokedError,
    AuthenticationError,
    ScopeNotAllowedError,
)
from eventstore.api_key_tokens import generate_api_key
from ledgerline.bootstrap import Components
from tests.integration.helpers import events_of, register

READ = {"users:read": True}


def reason(error: pytest.ExceptionInfo[AuthenticationError]) -> str:
    return error.value.reason


def test_issued_key_verifies_and_only_its_digest_is_stored(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    issued = identity.issue_api_key(alice.id, name="ci", permissions=READ)
    verified = identity.verify_api_key(issued.key)
    assert (verified.key_id, verified.owner_id, verified.permissions) == (issued.result.id, alice.id, READ)
    stored = identity.get_api_key(issued.result.id)
    assert stored.key_prefix == issued.key[:12]
    for event in events_of(identity, issued.result.id):
        assert issued.key not in repr(event.__dict__)


def test_key_verification_refusals(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    now = datetime.now(UTC)
    expiring = identity.issue_api_key(
        alice.id, name="short", permissions=READ, expires_at=now + timedelta(hours=1)
    )
    revoked = identity.issue_api_key(alice.id, name="revoked", permissions=READ)
    identity.revoke_api_key(revoked.result.id, reason="leaked")

    cases = {
        "malformed_key": "llk_not-a-key",
        "unknown_key": generate_api_key().key,  # well formed, never issued
        "key_not_accepted": revoked.key,
    }
    for expected, key in cases.items():
        with pytest.raises(AuthenticationError) as error:
            identity.verify_api_key(key)
        assert reason(error) == expected
    corrupted = expiring.key[:-1] + ("A" if expiring.key[-1] != "A" else "B")
    with pytest.raises(AuthenticationError) as error:
        identity.verify_api_key(corrupted)
    assert reason(error) == "malformed_key"  # the checksum catches it before any lookup

    assert identity.verify_api_key(expiring.key, now=now + timedelta(minutes=59))
    with pytest.raises(AuthenticationError):
        identity.verify_api_key(expiring.key, now=now + timedelta(hours=1))


def test_rotation_keeps_the_old_secret_until_the_grace_deadline(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    issued = identity.issue_api_key(alice.id, name="ci", permissions=READ)
    now = datetime.now(UTC)
    rotated = identity.rotate_api_key(issued.result.id, grace_seconds=60)
    assert rotated.result.id == issued.result.id and rotated.key != issued.key
    assert identity.verify_api_key(rotated.key).key_id == issued.result.id
    assert identity.verify_api_key(issued.key, now=now + timedelta(seconds=30)).key_id == issued.result.id
    with pytest.raises(AuthenticationError):
        identity.verify_api_key(issued.key, now=now + timedelta(seconds=61))
    assert identity.get_api_key(issued.result.id).name == "ci"

    again = identity.rotate_api_key(issued.result.id, grace_seconds=0)
    with pytest.raises(AuthenticationError):
        identity.verify_api_key(rotated.key)  # no grace: the previous secret stops at once
    assert identity.verify_api_key(again.key)


def test_owner_deactivated_or_deleted_stops_keys(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    issued = identity.issue_api_key(alice.id, name="ci", permissions=READ)
    identity.deactivate_user(alice.id)
    with pytest.raises(AuthenticationError) as error:
        identity.verify_api_key(issued.key)
    assert reason(error) == "owner_inactive"
    identity.activate_user(alice.id)
    assert identity.verify_api_key(issued.key)
    identity.delete_user(alice.id)
    with pytest.raises(AuthenticationError):
        identity.verify_api_key(issued.key)
    assert identity.get_api_key(issued.result.id).is_revoked  # deletion revoked it too
    assert identity.api_key_ids_of(alice.id) == []


def test_key_names_are_unique_per_owner_until_revoked(components: Components) -> None:
    identity = components.identity
    alice, bob = register(identity, "alice"), register(identity, "bob")
    first = identity.issue_api_key(alice.id, name="Deploy", permissions=READ)
    with pytest.raises(ApiKeyNameTakenError):
        identity.issue_api_key(alice.id, name="deploy", permissions=READ)
    identity.issue_api_key(bob.id, name="deploy", permissions=READ)  # another owner: fine
    second = identity.issue_api_key(alice.id, name="other", permissions=READ)
    with pytest.raises(ApiKeyNameTakenError):
        identity.update_api_key(second.result.id, name="DEPLOY")
    identity.revoke_api_key(first.result.id)
    with pytest.raises(ApiKeyRevokedError):
        identity.revoke_api_key(first.result.id)
    identity.update_api_key(second.result.id, name="deploy")
    assert identity.get_api_key(second.result.id).name == "deploy"
    assert identity.api_key_ids_of(alice.id) == [second.result.id]


def test_a_key_never_grants_more_than_its_owner(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    with pytest.raises(ScopeNotAllowedError):
        identity.issue_api_key(alice.id, name="x", permissions={"audit_logs:read": True})
    admin = register(identity, "root", is_superuser=True)
    assert identity.issue_api_key(admin.id, name="x", permissions={"*": True})


def test_usage_batches_add_up(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    issued = identity.issue_api_key(alice.id, name="ci", permissions=READ)
    now = datetime.now(UTC)
    identity.record_api_key_usage(issued.result.id, count=700, last_used_at=now, last_used_ip="203.0.113.1")
    later = now + timedelta(seconds=3)
    identity.record_api_key_usage(issued.result.id, count=300, last_used_at=later, last_used_ip="203.0.113.2")
    stored = identity.get_api_key(issued.result.id)
    assert stored.usage_count == 1000
    assert stored.last_used_at == later
    assert stored.last_used_ip is not None and stored.last_used_ip.value == "203.0.113.2"


def test_secrets_stay_out_of_reprs(components: Components) -> None:
    identity = components.identity
    alice = register(identity, "alice")
    issued = identity.issue_api_key(alice.id, name="ci", permissions=READ)
    rotated = identity.rotate_api_key(issued.result.id, grace_seconds=60)
    verification = identity.request_email_verification(alice.id)
    api_key = identity.get_api_key(issued.result.id)
    shown = " ".join(map(repr, (issued, rotated, verification, api_key, identity.get_user(alice.id))))
    for secret in (issued.key, rotated.key, verification.token, api_key.digest, "$argon2"):
        assert secret not in shown
