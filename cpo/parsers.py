"""The driver API's request parser (REST_FRAMEWORK DEFAULT_PARSER_CLASSES). Its own module: DRF reads the
parser setting while rest_framework.views is imported, which cpo.api itself imports."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework import exceptions, parsers


def _nested_deeper_than(data: Any, limit: int) -> bool:
    """True when `data` (parsed JSON) nests objects/arrays more than `limit` levels (iteratively: no
    recursion on input a client chose)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with a cap on nesting (CPO_API_MAX_JSON_DEPTH levels, 32 by default): deeper input
    is the API's 400 parse_error like any other unreadable JSON, never a RecursionError (a 500)."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        limit = int(getattr(settings, "CPO_API_MAX_JSON_DEPTH", 32))
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            data = None
            too_deep = True
        else:
            too_deep = _nested_deeper_than(data, limit)
        if too_deep:
            raise exceptions.ParseError(
                _("JSON parse error - the input is nested deeper than {limit} levels.").format(limit=limit)
            )
        return data
