"""What a new password must be: one rule per line, each with a message a person can act on.

Applied wherever a password is set (registration, ``create-admin``, a change, an admin's reset),
before it is hashed. A message never repeats the password, nor a pattern.

- 8..128 characters;
- the contract's composition (v1): a lower-case letter, an upper-case letter, a digit and a
  character that is neither;
- not one of the 30,000 most common passwords (zxcvbn's list, from real password leaks),
  ignoring case and the digits and symbols around it ("Dragon2024!" is "dragon");
- not containing the user's own username, e-mail local part or full name (or a part of it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from domain.errors import InvalidValueError

MIN_LENGTH, MAX_LENGTH = 8, 128
SHORTEST_PERSONAL = 3  # shorter names and parts ("Al", "jo") are too common to refuse
_AROUND = re.compile(r"^[^a-z]+|[^a-z]+$")


class PasswordPolicyError(InvalidValueError):
    """A new password breaks one or more rules (HTTP 422, naming the field)."""

    def __init__(self, field: str, broken: list[str]) -> None:
        super().__init__(field, "; ".join(broken))
        self.broken = broken


@cache
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # a 1 MB list: loaded on first use

    return frozenset(FREQUENCY_LISTS["passwords"])


def broken_rules(
    password: str, *, username: str = "", email: str = "", full_name: str | None = None
) -> list[str]:
    """The message of every rule ``password`` breaks (none: it may be set)."""
    broken = []
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        broken.append(f"must be {MIN_LENGTH} to {MAX_LENGTH} characters long")
    for holds, rule in (
        (any(c.islower() for c in password), "must contain a lower-case letter"),
        (any(c.isupper() for c in password), "must contain an upper-case letter"),
        (any(c.isdigit() for c in password), "must contain a digit"),
        (any(not c.isalnum() for c in password), "must contain a character other than letters and digits"),
    ):
        if not holds:
            broken.append(rule)
    folded = password.casefold()
    if folded in common_passwords() or _AROUND.sub("", folded) in common_passwords():
        broken.append("is one of the most commonly used passwords: choose one that is harder to guess")
    if any(part in folded for part in _personal(username, email, full_name)):
        broken.append("must not contain your username, e-mail address or name")
    return broken


def check_password(
    password: str,
    *,
    field: str = "password",
    username: str = "",
    email: str = "",
    full_name: str | None = None,
) -> None:
    broken = broken_rules(password, username=username, email=email, full_name=full_name)
    if broken:
        raise PasswordPolicyError(field, broken)


def _personal(username: str, email: str, full_name: str | None) -> Iterable[str]:
    name = (full_name or "").casefold()
    parts = [username.casefold(), email.casefold().partition("@")[0], "".join(name.split()), *name.split()]
    return {part for part in parts if len(part) >= SHORTEST_PERSONAL}
