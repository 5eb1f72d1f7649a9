"""python manage.py ocpp_call <identity> <Action> '<json payload>' [--timeout S]

Sends one command to a charger from the shell (through whichever server process holds its socket),
waits for the outcome and prints it as JSON. Exit status: 0 answered, 1 CALLERROR, 2 invalid JSON or
payload, 3 unknown charger, 4 timeout, 5 charger offline, 6 charger disconnected before answering.

The payload is checked against the schema of the OCPP version the charger speaks (1.6 or 2.0.1). For a
2.0.1 charger, RequestStartTransaction's remoteStartId and the requestId of GetBaseReport,
GetChargingProfiles, GetLog, GetReport and UpdateFirmware may be left out: the command's id is used,
e.g. `ocpp_call CS-1 RequestStartTransaction '{"idToken": {"idToken": "04A1B2C3", "type": "ISO14443"}}'`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from apps.ocpp_gateway.choices import CommandStatus
from apps.ocpp_gateway.services import command_send, command_wait
from apps.stations.models import ChargePoint
from cpo.exceptions import ApplicationError

EXIT_ANSWERED = 0
EXIT_CALL_ERROR = 1
EXIT_INVALID = 2
EXIT_UNKNOWN_CHARGER = 3
EXIT_TIMEOUT = 4
EXIT_OFFLINE = 5
EXIT_DISCONNECTED = 6

EXIT_BY_STATUS = {
    CommandStatus.ANSWERED: EXIT_ANSWERED,
    CommandStatus.CALL_ERROR: EXIT_CALL_ERROR,
    CommandStatus.TIMEOUT: EXIT_TIMEOUT,
    CommandStatus.CHARGER_OFFLINE: EXIT_OFFLINE,
    CommandStatus.CHARGER_DISCONNECTED: EXIT_DISCONNECTED,
}


@dataclass(frozen=True, slots=True)
class CallResult:
    """How an ocpp_call ended: the exit status, the outcome (None when nothing was sent) and, for
    anything but an answer, what went wrong in words."""

    exit_code: int
    outcome: dict[str, Any] | None
    problem: str = ""


def ocpp_call(
    *, identity: str, action: str, payload_json: str, timeout_s: float | None = None, actor: Any = None
) -> CallResult:
    """Send `action` with the JSON payload to the charger `identity` and wait for the outcome (until
    the command's deadline). Never raises for a bad input: the result says what happened."""
    try:
        payload = json.loads(payload_json)
    except ValueError as exc:
        return CallResult(EXIT_INVALID, None, _("The payload is not JSON: {error}").format(error=exc))
    if not isinstance(payload, dict):
        return CallResult(EXIT_INVALID, None, _("The payload must be a JSON object."))
    charge_point = ChargePoint.objects.filter(identity__iexact=identity).first()
    if charge_point is None:
        return CallResult(
            EXIT_UNKNOWN_CHARGER,
            None,
            _("No charge point with identity {identity}.").format(identity=identity),
        )
    try:
        command = command_send(
            charge_point=charge_point,
            action=action,
            payload=payload,
            timeout_s=timeout_s,
            actor=actor,
            source="cli",
        )
    except ApplicationError as exc:
        return CallResult(EXIT_INVALID, None, exc.detail)
    outcome = command_wait(command_id=command.pk)
    code = EXIT_BY_STATUS.get(outcome["status"], EXIT_TIMEOUT)
    if code == EXIT_ANSWERED:
        return CallResult(code, outcome)
    detail = ": ".join(part for part in (outcome.get("error_code"), outcome.get("error_description")) if part)
    problem = _("{action} to {identity}: {status}").format(
        action=action, identity=charge_point.identity, status=outcome["status"]
    )
    return CallResult(code, outcome, f"{problem} ({detail})" if detail else problem)


class Command(BaseCommand):
    help = (
        "Send an OCPP command to a charger and print the outcome as JSON. Exit status: 0 answered, "
        "1 CALLERROR, 2 invalid JSON or payload, 3 unknown charger, 4 timeout, 5 offline, 6 disconnected."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("identity", help="The charger's OCPP identity.")
        parser.add_argument(
            "action", help="The OCPP action of the charger's version, e.g. Reset or RequestStartTransaction."
        )
        parser.add_argument(
            "payload", nargs="?", default="{}", help="The payload as a JSON object (default {})."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="Seconds the charger has to answer (default: CPO_OCPP_COMMAND_TIMEOUT_S).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = ocpp_call(
            identity=options["identity"],
            action=options["action"],
            payload_json=options["payload"],
            timeout_s=options["timeout"],
        )
        if result.outcome is not None:
            self.stdout.write(json.dumps(result.outcome, ensure_ascii=False))
        if result.exit_code != EXIT_ANSWERED:
            raise CommandError(result.problem, returncode=result.exit_code)
