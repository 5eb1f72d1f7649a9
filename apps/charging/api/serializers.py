"""Driver session shapes for the driver API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.billing.choices import PaymentStatus
from apps.billing.payments import payment_of
from apps.charging.choices import DriverSessionFailure, DriverSessionSource, DriverSessionStatus
from apps.charging.driver_selectors import Usage, is_final, session_usage
from apps.charging.models import DriverSession
from apps.reservations.choices import ReservationStatus
from apps.reservations.selectors import reservation_for_session


class SessionStartInput(serializers.Serializer):
    charge_point = serializers.IntegerField(min_value=1, max_value=2**31 - 1, help_text="The charger's id.")
    connector = serializers.IntegerField(
        min_value=1, max_value=255, help_text="The connector number shown in the charger's `evses`."
    )


class TransitionOutput(serializers.Serializer):
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    at = serializers.DateTimeField()
    cause = serializers.CharField()


class CostOutput(serializers.Serializer):
    currency = serializers.CharField()
    net = serializers.CharField()
    gross = serializers.CharField()
    final = serializers.BooleanField(help_text="True once the charge detail record is issued.")


class PaymentOutput(serializers.Serializer):
    id = serializers.IntegerField(help_text="POST payments/{id}/retry pays a debt.")
    status = serializers.ChoiceField(choices=PaymentStatus.choices)
    amount_held = serializers.IntegerField(help_text="Held on the card, in minor units (cents).")
    amount_captured = serializers.IntegerField(help_text="Charged to the card so far, in minor units.")
    amount_due = serializers.IntegerField(help_text="Still owed (status debt), in minor units.")
    currency = serializers.CharField()


class SessionReservationOutput(serializers.Serializer):
    id = serializers.IntegerField(help_text="GET reservations/{id}.")
    status = serializers.ChoiceField(
        choices=ReservationStatus.choices,
        help_text="RESERVED until your charge starts; CONSUMED once it has.",
    )
    expires_at = serializers.DateTimeField(help_text="When the hold ends if you do not start.")
    any_connector = serializers.BooleanField(help_text="Reserved for any connector of the charger.")


class SessionOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=DriverSessionStatus.choices)
    failure_reason = serializers.ChoiceField(
        choices=DriverSessionFailure.choices, help_text="Why it failed (empty unless FAILED)."
    )
    source = serializers.ChoiceField(choices=DriverSessionSource.choices)
    charge_point = serializers.DictField(help_text="{id, identity}")
    location = serializers.DictField(help_text="{id, name, city}")
    connector = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    energy_wh = serializers.IntegerField()
    duration_s = serializers.IntegerField()
    power_w = serializers.IntegerField(allow_null=True)
    cost = CostOutput(allow_null=True)
    payment = PaymentOutput(
        allow_null=True, help_text="The card payment (a hold taken at the start); null when paid on account."
    )
    reservation = SessionReservationOutput(
        allow_null=True,
        help_text="Your reservation of this connector (or of any connector of the charger): the one this "
        "charge consumed, or, before it started, the one holding the connector for you; else null.",
    )
    final = serializers.BooleanField(help_text="COMPLETED or FAILED: nothing will change any more.")
    transitions = TransitionOutput(many=True)


def cost_data(usage: Usage) -> dict[str, Any] | None:
    cost = usage.cost
    if cost is None:
        return None
    return {"currency": cost.currency, "net": str(cost.net), "gross": str(cost.gross), "final": usage.final}


def reservation_data(session: DriverSession) -> dict[str, Any] | None:
    reservation = reservation_for_session(
        driver_id=session.driver_id,
        charge_point_id=session.charge_point_id,
        evse_id=session.evse_id,
        charging_session_id=session.charging_session_id,
    )
    if reservation is None:
        return None
    return {
        "id": reservation.pk,
        "status": reservation.status,
        "expires_at": reservation.expires_at,
        "any_connector": reservation.any_connector,
    }


def session_data(session: DriverSession, *, with_transitions: bool = True) -> dict[str, Any]:
    usage = session_usage(session=session)
    cp = session.charge_point
    return {
        "id": session.pk,
        "status": session.status,
        "failure_reason": session.failure_reason,
        "source": session.source,
        "charge_point": {"id": cp.pk, "identity": cp.identity},
        "location": {"id": cp.location.pk, "name": cp.location.name, "city": cp.location.city},
        "connector": session.evse_id,
        "created_at": session.created_at,
        "started_at": usage.started_at,
        "stopped_at": usage.stopped_at,
        "energy_wh": usage.energy_wh,
        "duration_s": usage.duration_s,
        "power_w": usage.power_w,
        "cost": cost_data(usage),
        "payment": payment_of(session),
        "reservation": reservation_data(session),
        "final": is_final(session),
        "transitions": [
            {"from_status": t.from_status, "to_status": t.to_status, "at": t.at, "cause": t.cause}
            for t in session.transitions.all()
        ]
        if with_transitions
        else [],
    }


def session_json(session: DriverSession, **kwargs: Any) -> dict[str, Any]:
    return SessionOutput(session_data(session, **kwargs)).data
