"""OCPI 2.2.1 transport: the response envelope and status codes, DateTime format, the credentials token
in the Authorization header (Base64 in 2.2.1), request/correlation ids and the routing headers.
Pure: no ORM."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

VERSION = "2.2.1"

# OCPI status codes (status_codes.asciidoc).
SUCCESS = 1000
CLIENT_ERROR = 2000
INVALID_PARAMETERS = 2001
NOT_ENOUGH_INFORMATION = 2002
UNKNOWN_LOCATION = 2003
UNKNOWN_TOKEN = 2004
SERVER_ERROR = 3000
UNABLE_TO_USE_CLIENT_API = 3001
UNSUPPORTED_VERSION = 3002
NO_MATCHING_ENDPOINTS = 3003
UNKNOWN_RECEIVER = 4001

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z?$")
_PRINTABLE_TOKEN = re.compile(r"^[\x21-\x7e]{1,64}$")


class OcpiError(Exception):
    """A request we refuse: `status_code` is the OCPI status (2001 ...), `http_status` the HTTP one."""

    def __init__(
        self, message: str, *, status_code: int = INVALID_PARAMETERS, http_status: int = 400
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.http_status = http_status


def format_datetime(value: datetime) -> str:
    """OCPI DateTime: UTC with the Z designator, whole seconds (e.g. 2015-06-29T20:39:09Z)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: Any, field: str) -> datetime:
    """An OCPI DateTime (UTC; the Z may be absent; fractional seconds allowed; '+00:00' is not allowed)."""
    if not isinstance(value, str) or not _DATETIME.match(value):
        raise OcpiError(f"{field}: not an OCPI DateTime (e.g. 2015-06-29T20:39:09Z): {value!r}")
    text = value.rstrip("Z")
    if "." in text:
        head, frac = text.split(".")
        text = f"{head}.{frac[:6].ljust(6, '0')}"
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f")
    else:
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S")
    return parsed.replace(tzinfo=UTC)


def envelope(
    data: Any = None, *, status_code: int = SUCCESS, message: str = "", at: datetime
) -> dict[str, Any]:
    """The OCPI response body: data (omitted when None), status_code, status_message, timestamp."""
    body: dict[str, Any] = {"status_code": status_code}
    if data is not None:
        body["data"] = data
    if message:
        body["status_message"] = message
    body["timestamp"] = format_datetime(at)
    return body


def new_token() -> str:
    """A fresh credentials token: 43 URL-safe characters (256 random bits), within string(64)."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What we store of a token we only check (see apps.roaming.models)."""
    return hashlib.sha256(token.encode()).hexdigest()


def authorization_header(token: str) -> str:
    """`Token <base64(token)>` as OCPI 2.2.1 requires."""
    return "Token " + base64.b64encode(token.encode()).decode()


def tokens_from_authorization(header: str) -> list[str]:
    """The credentials token candidates in an Authorization header, Base64-decoded first (2.2.1); the
    raw value second, as OCPI 2.1.1 parties and some 2.2 implementations send it. Empty: no usable header."""
    scheme, _, value = (header or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "token" or not value:
        return []
    candidates: list[str] = []
    try:
        decoded = base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if decoded and _PRINTABLE_TOKEN.match(decoded):
        candidates.append(decoded)
    if value not in candidates:
        candidates.append(value)
    return candidates


def new_request_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Route:
    """The OCPI-from/to headers of a request (empty where absent)."""

    from_country_code: str = ""
    from_party_id: str = ""
    to_country_code: str = ""
    to_party_id: str = ""


def route_headers(*, ours: tuple[str, str], theirs: tuple[str, str]) -> dict[str, str]:
    """The routing headers of a request we send from `ours` (country code, party id) to `theirs`."""
    return {
        "OCPI-from-country-code": ours[0],
        "OCPI-from-party-id": ours[1],
        "OCPI-to-country-code": theirs[0],
        "OCPI-to-party-id": theirs[1],
    }
