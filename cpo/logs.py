"""Structured logs: every record carries the charger and the OCPP message it was written for.

`bind()` puts a charger identity and message id into the running task's context (contextvars: each
charger's request worker is its own task, so concurrent chargers never mix); `ContextFilter` copies them
onto every log record as `charger` and `message_id`. With CPO_LOG_FORMAT=json the console writes one JSON
object per line (python-json-logger) with those fields; plain text otherwise.
"""

from __future__ import annotations

import contextvars
import logging

_charger: contextvars.ContextVar[str] = contextvars.ContextVar("cpo_log_charger", default="")
_message_id: contextvars.ContextVar[str] = contextvars.ContextVar("cpo_log_message_id", default="")

Tokens = tuple[contextvars.Token[str], contextvars.Token[str]]


def bind(*, charger: str = "", message_id: str = "") -> Tokens:
    return _charger.set(charger), _message_id.set(message_id)


def unbind(tokens: Tokens) -> None:
    _charger.reset(tokens[0])
    _message_id.reset(tokens[1])


class ContextFilter(logging.Filter):
    """Adds `charger` and `message_id` (empty outside a charger's message) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "charger"):
            record.charger = _charger.get()
        if not hasattr(record, "message_id"):
            record.message_id = _message_id.get()
        return True
