"""Reservation shapes for the driver API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.reservations.choices import ReservationStatus
from apps.reservations.models import Reservation
from cpo import clock


class ReservationInput(serializers.Serializer):
    charge_point = serializers.IntegerField(min_value=1, max_value=2**31 - 1, help_text="The charger's id.")
    connector = serializers.IntegerField(
        min_value=1, max_value=255, help_text="The connector number shown in the charger's `evses`."
    )
    minutes = serializers.IntegerField(
        min_value=1,
        max_value=30,
        required=False,
        help_text="How long to hold the connector (15 by default, 30 at most).",
    )


class ReservationOutput(serializers.Serializer):
    id = serializers.IntegerField(help_text="Our reservation id (also the charger's reservation id).")
    charge_point = serializers.IntegerField()
    connector = serializers.IntegerField()
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
        "connector": reservation.evse_id,
        "status": status,
        "failure": reservation.failure_code,
        "expires_at": reservation.expires_at,
        "created_at": reservation.created_at,
        "ended_at": ended_at,
    }
    return dict(ReservationOutput(values).data)
