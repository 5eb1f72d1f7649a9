"""OCPP 2.0.1 messages for the domain's intents (apps.charging.intents); OCPP 2.1 sends the same ones.
Every version package has a `payloads` module with these same functions; apps.ocpp_gateway.intents picks
it by the charger's version."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apps.accounts.choices import IdTokenType
from apps.charging.models import ChargingSession

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
    """Hold EVSE `evse_id` for `id_token` (of `token_type`; default Central, an app token) until
    `expires_at` under our id."""
    return "ReserveNow", {
        "id": reservation_id,
        "expiryDateTime": expires_at.isoformat().replace("+00:00", "Z"),
        "idToken": {"idToken": id_token, "type": token_type or IdTokenType.CENTRAL.value},
        "evseId": evse_id,
    }


def cancel_reservation(*, reservation_id: int) -> Request:
    return "CancelReservation", {"reservationId": reservation_id}
