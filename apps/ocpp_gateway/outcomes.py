"""What the product learns from a charger's answer to a command, whoever sent it (admin, API, shell):
the local list version it accepted or reports, the diagnostics or log file it announced, and the device
model variables it read out or accepted (OCPP 2.0.1 GetVariables / SetVariables).

`command_answered` is called once per command, when its answer is recorded; `command_finished` once per
command whatever its final outcome (the driver API's start and stop follow their commands this way, through
apps.ocpp_gateway.intents). A failure here is logged and never loses the outcome itself (it runs in a
savepoint).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.intents import (
    intent_command_finished,
    limit_command_finished,
    probe_command_finished,
    reservation_command_done,
)
from apps.ocpp_gateway.models import OcppCommand
from apps.roaming.commands import remote_command_finished
from apps.smartcharging.configuration import configuration_record
from apps.stations.services import availability_record
from cpo import clock

logger = logging.getLogger(__name__)


def _local_list(command: OcppCommand) -> None:
    from apps.ocpp_gateway.localauth import local_list_command_answered

    local_list_command_answered(command=command)


def _diagnostics(command: OcppCommand) -> None:
    from apps.ocpp_gateway.transfers import diagnostics_announced

    diagnostics_announced(command=command)


def _variable_key(item: dict[str, Any]) -> tuple[Any, ...]:
    """What identifies a device model attribute in a request item or its result (names are
    case-insensitive in OCPP 2.0.1)."""
    component, variable = item.get("component") or {}, item.get("variable") or {}
    evse = component.get("evse") or {}
    return (
        str(component.get("name", "")).casefold(),
        str(component.get("instance") or "").casefold(),
        evse.get("id"),
        evse.get("connectorId"),
        str(variable.get("name", "")).casefold(),
        str(variable.get("instance") or "").casefold(),
        item.get("attributeType") or "Actual",
    )


def set_variables_applied(*, payload: dict[str, Any], response: dict[str, Any]) -> list[dict[str, Any]]:
    """The values a SetVariables answer accepted, as GetVariableResult items (the requested value with the
    charger's result). Secrets are left out: the stored payload holds them masked."""
    from apps.ocpp_gateway.masking import is_secret_name

    requested = {_variable_key(item): item for item in payload.get("setVariableData") or []}
    applied = []
    for result in response.get("setVariableResult") or []:
        item = requested.get(_variable_key(result))
        name = (result.get("variable") or {}).get("name")
        if item is None or result.get("attributeStatus") != "Accepted" or is_secret_name(name):
            continue
        applied.append({**result, "attributeValue": item.get("attributeValue")})
    return applied


def _device_model(command: OcppCommand) -> None:
    from apps.stations.services import device_variables_record

    response = command.response or {}
    if command.action == "GetVariables":
        results = response.get("getVariableResult") or []
    else:
        results = set_variables_applied(payload=command.payload or {}, response=response)
    device_variables_record(
        charge_point_id=command.charge_point_id,
        results=results,
        reported_at=command.completed_at or clock.now(),
    )


def _configuration(command: OcppCommand) -> None:
    configuration_record(
        charge_point_id=command.charge_point_id,
        keys=(command.response or {}).get("configurationKey") or [],
        reported_at=command.completed_at or clock.now(),
    )


def availability_target(payload: dict[str, Any]) -> tuple[int, str] | None:
    """(EVSE number, availability) a ChangeAvailability request asks for: 0 is the charge point as a whole
    (1.6 connectorId 0, 2.0.1 without an EVSE). None when the payload names neither (not ours to store)."""
    if "type" in payload:  # 1.6: connector n is EVSE n
        return int(payload.get("connectorId") or 0), str(payload["type"])
    if "operationalStatus" in payload:  # 2.0.1 / 2.1
        evse = payload.get("evse") or {}
        return int(evse.get("id") or 0), str(payload["operationalStatus"])
    return None


def _availability(command: OcppCommand) -> None:
    """A ChangeAvailability the charger Accepted is in force now: store it. Scheduled means "after the
    current transaction", which the charger reports through its status; Rejected changes nothing."""
    if (command.response or {}).get("status") != "Accepted":
        return
    target = availability_target(command.payload or {})
    if target is not None:
        availability_record(
            charge_point_id=command.charge_point_id, evse_id=target[0], availability=target[1]
        )


# action → follow-up; the same action names serve OCPP 1.6 and 2.0.1.
FOLLOW_UPS: dict[str, Callable[[OcppCommand], None]] = {
    "SendLocalList": _local_list,
    "GetLocalListVersion": _local_list,
    "GetDiagnostics": _diagnostics,
    "GetLog": _diagnostics,
    "GetVariables": _device_model,
    "SetVariables": _device_model,
    "GetConfiguration": _configuration,  # 1.6: smart charging reads the allowed rate units
    "ChangeAvailability": _availability,
}


def _apply(follow_ups: dict[str, Callable[[OcppCommand], None]], command: OcppCommand, what: str) -> None:
    follow_up = follow_ups.get(command.action)
    if follow_up is None:
        return
    try:
        with transaction.atomic():
            follow_up(command)
    except Exception:
        logger.exception("command %s (%s): could not apply the %s", command.pk, command.action, what)


def command_answered(*, command: OcppCommand) -> None:
    """Apply the follow-up for an answered command, if its action has one."""
    _apply(FOLLOW_UPS, command, "answer")


def _driver_session(command: OcppCommand) -> None:
    intent_command_finished(command=command)


def _reconcile(command: OcppCommand) -> None:
    probe_command_finished(command=command)


def _reservation(command: OcppCommand) -> None:
    reservation_command_done(command=command)


def _smart_charging(command: OcppCommand) -> None:
    limit_command_finished(command=command)


def _roaming(command: OcppCommand) -> None:
    """A roaming party's command (OCPI Commands): its result goes to the party's response_url."""
    if command.source != "ocpi":
        return
    response = command.response or {}
    remote_command_finished(
        command_id=command.pk,
        accepted=command.status == CommandStatus.ANSWERED
        and response.get("status") in ("Accepted", "Unlocked"),
        answered=command.status == CommandStatus.ANSWERED,
        status=command.status,
    )


# action → what to do with any final outcome (answer, CALLERROR, timeout, offline, disconnected).
FINISHED_FOLLOW_UPS: dict[str, Callable[[OcppCommand], None]] = {
    "RemoteStartTransaction": _driver_session,
    "RequestStartTransaction": _driver_session,
    "RemoteStopTransaction": _driver_session,
    "RequestStopTransaction": _driver_session,
    # Reconciliation's questions about a transaction (apps.charging.reconcile).
    "GetTransactionStatus": _reconcile,
    "TriggerMessage": _reconcile,
    # A driver's reservation (apps.reservations): the charger's answer decides it.
    "ReserveNow": _reservation,
    # Smart charging's profiles (apps.smartcharging): accepted, rejected or not delivered.
    "SetChargingProfile": _smart_charging,
}

# OCPI commands of roaming parties (apps.roaming.commands), in addition to the follow-ups above.
ROAMING_FOLLOW_UPS: dict[str, Callable[[OcppCommand], None]] = {
    action: _roaming
    for action in (
        "RemoteStartTransaction",
        "RequestStartTransaction",
        "RemoteStopTransaction",
        "RequestStopTransaction",
        "UnlockConnector",
    )
}


def command_finished(*, command: OcppCommand) -> None:
    """Apply the follow-up for a command that reached any final outcome, if its action has one."""
    _apply(FINISHED_FOLLOW_UPS, command, "outcome")
    _apply(ROAMING_FOLLOW_UPS, command, "roaming result")
