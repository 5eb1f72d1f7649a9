"""OCPP 2.1 messages for the domain's intents (apps.charging.intents): the same as 2.0.1's
(RequestStartTransaction, RequestStopTransaction, GetTransactionStatus and SetChargingProfile did not change
in the members we send)."""

from __future__ import annotations

from apps.ocpp_gateway.v201.payloads import (
    Request,
    cancel_reservation,
    reserve,
    set_charging_limit,
    start_charging,
    stop_transaction,
    transaction_probe,
    unlock_connector,
)

__all__ = [
    "Request",
    "cancel_reservation",
    "reserve",
    "set_charging_limit",
    "start_charging",
    "stop_transaction",
    "transaction_probe",
    "unlock_connector",
]
