"""Normalisation of id token uids (pure rules, no database)."""

import pytest
from django.core.exceptions import ValidationError

from apps.accounts.choices import IdTokenType
from apps.accounts.idtokens import normalise_uid

LENGTH = "An RFID uid must be 4 to 10 whole bytes (8 to 20 hex digits),"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("04a2b3c4", "04A2B3C4"),
        (" 04:A2:B3:C4 ", "04A2B3C4"),
        ("04-a2-b3-c4-d5-e6-80", "04A2B3C4D5E680"),
        ("04 a2 b3 c4", "04A2B3C4"),
        ("04.a2.b3.c4", "04A2B3C4"),
        ("0x04a2b3c4", "04A2B3C4"),
        ("00112233445566778899", "00112233445566778899"),
    ],
)
@pytest.mark.parametrize("token_type", [IdTokenType.ISO14443, IdTokenType.ISO15693])
def test_rfid_uids(raw, expected, token_type):
    assert normalise_uid(raw, token_type) == expected


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        ("", "uid_empty", "The token uid is empty."),
        ("   ", "uid_empty", "The token uid is empty."),
        (None, "uid_empty", "The token uid is empty."),
        ("04G2B3C4", "uid_not_hex", "An RFID uid must be hexadecimal (0-9, A-F), got 04G2B3C4."),
        ("04A2B3", "uid_length", f"{LENGTH} got 6 digits."),
        ("04A2B3C4D", "uid_length", f"{LENGTH} got 9 digits."),
        ("0011223344556677889900", "uid_length", f"{LENGTH} got 22 digits."),
    ],
)  # fmt: skip
def test_bad_rfid_uids(raw, code, message):
    with pytest.raises(ValidationError) as excinfo:
        normalise_uid(raw, IdTokenType.ISO14443)
    assert (excinfo.value.code, excinfo.value.messages) == (code, [message])


@pytest.mark.parametrize(
    ("raw", "token_type", "expected"),
    [
        ("app-user-42", IdTokenType.CENTRAL, "APP-USER-42"),
        (" de*abc*c12345678*9 ", IdTokenType.EMAID, "DE*ABC*C12345678*9"),
        ("aa:bb:cc:dd:ee:ff", IdTokenType.MAC_ADDRESS, "AA:BB:CC:DD:EE:FF"),
        ("user@example.com", IdTokenType.LOCAL, "USER@EXAMPLE.COM"),
        ("x" * 36, IdTokenType.CENTRAL, "X" * 36),
    ],
)
def test_other_token_types_keep_their_separators(raw, token_type, expected):
    assert normalise_uid(raw, token_type) == expected


@pytest.mark.parametrize(
    ("raw", "code", "message"),
    [
        ("x" * 37, "uid_length", "A token uid may have at most 36 characters."),
        ("app user", "uid_characters", "A token uid may contain only letters, digits and * _ = + - . : @"),
        ("app/user", "uid_characters", "A token uid may contain only letters, digits and * _ = + - . : @"),
    ],
)
def test_bad_other_uids(raw, code, message):
    with pytest.raises(ValidationError) as excinfo:
        normalise_uid(raw, IdTokenType.CENTRAL)
    assert (excinfo.value.code, excinfo.value.messages) == (code, [message])
