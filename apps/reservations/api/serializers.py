"""Reservation shapes for the driver API."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from apps.reservations.choices import ReservationStatus
from apps.reservations.models import HOLD_LIMIT_MIN, Reservation
from cpo import clock


class ReservationInput(serializers.Serializer):
    charge_point = serializers.IntegerField(min_value=1, max_value=2**31 - 1, help_text="The charger's id.")
    connector = serializers.IntegerField(
        min_value=1,
        max_value=255,
        required=False,
        allow_null=True,
        help_text="The connector number shown in the charger's `evses`. Leave it out for any connector of "
        "the charger (only where the charger supports that: else 409 any_connector_unsupported); one "
        "connector then stays free for you until the reservation ends.",
    )
    minutes = serializers.IntegerField(
        min_value=1,
        max_value=HOLD_LIMIT_MIN,
        required=False,
        help_text="How long to hold the connector: the operator's default (15 minutes unless it says "
        "otherwise) when left out, at most the operator's longest hold (30 minutes at most).",
    )
    expires_at = serializers.DateTimeField(
        required=False,
        help_text="Instead of `minutes`: when the hold ends (1 minute from now to the operator's longest "
        "hold).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("minutes") is not None and attrs.get("expires_at") is not None:
            raise serializers.ValidationError({"expires_at": _("Send minutes or expires_at, not both.")})
        return attrs


class ReservationOutput(serializers.Serializer):
    id = serializers.IntegerField(help_text="Our reservation id (also the charger's reservation id).")
    charge_point = serializers.IntegerField()
    connector = serializers.IntegerField(
        help_text="The reserved connector; 0 for a reservation of any connector of the charger (once "
        "consumed: the connector you charged at).",
    )
    any_connector = serializers.BooleanField(help_text="Reserved for any connector of the charger.")
    status = serializers.ChoiceField(
        choices=ReservationStatus.choices,
        help_text="PENDING while the charger answers; RESERVED; then CONSUMED (you started charging there), "
        "CANCELLED, EXPIRED; FAILED when the charger refused (see `failure`).",
    )
    failure = serializers.CharField(
        help_text="Why it FAILED: connector_occupied, connector_faulted, connector_unavailable, "
        "reservation_rejected, charger_offline, charger_no_answer; else empty."
    )
    expires_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)


def _connector(reservation: Reservation) -> int:
    session = reservation.charging_session
    if reservation.any_connector and session is not None:
        return session.evse_id
    return reservation.evse_id


def reservation_json(reservation: Reservation) -> dict[str, Any]:
    """A reservation as the app sees it: a RESERVED one past its time reads EXPIRED (the beat may not have
    run yet)."""
    status = reservation.status
    ended_at = reservation.ended_at
    if status == ReservationStatus.RESERVED and reservation.expires_at <= clock.now():
        status, ended_at = ReservationStatus.EXPIRED, reservation.expires_at
    values = {
        "id": reservation.pk,
        "charge_point": reservation.charge_point_id,
        "connector": _connector(reservation),
        "any_connector": reservation.any_connector,
        "status": status,
        "failure": reservation.failure_code,
        "expires_at": reservation.expires_at,
        "created_at": reservation.created_at,
        "ended_at": ended_at,
    }
    return dict(ReservationOutput(values).data)
