"""Charge point authorisation keys: generation, salted HMAC storage, verification (pure, no database)."""

import re

import pytest
from django.core.exceptions import ValidationError

from apps.stations.keys import (
    MAX_KEY_LENGTH,
    MIN_KEY_LENGTH,
    generate_key,
    hash_key,
    validate_key,
    verify_key,
)

KEY = "s3cret-key-0123456789"
SALT = bytes(range(16))


def test_generated_key_is_20_random_bytes_as_hex():
    key = generate_key()
    assert re.fullmatch(r"[0-9a-f]{40}", key)
    assert len(key) == MAX_KEY_LENGTH
    assert generate_key() != key


def test_generated_key_passes_validation():
    validate_key(generate_key())


def test_hash_format_with_fixed_salt():
    stored = hash_key(KEY, salt=SALT)
    assert stored == hash_key(KEY, salt=SALT)
    algorithm, salt_hex, digest = stored.split("$")
    assert (algorithm, salt_hex) == ("hmac-sha256", "000102030405060708090a0b0c0d0e0f")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_random_salt_differs_per_hash():
    first, second = hash_key(KEY), hash_key(KEY)
    assert first != second
    assert verify_key(KEY, first) and verify_key(KEY, second)


def test_verify():
    stored = hash_key(KEY)
    assert verify_key(KEY, stored) is True
    assert verify_key(KEY[:-1], stored) is False
    assert verify_key(KEY.upper(), stored) is False


def _flip_last_hex_digit(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


def test_tampered_hash_never_verifies():
    algorithm, salt_hex, digest = hash_key(KEY, salt=SALT).split("$")
    assert verify_key(KEY, f"{algorithm}${salt_hex}${_flip_last_hex_digit(digest)}") is False
    assert verify_key(KEY, f"{algorithm}${_flip_last_hex_digit(salt_hex)}${digest}") is False
    assert verify_key(KEY, f"pbkdf2_sha256${salt_hex}${digest}") is False


@pytest.mark.parametrize(
    ("key", "stored"),
    [
        ("", "hmac-sha256$00$00"),
        (KEY, ""),
        (KEY, "garbage"),
        (KEY, "hmac-sha256$not-hex$00"),
        (KEY, "hmac-sha256$00$00$00"),
        ("schlüssel-mit-umlaut", "hmac-sha256$00$00"),
    ],
)
def test_malformed_input_is_false_not_an_error(key, stored):
    assert verify_key(key, stored) is False


@pytest.mark.parametrize(
    "key", ["a" * MIN_KEY_LENGTH, "a" * MAX_KEY_LENGTH, "!#$%&'()*+,-./:;<=>?@[]^_`{|}~0"]
)
def test_valid_keys(key):
    validate_key(key)


@pytest.mark.parametrize(
    ("key", "code", "message"),
    [
        ("a" * (MIN_KEY_LENGTH - 1), "key_length", "An authorisation key must have 16 to 40 characters."),
        ("a" * (MAX_KEY_LENGTH + 1), "key_length", "An authorisation key must have 16 to 40 characters."),
        ("with a space in it 123", "key_characters", "An authorisation key may contain only printable ASCII "
         "characters without spaces."),
        ("tab\tcharacter-0123456", "key_characters", "An authorisation key may contain only printable ASCII "
         "characters without spaces."),
        ("schlüssel-0123456789", "key_characters", "An authorisation key may contain only printable ASCII "
         "characters without spaces."),
    ],
)  # fmt: skip
def test_invalid_keys(key, code, message):
    with pytest.raises(ValidationError) as excinfo:
        validate_key(key)
    assert (excinfo.value.code, excinfo.value.messages) == (code, [message])


def test_hash_refuses_an_invalid_key():
    with pytest.raises(ValidationError):
        hash_key("short", salt=SALT)
