"""An OCPI 2.2.1 payload validator built from the specification's own tables (tests/roaming/ocpi221/,
unchanged copies of the specification's AsciiDoc sources): every `Property | Type | Card. | Description`
table under an anchor defines an object (fields, cardinality 1/?/*/+, types with their maximum lengths),
every `Value | Description` table an enum. `validate(payload, "Location")` reports every problem with its
path; nothing about the product's own shapes is written here."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SPEC = Path(__file__).with_name("ocpi221")
FILES = [
    "types.asciidoc",
    "version_information_endpoint.asciidoc",
    "credentials.asciidoc",
    "mod_locations.asciidoc",
    "mod_tariffs.asciidoc",
    "mod_sessions.asciidoc",
    "mod_cdrs.asciidoc",
    "mod_tokens.asciidoc",
    "mod_commands.asciidoc",
]
_ANCHOR = re.compile(r"^\[\[([A-Za-z0-9_]+)\]\]\s*$")
_TITLE = re.compile(r"^=+\s+_?([A-Za-z0-9]+)_?\s+_?(class|Object|object|enum|type)_?")
_REF = re.compile(r"<<(?:[a-z_]+\.asciidoc#)?([A-Za-z0-9_]+),\s*([A-Za-z0-9]+)\s*>>(?:\((\d+)\))?")
_PRIMITIVE = re.compile(r"^(string|CiString|int|number|boolean|DateTime|URL)(?:\((\d+)\))?$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z?$")


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # a primitive name, or an anchor id
    max_length: int | None
    card: str


@dataclass
class Spec:
    objects: dict[str, dict[str, Field]]
    enums: dict[str, set[str]]
    names: dict[str, str]  # "Location" -> anchor id


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.split("|")[1:]]


def _type(text: str) -> tuple[str, int | None]:
    text = text.strip()
    ref = _REF.fullmatch(text)
    if ref:
        anchor, _name, length = ref.groups()
        primitive = {
            "types_string_type": "string",
            "types_cistring_type": "CiString",
            "types_datetime_type": "DateTime",
            "types_url_type": "URL",
            "types_number_type": "number",
        }.get(anchor)
        return (primitive or anchor), int(length) if length else None
    prim = _PRIMITIVE.match(text)
    if prim:
        return prim.group(1), int(prim.group(2)) if prim.group(2) else None
    raise ValueError(f"unparsed OCPI type {text!r}")


@cache
def spec() -> Spec:
    objects: dict[str, dict[str, Field]] = {}
    enums: dict[str, set[str]] = {}
    names: dict[str, str] = {}
    for name in FILES:
        lines = (SPEC / name).read_text(encoding="utf-8").splitlines()
        anchor = ""
        pending = ""
        i = 0
        while i < len(lines):
            line = lines[i]
            match = _ANCHOR.match(line)
            if match:
                anchor = match.group(1)
            title = _TITLE.match(line)
            if title:
                pending = title.group(1)  # bound to the next table (its anchor may come in between)
            if line.strip() == "|===" and i + 1 < len(lines):
                header = _cells(lines[i + 1])
                rows: list[str] = []
                i += 2
                while i < len(lines) and lines[i].strip() != "|===":
                    if lines[i].startswith("|"):
                        rows.append(lines[i])
                    elif rows and lines[i].strip():
                        rows[-1] += " " + lines[i].strip()
                    i += 1
                if header[:3] == ["Property", "Type", "Card."] and anchor:
                    fields = {}
                    for row in rows:
                        cells = _cells(row)
                        type_, length = _type(cells[1])
                        fields[cells[0]] = Field(cells[0], type_, length, cells[2].strip())
                    objects[anchor] = fields
                    if pending:
                        names.setdefault(pending, anchor)
                        pending = ""
                elif header[:1] == ["Value"] and anchor:
                    enums[anchor] = {_cells(row)[0].strip() for row in rows}
                    if pending:
                        names.setdefault(pending, anchor)
                        pending = ""
                elif header[:2] == ["Module", "ModuleID"] and anchor:
                    enums[anchor] = {_cells(row)[1].strip() for row in rows}
            i += 1
    return Spec(objects, enums, names)


def anchor_of(name: str) -> str:
    s = spec()
    if name in s.objects or name in s.enums:
        return name
    return s.names[name]


def _check_value(value: Any, field: Field, path: str, errors: list[str]) -> None:
    s = spec()
    kind = field.type
    if value is None:
        errors.append(f"{path}: null (omit an optional field instead)")
    elif kind in ("string", "CiString", "URL"):
        if not isinstance(value, str):
            errors.append(f"{path}: {kind} expected, got {value!r}")
        elif field.max_length is not None and len(value) > field.max_length:
            errors.append(f"{path}: longer than {field.max_length}: {value!r}")
        elif kind == "CiString" and not all(32 <= ord(c) < 127 for c in value):
            errors.append(f"{path}: CiString must be printable ASCII: {value!r}")
    elif kind == "DateTime":
        if not isinstance(value, str) or not _DATETIME.match(value):
            errors.append(f"{path}: not an OCPI DateTime: {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: boolean expected, got {value!r}")
    elif kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: int expected, got {value!r}")
    elif kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            errors.append(f"{path}: number expected, got {value!r}")
    elif kind in s.enums:
        if value not in s.enums[kind]:
            errors.append(f"{path}: {value!r} is not one of {sorted(s.enums[kind])}")
    elif kind in s.objects:
        errors.extend(_errors(value, kind, path))
    else:
        errors.append(f"{path}: type {kind} is not defined in the specification tables")


def _errors(payload: Any, anchor: str, path: str) -> list[str]:
    fields = spec().objects[anchor]
    if not isinstance(payload, dict):
        return [f"{path}: object expected, got {payload!r}"]
    errors = [f"{path}.{key}: not a field of {anchor}" for key in payload if key not in fields]
    for field in fields.values():
        where = f"{path}.{field.name}"
        if field.name not in payload:
            if field.card in ("1", "+"):
                errors.append(f"{where}: required")
            continue
        value = payload[field.name]
        if field.card in ("*", "+"):
            if not isinstance(value, list):
                errors.append(f"{where}: a list expected")
                continue
            if field.card == "+" and not value:
                errors.append(f"{where}: at least one item")
            for i, item in enumerate(value):
                _check_value(item, field, f"{where}[{i}]", errors)
        else:
            _check_value(value, field, where, errors)
    return errors


def errors(payload: Any, name: str) -> list[str]:
    """Every problem of `payload` as the OCPI object or enum `name` ("Location", "Token", ...)."""
    anchor = anchor_of(name)
    if anchor in spec().enums:
        return [] if payload in spec().enums[anchor] else [f"{payload!r} is not a {name}"]
    return _errors(payload, anchor, name)


def validate(payload: Any, name: str) -> Any:
    """Assert that `payload` is a valid OCPI `name`; returns it."""
    problems = errors(payload, name)
    assert not problems, "\n".join(problems)
    return payload


def example(name: str) -> Any:
    return json.loads((SPEC / "examples" / name).read_text(encoding="utf-8"))


def envelope_errors(body: Any) -> list[str]:
    """The OCPI response envelope (transport_and_format.asciidoc): data?, status_code int, status_message?,
    timestamp DateTime; nothing else."""
    problems = []
    if not isinstance(body, dict):
        return ["the response is not a JSON object"]
    extra = set(body) - {"data", "status_code", "status_message", "timestamp"}
    if extra:
        problems.append(f"unknown envelope fields {sorted(extra)}")
    if not isinstance(body.get("status_code"), int):
        problems.append("status_code: int required")
    if not isinstance(body.get("timestamp"), str) or not _DATETIME.match(body["timestamp"]):
        problems.append("timestamp: DateTime required")
    if "status_message" in body and not isinstance(body["status_message"], str):
        problems.append("status_message: string expected")
    return problems


def patch_errors(payload: Any, name: str) -> list[str]:
    """A PATCH body of object `name`: only its fields, each valid; last_updated required
    (transport_and_format.asciidoc, PATCH)."""
    anchor = anchor_of(name)
    fields = spec().objects[anchor]
    if not isinstance(payload, dict):
        return [f"{name}: object expected"]
    problems = [f"{name}.{key}: not a field of {anchor}" for key in payload if key not in fields]
    if "last_updated" in fields and "last_updated" not in payload:
        problems.append(f"{name}.last_updated: required in a PATCH")
    for key, value in payload.items():
        field = fields.get(key)
        if field is None:
            continue
        if field.card in ("*", "+"):
            if not isinstance(value, list):
                problems.append(f"{name}.{key}: a list expected")
                continue
            for i, item in enumerate(value):
                _check_value(item, field, f"{name}.{key}[{i}]", problems)
        else:
            _check_value(value, field, f"{name}.{key}", problems)
    return problems
