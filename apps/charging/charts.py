"""A session's power and energy over time as a small SVG, drawn on the server (no script, no CDN): the
session's page in the admin shows it. Values come from the session's own meter samples (the whole
charger's figures, no phase), at most MAX_POINTS of each, evenly thinned."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from apps.charging.models import ChargingSession, MeterSample

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
MAX_POINTS = 400
WIDTH, HEIGHT, PAD = 640, 180, 36


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    unit: str
    colour: str
    points: list[tuple[datetime, Decimal]]


def session_series(session: ChargingSession) -> list[Series]:
    """Energy (kWh, from the session's start) and power (kW) of `session`, oldest first."""
    rows = list(
        MeterSample.objects.filter(
            session=session, measurand__in=(ENERGY, POWER), phase="", value__isnull=False
        )
        .order_by("sampled_at", "pk")
        .values_list("measurand", "sampled_at", "value")[: MAX_POINTS * 20]
    )
    energy = [(at, (value - session.meter_start_wh) / 1000) for m, at, value in rows if m == ENERGY]
    power = [(at, value / 1000) for m, at, value in rows if m == POWER]
    return [
        Series(_("energy"), "kWh", "#1f6f43", _thin(energy)),
        Series(_("power"), "kW", "#b35c00", _thin(power)),
    ]


def _thin(points: list[tuple[datetime, Decimal]]) -> list[tuple[datetime, Decimal]]:
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    return [points[int(i * step)] for i in range(MAX_POINTS - 1)] + [points[-1]]


def session_chart_svg(session: ChargingSession) -> SafeString:
    """The chart, or a sentence saying there is nothing to draw. Every text is escaped."""
    series = [s for s in session_series(session) if s.points]
    if not series:
        return format_html("<p>{}</p>", _("No energy or power values were reported for this session."))
    times = [at for s in series for at, _v in s.points]
    t0, t1 = min(times), max(times)
    span = max((t1 - t0).total_seconds(), 1.0)
    lines = []
    for index, s in enumerate(series):
        top = max((float(v) for _at, v in s.points), default=0.0) or 1.0
        coords = " ".join(
            f"{PAD + (at - t0).total_seconds() / span * (WIDTH - 2 * PAD):.1f},"
            f"{HEIGHT - PAD - float(v) / top * (HEIGHT - 2 * PAD):.1f}"
            for at, v in s.points
        )
        lines.append(
            format_html(
                '<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'
                '<text x="{}" y="{}" fill="{}" font-size="12">{} (max {} {})</text>',
                s.colour,
                coords,
                PAD + index * 220,
                14,
                s.colour,
                s.name,
                f"{top:.2f}",
                s.unit,
            )
        )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{}" width="{}" height="{}" '
        'viewBox="0 0 {} {}" style="background:#fafafa;border:1px solid #ddd">'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/>{}'
        '<text x="{}" y="{}" font-size="11" fill="#555">{}</text>'
        '<text x="{}" y="{}" font-size="11" fill="#555" text-anchor="end">{}</text></svg>',
        _("Power and energy over time"),
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        PAD,
        HEIGHT - PAD,
        WIDTH - PAD,
        HEIGHT - PAD,
        format_html_join("", "{}", ((line,) for line in lines)),
        PAD,
        HEIGHT - PAD + 16,
        f"{t0:%Y-%m-%d %H:%M:%S} UTC",
        WIDTH - PAD,
        HEIGHT - PAD + 16,
        f"{t1:%H:%M:%S} UTC",
    )
