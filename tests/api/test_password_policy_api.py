"""The password policy wherever a password is set: registration, an admin creating a user, a
change of one's own password, an admin's reset, ``create-admin``. A refusal is a problem+json
422 naming the field, saying which rules broke; it never shows the password or a pattern, and
nothing is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from domain.password_policy import PasswordPolicyError
from tests.api.conftest import PASSWORD, Api
from tests.api.test_hostile_input import commands_since
from tests.api.test_users_api import problem
from tests.integration.test_cli import run

USERS = "/api/v1/users"
WEAK = {
    "Password1!": "commonly used",
    "Carol-Rocks-1": "must not contain your username",
    "Caroline-Zed-1": "must not contain your username",  # the e-mail's local part "caroline"
    "lowercase-only-1": "upper-case",
}


def refused(response: Any, field: str, password: str, rule: str) -> None:
    body = problem(response, 422)
    assert body["errors"] == [{"field": field, "message": body["errors"][0]["message"]}]
    assert rule in body["errors"][0]["message"]
    text = response.text
    assert password not in text and "(?=" not in text and "[\\s\\S]" not in text


@pytest.mark.parametrize(("password", "rule"), WEAK.items())
def test_registration_refuses_a_weak_password_and_writes_nothing(api: Api, password: str, rule: str) -> None:
    head = api.components.identity.head_position()
    body = {
        "username": "carol",
        "email": "caroline@example.com",
        "password": password,
        "full_name": "Carol Zed",
    }
    refused(api.client.post("/api/v1/auth/register", json=body), "password", password, rule)
    refused(api.client.post(USERS, json=body, headers=api.as_admin()), "password", password, rule)
    assert commands_since(api, head) == []  # key usage is flushed on its own schedule
    assert api.components.identity.find_user_id("carol") is None


def test_the_length_bound_is_a_readable_422_too(api: Api) -> None:
    body = {"username": "carol", "email": "c@example.com", "password": "Ab1!" * 40}
    response = api.client.post("/api/v1/auth/register", json=body)
    assert problem(response, 422)["errors"][0]["field"] == "password"
    assert "Ab1!" not in response.text


def test_changing_ones_password_refuses_one_with_ones_own_name(api: Api) -> None:
    change = {"current_password": PASSWORD, "new_password": "Alice-In-Chains-7"}
    response = api.client.post(f"{USERS}/me/change-password", json=change, headers=api.as_user())
    refused(response, "new_password", "Alice-In-Chains-7", "must not contain your username")
    login = api.client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200  # the old one still works: nothing changed


def test_an_admins_reset_follows_the_policy(api: Api) -> None:
    with pytest.raises(PasswordPolicyError) as raised:
        api.components.identity.reset_password(api.user_id, "Qwerty123!")
    assert raised.value.field == "password" and "Qwerty123!" not in str(raised.value)


def test_create_admin_refuses_a_common_password_with_a_readable_line(
    database_url: str, tmp_path: Path
) -> None:
    done = run(
        database_url,
        tmp_path,
        "create-admin",
        "--username",
        "root",
        "--email",
        "r@example.com",
        "--password",
        "P@ssw0rd",
    )
    assert done.returncode == 2  # a usage error, like any bad option
    assert "commonly used" in done.stderr and "P@ssw0rd" not in done.stderr + done.stdout
