"""API-key strings: shape, checksum, prefix and digest."""

from __future__ import annotations

import hashlib
import string
from collections.abc import Callable

import pytest

from eventstore.api_key_tokens import (
    CHECKSUM_LENGTH,
    KEY_PREFIX_LENGTH,
    PRODUCT_PREFIX,
    NewApiKey,
    digest_of,
    generate_api_key,
    is_well_formed,
)

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


@pytest.fixture(params=range(3), ids=lambda i: f"key{i}")
def key(request: pytest.FixtureRequest) -> str:
    return generate_api_key().key


def test_a_generated_key_has_the_documented_shape(key: str) -> None:
    assert key.startswith("llk_")
    assert PRODUCT_PREFIX == "llk_"
    assert len(key) == 53
    assert all(char in BASE62 for char in key[4:])
    assert is_well_formed(key) is True


def test_changing_any_one_character_breaks_the_key(key: str) -> None:
    accepted = []
    for position, original in enumerate(key):
        for replacement in BASE62:
            if replacement != original:
                changed = key[:position] + replacement + key[position + 1 :]
                if is_well_formed(changed):
                    accepted.append(changed)

    assert accepted == []


def test_swapping_two_neighbouring_body_characters_breaks_the_key(key: str) -> None:
    body_end = len(key) - CHECKSUM_LENGTH
    for position in range(len(PRODUCT_PREFIX), body_end - 1):
        if key[position] != key[position + 1]:
            swapped = key[:position] + key[position + 1] + key[position] + key[position + 2 :]
            assert is_well_formed(swapped) is False, position


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-1],
        lambda key: key + "0",
        lambda key: key + "\n",
        lambda key: " " + key,
        lambda key: key.upper(),
        lambda key: "LLK_" + key[4:],
        lambda key: "llk-" + key[4:],
        lambda key: key[:20] + "-" + key[21:],
        lambda key: key[:20] + "é" + key[21:],
        lambda key: "",
        lambda key: "llk_",
    ],
    ids=[
        "truncated",
        "extended",
        "newline",
        "leading-space",
        "upper-cased",
        "upper-prefix",
        "other-prefix",
        "dash",
        "non-ascii",
        "empty",
        "prefix-only",
    ],
)
def test_malformed_keys_are_refused(key: str, mangle: Callable[[str], str]) -> None:
    assert is_well_formed(mangle(key)) is False


def test_key_prefix_is_the_first_twelve_characters(key: str) -> None:
    new_key = NewApiKey(key)

    assert KEY_PREFIX_LENGTH == 12
    assert new_key.key_prefix == key[:12]
    assert new_key.key_prefix.startswith("llk_")
    assert len(new_key.key_prefix) == 12


def test_digest_is_the_sha256_hex_of_the_whole_key(key: str) -> None:
    expected = hashlib.sha256(key.encode()).hexdigest()

    assert digest_of(key) == expected
    assert NewApiKey(key).digest == expected
    assert len(expected) == 64
    assert digest_of(key[:-1]) != expected


def test_generated_keys_differ() -> None:
    keys = {generate_api_key().key for _ in range(50)}

    assert len(keys) == 50
    assert len({key[:KEY_PREFIX_LENGTH] for key in keys}) > 1
