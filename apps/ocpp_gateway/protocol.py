"""OCPP-J framing and schema validation, with the error codes the specifications prescribe.

The `ocpp` library supplies the JSON schemas (and the payload dataclasses used by the handlers); its own
mapping of schema failures to error codes differs from OCPP-J in places (FIELD-NOTES), so the mapping
lives here:

| failure                                  | 1.6                          | 2.0.1 and 2.1                 |
|------------------------------------------|------------------------------|-------------------------------|
| required field missing                   | OccurenceConstraintViolation | OccurrenceConstraintViolation |
| wrong JSON type                          | TypeConstraintViolation      | TypeConstraintViolation       |
| enum, length, format, range              | PropertyConstraintViolation  | PropertyConstraintViolation   |
| payload not an object, extra property    | FormationViolation           | FormatViolation               |
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError as SchemaError
from ocpp.messages import get_validator

from cpo.clock import parse_iso8601

CALL, CALLRESULT, CALLERROR = 2, 3, 4
# OCPP-J 2.1 only: CALLRESULTERROR answers a CALLRESULT that could not be processed; SEND is a message
# that expects no answer. Neither is ever answered.
CALLRESULTERROR, SEND = 5, 6

MAX_UNIQUE_ID_LENGTH = 36
# The deepest legitimate OCPP 2.0.1 payload (ReportChargingProfiles: chargingProfile → chargingSchedule →
# salesTariff → ... → cost) nests 13 levels, 14 with the frame; 1.6 payloads nest 5.
DEFAULT_MAX_DEPTH = 32
_DEPTH_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_LEADING_ID = re.compile(r'^\s*\[\s*\d+\s*,\s*"((?:[^"\\]|\\.){1,36})"')


class ErrorCodes:
    """Error code spellings for one protocol version."""

    def __init__(self, version: str) -> None:
        self.version = version
        v16 = version == "1.6"
        self.occurrence = "OccurenceConstraintViolation" if v16 else "OccurrenceConstraintViolation"
        self.formation = "FormationViolation" if v16 else "FormatViolation"
        self.property = "PropertyConstraintViolation"
        self.type = "TypeConstraintViolation"
        self.not_implemented = "NotImplemented"
        self.not_supported = "NotSupported"
        self.internal = "InternalError"
        self.protocol = "ProtocolError"
        self.security = "SecurityError"
        self.generic = "GenericError"


class ProtocolViolation(Exception):
    """A frame or payload that breaks the protocol; answered with CALLERROR `code` when `unique_id` is
    known."""

    def __init__(
        self, code: str, description: str, unique_id: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.unique_id = unique_id
        self.details = details or {}


@dataclass(frozen=True, slots=True)
class Call:
    unique_id: str
    action: str
    payload: Any


@dataclass(frozen=True, slots=True)
class CallResult:
    unique_id: str
    payload: Any


@dataclass(frozen=True, slots=True)
class CallError:
    unique_id: str
    error_code: str
    error_description: str
    error_details: Any


Frame = Call | CallResult | CallError


class UnparsableFrame(Exception):
    """Not JSON, not an array, or no readable message id: nothing can be answered to it in 1.6."""


def nesting_exceeds(raw: str, limit: int) -> bool:
    """Whether the JSON text nests arrays/objects deeper than `limit`. Counting brackets (C speed) settles
    nearly every frame; only a frame with more brackets than `limit` is scanned (strings skipped)."""
    if raw.count("[") + raw.count("{") <= limit:
        return False
    depth = 0
    for match in _DEPTH_TOKENS.finditer(raw):
        bracket = match.group()
        if bracket in "[{":
            depth += 1
            if depth > limit:
                return True
        elif bracket in "]}":
            depth -= 1
    return False


def parse_frame(raw: str, codes: ErrorCodes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Frame:
    """Parse one text frame. Raises UnparsableFrame when no message id can be read, ProtocolViolation
    (with the id) when the frame is malformed in a way the sender can be told about, including JSON
    nested deeper than `max_depth` (read no further: the parser would recurse that deep)."""
    if nesting_exceeds(raw, max_depth):
        leading = _LEADING_ID.match(raw)
        description = f"The message nests deeper than {max_depth} levels."
        if leading is None:
            raise UnparsableFrame(description)
        try:
            unique_id = json.loads(f'"{leading.group(1)}"')
        except ValueError:
            raise UnparsableFrame(description) from None
        raise ProtocolViolation(codes.formation, description, unique_id)
    try:
        msg = json.loads(raw)
    except (ValueError, TypeError, RecursionError) as exc:
        raise UnparsableFrame(f"not JSON: {exc}") from exc
    if not isinstance(msg, list) or len(msg) < 2:
        raise UnparsableFrame("not a JSON array with a message type and id")
    type_id, unique_id = msg[0], msg[1]
    if not isinstance(unique_id, str) or not unique_id or len(unique_id) > MAX_UNIQUE_ID_LENGTH:
        raise UnparsableFrame("message id missing, not a string, or longer than 36 characters")
    if type_id == CALL:
        if len(msg) != 4 or not isinstance(msg[2], str):
            raise ProtocolViolation(codes.formation, "A CALL is [2, id, action, payload].", unique_id)
        return Call(unique_id, msg[2], msg[3])
    if type_id == CALLRESULT:
        if len(msg) != 3:
            raise ProtocolViolation(codes.formation, "A CALLRESULT is [3, id, payload].", unique_id)
        return CallResult(unique_id, msg[2])
    if type_id == CALLERROR:
        if len(msg) != 5 or not isinstance(msg[2], str):
            raise ProtocolViolation(
                codes.formation, "A CALLERROR is [4, id, code, description, details].", unique_id
            )
        return CallError(unique_id, msg[2], str(msg[3]), msg[4])
    raise UnknownMessageType(unique_id, type_id)


class UnknownMessageType(UnparsableFrame):
    def __init__(self, unique_id: str, type_id: Any) -> None:
        super().__init__(f"unknown message type {type_id!r}")
        self.unique_id = unique_id
        self.type_id = type_id


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(obj: Any) -> Any:

    if isinstance(obj, Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    if isinstance(obj, datetime):
        return obj.isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def call_frame(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    return dumps([CALL, unique_id, action, payload])


def result_frame(unique_id: str, payload: dict[str, Any]) -> str:
    return dumps([CALLRESULT, unique_id, payload])


def error_frame(unique_id: str, code: str, description: str, details: dict[str, Any] | None = None) -> str:
    return dumps([CALLERROR, unique_id, code, description[:255], details or {}])


def result_error_frame(
    unique_id: str, code: str, description: str, details: dict[str, Any] | None = None
) -> str:
    """OCPP-J 2.1: the CALLRESULT with this id could not be processed."""
    return dumps([CALLRESULTERROR, unique_id, code, description[:255], details or {}])


# --- schema validation -----------------------------------------------------------------------------

_format_checker = FormatChecker(formats=())


@_format_checker.checks("date-time", raises=(ValueError, TypeError))
def _is_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return True  # the type keyword reports wrong types
    parse_iso8601(value)
    return True


@_format_checker.checks("uri", raises=(ValueError,))
def _is_uri(value: Any) -> bool:
    return not isinstance(value, str) or ("://" in value or value.startswith(("urn:", "mailto:")))


# 1.6 schemas with `multipleOf: 0.1`. The library reads them with Decimal floats (in binary floating point
# 0.3 is no multiple of 0.1) and caches one validator per schema whatever `parse_float` asks: read them
# the same way here, or the first reader decides for the whole process and the other one breaks.
_DECIMAL_SCHEMAS = frozenset(
    {("SetChargingProfile", CALL), ("RemoteStartTransaction", CALL), ("GetCompositeSchedule", CALLRESULT)}
)


def _decimal_floats(action: str, version: str, kind: int) -> bool:
    return version == "1.6" and (action, kind) in _DECIMAL_SCHEMAS


@cache
def _validator(action: str, version: str, kind: int) -> Draft4Validator:
    """The library's schema for (action, version, CALL/CALLRESULT), with format checking switched on."""
    parse_float = Decimal if _decimal_floats(action, version, kind) else float
    base = get_validator(kind, action, version, parse_float=parse_float)
    return Draft4Validator(base.schema, format_checker=_format_checker)


def has_schema(action: str, version: str, kind: int = CALL) -> bool:
    try:
        _validator(action, version, kind)
    except (OSError, ValueError):
        return False
    return True


_PROPERTY_KEYWORDS = {
    "enum",
    "maxLength",
    "minLength",
    "format",
    "pattern",
    "maximum",
    "minimum",
    "multipleOf",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "maxItems",
    "minItems",
    "uniqueItems",
    "const",
}


def _relevance(error: SchemaError) -> tuple[int, int]:
    order = {"additionalProperties": 0, "required": 1, "type": 2}
    return (order.get(error.validator, 3), -len(error.path))


def validate(
    action: str,
    payload: Any,
    version: str,
    codes: ErrorCodes,
    *,
    kind: int = CALL,
    unique_id: str | None = None,
) -> None:
    """Raise ProtocolViolation with the specification's error code if `payload` breaks the schema."""
    if not isinstance(payload, dict):
        raise ProtocolViolation(codes.formation, "The payload must be a JSON object.", unique_id)
    if _decimal_floats(action, version, kind):
        payload = json.loads(dumps(payload), parse_float=Decimal)
    errors = list(_validator(action, version, kind).iter_errors(payload))
    if not errors:
        return
    error = min(errors, key=_relevance) if len(errors) > 1 else errors[0]
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    if error.validator == "additionalProperties":
        code = codes.formation
    elif error.validator == "required":
        code = codes.occurrence
    elif error.validator == "type":
        code = codes.type
        if not error.absolute_path:
            code = codes.formation
    elif error.validator in _PROPERTY_KEYWORDS:
        code = codes.property
    else:
        code = codes.formation
    raise ProtocolViolation(
        code, f"{where}: {error.message}"[:255], unique_id, {"path": where, "keyword": str(error.validator)}
    )
