"""Masking of charger keys in whatever we keep of OCPP messages (command records, the message log).

The secrets are the charger's Basic-auth password: 1.6 configuration key ``AuthorizationKey`` and 2.0.1
``SecurityCtrlr.BasicAuthPassword``. They travel in both directions: in our ChangeConfiguration and
SetVariables, and in what a charger answers or reports (GetConfiguration results, GetVariables results,
NotifyReport, NotifyEvent). Rather than a list per action, `mask_payload` walks the JSON and masks the
value of any object that names a secret, so a new action carrying one is covered too. Pure, no ORM.
"""

from __future__ import annotations

import json
import re
from typing import Any

MASK = "***"
# Configuration keys / variable names whose values are secrets (compared case-insensitively).
SECRET_KEYS = frozenset({"AuthorizationKey", "BasicAuthPassword"})
_SECRET_NAMES = frozenset(name.casefold() for name in SECRET_KEYS)
_NAMES_A_SECRET = re.compile("|".join(re.escape(name) for name in sorted(SECRET_KEYS)), re.IGNORECASE)
# Members that carry a value next to the member naming it, as on the wire and as the handlers get them
# (snake_case keyword arguments).
_VALUE_MEMBERS = ("value", "attributeValue", "attribute_value", "actualValue", "actual_value")
_ATTRIBUTE_LISTS = ("variableAttribute", "variable_attribute")
WITHHELD = '"frame withheld: it names a charger key and is not valid JSON"'
# A JSON string may spell any character as \uXXXX ("\u0041uthorizationKey"): the raw text is searched
# with those escapes decoded.
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def is_secret_name(name: Any) -> bool:
    return isinstance(name, str) and name.casefold() in _SECRET_NAMES


def _names_secret(obj: dict[str, Any]) -> bool:
    """1.6 {key, value}; 2.0.1 {variable: {name}, attributeValue | variableAttribute: [{value}]}."""
    if is_secret_name(obj.get("key")):
        return True
    variable = obj.get("variable")
    return isinstance(variable, dict) and is_secret_name(variable.get("name"))


def _mask_attributes(attributes: Any) -> Any:
    if isinstance(attributes, list):
        return [{**a, "value": MASK} if isinstance(a, dict) and "value" in a else a for a in attributes]
    return attributes


def mask_payload(payload: Any) -> Any:
    """A copy of `payload` (any JSON value) with every secret value replaced by MASK; `payload` is left
    as it is. Values that are not there are not added."""
    if isinstance(payload, list):
        return [mask_payload(item) for item in payload]
    if not isinstance(payload, dict):
        return payload
    masked = {name: mask_payload(value) for name, value in payload.items()}
    if _names_secret(payload):
        for member in _VALUE_MEMBERS:
            if member in masked:
                masked[member] = MASK
        for member in _ATTRIBUTE_LISTS:
            if member in masked:
                masked[member] = _mask_attributes(masked[member])
    return masked


def _unescaped(raw: str) -> str:
    """`raw` with its \\uXXXX escapes decoded, for the search only (an escaped backslash before a `u` is
    decoded too: that can only make the search find a name, never miss one)."""
    if "\\" not in raw:
        return raw
    return _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), raw)


def mask_frame(raw: str) -> str:
    """An OCPP-J frame as it may be stored: unchanged unless it names a secret (one C-speed search, with
    \\uXXXX escapes decoded first when the frame has a backslash), else re-serialised with the secret
    values masked. A frame that names a secret but cannot be read as JSON is withheld altogether (we
    cannot tell where the value is)."""
    if _NAMES_A_SECRET.search(_unescaped(raw)) is None:
        return raw
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        return WITHHELD
    masked = mask_payload(frame)
    if masked == frame:
        return raw
    return json.dumps(masked, separators=(",", ":"), ensure_ascii=False)
