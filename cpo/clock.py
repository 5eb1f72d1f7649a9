"""Time: aware UTC only. Everything that asks "what time is it" calls `now()` so tests can freeze it."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def ensure_aware_utc(value: datetime) -> datetime:
    """`value` converted to UTC; naive datetimes are refused rather than guessed."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: an aware datetime is required")
    return value.astimezone(UTC)


def parse_iso8601(value: str) -> datetime:
    """An ISO-8601 timestamp (with offset or Z) as aware UTC; ValueError for anything else."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return ensure_aware_utc(datetime.fromisoformat(text))
