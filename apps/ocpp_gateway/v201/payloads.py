"""OCPP 2.0.1 messages for the domain's intents (apps.charging.intents); OCPP 2.1 sends the same ones.
Every version package has a `payloads` module with these same functions; apps.ocpp_gateway.intents picks
it by the charger's version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.accounts.choices import IdTokenType
from apps.charging.intents import ChargingLimit
from apps.charging.models import ChargingSession
from apps.ocpp_gateway.handlers import iso

Request = tuple[str, dict[str, Any]]  # (action, payload)


def start_charging(*, evse_id: int, id_token: str) -> Request:
    """Start charging `id_token` (an app token: type Central) on an EVSE. remoteStartId is left out:
    command_send fills it with the command's id, which the charger's TransactionEvent then names."""
    return "RequestStartTransaction", {
        "idToken": {"idToken": id_token, "type": IdTokenType.CENTRAL.value},
        "evseId": evse_id,
    }


def stop_transaction(*, session: ChargingSession) -> Request:
    """Stop the session's transaction (2.0.1: by the charger's own transactionId)."""
    return "RequestStopTransaction", {"transactionId": session.transaction_ref}


def transaction_probe(*, session: ChargingSession) -> list[Request]:
    """Ask whether the session's transaction still runs (the answer's ongoingIndicator)."""
    return [("GetTransactionStatus", {"transactionId": session.transaction_ref})]


def reserve(
    *, evse_id: int, id_token: str, reservation_id: int, expires_at: datetime, token_type: str | None = None
) -> Request:
    """Hold EVSE `evse_id` (0: any EVSE, sent without evseId) for `id_token` (of `token_type`; default
    Central, an app token) until `expires_at` under our id."""
    payload: dict[str, Any] = {
        "id": reservation_id,
        "expiryDateTime": expires_at.isoformat().replace("+00:00", "Z"),
        "idToken": {"idToken": id_token, "type": token_type or IdTokenType.CENTRAL.value},
    }
    if evse_id:
        payload["evseId"] = evse_id
    return "ReserveNow", payload


def cancel_reservation(*, reservation_id: int) -> Request:
    return "CancelReservation", {"reservationId": reservation_id}


# 1.6 names the charger-wide cap ChargePointMaxProfile; 2.0.1 ChargingStationMaxProfile.
_PURPOSES = {"ChargePointMaxProfile": "ChargingStationMaxProfile"}


def set_charging_limit(*, limit: ChargingLimit) -> Request:
    """A SetChargingProfile of ours in 2.0.1's schema: one schedule with one period, valid until
    `valid_to`. A TxProfile names the charger's transactionId and counts from the transaction's start
    (Relative); the others start at `valid_from` (Absolute)."""
    period: dict[str, Any] = {"startPeriod": 0, "limit": float(limit.limit)}
    if limit.number_phases:
        period["numberPhases"] = limit.number_phases
    schedule: dict[str, Any] = {
        "id": limit.profile_id,
        "chargingRateUnit": limit.unit,
        "chargingSchedulePeriod": [period],
    }
    profile: dict[str, Any] = {
        "id": limit.profile_id,
        "stackLevel": limit.stack_level,
        "chargingProfilePurpose": _PURPOSES.get(limit.purpose, limit.purpose),
        "validFrom": iso(limit.valid_from),
        "validTo": iso(limit.valid_to),
        "chargingSchedule": [schedule],
    }
    if limit.purpose == "TxProfile":
        profile["chargingProfileKind"] = "Relative"
        if limit.session is not None:
            profile["transactionId"] = limit.session.transaction_ref
    else:
        profile["chargingProfileKind"] = "Absolute"
        schedule["startSchedule"] = iso(limit.valid_from)
    return "SetChargingProfile", {"evseId": limit.evse_id, "chargingProfile": profile}


def unlock_connector(*, evse_id: int, connector_id: int) -> Request:
    return "UnlockConnector", {"evseId": evse_id, "connectorId": connector_id}
