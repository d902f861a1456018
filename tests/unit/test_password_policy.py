"""The password policy: each rule on its own, with a message that names the rule, never the
password or a pattern."""

from __future__ import annotations

import pytest

from domain.password_policy import PasswordPolicyError, broken_rules, check_password, common_passwords

ALICE = {"username": "alice_w", "email": "a.wonder@example.com", "full_name": "Alice Wonderland"}


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("Ab1!", "must be 8 to 128 characters long"),
        ("Ab1!" * 33, "must be 8 to 128 characters long"),
        ("UPPER-CASE-1", "must contain a lower-case letter"),
        ("lower-case-1", "must contain an upper-case letter"),
        ("No-Digits-Here", "must contain a digit"),
        ("NoSymbols123", "must contain a character other than letters and digits"),
        ("P@ssw0rd", "is one of the most commonly used passwords"),
        ("Password1!", "is one of the most commonly used passwords"),  # decorated: "password"
        ("!!Dragon2024", "is one of the most commonly used passwords"),
        ("Alice_W-rocks-1", "must not contain your username"),  # any case
        ("My-A.Wonder-1", "must not contain your username"),  # the e-mail's local part
        ("Wonderland-99!", "must not contain your username"),  # a part of the full name
        ("AliceWonderland-9", "must not contain your username"),  # the full name without spaces
    ],
)
def test_each_rule_refuses_with_its_own_readable_message(password: str, rule: str) -> None:
    broken = broken_rules(password, **ALICE)
    assert any(message.startswith(rule) for message in broken), broken
    with pytest.raises(PasswordPolicyError) as raised:
        check_password(password, field="new_password", **ALICE)
    error = raised.value
    assert error.field == "new_password" and error.broken == broken
    shown = str(error)
    assert password not in shown and password.casefold() not in shown.casefold()
    assert not any(sign in shown for sign in ("(?=", "[^", "\\", "^", "$", "[a-z]"))  # no pattern


@pytest.mark.parametrize(
    "password", ["Correct-Horse-9", "Battery-Staple-7", "correct HORSE 9 battery!", "ÄÖÜ-äöü-123"]
)
def test_a_good_password_breaks_nothing(password: str) -> None:
    assert broken_rules(password, **ALICE) == []


def test_short_names_are_not_refused_inside_passwords() -> None:
    assert broken_rules("Al-Jo-Tremendous-7", username="al", email="jo@example.com", full_name="Al Jo") == []


def test_the_blocklist_is_the_maintained_list_of_common_passwords() -> None:
    common = common_passwords()
    assert len(common) >= 30_000 - 100 and {"123456", "password", "qwerty", "letmein"} <= common


def test_every_broken_rule_is_reported_at_once() -> None:
    assert len(broken_rules("alice", **ALICE)) == 5  # length, upper, digit, symbol, username (and not common)
