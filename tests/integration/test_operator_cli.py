"""``ledgerline users ...`` and ``ledgerline keys ...`` through click's CliRunner, on SQLite and
PostgreSQL: what an operator sees, what each command appends and as whom, and the exit codes
(0 done, 1 not found, 2 usage, 3 refused by a rule)."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from click.testing import CliRunner, Result

from domain.api_keys import ApiKey
from domain.errors import AuthenticationError
from ledgerline.bootstrap import Components
from ledgerline.cli import cli
from tests.conftest import TEST_SECRET
from tests.integration.helpers import STRONG_PASSWORD, events_of, project_all, register

OS_ACCOUNT = pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture
def operator(components: Components, database_url: str, tmp_path: Path) -> Any:
    env = {
        "LEDGERLINE_DATABASE_URL": database_url,
        "LEDGERLINE_DATA_DIR": str(tmp_path),
        "LEDGERLINE_SECRET_KEY": TEST_SECRET,
        "LEDGERLINE_POOL_SIZE": "2",
    }

    def run(*args: str, input: str | None = None) -> Result:
        claimed = {"LOGNAME": "mallory", "USER": "mallory"}  # anyone can say so: not what is recorded
        runner = CliRunner()
        return runner.invoke(cli, list(args), env={**env, **claimed}, input=input, catch_exceptions=False)

    return run


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def acted_by_the_operator(components: Components, aggregate_id: UUID, count: int = 1) -> None:
    for event in events_of(components.identity, aggregate_id)[-count:]:
        audit = event.audit
        assert audit.actor_type == "system" and audit.actor_id is None and audit.credential_id is None
        assert audit.request_id.startswith(f"cli-{OS_ACCOUNT}-") and audit.correlation_id == audit.request_id
        assert audit.user_agent is not None


def test_show_a_user_by_id_username_or_email(components: Components, operator: Any) -> None:
    alice = register(components.identity, "alice").id
    for who in (str(alice), "alice", "ALICE@example.com"):
        shown = as_json(operator("users", "show", who, "--json"))
        assert shown["id"] == str(alice) and shown["username"] == "alice"
    text = operator("users", "show", "alice")
    assert text.exit_code == 0 and "username: alice" in text.stdout
    missing = operator("users", "show", "nobody")
    assert missing.exit_code == 1 and "user not found" in missing.stderr
    assert operator("users", "show").exit_code == 2  # usage


def test_deactivate_activate_unlock_act_as_the_operator(components: Components, operator: Any) -> None:
    alice = register(components.identity, "alice").id
    assert as_json(operator("users", "deactivate", "alice", "--json"))["is_active"] is False
    acted_by_the_operator(components, alice)
    again = operator("users", "deactivate", "alice")
    assert again.exit_code == 3 and "Error:" in again.stderr  # the state does not allow it
    assert as_json(operator("users", "activate", "alice", "--json"))["is_active"] is True
    for _ in range(5):  # the lockout's default
        with pytest.raises(AuthenticationError):
            components.identity.authenticate("alice", "Wrong-" + STRONG_PASSWORD)
    assert as_json(operator("users", "show", "alice", "--json"))["is_locked"] is True
    unlocked = as_json(operator("users", "unlock", "alice", "--json"))
    assert unlocked["is_locked"] is False
    acted_by_the_operator(components, alice)
    components.identity.authenticate("alice", STRONG_PASSWORD)  # unlocked: the right password works


def test_erase_asks_first_unless_yes(components: Components, operator: Any) -> None:
    alice = register(components.identity, "alice").id
    bob = register(components.identity, "bob").id
    declined = operator("users", "erase", "alice", input="n\n")
    assert declined.exit_code == 2 and not components.identity.get_user(alice).is_erased
    assert "Erase alice" in declined.stderr
    confirmed = operator("users", "erase", "alice", "--json", input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert components.identity.get_user(alice).is_erased
    acted_by_the_operator(components, alice)
    assert operator("users", "erase", str(bob), "--yes").exit_code == 0
    assert components.identity.get_user(bob).is_erased
    erased = events_of(components.identity, bob)[-1]  # who erased bob survives his erasure
    assert erased.audit.request_id.startswith(f"cli-{OS_ACCOUNT}-")


def test_keys_list_and_revoke_with_a_reason(components: Components, operator: Any) -> None:
    alice = register(components.identity, "alice").id
    bob = register(components.identity, "bob").id
    issued = components.identity.issue_api_key(alice, name="laptop", permissions={"users:read": True})
    components.identity.issue_api_key(bob, name="ci", permissions={})
    project_all(components)
    listed = as_json(operator("keys", "list", "--json"))
    assert {key["name"] for key in listed} == {"laptop", "ci"}
    assert issued.key not in json.dumps(listed) and all(
        "digest" not in key and "key" not in key for key in listed
    )
    assert [key["name"] for key in as_json(operator("keys", "list", "--user", "alice", "--json"))] == [
        "laptop"
    ]
    key_id = str(issued.result.id)
    revoked = as_json(operator("keys", "revoke", key_id, "--reason", "laptop stolen", "--json"))
    assert revoked["id"] == key_id and revoked["is_active"] is False
    event = events_of(components.identity, issued.result.id)[-1]
    assert isinstance(event, ApiKey.Revoked) and event.reason == "laptop stolen"
    acted_by_the_operator(components, issued.result.id)
    assert operator("keys", "revoke", key_id).exit_code == 3  # already revoked
    project_all(components)
    assert [key["name"] for key in as_json(operator("keys", "list", "--json"))] == ["ci"]
    assert len(as_json(operator("keys", "list", "--include-revoked", "--json"))) == 2


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("keys", "revoke", "not-a-uuid"), 2),
        (("keys", "revoke", "00000000-0000-0000-0000-000000000000"), 1),
        (("keys", "revoke", "00000000-0000-0000-0000-000000000000", "--reason", "two\nlines"), 2),
        (("keys", "revoke", "00000000-0000-0000-0000-000000000000", "--reason", "x" * 201), 2),
        (("keys", "list", "--user", "nobody"), 1),
        (("users", "unlock", "00000000-0000-0000-0000-000000000000"), 1),
        (("users", "frobnicate", "alice"), 2),
    ],
)
def test_exit_codes(components: Components, operator: Any, args: tuple[str, ...], code: int) -> None:
    head = components.identity.head_position()
    assert operator(*args).exit_code == code
    assert components.identity.head_position() == head  # nothing written


def test_lists_say_when_the_read_tables_are_behind(components: Components, operator: Any) -> None:
    register(components.identity, "alice")
    behind = operator("users", "list")
    assert behind.exit_code == 0 and "behind the store" in behind.stderr
    project_all(components)
    listed = operator("users", "list", "--json")
    assert "behind" not in listed.stderr
    assert [user["username"] for user in as_json(listed)] == ["alice"]
    text = operator("users", "list")
    assert text.stdout.splitlines()[0].startswith("id\tusername") and "alice" in text.stdout


def test_rebuild_names_what_it_can_rebuild_and_why_not_the_checkpoints(
    components: Components, operator: Any
) -> None:
    helped = operator("projections", "rebuild", "--help")
    assert helped.exit_code == 0 and all(name in helped.stdout for name in ("users", "api_keys", "audit_log"))
    refused = operator("projections", "rebuild", "audit_checkpoints")
    assert refused.exit_code == 2 and "users" in refused.stderr  # a usage error listing the choices
    assert "audit_checkpoints" in helped.stdout  # and why it is not among them
    explained = operator("projections", "status", "--help")
    assert "audit_checkpoints" in explained.stdout and "nothing to rebuild" in explained.stdout
