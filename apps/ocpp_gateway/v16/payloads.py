"""OCPP 1.6 messages for the domain's intents (apps.charging.intents). Every version package has a
`payloads` module with these same functions; apps.ocpp_gateway.intents picks it by the charger's version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.charging.intents import ChargingLimit
from apps.charging.models import ChargingSession
from apps.ocpp_gateway.handlers import iso

Request = tuple[str, dict[str, Any]]  # (action, payload)


def start_charging(*, evse_id: int, id_token: str) -> Request:
    """Start charging `id_token` on a connector (1.6 has no EVSEs: the EVSE number is the connector's)."""
    return "RemoteStartTransaction", {"connectorId": evse_id, "idTag": id_token}


def stop_transaction(*, session: ChargingSession) -> Request:
    """Stop the session's transaction (1.6: by the integer transactionId we gave it)."""
    return "RemoteStopTransaction", {"transactionId": session.ocpp16_transaction_id}


def transaction_probe(*, session: ChargingSession) -> list[Request]:
    """Ask whether the session's transaction still runs. 1.6 has no such question: the connector's
    MeterValues (sent with the transactionId while it runs) and its StatusNotification are triggered."""
    return [
        ("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": session.evse_id}),
        ("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": session.evse_id}),
    ]


def reserve(
    *, evse_id: int, id_token: str, reservation_id: int, expires_at: datetime, token_type: str | None = None
) -> Request:
    """Hold a connector (0: any connector of the charger) for `id_token` until `expires_at` under our
    reservation id (1.6 tags have no type)."""
    return "ReserveNow", {
        "connectorId": evse_id,
        "expiryDate": expires_at.isoformat().replace("+00:00", "Z"),
        "idTag": id_token,
        "reservationId": reservation_id,
    }


def cancel_reservation(*, reservation_id: int) -> Request:
    return "CancelReservation", {"reservationId": reservation_id}


def set_charging_limit(*, limit: ChargingLimit) -> Request:
    """A SetChargingProfile of ours: one period from the start, valid until `valid_to` (a charger that loses
    us falls back to its defaults). A TxProfile follows its transaction (Relative: from the transaction's
    start); the others start at `valid_from` (Absolute)."""
    period: dict[str, Any] = {"startPeriod": 0, "limit": float(limit.limit)}
    if limit.number_phases:
        period["numberPhases"] = limit.number_phases
    schedule: dict[str, Any] = {"chargingRateUnit": limit.unit, "chargingSchedulePeriod": [period]}
    profile: dict[str, Any] = {
        "chargingProfileId": limit.profile_id,
        "stackLevel": limit.stack_level,
        "chargingProfilePurpose": limit.purpose,
        "validFrom": iso(limit.valid_from),
        "validTo": iso(limit.valid_to),
        "chargingSchedule": schedule,
    }
    if limit.purpose == "TxProfile":
        profile["chargingProfileKind"] = "Relative"
        if limit.session is not None and limit.session.ocpp16_transaction_id is not None:
            profile["transactionId"] = limit.session.ocpp16_transaction_id
    else:
        profile["chargingProfileKind"] = "Absolute"
        schedule["startSchedule"] = iso(limit.valid_from)
    return "SetChargingProfile", {"connectorId": limit.evse_id, "csChargingProfiles": profile}


def unlock_connector(*, evse_id: int, connector_id: int) -> Request:
    """Unlock a connector (1.6: the EVSE number is the connector's)."""
    return "UnlockConnector", {"connectorId": evse_id}
