"""The clock: aware UTC only (pure, no database)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cpo.clock import ensure_aware_utc, now, parse_iso8601


def test_now_is_aware_utc():
    value = now()
    assert value.tzinfo is UTC
    assert abs(datetime.now(UTC) - value) < timedelta(seconds=5)


def test_ensure_aware_utc_converts():
    paris_noon = datetime(2026, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    converted = ensure_aware_utc(paris_noon)
    assert converted == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    assert converted.tzinfo is UTC


def test_ensure_aware_utc_refuses_naive():
    with pytest.raises(ValueError, match="naive datetime: an aware datetime is required"):
        ensure_aware_utc(datetime(2026, 7, 1, 12, 0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-07-01T10:00:00Z", datetime(2026, 7, 1, 10, 0, tzinfo=UTC)),
        ("2026-07-01T10:00:00z", datetime(2026, 7, 1, 10, 0, tzinfo=UTC)),
        (" 2026-07-01T10:00:00.250Z ", datetime(2026, 7, 1, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2026-07-01T12:00:00+02:00", datetime(2026, 7, 1, 10, 0, tzinfo=UTC)),
        ("2026-07-01T05:30:00-04:30", datetime(2026, 7, 1, 10, 0, tzinfo=UTC)),
    ],
)
def test_parse_iso8601(text, expected):
    parsed = parse_iso8601(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["2026-07-01T10:00:00", "2026-07-01", "yesterday", ""])
def test_parse_iso8601_refuses_naive_and_garbage(text):
    with pytest.raises(ValueError):
        parse_iso8601(text)
