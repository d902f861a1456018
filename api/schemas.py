"""Request shapes: each constraint declared once, as an ``Annotated`` alias."""

from __future__ import annotations

from typing import Annotated

import msgspec

# Patterns must mean the same to Python's `re` (msgspec) and to JSON Schema (ECMA 262): in
# Python `$` also matches before a final newline, so every pattern ends with END; lookaheads
# use [\s\S] so they see past a newline too.
END = r"$(?!\n)"

Username = Annotated[str, msgspec.Meta(min_length=3, max_length=100, pattern=r"^[A-Za-z0-9_-]+" + END)]
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=254,
        pattern=r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+" + END,
    ),
]
Password = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=128,
        pattern=r"^(?=[\s\S]*[a-z])(?=[\s\S]*[A-Z])(?=[\s\S]*[0-9])(?=[\s\S]*[^A-Za-z0-9])",
        description="8..128 characters with an upper-case letter, a lower-case letter, "
        "a digit and a special character",
    ),
]
FullName = Annotated[str, msgspec.Meta(max_length=255, pattern=r"^[^<>]*" + END)]


class RegisterUser(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    email: Email
    password: Password
    full_name: FullName | None = None


class Health(msgspec.Struct):
    status: str
    version: str
