"""Grid event shapes for utility systems (POST /api/v1/grid-events)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from apps.smartcharging.choices import GridEventStatus
from apps.smartcharging.models import GridEvent
from cpo import clock

MAX_MINUTES = 7 * 24 * 60
MAX_IDS = 100


class GridEventInput(serializers.Serializer):
    sites = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        max_length=MAX_IDS,
        help_text="Site ids (of your operator).",
    )
    locations = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        max_length=MAX_IDS,
        help_text="Location ids: each of their sites. Name sites, locations or both.",
    )
    reduce_percent = serializers.DecimalField(
        max_digits=5,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=Decimal("100"),
        required=False,
        default=Decimal("20"),
        help_text="How much the sites' budgets drop, in percent (default 20).",
    )
    starts_at = serializers.DateTimeField(required=False, help_text="When it starts (default: now).")
    ends_at = serializers.DateTimeField(required=False, help_text="When it ends. Give this or `minutes`.")
    minutes = serializers.IntegerField(
        min_value=1, max_value=MAX_MINUTES, required=False, help_text="How long it lasts from `starts_at`."
    )
    reference = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        default="",
        help_text="Your own id of the event. Sending the same reference again returns the event it made.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_end, has_minutes = "ends_at" in attrs, "minutes" in attrs
        if has_end == has_minutes:
            raise serializers.ValidationError(
                {"ends_at": [_("Give either ends_at or minutes (one of them).")]}, code="invalid_window"
            )
        starts_at = attrs.get("starts_at") or clock.now()
        attrs["starts_at"] = starts_at
        if has_minutes:
            attrs["ends_at"] = starts_at + timedelta(minutes=attrs.pop("minutes"))
        return attrs


class GridEventOutput(serializers.Serializer):
    id = serializers.IntegerField()
    sites = serializers.ListField(child=serializers.IntegerField(), help_text="The site ids it applies to.")
    reduce_percent = serializers.DecimalField(max_digits=5, decimal_places=2)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField(help_text="When it ends (or ended: `ended_at` when ended early).")
    ended_at = serializers.DateTimeField(allow_null=True, help_text="When it was ended early (cancelled).")
    status = serializers.ChoiceField(
        choices=GridEventStatus.choices,
        help_text="scheduled (not started yet), active (budgets cut now), ended.",
    )
    reference = serializers.CharField()
    created_at = serializers.DateTimeField()


def grid_event_status(event: GridEvent) -> str:
    now = clock.now()
    end = min(event.ends_at, event.ended_at) if event.ended_at else event.ends_at
    if end <= now:
        return GridEventStatus.ENDED
    return GridEventStatus.ACTIVE if event.starts_at <= now else GridEventStatus.SCHEDULED


def grid_event_json(event: GridEvent) -> dict[str, Any]:
    values = {
        "id": event.pk,
        "sites": sorted(site.pk for site in event.sites.all()),
        "reduce_percent": event.reduce_percent,
        "starts_at": event.starts_at,
        "ends_at": event.ends_at,
        "ended_at": event.ended_at,
        "status": grid_event_status(event),
        "reference": event.reference,
        "created_at": event.created_at,
    }
    return dict(GridEventOutput(values).data)
