"""Opening hours in the OCPI 2.2.1 `Hours` shape, validated and evaluated in the location's local time.

    {"twentyfourseven": true}
    {"twentyfourseven": false,
     "regular_hours": [{"weekday": 1, "period_begin": "08:00", "period_end": "20:00"}, ...],
     "exceptional_closings": [{"period_begin": "2026-12-24T00:00:00Z", "period_end": "..."}]}

weekday 1 = Monday. A period ending before it begins runs past midnight. Pure, no ORM.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from cpo.clock import parse_iso8601

ALWAYS_OPEN: dict[str, Any] = {"twentyfourseven": True}
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _hhmm(value: Any) -> time:
    if not isinstance(value, str) or not _HHMM.match(value):
        raise ValidationError(_("Opening hours times must be HH:MM, got {value}.").format(value=value))
    return time.fromisoformat(value)


def validate_opening_hours(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError(_("Opening hours must be an object."))
    unknown = set(value) - {
        "twentyfourseven",
        "regular_hours",
        "exceptional_openings",
        "exceptional_closings",
    }
    if unknown:
        raise ValidationError(
            _("Unknown opening hours keys: {keys}.").format(keys=", ".join(sorted(unknown)))
        )
    if not isinstance(value.get("twentyfourseven"), bool):
        raise ValidationError(_('Opening hours need "twentyfourseven": true or false.'))
    regular = value.get("regular_hours", [])
    if value["twentyfourseven"] and regular:
        raise ValidationError(_("Opening hours cannot be both 24/7 and have regular hours."))
    if not value["twentyfourseven"] and not regular:
        raise ValidationError(_("Opening hours that are not 24/7 need regular hours."))
    if not isinstance(regular, list):
        raise ValidationError(_("regular_hours must be a list."))
    for period in regular:
        if not isinstance(period, dict) or period.get("weekday") not in range(1, 8):
            raise ValidationError(_("Each regular period needs a weekday from 1 (Monday) to 7 (Sunday)."))
        if _hhmm(period.get("period_begin")) == _hhmm(period.get("period_end")):
            raise ValidationError(_("A regular period cannot begin and end at the same time."))
    for key in ("exceptional_openings", "exceptional_closings"):
        periods = value.get(key, [])
        if not isinstance(periods, list):
            raise ValidationError(_("{key} must be a list.").format(key=key))
        for period in periods:
            try:
                begin = parse_iso8601(period["period_begin"])
                end = parse_iso8601(period["period_end"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValidationError(
                    _("{key} periods need ISO 8601 period_begin and period_end with a time zone.").format(
                        key=key
                    )
                ) from exc
            if end <= begin:
                raise ValidationError(_("An exceptional period must end after it begins."))


def is_open(hours: dict[str, Any], at_local: datetime) -> bool:
    """Whether a location with `hours` is open at `at_local` (aware, in the location's time zone)."""
    for period in hours.get("exceptional_closings", []):
        if parse_iso8601(period["period_begin"]) <= at_local < parse_iso8601(period["period_end"]):
            return False
    for period in hours.get("exceptional_openings", []):
        if parse_iso8601(period["period_begin"]) <= at_local < parse_iso8601(period["period_end"]):
            return True
    if hours.get("twentyfourseven"):
        return True
    weekday, now_t = at_local.isoweekday(), at_local.time().replace(tzinfo=None)
    for period in hours.get("regular_hours", []):
        begin, end = _hhmm(period["period_begin"]), _hhmm(period["period_end"])
        if begin < end:
            if period["weekday"] == weekday and begin <= now_t < end:
                return True
        else:  # runs past midnight into the next day
            if period["weekday"] == weekday and now_t >= begin:
                return True
            if period["weekday"] % 7 + 1 == weekday and now_t < end:
                return True
    return False
