"""Breaking changes between two OpenAPI 3 documents (what a released mobile app would trip over).

Breaking: an operation removed; a required parameter or request property added; a parameter or request
property removed; a response property removed or made nullable; a type changed; a request enum value
removed; a success status code removed. Not breaking: anything added to responses, new optional input,
new operations, new enum values in responses (apps must tolerate unknown values; the schema says so).
"""

from __future__ import annotations

from typing import Any

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _resolve(doc: dict[str, Any], schema: dict[str, Any] | None, depth: int = 0) -> dict[str, Any]:
    """Follow $ref and single-element allOf wrappers (drf-spectacular's way of adding a description)."""
    schema = schema or {}
    while depth < 20:
        depth += 1
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            merged = dict(doc.get("components", {}).get("schemas", {}).get(name, {}))
            schema = {**merged, **{k: v for k, v in schema.items() if k != "$ref"}}
        elif "allOf" in schema and len(schema["allOf"]) == 1:
            inner = schema["allOf"][0]
            schema = {**inner, **{k: v for k, v in schema.items() if k != "allOf"}}
        else:
            break
    return schema


def _type(schema: dict[str, Any]) -> str | None:
    return schema.get("type")


def _compare(
    old_doc: dict,
    new_doc: dict,
    old: dict,
    new: dict,
    where: str,
    direction: str,
    problems: list[str],
    depth: int = 0,
) -> None:
    if depth > 12:
        return
    old, new = _resolve(old_doc, old), _resolve(new_doc, new)
    if _type(old) and _type(new) and _type(old) != _type(new):
        problems.append(f"{where}: type {_type(old)} became {_type(new)}")
        return
    if direction == "response" and not old.get("nullable") and new.get("nullable"):
        problems.append(f"{where}: may now be null")
    if "enum" in old and "enum" in new and direction == "request":
        removed = set(old["enum"]) - set(new["enum"])
        if removed:
            problems.append(f"{where}: enum values removed: {sorted(map(str, removed))}")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    if direction == "response":
        for name, sub in old_props.items():
            if name not in new_props:
                problems.append(f"{where}.{name}: removed from the response")
            else:
                _compare(
                    old_doc, new_doc, sub, new_props[name], f"{where}.{name}", direction, problems, depth + 1
                )
    else:
        newly_required = set(new.get("required", [])) - set(old.get("required", []))
        for name in sorted(newly_required):
            problems.append(f"{where}.{name}: now required")
        for name, sub in old_props.items():
            if name not in new_props:
                problems.append(f"{where}.{name}: no longer accepted")
            else:
                _compare(
                    old_doc, new_doc, sub, new_props[name], f"{where}.{name}", direction, problems, depth + 1
                )
    if "items" in old and "items" in new:
        _compare(old_doc, new_doc, old["items"], new["items"], f"{where}[]", direction, problems, depth + 1)


def _body_schema(content: dict[str, Any] | None) -> dict[str, Any] | None:
    content = content or {}
    media = content.get("application/json") or next(iter(content.values()), None)
    return (media or {}).get("schema")


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every breaking change from `old` to `new`, one line each (empty when `new` is compatible)."""
    problems: list[str] = []
    for path, old_item in old.get("paths", {}).items():
        new_item = new.get("paths", {}).get(path)
        for method in METHODS:
            if method not in old_item:
                continue
            op = f"{method.upper()} {path}"
            if new_item is None or method not in new_item:
                problems.append(f"{op}: removed")
                continue
            old_op, new_op = old_item[method], new_item[method]
            old_params = {(p.get("in"), p.get("name")): p for p in old_op.get("parameters", [])}
            new_params = {(p.get("in"), p.get("name")): p for p in new_op.get("parameters", [])}
            for key, param in new_params.items():
                if param.get("required") and not old_params.get(key, {}).get("required"):
                    problems.append(f"{op}: parameter {key[1]} ({key[0]}) now required")
            for key, param in old_params.items():
                if key not in new_params:
                    problems.append(f"{op}: parameter {key[1]} ({key[0]}) removed")
                else:
                    _compare(
                        old,
                        new,
                        param.get("schema", {}),
                        new_params[key].get("schema", {}),
                        f"{op} parameter {key[1]}",
                        "request",
                        problems,
                    )
            old_body = _body_schema((old_op.get("requestBody") or {}).get("content"))
            new_body = _body_schema((new_op.get("requestBody") or {}).get("content"))
            if new_op.get("requestBody", {}).get("required") and not old_op.get("requestBody", {}).get(
                "required"
            ):
                problems.append(f"{op}: request body now required")
            if old_body is not None and new_body is not None:
                _compare(old, new, old_body, new_body, f"{op} request", "request", problems)
            old_responses, new_responses = old_op.get("responses", {}), new_op.get("responses", {})
            for status, old_response in old_responses.items():
                if not str(status).startswith("2"):
                    continue
                if status not in new_responses:
                    problems.append(f"{op}: response {status} removed")
                    continue
                old_schema = _body_schema(old_response.get("content"))
                new_schema = _body_schema(new_responses[status].get("content"))
                if old_schema is not None and new_schema is not None:
                    _compare(old, new, old_schema, new_schema, f"{op} {status}", "response", problems)
    return problems
