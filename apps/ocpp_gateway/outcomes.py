"""What the product learns from a charger's answer to a command, whoever sent it (admin, API, shell):
the local list version it accepted or reports, the diagnostics file it announced.

`command_answered` is called once per command, when its answer is recorded. A failure here is logged and
never loses the outcome itself (it runs in a savepoint).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction

from apps.ocpp_gateway.models import OcppCommand

logger = logging.getLogger(__name__)


def _local_list(command: OcppCommand) -> None:
    from apps.ocpp_gateway.localauth import local_list_command_answered

    local_list_command_answered(command=command)


def _diagnostics(command: OcppCommand) -> None:
    from apps.ocpp_gateway.transfers import diagnostics_announced

    diagnostics_announced(command=command)


# action → follow-up; the same action names serve OCPP 1.6 and 2.0.1.
FOLLOW_UPS: dict[str, Callable[[OcppCommand], None]] = {
    "SendLocalList": _local_list,
    "GetLocalListVersion": _local_list,
    "GetDiagnostics": _diagnostics,
}


def command_answered(*, command: OcppCommand) -> None:
    """Apply the follow-up for an answered command, if its action has one."""
    follow_up = FOLLOW_UPS.get(command.action)
    if follow_up is None:
        return
    try:
        with transaction.atomic():
            follow_up(command)
    except Exception:
        logger.exception("command %s (%s): could not apply the answer", command.pk, command.action)
