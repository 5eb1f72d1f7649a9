"""Pure rules for id token uids (no ORM)."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from apps.accounts.choices import RFID_TYPES

_SEPARATORS = re.compile(r"[\s:\-.]")
_HEX = re.compile(r"^[0-9A-F]+$")
_TOKEN = re.compile(r"^[0-9A-Z*_=+\-.:@]+$")
# OCPP 1.6 idTag is CiString20; 2.0.1 idToken is up to 36. RFID uids are 4, 7 or 10 bytes in practice.
MAX_UID_LENGTH = 36
MAX_RFID_HEX_LENGTH = 20


def normalise_uid(raw: str, token_type: str) -> str:
    """The canonical form of a token uid: upper case; RFID uids as hex without separators.

    Raises ValidationError with a message naming what is wrong."""
    if raw is None or not str(raw).strip():
        raise ValidationError(_("The token uid is empty."), code="uid_empty")
    value = str(raw).strip().upper()
    if token_type in RFID_TYPES:
        value = _SEPARATORS.sub("", value)
        if value.startswith("0X"):
            value = value[2:]
        if not _HEX.match(value):
            raise ValidationError(
                _("An RFID uid must be hexadecimal (0-9, A-F), got {uid}.").format(uid=raw),
                code="uid_not_hex",
            )
        if len(value) % 2 or not 8 <= len(value) <= MAX_RFID_HEX_LENGTH:
            raise ValidationError(
                _("An RFID uid must be 4 to 10 whole bytes (8 to 20 hex digits), got {n} digits.").format(
                    n=len(value)
                ),
                code="uid_length",
            )
        return value
    if len(value) > MAX_UID_LENGTH:
        raise ValidationError(
            _("A token uid may have at most {max} characters.").format(max=MAX_UID_LENGTH), code="uid_length"
        )
    if not _TOKEN.match(value):
        raise ValidationError(
            _("A token uid may contain only letters, digits and * _ = + - . : @"), code="uid_characters"
        )
    return value
