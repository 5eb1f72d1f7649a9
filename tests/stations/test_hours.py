"""OCPI opening hours: validation of the shape and evaluation in local time (pure, no database)."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from apps.stations.hours import ALWAYS_OPEN, is_open, validate_opening_hours

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_8_TO_20 = {
    "twentyfourseven": False,
    "regular_hours": [
        {"weekday": day, "period_begin": "08:00", "period_end": "20:00"} for day in range(1, 6)
    ],
}
# Friday and Sunday nights, each running past midnight into the next day.
NIGHTS = {
    "twentyfourseven": False,
    "regular_hours": [
        {"weekday": 5, "period_begin": "22:00", "period_end": "02:00"},
        {"weekday": 7, "period_begin": "22:00", "period_end": "02:00"},
    ],
}
CHRISTMAS = {"period_begin": "2026-12-24T17:00:00Z", "period_end": "2026-12-26T05:00:00Z"}


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


# 2026-01-05 is a Monday.
MONDAY, FRIDAY, SATURDAY, SUNDAY = 5, 9, 10, 11


@pytest.mark.parametrize(
    "hours",
    [
        ALWAYS_OPEN,
        WEEKDAYS_8_TO_20,
        NIGHTS,
        {"twentyfourseven": True, "exceptional_closings": [CHRISTMAS]},
        {**WEEKDAYS_8_TO_20, "exceptional_openings": [{"period_begin": "2026-01-10T09:00:00+01:00",
                                                       "period_end": "2026-01-10T13:00:00+01:00"}]},
    ],
)  # fmt: skip
def test_valid_shapes(hours):
    validate_opening_hours(hours)


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ("24/7", "Opening hours must be an object."),
        ({"twentyfourseven": True, "holidays": []}, "Unknown opening hours keys: holidays."),
        ({}, 'Opening hours need "twentyfourseven": true or false.'),
        ({"twentyfourseven": "yes"}, 'Opening hours need "twentyfourseven": true or false.'),
        ({**WEEKDAYS_8_TO_20, "twentyfourseven": True},
         "Opening hours cannot be both 24/7 and have regular hours."),
        ({"twentyfourseven": False}, "Opening hours that are not 24/7 need regular hours."),
        ({"twentyfourseven": False, "regular_hours": "Mon-Fri 8-20"}, "regular_hours must be a list."),
        ({"twentyfourseven": False, "regular_hours": [{"weekday": 0, "period_begin": "08:00",
                                                        "period_end": "20:00"}]},
         "Each regular period needs a weekday from 1 (Monday) to 7 (Sunday)."),
        ({"twentyfourseven": False, "regular_hours": ["Monday"]},
         "Each regular period needs a weekday from 1 (Monday) to 7 (Sunday)."),
        ({"twentyfourseven": False, "regular_hours": [{"weekday": 1, "period_begin": "8:00",
                                                        "period_end": "20:00"}]},
         "Opening hours times must be HH:MM, got 8:00."),
        ({"twentyfourseven": False, "regular_hours": [{"weekday": 1, "period_begin": "08:00",
                                                        "period_end": "24:00"}]},
         "Opening hours times must be HH:MM, got 24:00."),
        ({"twentyfourseven": False, "regular_hours": [{"weekday": 1, "period_begin": "08:00"}]},
         "Opening hours times must be HH:MM, got None."),
        ({"twentyfourseven": False, "regular_hours": [{"weekday": 1, "period_begin": "08:00",
                                                        "period_end": "08:00"}]},
         "A regular period cannot begin and end at the same time."),
        ({"twentyfourseven": True, "exceptional_closings": CHRISTMAS},
         "exceptional_closings must be a list."),
        ({"twentyfourseven": True, "exceptional_closings": [{"period_begin": "2026-12-24T17:00:00",
                                                              "period_end": "2026-12-26T05:00:00"}]},
         "exceptional_closings periods need ISO 8601 period_begin and period_end with a time zone."),
        ({"twentyfourseven": True, "exceptional_openings": [{"period_begin": "2026-12-24T17:00:00Z"}]},
         "exceptional_openings periods need ISO 8601 period_begin and period_end with a time zone."),
        ({"twentyfourseven": True, "exceptional_closings": ["Christmas"]},
         "exceptional_closings periods need ISO 8601 period_begin and period_end with a time zone."),
        ({"twentyfourseven": True, "exceptional_closings": [{"period_begin": CHRISTMAS["period_end"],
                                                              "period_end": CHRISTMAS["period_begin"]}]},
         "An exceptional period must end after it begins."),
    ],
)  # fmt: skip
def test_invalid_shapes(hours, message):
    with pytest.raises(ValidationError) as excinfo:
        validate_opening_hours(hours)
    assert excinfo.value.messages == [message]


def test_always_open():
    assert is_open(ALWAYS_OPEN, local(2026, 1, SUNDAY, 3, 0)) is True


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (local(2026, 1, MONDAY, 7, 59), False),
        (local(2026, 1, MONDAY, 8, 0), True),
        (local(2026, 1, MONDAY, 19, 59), True),
        (local(2026, 1, MONDAY, 20, 0), False),
        (local(2026, 1, FRIDAY, 12, 0), True),
        (local(2026, 1, SATURDAY, 12, 0), False),
    ],
)
def test_regular_hours(at, expected):
    assert is_open(WEEKDAYS_8_TO_20, at) is expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (local(2026, 1, FRIDAY, 21, 59), False),
        (local(2026, 1, FRIDAY, 22, 0), True),
        (local(2026, 1, FRIDAY, 23, 59), True),
        (local(2026, 1, SATURDAY, 1, 59), True),
        (local(2026, 1, SATURDAY, 2, 0), False),
        (local(2026, 1, SATURDAY, 23, 0), False),
        (local(2026, 1, SUNDAY, 23, 0), True),
        (local(2026, 1, MONDAY + 7, 1, 0), True),  # Sunday night runs into Monday
        (local(2026, 1, MONDAY, 1, 0), True),
        (local(2026, 1, MONDAY + 1, 1, 0), False),
    ],
)
def test_periods_past_midnight(at, expected):
    assert is_open(NIGHTS, at) is expected


def test_exceptional_closing_wins_over_24_7():
    hours = {"twentyfourseven": True, "exceptional_closings": [CHRISTMAS]}
    assert is_open(hours, local(2026, 12, 24, 17, 59)) is True  # 16:59 UTC
    assert is_open(hours, local(2026, 12, 24, 18, 0)) is False  # 17:00 UTC
    assert is_open(hours, local(2026, 12, 26, 5, 59)) is False
    assert is_open(hours, local(2026, 12, 26, 6, 0)) is True


def test_exceptional_opening_outside_regular_hours():
    hours = {
        **WEEKDAYS_8_TO_20,
        "exceptional_openings": [
            {"period_begin": "2026-01-10T09:00:00+01:00", "period_end": "2026-01-10T13:00:00+01:00"}
        ],
    }
    assert is_open(hours, local(2026, 1, SATURDAY, 10, 0)) is True
    assert is_open(hours, local(2026, 1, SATURDAY, 13, 0)) is False
