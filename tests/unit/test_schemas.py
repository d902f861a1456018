"""Request validation of RegisterUser (the contract's user field rules)."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from api.schemas import CreateApiKey, RegisterUser
from domain.password_policy import broken_rules

VALID: dict[str, Any] = {
    "username": "alice_01",
    "email": "alice@example.com",
    "password": "Secr3t!pw",
}


def convert(**changes: Any) -> RegisterUser:
    return msgspec.convert({**VALID, **changes}, RegisterUser)


def refused(field: str, **changes: Any) -> str:
    with pytest.raises(msgspec.ValidationError) as raised:
        convert(**changes)
    message = str(raised.value)
    assert f"$.{field}" in message
    return message


def test_valid_input() -> None:
    user = convert(full_name="Alice Smith")

    assert user == RegisterUser(
        username="alice_01", email="alice@example.com", password="Secr3t!pw", full_name="Alice Smith"
    )


def test_full_name_is_optional() -> None:
    assert convert().full_name is None
    assert convert(full_name=None).full_name is None


@pytest.mark.parametrize("username", ["abc", "Alice-Smith_99", "a" * 100, "___", "0-0"])
def test_valid_usernames(username: str) -> None:
    assert convert(username=username).username == username


@pytest.mark.parametrize("username", ["", "a", "ab", "a" * 101])
def test_a_username_of_the_wrong_length_is_refused(username: str) -> None:
    refused("username", username=username)


@pytest.mark.parametrize(
    "username", ["al ice", "al@ice", "alice!", "al.ice", "alïce", "ali\nce", "<b>x</b>", " alice"]
)
def test_a_username_with_bad_characters_is_refused(username: str) -> None:
    refused("username", username=username)


@pytest.mark.parametrize(
    "email",
    [
        "a@b.co",
        "Alice.Smith+tag@Example.COM",
        "o'brien@mail.example.org",
        "x@sub-domain.example.io",
        "a" * 242 + "@example.com",  # 254 characters
    ],
)
def test_valid_emails(email: str) -> None:
    assert convert(email=email).email == email


@pytest.mark.parametrize(
    "email",
    [
        "",
        "alice",
        "alice@",
        "@example.com",
        "alice@example",
        "alice@@example.com",
        "al ice@example.com",
        "alice@-example.com",
        "alice@example..com",
        "alice@example.com ",
        "<alice@example.com>",
    ],
)
def test_an_invalid_email_is_refused(email: str) -> None:
    refused("email", email=email)


# Python's `$` also matches before a final newline: the patterns must not let one through.
@pytest.mark.parametrize("username", ["alice\n", "ab\n"])
def test_a_username_with_a_trailing_newline_is_refused(username: str) -> None:
    refused("username", username=username)


def test_an_email_with_a_trailing_newline_is_refused() -> None:
    refused("email", email="alice@example.com\n")


def test_an_email_of_255_characters_is_refused() -> None:
    email = "a" * 243 + "@example.com"
    assert len(email) == 255

    message = refused("email", email=email)

    assert "254" in message


@pytest.mark.parametrize(
    ("missing", "password"),
    [
        ("upper-case letter", "secr3t!pw"),
        ("lower-case letter", "SECR3T!PW"),
        ("digit", "Secret!pw"),
        ("special character", "Secr3tpw1"),
    ],
)
def test_a_password_lacking_a_character_class_is_refused(missing: str, password: str) -> None:
    """By the password policy, with the rule's own message (the schema bounds the length only)."""
    broken = broken_rules(password)
    assert [message for message in broken if missing.split()[0] in message or "other than" in message]


def test_a_password_of_7_characters_is_refused() -> None:
    refused("password", password="Sc3t!pw")


def test_a_password_of_129_characters_is_refused() -> None:
    password = "Aa1!" + "x" * 125
    assert len(password) == 129

    refused("password", password=password)


@pytest.mark.parametrize("password", ["Sec3t!pw", "Aa1!" + "x" * 124, "Pässw0rd ok", "1234aB_x"])
def test_valid_passwords(password: str) -> None:
    assert convert(password=password).password == password


def test_a_password_with_every_class_after_a_newline_is_accepted() -> None:
    assert convert(password="secret\nS3!x").password == "secret\nS3!x"


@pytest.mark.parametrize(
    "full_name",
    ["<script>", "<script>alert(1)</script>", "Alice <b>Smith</b>", "a>b", "<img src=x onerror=alert(1)>"],
)
def test_a_full_name_with_markup_is_refused(full_name: str) -> None:
    refused("full_name", full_name=full_name)


@pytest.mark.parametrize("full_name", ["", "Zoë O'Brien-Smith", "李小龍", "A" * 255])
def test_valid_full_names(full_name: str) -> None:
    assert convert(full_name=full_name).full_name == full_name


def test_a_full_name_of_256_characters_is_refused() -> None:
    refused("full_name", full_name="A" * 256)


@pytest.mark.parametrize("field", ["is_superuser", "is_active", "extra", "Username"])
def test_an_unknown_field_is_refused(field: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        convert(**{field: True})


@pytest.mark.parametrize("field", ["username", "email", "password"])
def test_a_missing_required_field_is_refused(field: str) -> None:
    data = {key: value for key, value in VALID.items() if key != field}

    with pytest.raises(msgspec.ValidationError, match=f"missing required field `{field}`"):
        msgspec.convert(data, RegisterUser)


@pytest.mark.parametrize(("field", "value"), [("username", 123), ("email", None), ("password", ["x"])])
def test_a_wrong_type_is_refused(field: str, value: object) -> None:
    refused(field, **{field: value})


def test_json_decoding_applies_the_same_rules() -> None:
    decoder = msgspec.json.Decoder(RegisterUser)

    assert decoder.decode(msgspec.json.encode(VALID)).username == "alice_01"
    with pytest.raises(msgspec.ValidationError):
        decoder.decode(msgspec.json.encode({**VALID, "full_name": "<script>"}))


# ---- what every store and projection can hold ------------------------------------------------


@pytest.mark.parametrize(
    "email", ["user..double@example.com", ".user@example.com", "user.@example.com", "a\x00@example.com"]
)
def test_an_email_whose_local_part_is_not_a_dot_atom_is_refused(email: str) -> None:
    refused("email", email=email)


@pytest.mark.parametrize(
    "full_name",
    [
        "javascript:alert(1)",
        "JaVaScRiPt :alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html,x",
        "x onerror=alert(1)",
        "x ONLOAD =y",
        "a\x00b",
        "line\nbreak",
        "\x7f",
    ],
)
def test_a_full_name_with_script_or_control_characters_is_refused(full_name: str) -> None:
    refused("full_name", full_name=full_name)


@pytest.mark.parametrize("full_name", ["Simone Online", "Ron = Ronald", "Data Scientist", "ß" * 127])
def test_names_that_only_look_alike_are_accepted(full_name: str) -> None:
    assert convert(full_name=full_name).full_name == full_name


def test_a_full_name_that_outgrows_255_characters_when_case_folded_is_refused() -> None:
    assert len("\ufb03".casefold()) == 3
    message = refused("full_name", full_name="\ufb03" * 86)  # 258 folded
    assert "case-folded" in message
    assert convert(full_name="\ufb03" * 85).full_name  # 255 folded


@pytest.mark.parametrize("field", ["username", "email", "password", "full_name"])
def test_an_unpaired_surrogate_is_refused_in_any_text(field: str) -> None:
    refused(field, **{field: {**VALID, "full_name": "Alice"}[field] + "\ud800"})


@pytest.mark.parametrize(
    "moment", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+05:00", "2030-01-01T00:00:00"]
)
def test_an_expiry_that_utc_cannot_hold_is_refused(moment: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=r"expires_at"):
        msgspec.json.decode(
            msgspec.json.encode({"name": "k", "permissions": {}, "expires_at": moment}), type=CreateApiKey
        )


def test_text_in_permission_keys_is_checked_too() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"permissions"):
        msgspec.convert({"name": "k", "permissions": {"users:read\ud800": True}}, CreateApiKey)


def test_the_openapi_patterns_exclude_nul() -> None:
    schema = msgspec.json.schema(RegisterUser)["$defs"]["RegisterUser"]["properties"]
    for field in ("username", "email", "password", "full_name"):
        pattern = next(part for part in schema[field].get("anyOf", [schema[field]]) if "pattern" in part)
        assert re.search(pattern["pattern"], "Aa1!aaaa\x00") is None


# ---- display text: one rule for full_name, key name and description ---------------------------

NOT_DISPLAY = ["\x1b", "\x7f", "\x85", "\x9f", "\u202a", "\u202e", "\u2066", "\u2069", "\ufeff", "<", "\x00"]


def display_fields(text: str) -> dict[str, Any]:
    """Each display-text field holding ``text`` in a body of its type."""
    return {
        "full_name": {**VALID, "full_name": f"Alice{text}"},
        "name": {"name": f"key{text}", "permissions": {}},
        "description": {"name": "key", "permissions": {}, "description": f"for{text}ci"},
    }


@pytest.mark.parametrize("character", NOT_DISPLAY, ids=[f"U+{ord(c):04X}" for c in NOT_DISPLAY])
def test_display_text_refuses_controls_bidi_overrides_and_byte_order_marks(character: str) -> None:
    for field, body in display_fields(character).items():
        kind = RegisterUser if field == "full_name" else CreateApiKey
        with pytest.raises(msgspec.ValidationError, match=rf"\$\.{field}"):
            msgspec.convert(body, kind)
        schema = msgspec.json.schema(kind)["$defs"][kind.__name__]["properties"][field]
        pattern = next(part for part in schema.get("anyOf", [schema]) if "pattern" in part)["pattern"]
        assert re.search(pattern, body[field]) is None, (field, "the OpenAPI pattern lets it through")


@pytest.mark.parametrize("text", [" é ß 名前 \u2013 ok", "Zoë-Ann O'Brien", "\u200d\U0001f469\u200d"])
def test_display_text_accepts_what_people_write(text: str) -> None:
    for field, body in display_fields(text).items():
        kind = RegisterUser if field == "full_name" else CreateApiKey
        assert getattr(msgspec.convert(body, kind), field) == body[field]


def test_a_description_may_span_lines_a_name_may_not() -> None:
    body = {"name": "key", "permissions": {}, "description": "first line\nsecond\r\nthird\n"}
    assert msgspec.convert(body, CreateApiKey).description == body["description"]
    with pytest.raises(msgspec.ValidationError, match=r"\$\.name"):
        msgspec.convert({"name": "two\nlines", "permissions": {}}, CreateApiKey)
