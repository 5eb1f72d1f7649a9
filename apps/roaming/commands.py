"""The Commands module, CPO as receiver: a party's START_SESSION, STOP_SESSION, RESERVE_NOW,
CANCEL_RESERVATION or UNLOCK_CONNECTOR is checked and recorded here, answered at once (CommandResponse) by
the OCPI view, sent to the charger through the product's command service (by the view, an interface on
top of the gateway), and its result (CommandResult) POSTed to the party's `response_url` when the charger
answered, through the push queue (`remote_command_finished`, called by the gateway's outcome recorder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from apps.charging.choices import SessionStatus as ChargingStatus
from apps.roaming import pushes
from apps.roaming.choices import CommandResultType, CommandType
from apps.roaming.models import Party, RemoteCommand, RoamingSession, RoamingToken
from apps.roaming.protocol import UNKNOWN_LOCATION, OcpiError
from apps.roaming.tokens import token_check
from apps.stations.models import ChargePoint, Evse
from cpo import clock


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command goes: the charge point and EVSE number (and the roaming session to stop)."""

    charge_point: ChargePoint
    evse_id: int | None
    connector_id: int | None = None
    roaming: RoamingSession | None = None


def _required(data: dict[str, Any], name: str, max_length: int = 36) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise OcpiError(f"{name} is required (a string of at most {max_length} characters)")
    return value


def response_url_of(data: Any) -> str:
    if not isinstance(data, dict):
        raise OcpiError("a JSON object is required")
    url = _required(data, "response_url", 255)
    if not url.startswith(("http://", "https://")):
        raise OcpiError("response_url: an http(s) URL is required")
    return url


def _evse(party: Party, location_id: str, evse_uid: str | None) -> Evse:
    qs = Evse.objects.select_related("charge_point").filter(
        charge_point__organisation_id=party.organisation_id,
        charge_point__location_id=int(location_id) if location_id.isdigit() else -1,
        charge_point__location__is_published=True,
    )
    if evse_uid is not None:
        qs = qs.filter(pk=int(evse_uid) if evse_uid.isdigit() else -1)
    evse = qs.order_by("charge_point__identity", "evse_id").first()
    if evse is None:
        raise OcpiError(
            f"unknown location {location_id}" + (f" / EVSE {evse_uid}" if evse_uid else ""),
            status_code=UNKNOWN_LOCATION,
            http_status=404,
        )
    return evse


def _token(party: Party, data: dict[str, Any]) -> RoamingToken:
    """The command's Token (authorised by the eMSP): stored (or refreshed) like a pushed one."""
    fields = token_check(data.get("token"))
    token, _created = RoamingToken.objects.update_or_create(
        sender=party,
        country_code=fields["country_code"],
        party_id=fields["party_id"],
        uid=fields["uid"],
        type=fields["type"],
        defaults={**fields, "data": data["token"]},
    )
    return token


@transaction.atomic
def remote_command_record(*, party: Party, command: str, data: Any) -> tuple[RemoteCommand, Target]:
    """Check a command's body and record it. OcpiError 2001 for a bad body, 2003 for an unknown location or
    EVSE, 2001 (404) for an unknown session."""
    if command not in CommandType.values:
        raise OcpiError(f"unknown command {command}: one of {', '.join(CommandType.values)}", http_status=404)
    response_url = response_url_of(data)
    token = None
    if command == CommandType.STOP_SESSION:
        session_id = _required(data, "session_id")
        roaming = (
            RoamingSession.objects.select_related("session", "session__charge_point")
            .filter(party=party, ocpi_id=session_id)
            .first()
        )
        if roaming is None:
            raise OcpiError(f"unknown session {session_id}", http_status=404)
        target = Target(roaming.session.charge_point, roaming.session.evse_id, roaming=roaming)
    elif command == CommandType.CANCEL_RESERVATION:
        _required(data, "reservation_id")
        raise OcpiError("reservations through OCPI are not offered by this CPO", http_status=404)
    else:
        location_id = _required(data, "location_id")
        evse_uid = data.get("evse_uid")
        if evse_uid is not None and not isinstance(evse_uid, str):
            raise OcpiError("evse_uid: a string is required")
        if command == CommandType.UNLOCK_CONNECTOR:
            evse_uid = _required(data, "evse_uid")
            connector_id = _required(data, "connector_id")
        else:
            connector_id = data.get("connector_id")
        evse = _evse(party, location_id, evse_uid)
        if command in (CommandType.START_SESSION, CommandType.RESERVE_NOW):
            token = _token(party, data)
        target = Target(
            evse.charge_point,
            evse.evse_id,
            int(connector_id) if isinstance(connector_id, str) and connector_id.isdigit() else None,
        )
    record = RemoteCommand.objects.create(
        party=party,
        command=command,
        request=data,
        response_url=response_url,
        charge_point=target.charge_point,
        evse_id=target.evse_id,
        token=token,
    )
    return record, target


def remote_command_sent(*, remote: RemoteCommand, command_id: int, offline: bool = False) -> None:
    """Link the charger command. `offline`: it failed at once (no connection), the party is told so in
    the CommandResponse (REJECTED) and no CommandResult follows."""
    if offline:
        RemoteCommand.objects.filter(pk=remote.pk).update(
            command_id=command_id,
            result=CommandResultType.FAILED,
            message="the charger is offline",
            finished_at=clock.now(),
        )
        return
    RemoteCommand.objects.filter(pk=remote.pk).update(command_id=command_id)


def remote_command_finished(*, command_id: int, accepted: bool, answered: bool, status: str) -> bool:
    """The charger command behind a party's command is final (called by the gateway's outcome recorder for
    every final start/stop/unlock/reservation command): POST the CommandResult to its response_url.
    False when no party's command is behind it; idempotent (a finished command is not sent twice)."""
    remote = (
        RemoteCommand.objects.select_for_update(no_key=True, of=("self",))
        .select_related("party")
        .filter(command_id=command_id, finished_at__isnull=True)
        .first()
    )
    if remote is None:
        return False
    if accepted:
        result = CommandResultType.ACCEPTED
    elif status == "timeout" or (not answered and status != "charger_offline"):
        result = CommandResultType.TIMEOUT
    elif remote.command in (CommandType.START_SESSION, CommandType.RESERVE_NOW) and answered:
        result = CommandResultType.REJECTED
    else:
        result = CommandResultType.FAILED
    message = {"answered": "", "charger_offline": "the charger is offline"}.get(status, status)
    RemoteCommand.objects.filter(pk=remote.pk).update(result=result, message=message, finished_at=clock.now())
    body: dict[str, Any] = {"result": result}
    if message:
        body["message"] = [{"language": "en", "text": message}]
    pushes.push_create(
        party=remote.party,
        module="commands",
        method="POST",
        url=remote.response_url,
        object_key=f"command:{remote.pk}",
        body=body,
        once=True,
    )
    return True


def session_is_running(roaming: RoamingSession) -> bool:
    return roaming.session.status == ChargingStatus.ACTIVE
