"""The simulated chargers' clock: aware UTC, and timestamps written the way chargers write them.

A charger has its own clock; the simulator does not share the product's (`cpo.clock`)."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def parse_iso8601(value: str) -> datetime:
    """An ISO-8601 timestamp with an offset or Z as aware UTC; ValueError for anything else (naive too)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("naive datetime: an aware datetime is required")
    return parsed.astimezone(UTC)


def iso(value: datetime) -> str:
    """UTC with milliseconds and a Z, the way chargers usually write OCPP timestamps."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
