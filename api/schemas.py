"""Request shapes: each constraint declared once, as an ``Annotated`` alias."""

from __future__ import annotations

from typing import Annotated

import msgspec

Username = Annotated[str, msgspec.Meta(min_length=3, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=254,
        pattern=r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$",
    ),
]
Password = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=128,
        pattern=r"^(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])(?=.*[^A-Za-z0-9])",
        description="8..128 characters with an upper-case letter, a lower-case letter, "
        "a digit and a special character",
    ),
]
FullName = Annotated[str, msgspec.Meta(max_length=255, pattern=r"^[^<>]*$")]


class RegisterUser(msgspec.Struct, forbid_unknown_fields=True):
    username: Username
    email: Email
    password: Password
    full_name: FullName | None = None


class Health(msgspec.Struct):
    status: str
    version: str
